//! Fault paths of the service that no other file reaches: a work disk that really fills up
//! (ENOSPC, not the free-space threshold), Redis away for longer than a lease, storage that
//! never comes back, a worker killed with `kill -9` while it uploads or delivers the callback, a
//! callback receiver that never answers, storage down while HLS segments are published. Real
//! `serve` and `worker` processes, redis-server, s3s-fs, Chromium and ffmpeg; short recordings
//! and a 3 s lease keep each test to seconds.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::{Value, json};
use service_support::*;
use tmpfs::Tmpfs;

/// The environment that points a service at `s3`, plus `extra`.
fn on_s3(s3: &TestS3, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The pid of the worker process (of `svc.procs[1..]`) that runs the task's browser or encoder.
fn recording_worker(svc: &Service) -> (usize, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = svc.procs[1..]
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.child.id()))
            .find(|(_, pid)| !descendants(*pid).is_empty())
        {
            return found;
        }
        assert!(Instant::now() < deadline, "no worker runs the recording");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The worker (of `svc.procs[1..]`) that holds the task's lease, from Redis.
fn lease_holder(svc: &Service, redis: &TestRedis, id: &str) -> String {
    let mut c = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = format!("{}task:{id}", svc.prefix);
    redis::cmd("HGET")
        .arg(&key)
        .arg("owner")
        .query::<Option<String>>(&mut c)
        .unwrap()
        .unwrap_or_default()
}

/// SIGKILLs `svc.procs[index]` and forgets it (reaped, so its Drop signals nothing).
fn kill_9(svc: &mut Service, index: usize) {
    let mut p = svc.procs.remove(index);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    std::mem::forget(p);
}

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
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
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

/// A worker killed with `kill -9` while it uploads (storage is down, so it is caught in the
/// upload stage): another worker of the machine takes the upload over once the lease runs out,
/// and the result reaches the bucket whole once storage is back.
#[test]
fn a_worker_killed_during_upload_is_replaced_and_the_result_arrives() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let env = on_s3(&s3, &[("PAGECAST_S3_MAX_ATTEMPTS", "2")]);
    let mut svc = service_with(&redis, "fp-kill-upload", false, 2, 1, &as_refs(&env));
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 3 }),
    );
    let (index, _) = recording_worker(&svc);
    s3.stop();
    wait_for(
        &svc.url,
        &id,
        "upload",
        Duration::from_secs(60),
        status_is("upload"),
    );
    kill_9(&mut svc, index);
    s3.resume();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let videos = d["Result"]["Videos"].as_array().unwrap();
    assert_eq!(videos.len(), 1, "{d}");
    let key = videos[0]["Key"].as_str().unwrap();
    let stored = s3
        .object(s3_support::BUCKET, key)
        .unwrap_or_else(|| panic!("{key} is not in the bucket: {d}"));
    assert_eq!(Some(stored.len() as u64), videos[0]["FileSize"].as_u64());
    let local = scratch("fp-kill-upload-dl").join("result.mp4");
    std::fs::write(&local, &stored).unwrap();
    assert_close(
        probe(&local, &[]).duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the stored file is the whole recording",
    );
}

