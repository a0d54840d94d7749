//! Takeovers through the workers' liveness (issue 23): a worker that stops beating has its
//! recording taken over before its lease expires, and a worker that was only stalled loses the
//! task cleanly: it writes nothing beside the worker that took it. Real `serve` and `worker`
//! processes, a real redis-server, Chromium and ffmpeg. (A worker killed outright:
//! tests/service.rs, `a_worker_killed_mid_recording_*`.)

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

/// Whether any process has `pid` as its parent (the worker running a recording is the parent of
/// its Chromium and ffmpeg).
fn has_children(pid: u32) -> bool {
    parents().iter().any(|(_, pp)| *pp == pid)
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// The segment lists in the task's work directory: one per encoder that recorded there.
fn segment_lists(svc: &Service, id: &str) -> Vec<String> {
    let dir = svc.dir.join("work").join(id);
    let mut lists: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("segments-") && n.ends_with(".csv"))
                .collect()
        })
        .unwrap_or_default();
    lists.sort();
    lists
}

/// The recording worker is stopped (SIGSTOP) for 6 s, longer than its liveness (2 s) and far
/// shorter than its lease (30 s here, so only the liveness can make the takeover): the other
/// worker takes the task and claims it, but waits for the work directory while the stalled one
/// holds it; once continued, the stalled worker finds its lease lost and lets go, and the other
/// records on into the same output. The result is one whole recording, with the gap accounted.
#[test]
fn a_stalled_worker_loses_its_recording_cleanly_to_the_next_one() {
    let _machine = alone();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service_with(
        &redis,
        "svc-stalled",
        false,
        2,
        1,
        &[("PAGECAST_LEASE_MS", "30000")],
    );
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let (stalled, log_of) = svc.procs[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| (p.child.id(), i))
        .find(|(pid, _)| has_children(*pid))
        .expect("one worker runs the recording");
    let next = svc.procs[2 - log_of].child.id();
    let stalled_log = svc.dir.join(format!("worker{log_of}.log"));
    let next_log = svc.dir.join(format!("worker{}.log", 1 - log_of));
    std::thread::sleep(Duration::from_secs(4));
    let lists_before = segment_lists(&svc, &id);
    assert_eq!(
        lists_before.len(),
        1,
        "one encoder so far: {lists_before:?}"
    );

    signal(stalled, "-STOP");
    let stopped_at = Instant::now();
    // The other worker notices the silent worker (2 s) and takes its task, long before the
    // lease would have run out.
    wait_logged(
        &next_log,
        "its worker stopped beating: taking the task over",
        Duration::from_secs(15),
    );
    let noticed = stopped_at.elapsed();
    eprintln!("stalled worker's task taken {noticed:?} after the stall began");
    assert!(
        noticed < Duration::from_secs(10),
        "taken through the liveness, not the 30 s lease: {noticed:?}"
    );
    // While the stalled worker holds the work directory, nobody else records there: the other
    // worker has claimed the task and waits (no browser, no encoder of its own yet).
    let until = stopped_at + Duration::from_secs(6);
    while Instant::now() < until {
        assert!(
            !has_children(next),
            "the next worker started recording beside the stalled one"
        );
        assert_eq!(
            segment_lists(&svc, &id),
            lists_before,
            "a second encoder wrote beside the stalled worker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&next_log).unwrap_or_default();
    assert!(
        log.contains("still holds its work directory; waiting"),
        "the next worker claimed the task and waits for the directory:\n{log}"
    );
    let d = describe(&svc.url, &id);
    assert_eq!(
        (d["Status"].as_str(), d["Restarts"].as_u64()),
        (Some("recording"), Some(1)),
        "{d}"
    );
    signal(stalled, "-CONT");

    // Back, the stalled worker finds its lease lost and stops; the next one continues.
    wait_logged(
        &stalled_log,
        "lost the lease to another worker",
        Duration::from_secs(20),
    );
    let d = wait_for(
        &svc.url,
        &id,
        "the takeover",
        Duration::from_secs(30),
        |d| d["Stats"]["Gaps"].as_array().is_some_and(|g| !g.is_empty()),
    );
    assert_eq!(d["Status"], "recording", "{d}");
    let log = std::fs::read_to_string(&next_log).unwrap_or_default();
    assert!(
        log.contains("the previous worker let go of the work directory"),
        "the next worker waited for the directory:\n{log}"
    );
    std::thread::sleep(Duration::from_secs(3));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Restarts"], 1, "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    assert_eq!(videos.len(), 1, "one output: {d}");
    let gaps = d["Stats"]["Gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{d}");
    let gap = gaps[0]["Seconds"].as_f64().unwrap();
    let file = fetch_video(&d, &scratch("svc-stalled-dl"));
    let p = probe(&file, &[]);
    assert_close(
        p.duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "file duration = RecordedDuration",
    );
    // Both workers' parts, in order, without overlap: the page's clock spans the video and the
    // reported gap.
    let page_span = page_clock_span(&file, p.frames);
    eprintln!(
        "stalled: gap {gap:.3} s, video {:.3} s, page time spanned {page_span:.3} s",
        p.duration
    );
    assert_close(
        page_span,
        p.duration + gap,
        0.7,
        "page time spanned = video duration + reported gap",
    );
}
