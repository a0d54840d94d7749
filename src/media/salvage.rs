//! The segment an encoder was writing when its process was killed with the worker. MPEG-TS is
//! a sequence of 188-byte packets, so what reached the disk plays up to its last whole packet:
//! salvaging it keeps up to one segment (2 s) of media a takeover would otherwise lose.
//!
//! The file is cut where both streams are whole (the last video frame, which may have been
//! written only in part, is dropped; the sound ends with the picture), rewritten with its
//! timestamps unchanged, and added to its encoder's segment list like a segment ffmpeg completed.
//!
//! The muxer holds sound back to fill whole PES packets, so a segment killed early can hold
//! pictures and no sound yet (seven frames in a 200 KiB cut of a 720p segment). Its sound track
//! then has no parameters to copy; it is written as silence of the segments' own format instead,
//! so the pictures are kept and the segment still joins the others.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::MediaError;
use super::encoder::{AAC_FRAME, SAMPLE_RATE, aac_output_args, silence_source};
use super::segments::{SegmentRecord, recorded_segments, segment_lists};
use crate::process::run_capture;
use crate::workdir::{segment_file_name, segment_list_number, segment_number};
use tracing::{debug, warn};

/// MPEG-TS packet size.
const TS_PACKET: u64 = 188;
/// Fewer whole frames than this are not worth a segment.
const MIN_FRAMES: usize = 2;

/// The newest encoder instance's unfinished segment: the file numbered after the last segment
/// its list names (or its first number, for an empty list), present and listed nowhere.
/// Returns the segment's path, its list's path, and where its video starts on the list's clock.
pub(crate) fn find_unfinished(dir: &Path) -> Option<(PathBuf, PathBuf, f64)> {
    let lists = segment_lists(dir).ok()?;
    let newest = lists.last()?.clone();
    // Every instance's list, oldest first (the same order as `lists`).
    let instances = recorded_segments(dir).ok()?;
    let (number, start) = match instances.last()?.last() {
        Some(last) => (segment_number(&last.name)? + 1, last.end),
        None => (segment_list_number(&newest)?, 0.0),
    };
    let name = segment_file_name(number);
    let listed = instances.iter().flatten().any(|r| r.name == name);
    let path = dir.join(&name);
    (!listed && path.is_file()).then_some((path, newest, start))
}

/// One packet as ffprobe reports it: (is video, pts, duration), seconds.
type Packet = (bool, f64, f64);

/// Whether the listing of [`parse_packets`] names a sound stream (its stream lines are the codec
/// type alone).
fn has_audio_stream(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "audio")
}

/// Parses `ffprobe -show_entries packet=codec_type,pts_time,duration_time:stream=codec_type -of
/// csv=p=0` (lines without times are skipped).
fn parse_packets(text: &str) -> Vec<Packet> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(',').map(str::trim);
            let kind = f.next()?;
            let pts: f64 = f.next()?.parse().ok()?;
            let duration: f64 = f.next()?.parse().ok()?;
            (pts.is_finite() && duration.is_finite()).then_some((kind == "video", pts, duration))
        })
        .collect()
}

/// Where to cut a truncated segment: its first frame's time, the cut time (both streams whole
/// before it) and the end of the last frame kept. `None` when fewer than [`MIN_FRAMES`] frames
/// would be kept.
fn cut_point(packets: &[Packet]) -> Option<(f64, f64, f64)> {
    let mut video: Vec<(f64, f64)> = packets.iter().filter(|p| p.0).map(|p| (p.1, p.2)).collect();
    video.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The last frame may have reached the disk only in part.
    video.pop();
    let first = video.first()?.0;
    let video_end = video.last().map(|(pts, d)| pts + d)?;
    let audio_end = packets
        .iter()
        .filter(|p| !p.0)
        .map(|p| p.1 + p.2)
        .reduce(f64::max);
    let cut = audio_end.map_or(video_end, |a| a.min(video_end));
    let kept: Vec<&(f64, f64)> = video.iter().filter(|(pts, _)| *pts < cut).collect();
    if kept.len() < MIN_FRAMES {
        return None;
    }
    let last = kept.last()?;
    Some((first, cut, last.0 + last.1))
}

