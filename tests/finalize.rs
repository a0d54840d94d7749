//! The join of recorded segments into the deliverable, on real ffmpeg segments: consecutive
//! segments of one encoder are joined into one stream, separate encoder instances keep their own
//! clocks, and the result has every frame at its place.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use pagecast::media::finalize::{OutputFormat, finalize};
use pagecast::media::segments::completed_segments;

const FPS: u32 = 30;

/// Writes `seconds` of 2-second segments the way the live encoder does (same segment muxer and
/// flags), as the encoder instance whose first segment is `first`.
fn encode_instance(dir: &Path, first: u64, seconds: u32, tone: u32) {
    encode_from(
        dir,
        first,
        seconds,
        &format!("testsrc2=size=320x240:rate={FPS}"),
        Some(&format!("sine=frequency={tone}:sample_rate=48000")),
    );
}

/// As [`encode_instance`], from the given lavfi picture and sound sources (no sound: a
/// recording with `"Audio": false`).
fn encode_from(dir: &Path, first: u64, seconds: u32, picture: &str, sound: Option<&str>) {
    let out = run(
        {
            let mut c = Command::new("ffmpeg");
            c.args([
                "-hide_banner",
                "-nostats",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(picture);
            if let Some(sound) = sound {
                c.args(["-f", "lavfi", "-i", sound])
                    .args(["-c:a", "aac", "-ac", "2", "-ar", "48000"]);
            }
            c.args(["-t", &seconds.to_string(), "-vf", "format=yuv420p"])
                .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
                .args(["-keyint_min", "60", "-bf", "0", "-sc_threshold", "0"])
                .args(["-f", "segment", "-segment_format", "mpegts"])
                .args(["-segment_time", "2", "-segment_start_number"])
                .arg(first.to_string())
                .arg("-segment_list")
                .arg(dir.join(format!("segments-{first:06}.csv")))
                .args(["-segment_list_type", "csv", "-reset_timestamps", "0"])
                .arg(dir.join("seg_%06d.ts"));
            c
        },
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "ffmpeg: {}", stderr(&out));
}

/// Every packet's (stream type, pts seconds) in `file`.
fn packets(file: &Path) -> Vec<(String, f64)> {
    let out = run(
        {
            let mut c = Command::new("ffprobe");
            c.args(["-v", "error", "-show_entries", "packet=codec_type,pts_time"])
                .args(["-of", "csv=p=0"])
                .arg(file);
            c
        },
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let kind = f.next()?;
            Some((kind.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

fn video_times(file: &Path) -> Vec<f64> {
    let mut v: Vec<f64> = packets(file)
        .into_iter()
        .filter(|(k, _)| k == "video")
        .map(|(_, t)| t)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn finalize_into(segments: &[PathBuf], dir: &Path, output: &Path, format: &OutputFormat) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let files = rt
        .block_on(finalize(Path::new("ffmpeg"), segments, dir, output, format))
        .unwrap();
    assert!(files.iter().all(|f| f.exists()), "{files:?}");
}

#[test]
fn segments_of_two_encoder_instances_join_frame_exact() {
    let dir = scratch("finalize-join");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // 9 s from the first encoder (5 segments, the last 1 s long), then 6 s from a restarted
    // one whose clock starts again at 0.
    encode_instance(&work, 0, 9, 440);
    encode_instance(&work, 5, 6, 880);
    let segments = completed_segments(&work).unwrap();
    assert_eq!(segments.len(), 8, "{segments:?}");

    let mp4 = dir.join("out.mp4");
    finalize_into(&segments, &work, &mp4, &OutputFormat::Mp4);
    let frames = video_times(&mp4);
    assert_eq!(frames.len() as u32, 15 * FPS, "every frame is kept");
    // One frame every 1/30 s within each encoder's part: no gap or overlap where its segments
    // meet. Where the restarted encoder begins, its sound's encoder delay (one AAC frame, 21.3
    // ms, before its first picture) adds at most that much.
    let step = 1.0 / FPS as f64;
    for (n, w) in frames.windows(2).enumerate() {
        let gap = w[1] - w[0];
        if n + 1 == 9 * FPS as usize {
            assert!(
                gap > step - 0.002 && gap < step + 0.0215,
                "{gap:.4} s between the encoders"
            );
        } else {
            assert_close(gap, step, 0.002, &format!("frame {n} to the next"));
        }
    }
    let audio: Vec<f64> = packets(&mp4)
        .into_iter()
        .filter(|(k, _)| k == "audio")
        .map(|(_, t)| t)
        .collect();
    let audio_end = audio.iter().copied().fold(0.0, f64::max);
    assert_close(audio_end, 15.0, 0.1, "the sound spans the whole video");
    // No hole in the sound where the segments or the encoders meet (an AAC packet is 21.3 ms).
    let mut sorted = audio.clone();
    sorted.sort_by(f64::total_cmp);
    let widest = sorted.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(widest < 0.05, "a {widest:.3} s hole in the sound");
    let probe = probe(&mp4, &[]);
    assert_close(probe.duration, 15.0, 0.1, "duration");

    // HLS from the same segments: the recorded segments themselves, a new clock marked where
    // the restarted encoder begins, and the same frames.
    let m3u8 = dir.join("hls").join("index.m3u8");
    finalize_into(&segments, &work, &m3u8, &OutputFormat::Hls { key: None });
    let playlist = std::fs::read_to_string(&m3u8).unwrap();
    assert_eq!(
        pagecast::media::finalize::playlist_segments(&playlist).len(),
        8,
        "{playlist}"
    );
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        1,
        "{playlist}"
    );
    let frames = video_times(&m3u8);
    assert_eq!(frames.len() as u32, 15 * FPS, "HLS keeps every frame");

    // The joined files are scratch: none is left behind, the segments are untouched.
    let left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("seg") && n != "concat.txt")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(segments.iter().all(|s| s.exists()));
}

/// A worker killed mid-recording leaves its encoder's segment in progress cut off anywhere,
/// unlisted. The takeover salvages it: whole frames up to where both streams are whole, on the
/// same clock, listed like a completed segment, and the join keeps every one of those frames.
#[test]
fn the_segment_a_killed_encoder_left_unfinished_is_kept() {
    let dir = scratch("finalize-salvage");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    encode_instance(&work, 0, 7, 440);
    // The kill: segment 2 half written (not on a packet boundary), nothing after it, and the
    // list as ffmpeg left it (segments 0 and 1).
    let list = work.join("segments-000000.csv");
    let text = std::fs::read_to_string(&list).unwrap();
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&list, kept).unwrap();
    std::fs::remove_file(work.join("seg_000003.ts")).unwrap();
    let seg2 = work.join("seg_000002.ts");
    let len = std::fs::metadata(&seg2).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg2).unwrap();
    f.set_len(len / 2 + 77).unwrap();
    drop(f);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let salvage = |work: &Path| {
        rt.block_on(pagecast::media::salvage::salvage_unfinished(
            work,
            Path::new("ffmpeg"),
            Path::new("ffprobe"),
        ))
        .unwrap()
    };
    let record = salvage(&work).expect("the half-written segment is kept");
    assert_eq!(record.name, "seg_000002.ts");
    assert_close(record.start, 4.0, 0.05, "it starts where segment 1 ended");
    assert!(
        record.seconds() > 0.5 && record.seconds() < 1.5,
        "about half of a 2 s segment: {record:?}"
    );
    assert!(salvage(&work).is_none(), "salvaging twice changes nothing");
    // The restarted encoder follows.
    encode_instance(&work, 3, 4, 880);

    let segments = completed_segments(&work).unwrap();
    assert_eq!(segments.len(), 5, "{segments:?}");
    let mp4 = dir.join("out.mp4");
    finalize_into(&segments, &work, &mp4, &OutputFormat::Mp4);
    let expected = 4.0 + record.seconds() + 4.0;
    let frames = video_times(&mp4);
    assert_eq!(
        frames.len(),
        (expected * FPS as f64).round() as usize,
        "every salvaged frame is kept"
    );
    let step = 1.0 / FPS as f64;
    let salvaged_last = ((4.0 + record.seconds()) * FPS as f64).round() as usize - 1;
    for (n, w) in frames.windows(2).enumerate() {
        let gap = w[1] - w[0];
        if n == salvaged_last {
            assert!(
                gap > step - 0.002 && gap < step + 0.0215,
                "{gap:.4} s between the encoders"
            );
        } else {
            assert_close(gap, step, 0.002, &format!("frame {n} to the next"));
        }
    }
    let mut audio: Vec<f64> = packets(&mp4)
        .into_iter()
        .filter(|(k, _)| k == "audio")
        .map(|(_, t)| t)
        .collect();
    audio.sort_by(f64::total_cmp);
    let widest = audio.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(widest < 0.05, "a {widest:.3} s hole in the sound");
    assert_close(probe(&mp4, &[]).duration, expected, 0.1, "duration");
}

/// A worker killed within the first frames of a plain page recorded without sound leaves a
/// segment of a few MPEG-TS packets (here 10 and a part: three small frames). ffprobe cannot guess the
/// format of a file that short (ffmpeg 5.1 needs about 11 packets); told it, it reads the
/// frames, and the whole ones are kept.
#[test]
fn a_tiny_unfinished_segment_is_kept() {
    let dir = scratch("finalize-salvage-tiny");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    encode_from(
        &work,
        0,
        2,
        &format!("color=black:size=320x240:rate={FPS}"),
        None,
    );
    // Killed early: nothing listed, segment 0 cut off after ten packets and a part.
    std::fs::write(work.join("segments-000000.csv"), "").unwrap();
    let seg = work.join("seg_000000.ts");
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(188 * 10 + 77).unwrap();
    drop(f);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = rt
        .block_on(pagecast::media::salvage::salvage_unfinished(
            &work,
            Path::new("ffmpeg"),
            Path::new("ffprobe"),
        ))
        .unwrap()
        .expect("the tiny segment is kept");
    assert_eq!(record.name, "seg_000000.ts");
    // Three frames were read; the last may be cut off, so two are kept.
    assert_close(record.seconds(), 2.0 / FPS as f64, 0.002, "two frames kept");
}

/// An MP4 result sent to storage while it is recorded: a live remux writes the samples as the
/// segments complete (bytes that never change once written), and at the end only the head (the
/// index moved in front, pointing at the same samples) is new. The file it makes has the same
/// packets as the join of the same segments.
#[test]
fn a_live_remux_with_its_index_in_front_matches_the_join() {
    use pagecast::media::faststart;
    use pagecast::media::remux::LiveRemux;
    use std::io::{Read, Seek, SeekFrom};

    let dir = scratch("finalize-live-remux");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    encode_instance(&work, 0, 9, 440);
    let segments = completed_segments(&work).unwrap();
    assert_eq!(segments.len(), 5, "{segments:?}");

    let live = dir.join("live.mp4");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let early = rt.block_on(async {
        let mut remux = LiveRemux::start(Path::new("ffmpeg"), &live).unwrap();
        for s in &segments[..3] {
            remux.feed(s).await.unwrap();
        }
        // Wait until ffmpeg has written samples of what it read (the payload began, and more
        // than 100 kB of it is on disk): what is on disk then must not change later.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let early = loop {
            let now = std::fs::read(&live).unwrap_or_default();
            let written = faststart::payload_start(&mut std::io::Cursor::new(&now))
                .ok()
                .flatten()
                .is_some_and(|start| now.len() as u64 > start + 100_000);
            if written {
                break now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no samples written within 30 s ({} bytes)",
                now.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for s in &segments[3..] {
            remux.feed(s).await.unwrap();
        }
        remux.finish(Duration::from_secs(60)).await.unwrap();
        early
    });
    let mut file = std::fs::File::open(&live).unwrap();
    let layout = faststart::layout(&mut file).unwrap();
    let start = faststart::payload_start(&mut std::io::Cursor::new(&early))
        .unwrap()
        .expect("the samples had begun");
    assert_eq!(start, layout.payload.start);
    let whole = std::fs::read(&live).unwrap();
    assert!(
        early.len() as u64 > start + 100_000,
        "samples were written while recording ({} bytes)",
        early.len()
    );
    assert!(
        whole[start as usize..early.len()] == early[start as usize..],
        "samples on disk changed after they were written"
    );

    let read = |file: &mut std::fs::File, r: &std::ops::Range<u64>| {
        let mut buf = vec![0; (r.end - r.start) as usize];
        file.seek(SeekFrom::Start(r.start)).unwrap();
        file.read_exact(&mut buf).unwrap();
        buf
    };
    let (ftyp, moov) = (read(&mut file, &layout.ftyp), read(&mut file, &layout.moov));
    let payload_len = layout.payload.end - layout.payload.start;
    let mut fast = faststart::head(&ftyp, &moov, layout.payload.start, payload_len).unwrap();
    fast.extend_from_slice(&whole[layout.payload.start as usize..layout.payload.end as usize]);
    let fast_path = dir.join("fast.mp4");
    std::fs::write(&fast_path, &fast).unwrap();
    let fast_layout = faststart::layout(&mut std::io::Cursor::new(&fast)).unwrap();
    assert!(
        fast_layout.moov.end <= fast_layout.payload.start,
        "index first"
    );

    let joined = dir.join("joined.mp4");
    finalize_into(&segments, &work, &joined, &OutputFormat::Mp4);
    let (got, want) = (packets(&fast_path), packets(&joined));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert_close(g.1, w.1, 0.0001, "packet time");
    }
    assert_eq!(video_times(&fast_path).len() as u32, 9 * FPS);
    // Every sample decodes.
    let out = run(
        {
            let mut c = Command::new("ffmpeg");
            c.args(["-v", "error", "-xerror", "-i"])
                .arg(&fast_path)
                .args(["-f", "null", "-"]);
            c
        },
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "{}",
        stderr(&out)
    );
}