/// A callback receiver that takes the first request and never answers, then answers the next
/// ones at once. Returns its URL and how many requests arrived.
fn hanging_receiver() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let store = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/cb",
                post(move |headers: axum::http::HeaderMap| {
                    let store = store.clone();
                    async move {
                        let first = {
                            let mut got = store.lock().unwrap();
                            got.push(
                                headers
                                    .get("x-pagecast-event-id")
                                    .and_then(|v| v.to_str().ok())
                                    .map(String::from),
                            );
                            got.len() == 1
                        };
                        if first {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}/cb", rx.recv().unwrap()), got)
}

/// The worker delivering a callback is killed with `kill -9` while the receiver holds the
/// request without answering: another worker delivers the same event (same event id) once the
/// lease runs out, and the task finishes delivered. A receiver that hangs is also cut off by
/// PAGECAST_CALLBACK_TIMEOUT (the first attempt, had the worker lived, would have failed in 2 s).
#[test]
fn a_worker_killed_while_a_receiver_hangs_on_its_callback_is_replaced() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let (url, got) = hanging_receiver();
    let mut svc = service_with(
        &redis,
        "fp-kill-callback",
        false,
        2,
        1,
        &[
            ("PAGECAST_CALLBACK_TIMEOUT", "2"),
            ("PAGECAST_CALLBACK_BACKOFF_MS", "200"),
        ],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2,
                "CallbackURL": url }),
    );
    let (index, _) = recording_worker(&svc);
    // The first request is held by the receiver: the worker waits in the callback stage.
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no callback arrived: {}",
            describe(&svc.url, &id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(describe(&svc.url, &id)["Status"], "callback");
    let owner = lease_holder(&svc, &redis, &id);
    kill_9(&mut svc, index);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Callback"]["State"], "delivered", "{d}");
    let got = got.lock().unwrap().clone();
    assert!(got.len() >= 2, "delivered again after the kill: {got:?}");
    assert!(
        got.iter().all(|e| e.is_some() && *e == got[0]),
        "one event id across the attempts: {got:?}"
    );
    assert!(!owner.is_empty(), "the task had a lease holder");
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

/// A worker killed with `kill -9` while it joins a recording into its MP4 (the join is held
/// for 4 s by an ffmpeg wrapper, so the kill lands inside it): another worker of the machine
/// joins it again from the kept segments once the lease runs out, and the result is whole.
#[test]
fn a_worker_killed_during_transcode_is_replaced_and_the_result_is_whole() {
    use std::os::unix::fs::PermissionsExt;
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let dir = scratch("fp-kill-transcode-bin");
    let joins = dir.join("joins");
    let wrapper = dir.join("ffmpeg");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *concat*) echo join >> '{}'; sleep 4;; esac\nexec ffmpeg \"$@\"\n",
            joins.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper = wrapper.display().to_string();
    let mut svc = service_with(
        &redis,
        "fp-kill-transcode",
        false,
        2,
        1,
        &[("PAGECAST_FFMPEG", wrapper.as_str())],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 5 }),
    );
    let (index, _) = recording_worker(&svc);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !joins.exists() {
        assert!(
            Instant::now() < deadline,
            "no join began: {}",
            describe(&svc.url, &id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(describe(&svc.url, &id)["Status"], "transcode");
    kill_9(&mut svc, index);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let runs = std::fs::read_to_string(&joins).unwrap().lines().count();
    assert!(runs >= 2, "the join ran again after the kill ({runs} runs)");
    let file = fetch_video(&d, &scratch("fp-kill-transcode-dl"));
    let p = probe(&file, &[]);
    assert_close(p.duration, 5.0, 0.3, "the whole recording");
    let span = page_clock_span(&file, p.frames);
    assert_close(span, p.duration, 0.5, "page time = video time");
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

/// Kills the newest process below `pid` that `pred` matches, `times` times, each time waiting
/// for a new one (the recording restarts what died) and for `settled(deaths so far)`.
fn kill_each_new(
    pid: u32,
    times: usize,
    what: &str,
    pred: impl Fn(&str) -> bool,
    settled: impl Fn(usize) -> bool,
) {
    let mut killed: Vec<u32> = Vec::new();
    for n in 1..=times {
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            let found = descendants(pid)
                .into_iter()
                .filter(|p| !killed.contains(p) && pred(&cmdline(*p)))
                .max();
            if let Some(p) = found.filter(|_| settled(killed.len())) {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} to kill ({n} of {times})"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // A death in the first moments of a restarted process is another fault (a restart
        // that fails); the budget counts deaths of running ones.
        std::thread::sleep(Duration::from_millis(700));
        std::process::Command::new("kill")
            .args(["-KILL", &target.to_string()])
            .status()
            .unwrap();
        killed.push(target);
    }
}

/// How often a worker's log says a new browser took the page over.
fn relaunches(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("a new browser has the page again")
        .count()
}

/// The restart budgets of a recording run out in service mode: one death more than a recording
/// survives of its encoder (5), its page's renderer (3) or its browser (3) ends the task with
/// RecordFailed, PageCrashed or BrowserFailed, and what was recorded is still delivered. (Hangs:
/// tests/error_codes.rs.)
#[test]
fn restart_budgets_run_out_in_service_mode() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "fp-budgets", false, 1, 1);
    let worker = svc.procs[1].child.id();
    type Pred = fn(&str) -> bool;
    let cases: [(&str, usize, Pred, &str); 3] = [
        (
            "the encoder",
            6,
            |c| c.contains("ffmpeg") && c.contains("-f segment"),
            "RecordFailed",
        ),
        (
            "the page's renderer",
            4,
            |c| c.contains("--type=renderer") && !c.contains("--top-chrome-webui"),
            "PageCrashed",
        ),
        (
            "the browser",
            4,
            |c| c.contains("chromium") && !c.contains("--type="),
            "BrowserFailed",
        ),
    ];
    let log = svc.dir.join("worker0.log");
    for (what, times, pred, code) in cases {
        let id = start_recording(
            &svc.url,
            json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 120 }),
        );
        let relaunched_before = relaunches(&log);
        // A new browser is up once the log says it has the page again (its process appears
        // before it can take a page).
        kill_each_new(worker, times, what, pred, |deaths| {
            code != "BrowserFailed" || relaunches(&log) >= relaunched_before + deaths
        });
        let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
        assert_eq!(d["Result"]["ErrorCode"], code, "{what}: {d}");
        assert!(
            d["RecordedDuration"].as_f64().unwrap_or(0.0) < 100.0,
            "{what}: ended by the budget: {d}"
        );
        let why = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
        assert!(why.contains(&format!(" {times} times")), "{what}: {d}");
        assert!(
            !d["Result"]["Videos"].as_array().unwrap().is_empty(),
            "{what}: what was recorded is delivered: {d}"
        );
    }
}