/// ffprobe's listing of a segment's packets and streams, as `parse_packets` and
/// `has_audio_stream` read it.
async fn packet_listing(
    ffprobe: &Path,
    segment: &Path,
    limit: Duration,
) -> Result<String, crate::process::ProcessError> {
    let args = [
        "-v",
        "error",
        // Told the format: a segment of a few packets is too short for ffmpeg to guess it
        // (see `ts_padding`).
        "-f",
        "mpegts",
        "-show_entries",
        "packet=codec_type,pts_time,duration_time:stream=codec_type",
        "-of",
        "csv=p=0",
    ];
    let segment = segment.display().to_string();
    let out = run_capture(
        "ffprobe",
        ffprobe,
        args.iter().copied().chain([segment.as_str()]),
        limit,
    )
    .await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Salvages the newest encoder's unfinished segment in `dir`, if there is one worth keeping, and
/// returns its new list entry. Nothing is changed when there is none, or when ffprobe cannot
/// read what was written (the file is then left alone, and later segments are numbered after it).
pub async fn salvage_unfinished(
    dir: &Path,
    ffmpeg: &Path,
    ffprobe: &Path,
) -> Result<Option<SegmentRecord>, MediaError> {
    let Some((segment, list, start)) = find_unfinished(dir) else {
        debug!("no unfinished segment to keep");
        return Ok(None);
    };
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| MediaError::Unexpected("a segment without a name".into()))?;
    // Drop a packet cut short.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .map_err(MediaError::io(format!("opening {name}")))?;
    let len = file
        .metadata()
        .map_err(MediaError::io(format!("reading {name}")))?
        .len();
    file.set_len(len - len % TS_PACKET)
        .map_err(MediaError::io(format!("truncating {name}")))?;
    drop(file);

    let limit = Duration::from_secs(30);
    let listing = packet_listing(ffprobe, &segment, limit).await;
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            warn!(segment = %name, error = %e, "the unfinished segment is unreadable; it is not kept");
            return Ok(None);
        }
    };
    let packets = parse_packets(&listing);
    let Some((first, cut, frames_end)) = cut_point(&packets) else {
        debug!(segment = %name, packets = packets.len(), "the unfinished segment holds too little to keep");
        return Ok(None);
    };
    let silence = has_audio_stream(&listing) && !packets.iter().any(|p| !p.0);
    if silence {
        debug!(segment = %name, "the unfinished segment holds no sound yet; it is kept with silence");
    }

    // Rewritten with the same timestamps (no mux delay added), so it still continues the
    // segments before it on their encoder's clock.
    let scratch = crate::workdir::salvage_scratch(dir, &name);
    let args = rewrite_args(&segment, &scratch, first, cut, silence);
    run_capture("ffmpeg", ffmpeg, args, limit).await?;
    std::fs::rename(&scratch, &segment).map_err(MediaError::io(format!("replacing {name}")))?;

    let record = SegmentRecord {
        name,
        start,
        end: start + (frames_end - first),
    };
    append_record(&list, &record)?;
    Ok(Some(record))
}

/// ffmpeg's arguments that rewrite `segment` into `scratch` up to `cut`, timestamps unchanged.
/// With `silence`, the sound track is new silence from the first frame on (AAC's 1024 samples
/// of priming are put before it), in the format the encoder writes.
fn rewrite_args(
    segment: &Path,
    scratch: &Path,
    first: f64,
    cut: f64,
    silence: bool,
) -> Vec<String> {
    let mut args: Vec<String> = ["-v", "error", "-y", "-copyts", "-f", "mpegts", "-i"]
        .map(String::from)
        .to_vec();
    args.push(segment.display().to_string());
    if silence {
        let priming = f64::from(AAC_FRAME) / f64::from(SAMPLE_RATE);
        args.extend(["-itsoffset".to_string(), format!("{:.6}", first + priming)]);
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(silence_source());
        args.extend(["-map", "0:v", "-map", "1:a", "-c:v", "copy"].map(String::from));
        args.extend(aac_output_args());
    } else {
        args.extend(["-map", "0", "-c", "copy"].map(String::from));
    }
    args.extend(["-muxdelay", "0", "-muxpreload", "0", "-to"].map(String::from));
    args.push(format!("{cut:.6}"));
    args.extend(["-f".to_string(), "mpegts".to_string()]);
    args.push(scratch.display().to_string());
    args
}

