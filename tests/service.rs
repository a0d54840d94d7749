//! End-to-end: `pagecast serve` and `pagecast worker` processes against a real redis-server,
//! real Chromium and ffmpeg, driven through the Action API like a client of the source product.

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

#[test]
fn full_lifecycle_start_pause_resume_refresh_stop() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-lifecycle", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "UserContext": "class-42" }),
    );
    let seen_recording = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Pause", &id);
    let paused_at = Instant::now();
    assert_eq!(describe(&svc.url, &id)["Status"], "paused");
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Resume", &id);
    let pause = paused_at.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    ok(&svc.url, "Refresh", &id);
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let wall = seen_recording.elapsed();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    // The page was loaded through the worker's egress guard (which refuses private addresses
    // unless allowed, as here: the fixture server is on loopback).
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    let fixture_port = fixtures.rsplit(':').next().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("egress allowed") && l.contains(&format!("port={fixture_port}"))),
        "no request went through the egress proxy:\n{log}"
    );
    for field in [
        "CreateTime",
        "StartTime",
        "CancelTime",
        "StopTime",
        "FinishTime",
    ] {
        assert!(d[field].as_i64().is_some(), "{field} missing: {d}");
    }
    assert_eq!(d["UserContext"], "class-42");
    assert_eq!(d["Stats"]["Pauses"], 1, "{d}");
    assert_eq!(d["Stats"]["Refreshes"], 1, "{d}");
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    // Recorded time is the wall time between our calls minus the pause. Recording began a little
    // before we saw it (polling), and each control takes effect within a second.
    let expected = (wall - pause).as_secs_f64();
    assert!(
        (expected - 1.0..=expected + 1.5).contains(&recorded),
        "recorded {recorded}, expected about {expected}: {d}"
    );
    let dir = scratch("svc-lifecycle-dl");
    let file = fetch_video(&d, &dir);
    let p = probe(&file, &[]);
    assert_close(
        p.duration,
        recorded,
        1.0,
        "file duration = recorded time excluding the pause",
    );
    assert_eq!(p.codec, "h264");
    assert!(svc.out.exists());
    // The Refresh action reloaded the page: its load counter goes from 1 to 2 in the video.
    assert_eq!(
        frame_at(&file, 0, &[]).clock_page_load(),
        Some(1),
        "first frame"
    );
    let last = p.frames.saturating_sub(1) as usize;
    assert_eq!(
        frame_at(&file, last, &[]).clock_page_load(),
        Some(2),
        "last frame: the page was reloaded by Refresh"
    );
}

#[test]
fn manual_start_waits_for_the_page() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-manual", true, 0, 1);
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/manual.html?delay=3000"), "ManualStart": true }),
    );
    // Before the page calls startRecord() the task stays normal.
    std::thread::sleep(Duration::from_secs(2));
    let d = describe(&svc.url, &id);
    assert_eq!(d["Status"], "normal", "{d}");
    assert!(d["StartTime"].is_null());
    wait_for(
        &svc.url,
        &id,
        "recording",
        Duration::from_secs(30),
        status_is("recording"),
    );
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    let file = fetch_video(&d, &scratch("svc-manual-dl"));
    let [r, g, _] = frame_at(&file, 0, &[]).mean(100, 100, 400, 300);
    assert!(
        g > 200.0 && r < 60.0,
        "the first frame is after startRecord() (green), got r={r} g={g}"
    );
}

#[test]
fn max_duration_limit_ends_the_task_normally() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-limit", true, 0, 1);
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 3 }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert!(d["CancelTime"].as_i64().is_some());
    let file = fetch_video(&d, &scratch("svc-limit-dl"));
    assert_close(
        probe(&file, &[]).duration,
        3.0,
        0.5,
        "stopped by MaxDurationLimit",
    );
}

