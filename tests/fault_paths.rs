//! Fault paths of the service that no other file reaches: a work disk that really fills up
//! (ENOSPC, not the free-space threshold), Redis away for longer than a lease, storage that
//! never comes back, storage down while HLS segments are published, live MP4 parts go up or the
//! intermediate media is copied (`StorageType: s3`), a callback receiver that never answers, a handover nobody continues (PAGECAST_HANDOVER_TIMEOUT).
//! (Workers killed after recording, and restart budgets: tests/fault_kills.rs.) Real
//! `serve` and `worker` processes, redis-server, s3s-fs, Chromium and ffmpeg; short recordings
//! and a 3 s lease keep each test to seconds.

mod common;
#[path = "support/faults.rs"]
mod faults_support;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::time::{Duration, Instant};

use common::*;
use faults_support::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::{Value, json};
use service_support::*;
use tmpfs::Tmpfs;

/// The work disk (a 64 MB tmpfs, the free-space threshold off) is filled to the last byte by
/// another process while a task records, so pagecast's writes fail with ENOSPC for real: the
/// task ends with DiskFull and delivers what was recorded before (its output is on another
/// disk), its work files go, and once there is room the worker records the next task.
#[test]
fn a_work_disk_that_really_fills_up_ends_the_task_with_disk_full() {
    use std::io::Write;
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let base = scratch("fp-enospc");
    let disk = Tmpfs::mount(&base.join("disk"), "64m");
    let work = disk.0.join("work");
    let work_s = work.display().to_string();
    let svc = service_with(
        &redis,
        "fp-enospc",
        true,
        0,
        1,
        &[
            ("PAGECAST_MIN_FREE_MB", "0"),
            ("PAGECAST_WORK_DIR", work_s.as_str()),
        ],
    );
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 60 }),
    );
    // A few segments first.
    wait_for(
        &svc.url,
        &id,
        "4 s recorded",
        Duration::from_secs(30),
        |d| d["RecordedDuration"].as_f64().unwrap_or(0.0) >= 4.0,
    );
    // Another process takes every byte that is left.
    let ballast = disk.0.join("ballast");
    let mut f = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0x55u8; 1 << 20];
    let full = loop {
        match f.write_all(&chunk).and_then(|()| f.flush()) {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    let d = wait_finished(&svc.url, &id, Duration::from_secs(120));
    assert_eq!(d["Result"]["ErrorCode"], "DiskFull", "{d}");
    assert!(
        d["RecordedDuration"].as_f64().unwrap_or(0.0) < 55.0,
        "ended by the full disk, not by MaxDurationLimit: {d}"
    );
    let videos = d["Result"]["Videos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(videos.len(), 1, "what was recorded is delivered: {d}");
    let file = svc.out.join(videos[0]["Key"].as_str().unwrap());
    let seconds = probe(&file, &[]).duration;
    assert!(seconds >= 3.5, "{seconds} s delivered: {d}");
    // (`.workers` holds the live workers' lock files, not the task's.)
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != ".workers")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "work files left behind: {left:?}");
    // Room again: the next task records and finishes.
    drop(f);
    std::fs::remove_file(&ballast).unwrap();
    let next = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 }),
    );
    let d = wait_finished(&svc.url, &next, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    drop(svc);
}

/// Redis does not answer for 8 s (frozen: connections open, no replies) while a task records,
/// more than twice the 3 s lease: the worker goes on recording, nobody takes the task over
/// once Redis is back (no restart, no gap), and the task finishes whole.
#[test]
fn a_redis_outage_longer_than_the_lease_loses_nothing() {
    let mut redis = TestRedis::start();
    let fixtures = fixture_server();
    // Two workers: one to record, one that could (wrongly) take the task over.
    let svc = service(&redis, "fp-redis-long", false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 60 }),
    );
    let (_, owner) = recording_worker(&svc);
    redis.freeze();
    let frozen = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    redis.thaw();
    let outage = frozen.elapsed().as_secs_f64();
    // Back: the task records on, on the same worker, for a while longer.
    let d = wait_for(
        &svc.url,
        &id,
        "Describe after the outage",
        Duration::from_secs(30),
        status_is("recording"),
    );
    assert_eq!(d["Restarts"], 0, "{d}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !descendants(owner).is_empty(),
        "the worker that recorded before the outage still records"
    );
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Restarts"], 0, "no takeover: {d}");
    assert_eq!(d["Stats"]["Gaps"], json!([]), "nothing missing: {d}");
    let file = fetch_video(&d, &scratch("fp-redis-long-dl"));
    let p = probe(&file, &[]);
    assert!(
        p.duration > outage + 4.0,
        "the outage ({outage:.1} s) is in the video ({} s): {d}",
        p.duration
    );
    let span = page_clock_span(&file, p.frames);
    assert_close(span, p.duration, 0.5, "page time = video time (no gap)");
}

