//! Joins recorded segments into the deliverable without re-encoding: an MP4 with its index at the
//! front, or a VOD HLS playlist with MPEG-TS segments, optionally AES-128 encrypted.

use super::hls::HlsKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::MediaError;
use super::segments::{parse_segment_list, segment_lists};
use super::ts_padding::MIN_PROBED_BYTES;
use crate::process::run_capture;

/// What to produce.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    /// One MP4 file with `+faststart`.
    Mp4,
    /// An HLS VOD playlist; the recorded segments are written beside it, named after the
    /// playlist (see [`super::hls`]).
    Hls {
        /// Encrypt every segment with this key.
        key: Option<HlsKey>,
    },
}

impl OutputFormat {
    /// Chooses the format from an output path's extension (`.mp4` or `.m3u8`).
    pub fn from_path(path: &Path, key: Option<HlsKey>) -> Result<Self, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("mp4") if key.is_some() => {
                Err("encryption is only available for HLS (.m3u8) output".into())
            }
            Some("mp4") => Ok(OutputFormat::Mp4),
            Some("m3u8") => Ok(OutputFormat::Hls { key }),
            _ => Err(format!("{} must end in .mp4 or .m3u8", path.display())),
        }
    }
}

/// Joins `segments` into `output`. Returns every file written (for HLS: the playlist first, then
/// the segments in order). `scratch` holds temporary files (lists, key) and must be private.
pub async fn finalize(
    ffmpeg: &Path,
    segments: &[PathBuf],
    scratch: &Path,
    output: &Path,
    format: &OutputFormat,
) -> Result<Vec<PathBuf>, MediaError> {
    if segments.is_empty() {
        return Err(MediaError::Unexpected(
            "nothing was recorded (no segments)".into(),
        ));
    }
    if let OutputFormat::Hls { key } = format {
        return super::hls::write_vod(&hls_segments(segments)?, output, key.as_ref());
    }
    let inputs = concat_inputs(segments, &list_entries(segments));
    let result = match materialize(&inputs, scratch) {
        Ok(joined) => concat(ffmpeg, &joined, segments.len(), scratch, output, format).await,
        Err(e) => Err(e),
    };
    remove_part_lists(scratch);
    result
}

/// Removes the part lists (and padding) [`materialize`] left in `scratch`.
fn remove_part_lists(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if crate::workdir::is_parts_list(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Runs ffmpeg's concat demuxer over `inputs` into `output`.
async fn concat(
    ffmpeg: &Path,
    inputs: &[(String, Option<f64>)],
    segment_count: usize,
    scratch: &Path,
    output: &Path,
    format: &OutputFormat,
) -> Result<Vec<PathBuf>, MediaError> {
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir)
        .map_err(MediaError::io(format!("creating {}", out_dir.display())))?;
    let list = scratch.join("concat.txt");
    std::fs::write(&list, concat_list(inputs))
        .map_err(MediaError::io("writing the concat list"))?;

    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostats",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        // The concat demuxer opens only plain files unless told; `concatf` reads a list of parts.
        "-protocol_whitelist",
        "file,concatf",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
    ]
    .map(String::from)
    .to_vec();
    args.push(list.display().to_string());
    args.extend(["-map", "0", "-c", "copy"].map(String::from));
    // Generous: copying is fast (hundreds of times real time); this only catches a hang.
    let limit = Duration::from_secs(120 + segment_count as u64);
    match format {
        OutputFormat::Mp4 => {
            args.extend(
                [
                    "-bsf:a",
                    "aac_adtstoasc",
                    "-movflags",
                    "+faststart",
                    "-f",
                    "mp4",
                ]
                .map(String::from),
            );
            args.push(output.display().to_string());
            run_capture("ffmpeg", ffmpeg, &args, limit).await?;
            Ok(vec![output.to_path_buf()])
        }
        OutputFormat::Hls { .. } => Err(MediaError::Unexpected(
            "HLS results are not joined by ffmpeg".into(),
        )),
    }
}

