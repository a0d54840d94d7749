//! Workers killed with `kill -9` in the stages after recording (transcode, upload, callback,
//! while a receiver holds the request), and the restart budgets of a recording (encoder,
//! renderer, browser) running out in service mode. Real `serve` and `worker` processes,
//! redis-server, s3s-fs, Chromium and ffmpeg; a 3 s lease keeps each test to seconds.

mod common;
#[path = "support/faults.rs"]
mod faults_support;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use faults_support::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::json;
use service_support::*;

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

/// The worker delivering a callback is killed with `kill -9` while the receiver holds the
/// request without answering: another worker delivers the same event (same event id) once the
/// lease runs out, and the task finishes delivered. A receiver that hangs is also cut off by
/// PAGECAST_CALLBACK_TIMEOUT (the first attempt, had the worker lived, would have failed in 2 s).
#[test]
fn a_worker_killed_while_a_receiver_hangs_on_its_callback_is_replaced() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let (url, got) = hanging_receiver(1);
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
    // The worker that joins (any worker of the machine may take the stage): the one running
    // the wrapper.
    let index = (1..svc.procs.len())
        .find(|&i| {
            descendants(svc.procs[i].child.id())
                .into_iter()
                .any(|p| cmdline(p).contains(&wrapper))
        })
        .expect("a worker runs the join");
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
            // The browser process itself: not its helpers (`--type=`), nor the crash handler,
            // which the worker (a child subreaper) now adopts when it detaches.
            |c| c.contains("chromium") && !c.contains("--type=") && !c.contains("crashpad"),
            "BrowserFailed",
        ),
    ];
    let log = svc.dir.join("worker0.log");
    for (what, times, pred, code) in cases {
        let id = start_recording(
            &svc.url,
            json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 120 }),
        );
        // A first segment (2 s) is complete before the first death: something to deliver.
        wait_for(
            &svc.url,
            &id,
            "3 s recorded",
            Duration::from_secs(30),
            |d| d["RecordedDuration"].as_f64().unwrap_or(0.0) >= 3.0,
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