/// Private addresses allowed (the fixture server is on loopback), the cloud metadata service
/// still is not: the page's image, iframe and fetch of 169.254.169.254 are refused by the
/// worker's egress proxy, and the page is recorded all the same.
#[test]
fn a_recorded_page_cannot_reach_the_cloud_metadata_service() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-metadata", true, 0, 1);
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/metadata_probe.html"), "MaxDurationLimit": 3 }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a page's request was refused") && l.contains("169.254.169.254"))
        .collect();
    assert!(
        !refused.is_empty(),
        "the metadata service was not refused:\n{log}"
    );
    for line in &refused {
        assert!(line.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"), "{line}");
        assert!(line.contains(&id), "the refusal names its task: {line}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("egress allowed") && l.contains("169.254.169.254")),
        "{log}"
    );
    // A RecordURL that redirects there fails to load, and says why.
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/redirect-to-metadata") }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "PageLoadFailed", "{d}");
    let message = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("redirected to http://169.254.169.254/")
            && message.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"),
        "{d}"
    );
    // A page whose host does not resolve: the guard's answer names the cause.
    let id = start(
        &svc.url,
        json!({ "RecordURL": "http://no-such-host.invalid/class" }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "PageLoadFailed", "{d}");
    let message = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("no-such-host.invalid does not resolve"),
        "{d}"
    );
}

#[test]
fn page_hooks_change_the_task_like_actions() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-hooks", true, 0, 1);
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html?pause=2000&resume=4000&stop=6000") }),
    );
    wait_for(
        &svc.url,
        &id,
        "paused by the page",
        Duration::from_secs(30),
        status_is("paused"),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert_eq!(d["Stats"]["Pauses"], 1, "{d}");
    let file = fetch_video(&d, &scratch("svc-hooks-dl"));
    // Recording ran from load to 6 s with 2 s paused.
    let dur = probe(&file, &[]).duration;
    assert!((3.0..=4.8).contains(&dur), "duration {dur}");
}

#[test]
fn two_workers_with_capacity_one_share_three_tasks() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-capacity", false, 2, 1);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            start(
                &svc.url,
                json!({ "RecordURL": format!("{fixtures}/static.html") }),
            )
        })
        .collect();
    let count = |s: &str| {
        ids.iter()
            .filter(|id| describe(&svc.url, id)["Status"] == s)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("recording") < 2 {
        assert!(Instant::now() < deadline, "two tasks should be recording");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count("recording"), 2, "capacity 1 per worker");
    assert_eq!(count("normal"), 1, "the third task waits");
    let waiting = ids
        .iter()
        .find(|id| describe(&svc.url, id)["Status"] == "normal")
        .unwrap()
        .clone();
    let running: Vec<_> = ids.iter().filter(|id| **id != waiting).cloned().collect();
    ok(&svc.url, "Stop", &running[0]);
    wait_for(
        &svc.url,
        &waiting,
        "the third task to start",
        Duration::from_secs(30),
        status_is("recording"),
    );
    for id in &ids {
        ok(&svc.url, "Stop", id);
    }
    for id in &ids {
        let d = wait_finished(&svc.url, id, Duration::from_secs(60));
        assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    }
}

#[test]
fn concurrent_pause_and_stop_leave_a_consistent_task() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-race", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    std::thread::sleep(Duration::from_secs(1));
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let url = svc.url.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                call(
                    &url,
                    if i % 2 == 0 { "Pause" } else { "Stop" },
                    json!({ "TaskID": id }),
                )
            })
        })
        .collect();
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert!(
            status == 200 || (status == 409 && body["ErrorCode"] == "InvalidState"),
            "{status} {body}"
        );
    }
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert!(!d["Result"]["Videos"].as_array().unwrap().is_empty());
}