/// Storage that never comes back: the upload retries for PAGECAST_UPLOAD_RETRY_SECONDS (4 s),
/// then gives up: the task ends with UploadFailed, its message says where the files are kept,
/// and the failed task's callback carries the error.
#[test]
fn an_upload_that_never_reaches_storage_gives_up_and_calls_back() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let receiver = CallbackReceiver::start();
    let env = on_s3(
        &s3,
        &[
            ("PAGECAST_UPLOAD_RETRY_SECONDS", "4"),
            ("PAGECAST_S3_MAX_ATTEMPTS", "2"),
        ],
    );
    let svc = service_with(&redis, "fp-upload-gives-up", true, 0, 1, &as_refs(&env));
    s3.stop();
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2,
                "CallbackURL": format!("{}/ok", receiver.url) }),
    );
    let d = wait_for(
        &svc.url,
        &id,
        "upload",
        Duration::from_secs(60),
        status_is("upload"),
    );
    let uploading = Instant::now();
    let d2 = wait_finished(&svc.url, &id, Duration::from_secs(60));
    let gave_up_after = uploading.elapsed();
    assert_eq!(d2["Result"]["ErrorCode"], "UploadFailed", "{d}\n{d2}");
    assert!(
        gave_up_after < Duration::from_secs(4 + 15),
        "gave up {gave_up_after:?} into the upload (retry period 4 s)"
    );
    let message = d2["Result"]["ErrorMessage"].as_str().unwrap();
    assert!(message.contains(&format!("{id}.deliver")), "{message}");
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one callback: {got:?}");
    let sent: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(sent["TaskID"], id.as_str());
    assert_eq!(sent["Result"]["ErrorCode"], "UploadFailed", "{sent}");
}

/// Storage is down for 6 s while an HLS recording publishes its segments to it: the segments
/// written meanwhile are published once it is back, and the playlist in the bucket names every
/// segment once and plays the whole recording.
#[test]
fn storage_down_while_hls_segments_are_published_loses_no_segment() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let env = on_s3(&s3, &[("PAGECAST_S3_MAX_ATTEMPTS", "2")]);
    let svc = service_with(&redis, "fp-hls-outage", true, 0, 1, &as_refs(&env));
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 60,
                "Output": { "Video": { "Muxer": "hls" } } }),
    );
    std::thread::sleep(Duration::from_secs(4));
    s3.stop();
    std::thread::sleep(Duration::from_secs(6));
    s3.resume();
    std::thread::sleep(Duration::from_secs(4));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    assert_eq!(videos.len(), 1, "the playlist: {d}");
    let key = videos[0]["Key"].as_str().unwrap();
    let playlist = String::from_utf8(
        s3.object(s3_support::BUCKET, key)
            .unwrap_or_else(|| panic!("no playlist {key} in the bucket")),
    )
    .unwrap();
    let names: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{playlist}");
    assert_eq!(
        videos[0]["SegmentCount"].as_u64(),
        Some(names.len() as u64),
        "{d}"
    );
    // Every segment is in the bucket; played from there, the whole recording is there.
    let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
    let local = scratch("fp-hls-outage-dl");
    for name in &names {
        let object = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        let bytes = s3
            .object(s3_support::BUCKET, &object)
            .unwrap_or_else(|| panic!("segment {object} is not in the bucket"));
        std::fs::write(local.join(name), bytes).unwrap();
    }
    let list = local.join("list.m3u8");
    std::fs::write(&list, &playlist).unwrap();
    let p = probe(&list, &[]);
    assert_close(
        p.duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the published segments hold the whole recording",
    );
    assert!(p.duration > 12.0, "{p:?}");
}