/// Appends `record` to a segment list in ffmpeg's format (on a line of its own, even when the
/// list's last line was cut short).
fn append_record(list: &Path, record: &SegmentRecord) -> Result<(), MediaError> {
    let text = std::fs::read_to_string(list).map_err(MediaError::io("reading a segment list"))?;
    let mut line = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        line.push('\n');
    }
    line.push_str(&format!(
        "{},{:.6},{:.6}\n",
        record.name, record.start, record.end
    ));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(list)
        .map_err(MediaError::io("opening a segment list"))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(MediaError::io("writing a segment list"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::segments::parse_segment_list;
    use crate::workdir::segment_list_name;

    #[test]
    fn the_unfinished_segment_follows_the_newest_list() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in 0..3u64 {
            std::fs::write(d.join(segment_file_name(n)), b"ts").unwrap();
        }
        std::fs::write(
            d.join(segment_list_name(0)),
            "seg_000000.ts,0.000000,2.021333\nseg_000001.ts,2.0213",
        )
        .unwrap();
        // The list's last line was cut short: seg 1 is not listed, so it is the unfinished one.
        let (seg, list, start) = find_unfinished(d).unwrap();
        assert_eq!(seg, d.join("seg_000001.ts"));
        assert_eq!(list, d.join(segment_list_name(0)));
        assert!((start - 2.021333).abs() < 1e-9);
        append_record(
            &list,
            &SegmentRecord {
                name: "seg_000001.ts".into(),
                start,
                end: 3.0,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&list).unwrap();
        assert_eq!(parse_segment_list(&text).len(), 2, "{text}");
        // Now segment 2 is next.
        assert_eq!(find_unfinished(d).unwrap().0, d.join("seg_000002.ts"));
        // A restarted encoder whose list is still empty: its first number, from time 0.
        std::fs::write(d.join(segment_list_name(3)), "").unwrap();
        std::fs::write(d.join(segment_file_name(3)), b"ts").unwrap();
        let (seg, _, start) = find_unfinished(d).unwrap();
        assert_eq!((seg, start), (d.join("seg_000003.ts"), 0.0));
        std::fs::remove_file(d.join(segment_file_name(3))).unwrap();
        assert!(find_unfinished(d).is_none(), "no file: nothing to salvage");
    }

    #[test]
    fn the_cut_keeps_whole_frames_and_ends_the_sound_with_them() {
        let text = "video,5.421333,0.033333\naudio,5.432000,0.021333\n\
                    video,5.454667,0.033333\naudio,5.453333,0.021333\n\
                    video,5.488000,0.033333\nvideo,5.521333,0.033333\n\
                    audio,5.474667,0.021333\naudio,5.496000,0.021333\nnot,a,packet\n";
        let packets = parse_packets(text);
        assert_eq!(packets.len(), 8);
        // The frame at 5.521 may be partial and is dropped; the sound ends at 5.517, so the
        // frame at 5.488 is the last one kept.
        let (first, cut, frames_end) = cut_point(&packets).unwrap();
        assert!((first - 5.421333).abs() < 1e-9);
        assert!((cut - 5.517333).abs() < 1e-6, "{cut}");
        assert!((frames_end - 5.521333).abs() < 1e-6, "{frames_end}");
        // Too little to keep.
        assert!(cut_point(&parse_packets("video,1.0,0.033\nvideo,1.033,0.033\n")).is_none());
    }

    async fn probe_packets(file: &Path) -> Vec<Packet> {
        let limit = Duration::from_secs(30);
        let listing = packet_listing(Path::new("ffprobe"), file, limit).await;
        parse_packets(&listing.unwrap())
    }

    #[tokio::test]
    async fn a_segment_killed_before_its_first_sound_keeps_its_pictures() {
        // A 720p segment as the encoder writes it (H.264 without B-frames, AAC 48 kHz stereo),
        // cut where pictures reached the disk and no sound did yet.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let full = d.join("full.ts");
        let made = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=1280x720:r=30",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=r=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
            ])
            .args([
                "-preset",
                "ultrafast",
                "-bf",
                "0",
                "-c:a",
                "aac",
                "-ac",
                "2",
            ])
            .args(["-f", "mpegts"])
            .arg(&full)
            .status()
            .unwrap();
        assert!(made.success());
        let bytes = std::fs::read(&full).unwrap();
        let part = d.join("part.ts");
        let mut cut_at = None;
        for packets in (100..bytes.len() as u64 / TS_PACKET).step_by(50) {
            std::fs::write(&part, &bytes[..(packets * TS_PACKET) as usize]).unwrap();
            let p = probe_packets(&part).await;
            if p.iter().any(|p| !p.0) {
                break;
            }
            if p.iter().filter(|p| p.0).count() >= 4 {
                cut_at = Some(packets * TS_PACKET);
            }
        }
        let cut_at = cut_at.expect("no cut with pictures and no sound") as usize;
        std::fs::write(d.join(segment_file_name(0)), &bytes[..cut_at]).unwrap();
        std::fs::write(d.join(segment_list_name(0)), "").unwrap();

        let kept = salvage_unfinished(d, Path::new("ffmpeg"), Path::new("ffprobe"))
            .await
            .unwrap()
            .expect("the pictures are kept");
        let p = probe_packets(&d.join(segment_file_name(0))).await;
        let frames = p.iter().filter(|p| p.0).count();
        let sound: Vec<&Packet> = p.iter().filter(|p| !p.0).collect();
        assert!(frames >= 3, "{p:?}");
        assert!(
            (kept.seconds() - frames as f64 / 30.0).abs() < 0.01,
            "{kept:?}"
        );
        // Silence as long as the pictures, starting with them.
        let first_frame = p.iter().find(|p| p.0).unwrap().1;
        let sound_end = sound.iter().map(|p| p.1 + p.2).fold(0.0, f64::max);
        assert!(!sound.is_empty(), "no sound track: {p:?}");
        assert!((sound[0].1 - first_frame).abs() < 0.002, "{p:?}");
        assert!(sound_end >= first_frame + kept.seconds() - 0.025, "{p:?}");
    }
}