#[test]
fn redis_restart_during_a_task_loses_nothing() {
    let _machine = beside_others();
    let mut redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-redis", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    std::thread::sleep(Duration::from_secs(1));
    // Persist, then take Redis away for a moment: the API answers 503, nothing crashes.
    let saved = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "SAVE"])
        .output()
        .unwrap();
    assert!(
        saved.status.success(),
        "redis-cli SAVE: {}",
        String::from_utf8_lossy(&saved.stderr)
    );
    redis.stop();
    let t = Instant::now();
    let (status, body) = call(&svc.url, "Describe", json!({ "TaskID": id }));
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (503, Some("ServiceUnavailable")),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(6), "503 comes quickly");
    std::thread::sleep(Duration::from_secs(1));
    redis.restart();
    // The worker kept recording and keeps its lease; the task goes on and finishes.
    let d = wait_for(
        &svc.url,
        &id,
        "still recording",
        Duration::from_secs(15),
        status_is("recording"),
    );
    assert_eq!(d["Restarts"], 0);
    std::thread::sleep(Duration::from_secs(1));
    ok(&svc.url, "Stop", &id);
    // And again while the result is being made (finalize, upload, callback).
    let saved = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "SAVE"])
        .output()
        .unwrap();
    assert!(saved.status.success());
    redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let file = fetch_video(&d, &scratch("svc-redis-dl"));
    assert!(probe(&file, &[]).duration > 2.0);
}

#[test]
fn a_worker_killed_mid_recording_is_taken_over_into_the_same_output() {
    let _machine = alone();
    killed_worker_is_taken_over("mp4");
}

/// HLS segments published before the kill stay published; the takeover's segments follow them
/// (numbered on, after a discontinuity) in the one playlist.
#[test]
fn a_worker_killed_mid_recording_is_taken_over_into_the_same_hls_playlist() {
    let _machine = alone();
    killed_worker_is_taken_over("hls");
}

/// Page time a killed worker may lose before its kill, in seconds (see its use).
const LOST_LIMIT_S: f64 = 1.6 + 1.0;