/// The recorded segments among `segments` as HLS segments (see [`super::hls::segments_in`]).
fn hls_segments(segments: &[PathBuf]) -> Result<Vec<super::hls::HlsSegment>, MediaError> {
    let mut dirs: Vec<&Path> = segments.iter().filter_map(|p| p.parent()).collect();
    dirs.dedup();
    let wanted: std::collections::HashSet<&PathBuf> = segments.iter().collect();
    let mut out = Vec::new();
    for dir in dirs {
        out.extend(
            super::hls::segments_in(dir)?
                .into_iter()
                .filter(|s| wanted.contains(&s.source)),
        );
    }
    Ok(out)
}

/// The segment URIs of a media playlist, in order.
pub fn playlist_segments(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// One input of the concat demuxer: a recorded segment, or several consecutive segments of one
/// encoder instance read back to back as one MPEG-TS stream.
#[derive(Debug, Clone, PartialEq)]
struct ConcatInput {
    /// The segments, in order.
    parts: Vec<PathBuf>,
    /// The video's span (from the encoder's segment list), when known.
    duration: Option<f64>,
}

/// Where a segment sits in its encoder's segment list.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ListEntry {
    /// Which list (encoder instance).
    list: usize,
    /// Position in that list.
    index: usize,
    start: f64,
    end: f64,
}

/// Groups `segments` into concat inputs. Consecutive segments of one encoder instance share one
/// clock (`-reset_timestamps 0`) and one MPEG-TS stream cut into files, so their bytes back
/// to back are one continuous stream; the concat demuxer then opens a few files instead of one every two
/// seconds (it probes each file it opens: about 15 ms a file, which made joining a 10-minute
/// recording take 5 s). Segments of different instances (after ffmpeg restarted) or without a
/// list entry stay separate inputs, so the demuxer still lines up each instance's own clock.
fn concat_inputs(segments: &[PathBuf], entries: &HashMap<PathBuf, ListEntry>) -> Vec<ConcatInput> {
    let mut inputs: Vec<(ConcatInput, Option<ListEntry>)> = Vec::new();
    for seg in segments {
        let entry = entries.get(seg).copied();
        if let (Some(e), Some((input, Some(last)))) = (entry, inputs.last_mut())
            && e.list == last.list
            && e.index == last.index + 1
            && (e.start - last.end).abs() < 0.001
        {
            input.parts.push(seg.clone());
            input.duration = input.duration.map(|d| d + (e.end - e.start));
            *last = e;
            continue;
        }
        inputs.push((
            ConcatInput {
                parts: vec![seg.clone()],
                duration: entry.map(|e| e.end - e.start),
            },
            entry,
        ));
    }
    inputs.into_iter().map(|(input, _)| input).collect()
}

