//! A recording that ends within its first frame: a file of what was recorded (ffprobed), never
//! TranscodeFailed. A plain page's first frame encodes to a segment of a few MPEG-TS packets,
//! which ffmpeg cannot recognise when it probes it (media/finalize.rs pads such inputs). Real
//! `pagecast record` / `serve`, redis-server, Chromium and ffmpeg.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use serde_json::json;
use service_support::*;

/// `pagecast record` of one frame (30 fps, `--duration 0.03`) of a plain page: an MP4 of one
/// picture. Before the fix: "ffmpeg failed ... Impossible to open '.../seg_000000.ts' ...
/// Invalid data found when processing input", every time.
#[test]
fn a_one_frame_recording_of_a_plain_page_is_a_playable_file() {
    let base = fixture_server();
    let dir = scratch("one-frame");
    let out = dir.join("one.mp4");
    record_ok(&format!("{base}/plain.html"), &out, &["--duration", "0.03"]);
    let p = probe(&out, &[]);
    assert_eq!(
        (p.frames, p.codec.as_str(), p.width, p.height),
        (1, "h264", 1280, 720),
        "one picture"
    );
}

/// The same as HLS: the playlist and its one segment play in ffmpeg (its HLS reader probes the
/// first segment: before the fix "Error when loading first segment ... Invalid data found").
#[test]
fn a_one_frame_hls_recording_of_a_plain_page_plays() {
    let base = fixture_server();
    let dir = scratch("one-frame-hls");
    let out = dir.join("one.m3u8");
    record_ok(&format!("{base}/plain.html"), &out, &["--duration", "0.03"]);
    let p = probe(&out, &[]);
    assert_eq!((p.frames, p.codec.as_str()), (1, "h264"), "one picture");
}

/// Service tasks on a plain page stopped the moment Describe says they record (the way the
/// web-record client's user-agent test hit the defect: a Stop 20 ms after recording began,
/// one frame written, TranscodeFailed in about one run of three). Each task finishes with a file
/// that has a picture, or, had no frame been written at all, with RecordFailed saying so; never
/// with TranscodeFailed.
#[test]
fn a_stop_within_the_first_frame_delivers_a_playable_file() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "early-stop", true, 0, 1);
    let dl = scratch("early-stop-dl");
    let mut files = 0;
    for round in 0..4 {
        let id = start(
            &svc.url,
            json!({ "RecordURL": format!("{fixtures}/plain.html"), "MaxDurationLimit": 60 }),
        );
        // Describe polled without a pause: the Stop comes within the first frames.
        let deadline = Instant::now() + Duration::from_secs(60);
        while describe(&svc.url, &id)["Status"] != "recording" {
            assert!(
                Instant::now() < deadline,
                "round {round}: not recording within 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        ok(&svc.url, "Stop", &id);
        let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
        let written = d["Stats"]["FramesWritten"].as_u64().unwrap_or(0);
        if written == 0 {
            assert_eq!(
                d["Result"]["ErrorCode"], "RecordFailed",
                "round {round}: {d}"
            );
            continue;
        }
        assert!(
            d["Result"]["ErrorCode"].is_null(),
            "round {round}: a task stopped after {written} frames failed: {d}"
        );
        let p = probe(&fetch_video(&d, &dl), &[]);
        assert!(
            p.frames >= 1 && p.codec == "h264",
            "round {round}: the file has no picture: {p:?}"
        );
        files += 1;
    }
    assert!(files > 0, "no round wrote a frame before its Stop");
}