fn killed_worker_is_taken_over(muxer: &str) {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // An API-only node and two workers; the one that takes the task is killed with SIGKILL.
    let svc = service(&redis, &format!("svc-killed-{muxer}"), false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"),
                "Output": { "Video": { "Muxer": muxer } } }),
    );
    let owner_pid = svc.procs[1..]
        .iter()
        .map(|p| p.child.id())
        .find(|pid| has_children(*pid))
        .expect("one worker runs the recording");
    let tree = descendants(owner_pid);
    assert!(
        tree.len() >= 3,
        "a browser and an encoder run under the worker: {tree:?}"
    );
    std::thread::sleep(Duration::from_secs(6));
    let killed_at = Instant::now();
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::process::Command::new("kill")
        .args(["-KILL", &owner_pid.to_string()])
        .status()
        .unwrap();
    // Everything the killed worker had started (browser, its helpers, ffmpeg) dies with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = tree
            .iter()
            .copied()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the killed worker are still running: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The other worker of the machine sees the killed one's lock file released (it scans them
    // every 0.2 s; the beat, PAGECAST_LIVENESS_MS, would notice within 2 s) and continues the
    // same task: it reports the gap once its recording runs.
    let d = wait_for(&svc.url, &id, "a takeover", Duration::from_secs(30), |d| {
        d["Stats"]["Gaps"].as_array().is_some_and(|g| !g.is_empty())
    });
    let taken_over_in = killed_at.elapsed();
    eprintln!("takeover: recording again {taken_over_in:?} after the kill");
    assert_eq!(d["Status"], "recording", "{d}");
    assert_eq!(d["Restarts"], 1, "{d}");
    // The task is re-queued on the node's record queue, which the other worker's record loop
    // blocks on; it salvages the killed encoder's segment, starts a browser and loads the
    // page. Measured 1.41, 2.03 s (MP4) and 1.23 s (HLS) on the shared 2-core machine, debug
    // build (3.47-3.57 s with
    // the beat alone, 7.2-12.0 s with the lease). Bound: 2.1 s plus 2.4 s for a loaded
    // 2-core run (the test runs alone).
    assert!(
        taken_over_in < Duration::from_millis(2_100 + 2_400),
        "taken over {taken_over_in:?} after the kill: {d}"
    );
    let logs: String = ["worker0.log", "worker1.log"]
        .iter()
        .map(|l| std::fs::read_to_string(svc.dir.join(l)).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("a worker of this machine died"),
        "the other worker saw the death through the lock file, not the beat"
    );
    std::thread::sleep(Duration::from_secs(4));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    let file = if muxer == "hls" {
        // One playlist naming every segment once; the result lists the playlist and their number.
        let playlist = svc.out.join(videos[0]["Key"].as_str().unwrap());
        let text = std::fs::read_to_string(&playlist).unwrap();
        let names: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{text}");
        assert_eq!(videos.len(), 1, "{d}");
        assert_eq!(
            videos[0]["SegmentCount"].as_u64(),
            Some(names.len() as u64),
            "{d}"
        );
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1, "{text}");
        playlist
    } else {
        assert_eq!(videos.len(), 1, "one output: {d}");
        fetch_video(&d, &scratch("svc-killed-dl"))
    };
    let gaps = d["Stats"]["Gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{d}");
    let gap = gaps[0]["Seconds"].as_f64().unwrap();
    // The gap is the takeover, the new browser, and what the killed encoder had not written
    // (the unfinished segment is salvaged): at most the loss bound below more than the
    // takeover took, and never nothing (a browser takes time to start).
    assert!(
        gap > 0.5 && gap < taken_over_in.as_secs_f64() + LOST_LIMIT_S,
        "gap {gap} s, taken over after {taken_over_in:?}: {d}"
    );
    let p = probe(&file, &[]);
    assert_close(
        p.duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "file duration = RecordedDuration",
    );
    // The page's wall clock in the first and last frames: the video holds the content from
    // before the kill and after the takeover, and what is missing in between is the gap.
    let page_span = page_clock_span(&file, p.frames);
    assert!(
        p.duration > 6.0 - 2.5,
        "the content from before the kill is kept: {} s",
        p.duration
    );
    eprintln!(
        "takeover: gap {gap:.3} s reported, video {:.3} s, page time spanned {page_span:.3} s",
        p.duration
    );
    assert_close(
        page_span,
        p.duration + gap,
        0.5,
        "page time spanned = video duration + reported gap",
    );
    // What was lost around the crash: from the page time of the last frame kept before the
    // gap to the kill. The segment the killed encoder had not finished is kept (salvaged), so
    // this is what the encoder had not written yet: the pacer's window and ffmpeg's latency.
    let report = analyze(&file);
    let jump = report["gaps"]
        .as_array()
        .and_then(|g| {
            g.iter().max_by(|a, b| {
                a["jump_ms"]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b["jump_ms"].as_f64().unwrap())
            })
        })
        .unwrap_or_else(|| panic!("the takeover's jump in page time: {report}"));
    let before = jump["at_frame"].as_u64().unwrap() as usize - 1;
    let last_kept = frame_clock_at(&file, before).expect("clock in the last frame before the gap");
    let lost = f64::from((killed_at_ms as u32).wrapping_sub(last_kept) & 0xFF_FFFF) / 1000.0;
    eprintln!("takeover: {lost:.3} s of page time before the kill was lost");
    // BENCHMARKS.md (takeovers): MP4 1.30, 1.10 s, HLS 1.61, 1.24 s; 1.15 s on the shared
    // machine at load 13-16. Bound: 1.6 s plus 1.0 s for a loaded 2-core run (the test runs
    // alone; beside a container build during the whole suite it once lost 3.8 s, which this
    // now fails). The salvage itself is checked exactly by tests/finalize.rs.
    assert!(
        lost < LOST_LIMIT_S,
        "{lost:.3} s lost before the kill (frame {before}): {report}"
    );
}