/// Bytes of `parts` on disk (a missing part counts as none).
fn input_bytes(parts: &[PathBuf]) -> u64 {
    parts
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Gives each concat input one URL: a lone segment's path, or for several parts ffmpeg's
/// `concatf:` protocol over a list of them in `scratch`, which reads the parts as one stream
/// without copying them. An input too short to be probed gets a part of null packets after it
/// (see [`super::ts_padding`]). Returns every input's URL and duration.
fn materialize(
    inputs: &[ConcatInput],
    scratch: &Path,
) -> Result<Vec<(String, Option<f64>)>, MediaError> {
    let mut out = Vec::with_capacity(inputs.len());
    let mut padding: Option<PathBuf> = None;
    for (n, input) in inputs.iter().enumerate() {
        let tiny = input_bytes(&input.parts) < MIN_PROBED_BYTES;
        if let ([single], false) = (input.parts.as_slice(), tiny) {
            out.push((single.display().to_string(), input.duration));
            continue;
        }
        let mut parts = input.parts.clone();
        if tiny {
            let pad = match &padding {
                Some(p) => p.clone(),
                None => {
                    let p = crate::workdir::parts_padding(scratch);
                    std::fs::write(&p, super::ts_padding::enough())
                        .map_err(MediaError::io(format!("writing {}", p.display())))?;
                    padding.insert(p).clone()
                }
            };
            parts.push(pad);
        }
        let mut list = String::new();
        for part in &parts {
            // The protocol resolves names against the working directory, not the list's.
            let part = std::path::absolute(part)
                .map_err(MediaError::io(format!("resolving {}", part.display())))?;
            let name = part.display().to_string();
            if name.contains('\n') {
                return Err(MediaError::Unexpected(format!(
                    "a segment's path contains a line break: {name:?}"
                )));
            }
            list.push_str(&name);
            list.push('\n');
        }
        let path = std::path::absolute(crate::workdir::parts_list(scratch, n))
            .map_err(MediaError::io("resolving the scratch directory"))?;
        std::fs::write(&path, list)
            .map_err(MediaError::io(format!("writing {}", path.display())))?;
        out.push((format!("concatf:{}", path.display()), input.duration));
    }
    Ok(out)
}

/// The concat demuxer's list. Each input's duration is taken from the encoder's segment list
/// (the video's span, `end - start`) when known: without it the demuxer would use the file's
/// own duration, which ends with the last audio packet and may reach past the last frame, and
/// every input would push the following ones later (stretching the file and the audio with
/// it). With it, every input of one encoder starts exactly where the previous one's video
/// ended, so both streams keep their recorded timestamps relative to each other.
fn concat_list(inputs: &[(String, Option<f64>)]) -> String {
    let mut s = String::from("ffconcat version 1.0\n");
    for (url, duration) in inputs {
        // Single quotes are escaped the way the concat demuxer expects.
        let path = url.replace('\'', r"'\''");
        s.push_str(&format!("file '{path}'\n"));
        if let Some(d) = duration {
            s.push_str(&format!("duration {d:.6}\n"));
        }
    }
    s
}

/// Every segment of every segment list (`segments-*.csv`) in the directories of `segments`, with
/// its place and times.
fn list_entries(segments: &[PathBuf]) -> HashMap<PathBuf, ListEntry> {
    let mut dirs: Vec<&Path> = segments.iter().filter_map(|p| p.parent()).collect();
    dirs.sort();
    dirs.dedup();
    let mut out = HashMap::new();
    let mut list = 0;
    for dir in dirs {
        for path in segment_lists(dir).unwrap_or_default() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            out.extend(parse_list_entries(dir, list, &text));
            list += 1;
        }
    }
    out
}