/// The names of a task's intermediate media in the bucket (`StorageType: s3`'s mirror).
fn mirrored(s3: &TestS3, id: &str) -> Vec<String> {
    let dir = s3
        .data()
        .join(s3_support::BUCKET)
        .join(format!("pagecast-work/{id}"));
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The segments a work directory's lists name as complete.
fn completed_in(work: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(work)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("segments-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.split(',').next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `StorageType: s3`: storage is down for 6 s while a task's intermediate media is copied to the
/// bucket. The recording goes on undisturbed (the worker says the copy will be retried), the
/// copy catches up with every segment completed meanwhile once storage is back, and the task
/// finishes with its whole result in the bucket and the copy removed.
#[test]
fn storage_down_during_the_mirror_delays_the_copy_only() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let env = on_s3(&s3, &[("PAGECAST_S3_MAX_ATTEMPTS", "2")]);
    let svc = service_with(&redis, "fp-mirror-outage", true, 0, 1, &as_refs(&env));
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 60,
                "StorageType": "s3" }),
    );
    let work = svc.dir.join("work").join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mirrored(&s3, &id).iter().any(|n| n.ends_with(".ts")) {
        assert!(Instant::now() < deadline, "no segment copied within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    s3.stop();
    let before = mirrored(&s3, &id);
    let recorded_at_stop = describe(&svc.url, &id)["RecordedDuration"]
        .as_f64()
        .unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(6));
    let during = describe(&svc.url, &id);
    assert_eq!(during["Status"], "recording", "{during}");
    let recorded = during["RecordedDuration"].as_f64().unwrap_or(0.0);
    assert!(
        recorded > recorded_at_stop + 4.0,
        "the recording goes on while storage is down: {recorded_at_stop} s, then {recorded} s"
    );
    let missing: Vec<String> = completed_in(&work)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(
        missing.len() >= 2,
        "segments completed during the outage: {missing:?}"
    );
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap();
    assert!(
        log.contains("copying intermediate media to the bucket failed; will retry"),
        "the failed copy is reported"
    );
    s3.resume();
    // Back: every segment completed meanwhile reaches the bucket while the recording goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = mirrored(&s3, &id);
        let left: Vec<&String> = missing.iter().filter(|n| !now.contains(n)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not copied 30 s after storage came back: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    assert_eq!(videos.len(), 1, "{d}");
    let key = videos[0]["Key"].as_str().unwrap();
    let stored = s3
        .object(s3_support::BUCKET, key)
        .unwrap_or_else(|| panic!("{key} is not in the bucket: {d}"));
    let local = scratch("fp-mirror-outage-dl").join("result.mp4");
    std::fs::write(&local, &stored).unwrap();
    assert_close(
        probe(&local, &[]).duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the result holds the whole recording",
    );
    let left = mirrored(&s3, &id);
    assert!(left.is_empty(), "intermediate media left: {left:?}");
}

/// How many parts of a live MP4 upload its state file says went up.
fn live_parts(svc: &Service, id: &str) -> usize {
    std::fs::read_to_string(svc.dir.join("work").join(id).join("live-mp4.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["parts"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Storage is down for 6 s while an MP4 goes to the bucket in parts as it is recorded: the
/// parts wait and go up once it is back, and the object in the bucket is the whole recording,
/// every sample decodable.
#[test]
fn storage_down_while_live_mp4_parts_go_up_loses_nothing() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let env = on_s3(
        &s3,
        &[
            ("PAGECAST_S3_PART_SIZE_MIB", "5"),
            ("PAGECAST_S3_MAX_ATTEMPTS", "2"),
        ],
    );
    let svc = service_with(&redis, "fp-live-mp4-outage", true, 0, 1, &as_refs(&env));
    // Random pixels: about 3 MB a second at 640x360, so parts fill within seconds.
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/noise.html"), "Width": 640, "Height": 360,
                "MaxDurationLimit": 60 }),
    );
    let wait_parts = |n: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while live_parts(&svc, &id) < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {}",
                describe(&svc.url, &id)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_parts(1, "no part went up while recording");
    s3.stop();
    let before = live_parts(&svc, &id);
    std::thread::sleep(Duration::from_secs(6));
    s3.resume();
    wait_parts(before + 2, "no part went up after the outage");
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    let key = videos[0]["Key"].as_str().unwrap();
    let stored = s3
        .object(s3_support::BUCKET, key)
        .unwrap_or_else(|| panic!("{key} is not in the bucket: {d}"));
    assert_eq!(Some(stored.len() as u64), videos[0]["FileSize"].as_u64());
    let file = scratch("fp-live-mp4-outage-dl").join("live.mp4");
    std::fs::write(&file, &stored).unwrap();
    assert_close(
        probe(&file, &[]).duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the object is the whole recording",
    );
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "every sample decodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A callback receiver that takes every request and never answers: each attempt is cut off
/// after PAGECAST_CALLBACK_TIMEOUT (1 s), PAGECAST_CALLBACK_ATTEMPTS (2) ends the retries, and
/// the task finishes with CallbackFailed, its files kept, within seconds.
#[test]
fn a_callback_receiver_that_never_answers_is_timed_out_and_given_up_on() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let (url, got) = hanging_receiver(usize::MAX);
    let svc = service_with(
        &redis,
        "fp-hanging-receiver",
        true,
        0,
        1,
        &[
            ("PAGECAST_CALLBACK_TIMEOUT", "1"),
            ("PAGECAST_CALLBACK_ATTEMPTS", "2"),
            ("PAGECAST_CALLBACK_BACKOFF_MS", "200"),
        ],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2,
                "CallbackURL": url }),
    );
    wait_for(
        &svc.url,
        &id,
        "callback",
        Duration::from_secs(60),
        status_is("callback"),
    );
    let calling = Instant::now();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    let took = calling.elapsed();
    assert_eq!(d["Result"]["ErrorCode"], "CallbackFailed", "{d}");
    assert_eq!(d["Callback"]["State"], "failed", "{d}");
    assert_eq!(d["Callback"]["Attempts"], 2, "{d}");
    assert_eq!(got.lock().unwrap().len(), 2, "two requests, each cut off");
    // Two 1 s timeouts and a backoff under a second; a receiver left waiting would hold the
    // worker for far longer.
    assert!(took < Duration::from_secs(8), "gave up after {took:?}: {d}");
    assert!(
        !d["Result"]["Videos"].as_array().unwrap().is_empty(),
        "the files are kept: {d}"
    );
}