/// Stop, and the worker is killed while it ends the recording (before it hands the media on to
/// transcode): a worker of the same machine makes the result from what was recorded.
#[test]
fn a_worker_killed_while_ending_a_stopped_recording_still_delivers_it() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-killed-stopping", false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let owner_pid = svc.procs[1..]
        .iter()
        .map(|p| p.child.id())
        .find(|pid| has_children(*pid))
        .expect("one worker runs the recording");
    std::thread::sleep(Duration::from_secs(5));
    ok(&svc.url, "Stop", &id);
    // Ending a recording (browser closed, encoder drained, last segment written) takes a few
    // hundred milliseconds: the kill lands inside it.
    std::process::Command::new("kill")
        .args(["-KILL", &owner_pid.to_string()])
        .status()
        .unwrap();
    assert_eq!(
        describe(&svc.url, &id)["Status"],
        "canceled",
        "killed before it handed the recording on"
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let file = fetch_video(&d, &scratch("svc-killed-stopping-dl"));
    let p = probe(&file, &[]);
    // About 5 s were recorded; what the encoder had not written at the kill is missing.
    eprintln!("killed while stopping: {:.3} s delivered", p.duration);
    assert!(
        p.duration > 1.0 && p.duration < 6.0,
        "{} s: {d}",
        p.duration
    );
    let logs: String = ["worker0.log", "worker1.log"]
        .iter()
        .map(|l| std::fs::read_to_string(svc.dir.join(l)).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("making the result from what it recorded"),
        "the other worker finished the task"
    );
}

/// Whether any process has `pid` as its parent (the worker running a recording is the parent of
/// its Chromium and ffmpeg).
fn has_children(pid: u32) -> bool {
    parents().iter().any(|(_, pp)| *pp == pid)
}