/// The entries of one CSV segment list (`name,start,end` per line) of the encoder instance
/// `list`; segments without video (end not after start) are left out.
fn parse_list_entries(dir: &Path, list: usize, text: &str) -> Vec<(PathBuf, ListEntry)> {
    let mut out = Vec::new();
    for r in parse_segment_list(text) {
        if r.end > r.start {
            let index = out.len();
            out.push((
                dir.join(&r.name),
                ListEntry {
                    list,
                    index,
                    start: r.start,
                    end: r.end,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn key_parsing() {
        assert!(HlsKey::from_hex("00112233445566778899aabbccddeeff", "https://k/x").is_ok());
        assert!(HlsKey::from_hex("0011", "https://k/x").is_err());
        assert!(HlsKey::from_hex("zz112233445566778899aabbccddeeff", "https://k/x").is_err());
        assert!(HlsKey::from_hex("00112233445566778899aabbccddeeff", " ").is_err());
        let k = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").unwrap();
        assert!(
            !format!("{k:?}").contains("0011"),
            "the key must never be printed"
        );
    }

    #[test]
    fn format_from_extension() {
        assert!(matches!(
            OutputFormat::from_path(Path::new("a/b.MP4"), None),
            Ok(OutputFormat::Mp4)
        ));
        assert!(matches!(
            OutputFormat::from_path(Path::new("x.m3u8"), None),
            Ok(OutputFormat::Hls { .. })
        ));
        assert!(OutputFormat::from_path(Path::new("x.webm"), None).is_err());
        let k = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").ok();
        assert!(OutputFormat::from_path(Path::new("x.mp4"), k).is_err());
    }

    #[test]
    fn playlist_and_concat_list() {
        let pl = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2.0,\nout_00000.ts\n#EXTINF:1.0,\nout_00001.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(playlist_segments(pl), vec!["out_00000.ts", "out_00001.ts"]);
        let list = concat_list(&[(String::from("/w/it's.ts"), None)]);
        assert!(list.contains(r"file '/w/it'\''s.ts'"), "{list}");
        let list = concat_list(&[
            (String::from("/w/a.ts"), Some(2.0)),
            (String::from("/w/b.ts"), None),
        ]);
        assert_eq!(
            list,
            "ffconcat version 1.0\nfile '/w/a.ts'\nduration 2.000000\nfile '/w/b.ts'\n"
        );
    }

    #[test]
    fn consecutive_segments_of_one_encoder_are_joined() {
        let dir = Path::new("/w");
        let mut entries: HashMap<PathBuf, ListEntry> = parse_list_entries(
            dir,
            0,
            "seg_000000.ts,0.000000,2.000000\nseg_000001.ts,2.000000,3.466667\nseg_000002.ts,3.466667,5.0\n",
        )
        .into_iter()
        .collect();
        // A restarted encoder: its own list and clock.
        entries.extend(parse_list_entries(
            dir,
            1,
            "seg_000004.ts,0.000000,2.000000\nseg_000005.ts,2.000000,4.000000\n",
        ));
        let seg = |n: u32| dir.join(format!("seg_{n:06}.ts"));
        let inputs = concat_inputs(
            &[seg(0), seg(1), seg(2), seg(3), seg(4), seg(5), seg(7)],
            &entries,
        );
        assert_eq!(inputs.len(), 4, "{inputs:?}");
        assert_eq!(inputs[0].parts, vec![seg(0), seg(1), seg(2)]);
        assert!((inputs[0].duration.unwrap() - 5.0).abs() < 1e-9);
        // Not in any list: alone, without a duration.
        assert_eq!(inputs[1].parts, vec![seg(3)]);
        assert_eq!(inputs[1].duration, None);
        assert_eq!(inputs[2].parts, vec![seg(4), seg(5)]);
        assert!((inputs[2].duration.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(inputs[3].parts, vec![seg(7)]);

        // A gap in one list (a segment missing on disk) starts a new input.
        let inputs = concat_inputs(&[seg(0), seg(2)], &entries);
        assert_eq!(inputs.len(), 2);
        assert!((inputs[1].duration.unwrap() - (5.0 - 3.466667)).abs() < 1e-9);
    }

    #[test]
    fn inputs_of_several_parts_are_read_through_a_part_list() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.ts"), dir.path().join("b.ts"));
        for p in [&a, &b] {
            std::fs::write(p, vec![0u8; MIN_PROBED_BYTES as usize]).unwrap();
        }
        let inputs = [
            ConcatInput {
                parts: vec![a.clone(), b.clone()],
                duration: Some(4.0),
            },
            ConcatInput {
                parts: vec![b.clone()],
                duration: None,
            },
        ];
        let urls = materialize(&inputs, dir.path()).unwrap();
        let list = urls[0].0.strip_prefix("concatf:").unwrap();
        assert_eq!(
            std::fs::read_to_string(list).unwrap(),
            format!("{}\n{}\n", a.display(), b.display())
        );
        assert_eq!(urls[0].1, Some(4.0));
        assert_eq!(urls[1], (b.display().to_string(), None));
        remove_part_lists(dir.path());
        assert!(!Path::new(list).exists());

        let odd = [ConcatInput {
            parts: vec![a.clone(), dir.path().join("b\n.ts")],
            duration: None,
        }];
        assert!(materialize(&odd, dir.path()).is_err());
    }

    #[test]
    fn an_input_too_short_to_probe_is_padded_with_null_packets() {
        let dir = tempfile::tempdir().unwrap();
        let (tiny, big) = (dir.path().join("tiny.ts"), dir.path().join("big.ts"));
        std::fs::write(&tiny, super::super::ts_padding::null_packets(9)).unwrap();
        std::fs::write(&big, vec![0u8; MIN_PROBED_BYTES as usize]).unwrap();
        let inputs = [
            ConcatInput {
                parts: vec![big.clone()],
                duration: Some(2.0),
            },
            ConcatInput {
                parts: vec![tiny.clone()],
                duration: Some(0.033),
            },
            ConcatInput {
                parts: vec![tiny.clone(), tiny.clone()],
                duration: None,
            },
        ];
        let urls = materialize(&inputs, dir.path()).unwrap();
        assert_eq!(urls[0], (big.display().to_string(), Some(2.0)));
        let pad = crate::workdir::parts_padding(dir.path());
        for (url, parts) in [(&urls[1], vec![&tiny]), (&urls[2], vec![&tiny, &tiny])] {
            let list = url.0.strip_prefix("concatf:").unwrap();
            let mut want: String = parts.iter().map(|p| format!("{}\n", p.display())).collect();
            want.push_str(&format!("{}\n", pad.display()));
            assert_eq!(std::fs::read_to_string(list).unwrap(), want);
        }
        assert_eq!(urls[1].1, Some(0.033));
        // Whole null packets, enough to lift even an empty input over the probe's floor.
        let padding = std::fs::read(&pad).unwrap();
        assert_eq!(padding.len() % 188, 0);
        assert!(padding.len() as u64 >= MIN_PROBED_BYTES);
        assert!(
            padding
                .chunks(188)
                .all(|p| p[..4] == [0x47, 0x1f, 0xff, 0x10])
        );
        remove_part_lists(dir.path());
        assert!(!pad.exists(), "the padding goes with the part lists");
        assert!(tiny.exists() && big.exists());
    }

    /// A recording stopped within its first frame of a plain page: one black frame with its
    /// sound, a segment of 9 MPEG-TS packets that ffmpeg cannot tell from noise when probing.
    /// Joined, it is an MP4 of that frame (before the padding: TranscodeFailed, "Impossible to
    /// open ... Invalid data found when processing input").
    #[tokio::test]
    async fn a_one_frame_recording_of_a_plain_page_is_joined() {
        use crate::media::encoder::{EncoderSettings, FrameFormat, SegmentEncoder, SlotMedia};
        let dir = tempfile::tempdir().unwrap();
        let s = EncoderSettings {
            audio: true,
            input: FrameFormat::I420,
            ..EncoderSettings::default()
        };
        let (w, h) = (1280, 720);
        let enc = SegmentEncoder::start(&s, w, h, 30, dir.path(), 0).unwrap();
        // Black in BT.601 standard range: Y 16, U and V 128.
        let mut black = vec![16u8; (w * h) as usize];
        black.extend(std::iter::repeat_n(128u8, (w * h / 2) as usize));
        let pcm = vec![0u8; crate::audio::timeline::samples_for_slot(0, 30) * 4];
        enc.send(SlotMedia {
            image: Arc::from(black),
            pcm: Some(Arc::from(pcm)),
        })
        .await
        .unwrap();
        let segments = enc.finish(Duration::from_secs(30)).await.unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let size = std::fs::metadata(&segments[0]).unwrap().len();
        assert!(
            size < 2048,
            "the segment is as small as the failing one: {size} bytes"
        );

        let out = dir.path().join("out").join("one.mp4");
        finalize(
            Path::new("ffmpeg"),
            &segments,
            dir.path(),
            &out,
            &OutputFormat::Mp4,
        )
        .await
        .expect("a one-frame segment is joined");
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_entries"])
            .args(["stream=codec_name,nb_read_frames", "-of", "csv=p=0"])
            .arg(&out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&probe.stdout);
        assert!(text.contains("h264,1"), "one picture: {text}");
        assert!(text.contains("aac,"), "with its sound: {text}");
        assert!(
            !crate::workdir::parts_padding(dir.path()).exists(),
            "the padding is removed"
        );
    }
}