/// PAGECAST_HANDOVER_TIMEOUT (3 s): a recording its worker handed over at shutdown, with no
/// other worker of its machine to continue it, is given up by a worker of another machine once
/// the timeout has passed (not after the default 300 s): RecordFailed, saying so.
#[test]
fn a_handover_nobody_continues_ends_after_the_handover_timeout() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let mut svc = service_with(
        &redis,
        "fp-handover-timeout",
        false,
        1,
        1,
        &[("PAGECAST_HANDOVER_TIMEOUT", "3")],
    );
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 120 }),
    );
    // A worker of another machine, with its own work directory.
    let mut b_env = svc.worker_env.clone();
    for (k, v) in b_env.iter_mut() {
        match *k {
            "PAGECAST_NODE_ID" => *v = "node-b".into(),
            "PAGECAST_WORK_DIR" => *v = svc.dir.join("work-b").display().to_string(),
            _ => {}
        }
    }
    let b_log = svc.dir.join("worker-b.log");
    svc.procs.push(spawn(&["worker"], &b_env, &b_log));
    wait_logged(&b_log, "worker started", Duration::from_secs(30));
    // The recording's worker stops and hands the task over; nobody of node-a is left.
    let a = svc.procs[1].child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &a.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while svc.procs[1].child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::mem::forget(svc.procs.remove(1));
    let handed_over = Instant::now();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    let ended_after = handed_over.elapsed();
    assert_eq!(d["Result"]["ErrorCode"], "RecordFailed", "{d}");
    let why = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        why.contains("no worker of node node-a continued it within 3 s"),
        "{d}"
    );
    // The timeout, a diagnose sweep (1.5 s) and a margin; the default would be 300 s.
    assert!(
        ended_after < Duration::from_secs(3 + 12),
        "ended {ended_after:?} after the handover: {d}"
    );
}