#[test]
fn a_worker_short_of_disk_takes_no_recordings_and_another_does() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // Ask for more free space than the disk has: this worker must leave the task alone.
    let free_mb = {
        let out = std::process::Command::new("df")
            .args(["-Pm", &std::env::temp_dir().display().to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("df output")
    };
    let greedy = (free_mb * 3 / 2).to_string();
    let svc = service_with(
        &redis,
        "svc-disk",
        true,
        0,
        1,
        &[("PAGECAST_MIN_FREE_MB", greedy.as_str())],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(describe(&svc.url, &id)["Status"], "normal");
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("the work disk is almost full"), "{log}");
    // A worker with room takes it.
    let mut env: Vec<(&str, String)> = vec![
        ("PAGECAST_REDIS_URL", redis.url.clone()),
        ("PAGECAST_KEY_PREFIX", svc.prefix.clone()),
        (
            "PAGECAST_WORK_DIR",
            svc.dir.join("work2").display().to_string(),
        ),
        ("PAGECAST_OUTPUT_DIR", svc.out.display().to_string()),
        ("PAGECAST_NODE_ID", "node-b".to_string()),
        ("PAGECAST_ALLOW_PRIVATE_URLS", "true".to_string()),
        (
            "PAGECAST_ALLOWED_PRIVATE_NETWORKS",
            "127.0.0.0/8,::1".to_string(),
        ),
    ];
    env.push(("PAGECAST_LEASE_MS", "3000".to_string()));
    let _other = spawn(&["worker"], &env, &svc.dir.join("worker-b.log"));
    wait_for(
        &svc.url,
        &id,
        "recording on the worker with room",
        Duration::from_secs(30),
        status_is("recording"),
    );
}

#[test]
fn the_task_disk_quota_ends_an_mp4_recording_while_published_hls_stays_far_below_it() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // 1 MiB: the animated page's 720p media reaches it after about 15 s.
    let svc = service_with(
        &redis,
        "svc-quota",
        true,
        0,
        1,
        &[("PAGECAST_TASK_DISK_MB", "1")],
    );
    let page = format!("{fixtures}/animated.html");

    // HLS: each segment leaves the work directory once it is published, so the recording runs
    // its whole 20 s and the work directory never holds more than a few segments.
    let hls = start(
        &svc.url,
        json!({ "RecordURL": page, "MaxDurationLimit": 20,
                "Output": { "Video": { "Muxer": "hls" } } }),
    );
    let work = svc.dir.join("work").join(&hls);
    let (mut most, mut polls) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    let d = loop {
        let d = describe(&svc.url, &hls);
        if d["Status"] == "finished" {
            break d;
        }
        if d["Status"] == "recording" {
            let held = count_files_ending(&work, ".ts");
            most = most.max(held);
            polls += 1;
        }
        assert!(Instant::now() < deadline, "HLS task did not finish: {d}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert!(polls > 20, "the recording was watched ({polls} looks)");
    assert!(
        most <= 3,
        "{most} segments were in the work directory at once"
    );
    let videos = d["Result"]["Videos"].as_array().unwrap();
    let playlist = svc.out.join(videos[0]["Key"].as_str().unwrap());
    let text = std::fs::read_to_string(&playlist).unwrap();
    let listed: f64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert_close(listed, 20.0, 0.2, "HLS length");
    assert_eq!(videos.len(), 1, "only the playlist is listed: {d}");
    assert_eq!(
        videos[0]["FileDuration"].as_u64(),
        Some(listed.round() as u64)
    );
    let segments: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
    assert_eq!(
        videos[0]["SegmentCount"].as_u64(),
        Some(segments.len() as u64)
    );
    assert_eq!(
        std::fs::metadata(&playlist).map(|m| m.len()).ok(),
        videos[0]["FileSize"].as_u64()
    );
    for s in segments {
        assert!(playlist.with_file_name(s).is_file(), "{s}");
    }
    assert_close(probe(&playlist, &[]).duration, 20.0, 0.2, "HLS duration");

    // MP4: the segments stay until the join, so the quota ends the recording early; what was
    // recorded is delivered with the reason.
    let mp4 = start(
        &svc.url,
        json!({ "RecordURL": page, "MaxDurationLimit": 45 }),
    );
    let d = wait_finished(&svc.url, &mp4, Duration::from_secs(90));
    assert_eq!(d["Result"]["ErrorCode"], "RecordFailed", "{d}");
    let why = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(why.contains("PAGECAST_TASK_DISK_MB=1"), "{d}");
    let file = fetch_video(&d, &svc.dir);
    let seconds = probe(&file, &[]).duration;
    assert!(seconds > 4.0 && seconds < 35.0, "{seconds} s delivered");
}

#[test]
fn api_tokens_and_the_callback_secret_can_come_from_files() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let dir = scratch("svc-secret-files");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "tok-new\n# tok-retired\ntok-old, tok-other\n").unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    let (tokens_s, secret_s) = (tokens.display().to_string(), secret.display().to_string());
    let svc = service_with(
        &redis,
        "svc-secret-files-run",
        true,
        0,
        1,
        &[
            ("PAGECAST_API_TOKENS_FILE", tokens_s.as_str()),
            ("PAGECAST_CALLBACK_SECRET_FILE", secret_s.as_str()),
        ],
    );
    let status_with = |token: Option<&str>| {
        let (rt, client) = http();
        rt.block_on(async {
            let mut r = client.post(format!("{}/", svc.url)).json(
                &json!({ "Action": "Describe", "Data": { "TaskID": "00000000-0000-4000-8000-000000000000" } }),
            );
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.expect("request").status().as_u16()
        })
    };
    assert_eq!(status_with(None), 401);
    assert_eq!(
        status_with(Some("tok-retired")),
        401,
        "a commented-out token"
    );
    for t in ["tok-new", "tok-old", "tok-other"] {
        assert_eq!(status_with(Some(t)), 404, "{t} is accepted");
    }
    // Neither file's content is logged.
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    assert!(!log.contains("s3cr3t") && !log.contains("tok-new"), "{log}");
}

#[test]
fn an_unreadable_secret_file_fails_at_start_with_its_setting_named() {
    let _machine = beside_others();
    let o = run(
        {
            let mut c = pagecast();
            c.arg("worker")
                .env(
                    "PAGECAST_CALLBACK_SECRET_FILE",
                    "/nonexistent/pagecast-secret",
                )
                .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1");
            c
        },
        Duration::from_secs(20),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("PAGECAST_CALLBACK_SECRET_FILE"), "{err}");
}
