//! Faults that could lose a recording in the service: Redis losing the task or pausing as a
//! recording ends, a full work disk, graceful handovers, a lost machine. Real `serve` and
//! `worker` processes, a real redis-server, Chromium and ffmpeg.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use serde_json::json;
use service_support::*;
use tmpfs::Tmpfs;

/// `redis-cli -p <port> <args>`, its stdout.
fn redis_cli(redis: &TestRedis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(redis.port().to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many XREAD commands the server has run (the control-stream reader's command).
fn xread_calls(redis: &TestRedis) -> u64 {
    let stats = redis_cli(redis, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `file` contains `text`.
fn wait_for_log(file: &std::path::Path, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = std::fs::read_to_string(file).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} within {limit:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Redis loses its data (restarted without persistence) while a task records; the job ends
/// early on the store error. Its control-stream reader must end with it, not poll Redis forever.
#[test]
fn a_record_job_that_ends_early_stops_reading_the_control_stream() {
    let mut redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-reader-leak", true, 0, 1);
    // The page pauses itself 6 s after it loads: the worker then writes `paused`, and finds the
    // task gone.
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html?pause=6000") }),
    );
    redis.restart();
    let log = svc.dir.join("serve.log");
    wait_for_log(
        &log,
        "record stage ended with a store error",
        Duration::from_secs(30),
    );
    // At most the read in flight when the job ended finishes (it blocks for 1 s).
    std::thread::sleep(Duration::from_secs(2));
    let before = xread_calls(&redis);
    std::thread::sleep(Duration::from_secs(4));
    let after = xread_calls(&redis);
    assert_eq!(
        after, before,
        "the control stream of {id} is still read after its job ended ({before} then {after} XREADs)"
    );
}

/// GET `url`: (status, body as JSON).
fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client
            .get(url)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    })
}

/// A 48 MB work disk (which also holds the results) and a page of random pixels, which fills
/// it in seconds: the recording ends in time for its MP4 to be made, the task says DiskFull
/// and lists the video, the work files go, `/readyz` says when the disk is low, and the
/// worker takes new work once there is room again.
#[test]
fn a_full_work_disk_ends_the_recording_in_time_and_the_worker_recovers() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let base = scratch("svc-disk-full");
    let disk = Tmpfs::mount(&base.join("disk"), "48m");
    let work = disk.0.join("work");
    let out = disk.0.join("out");
    let (work_s, out_s) = (work.display().to_string(), out.display().to_string());
    let svc = service_with(
        &redis,
        "svc-disk-full",
        true,
        0,
        1,
        &[
            ("PAGECAST_MIN_FREE_MB", "8"),
            ("PAGECAST_WORK_DIR", work_s.as_str()),
            ("PAGECAST_OUTPUT_DIR", out_s.as_str()),
        ],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/noise.html"), "MaxDurationLimit": 60 }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(120));
    assert_eq!(d["Result"]["ErrorCode"], "DiskFull", "{d}");
    let why = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(why.contains("disk"), "{d}");
    let videos = d["Result"]["Videos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(videos.len(), 1, "the recorded part is delivered: {d}");
    let file = out.join(videos[0]["Key"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&file).map(|m| m.len()).ok(),
        videos[0]["FileSize"].as_u64(),
        "{}",
        file.display()
    );
    let seconds = probe(&file, &[]).duration;
    assert!(seconds > 0.3, "{seconds} s delivered: {d}");
    assert_close(
        seconds,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the video is what RecordedDuration says",
    );
    // (`.workers` holds the live workers' lock files, not the task's.)
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != ".workers")
        .collect();
    assert!(left.is_empty(), "work files left behind: {left:?}");

    // The disk is low: the process says so, and takes no recording.
    let ballast = disk.0.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x55u8; 1 << 20];
        while disk.free_mb() > 5 {
            f.write_all(&chunk).unwrap();
            f.flush().unwrap();
        }
    }
    let (status, body) = get_json(&format!("{}/readyz", svc.url));
    assert_eq!(status, 503, "{body}");
    let check = body["Checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Name"] == "disk"))
        .unwrap_or_else(|| panic!("no disk check: {body}"));
    assert_eq!(check["Ok"], false, "{body}");
    assert!(
        body["ErrorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("disk") && m.contains("PAGECAST_MIN_FREE_MB")),
        "{body}"
    );
    let next = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html"), "MaxDurationLimit": 4 }),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(describe(&svc.url, &next)["Status"], "normal");

    // Room again: ready, and the waiting task is recorded.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get_json(&format!("{}/readyz", svc.url));
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still unready: {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let d = wait_finished(&svc.url, &next, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(
        d["Result"]["Videos"].as_array().map(Vec::len),
        Some(1),
        "{d}"
    );
    drop(svc);
}

/// Unix seconds now, as a float.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Redis is away for 4 s just as a 20 s MaxDurationLimit ends the recording (saved, stopped,
/// started again from its save): the worker retries its final moves while it holds the lease,
/// and nobody takes the task over.
#[test]
fn a_redis_outage_as_the_recording_ends_makes_no_phantom_takeover() {
    let mut redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-outage-end", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 20 }),
    );
    let started = describe(&svc.url, &id)["StartTime"].as_f64().unwrap();
    // The limit ends the recording between StartTime + 20 and StartTime + 21.
    let pause_at = started + 19.0;
    let wait = pause_at - unix_now();
    assert!(wait > 1.0, "the recording started late: {wait} s left");
    std::thread::sleep(Duration::from_secs_f64(wait));
    redis_cli(&redis, &["SAVE"]);
    redis.stop();
    std::thread::sleep(Duration::from_secs(4));
    redis.restart();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Restarts"], 0, "{d}");
    assert_eq!(d["Stats"]["Gaps"], json!([]), "{d}");
    assert_close(
        d["RecordedDuration"].as_f64().unwrap(),
        20.0,
        0.3,
        "the recording is its MaxDurationLimit long",
    );
    let file = fetch_video(&d, &scratch("svc-outage-end-dl"));
    assert_close(probe(&file, &[]).duration, 20.0, 0.3, "video duration");
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    assert!(
        !log.contains("taking over a recording"),
        "the worker's own task was taken over"
    );
}

/// A lease that looks overdue is not an abandoned task: while its worker is alive and says it
/// works on the task, no diagnose loop takes the task from it. (The lease's expiry is forced
/// in Redis again and again for 6 s, as if the worker could not renew it.)
#[test]
fn a_live_workers_task_is_never_taken_over_for_an_overdue_lease() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-overdue", false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let task_key = format!("{}task:{id}", svc.prefix);
    let leases_key = format!("{}leases", svc.prefix);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        redis_cli(&redis, &["HSET", &task_key, "lease_until", "1"]);
        redis_cli(&redis, &["ZADD", &leases_key, "1", &id]);
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Restarts"], 0, "{d}");
    assert_eq!(d["Stats"]["Gaps"], json!([]), "{d}");
    let logs: String = ["worker0.log", "worker1.log"]
        .iter()
        .map(|l| std::fs::read_to_string(svc.dir.join(l)).unwrap_or_default())
        .collect();
    assert!(
        !logs.contains("taking over a recording"),
        "a live worker's task was taken over"
    );
    assert!(
        logs.contains("its worker is alive"),
        "the diagnose loops saw the overdue lease"
    );
}

/// Whether any process has `pid` as its parent (the worker running a recording is the parent of
/// its Chromium and ffmpeg).
fn has_children(pid: u32) -> bool {
    parents().iter().any(|(_, pp)| *pp == pid)
}

/// Six rolling restarts of the worker recording a task, one more than the budget of workers
/// that stop: graceful handovers are not counted against it, and the task finishes without
/// error.
#[test]
fn more_handovers_than_the_crash_budget_still_finish_the_task() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let mut svc = service(&redis, "svc-handovers", false, 1, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    const HANDOVERS: u64 = 6;
    for n in 1..=HANDOVERS {
        // The next worker of the node, then SIGTERM the one recording (always the oldest).
        let log = svc.dir.join(format!("worker-{n}.log"));
        svc.procs.push(spawn(&["worker"], &svc.worker_env, &log));
        // The next worker is up (it takes the task as soon as it is handed over).
        wait_for_log(&log, "worker started", Duration::from_secs(30));
        let old = svc.procs[1].child.id();
        assert!(has_children(old), "worker {old} records the task");
        std::process::Command::new("kill")
            .args(["-TERM", &old.to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while svc.procs[1].child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "worker {old} did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Reaped: its Drop must not signal a pid the system may have reused.
        std::mem::forget(svc.procs.remove(1));
        let new = svc.procs[1].child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !has_children(new) {
            assert!(
                Instant::now() < deadline,
                "handover {n}: the next worker did not continue; {}",
                describe(&svc.url, &id)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let d = wait_for(
            &svc.url,
            &id,
            "recording after the handover",
            Duration::from_secs(30),
            |d| {
                d["Status"] == "recording"
                    && d["Stats"]["Gaps"].as_array().map(Vec::len) == Some(n as usize)
            },
        );
        assert_eq!(d["Stats"]["Handovers"], n, "{d}");
    }
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Restarts"], 0, "{d}");
    assert_eq!(d["Stats"]["Handovers"], HANDOVERS, "{d}");
    let file = fetch_video(&d, &scratch("svc-handovers-dl"));
    assert_close(
        probe(&file, &[]).duration,
        d["RecordedDuration"].as_f64().unwrap(),
        1.0,
        "the video holds every part",
    );
}

/// A `local` task whose machine is lost (its worker killed, its work directory out of reach) is
/// continued by a worker of another machine without the earlier media: the result says so
/// (RecordIncomplete) and the gap runs from the start.
#[test]
fn a_task_continued_on_another_machine_without_its_media_says_it_is_incomplete() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // The API on node-a with a worker there; a worker on node-b with its own work directory.
    let mut svc = service(&redis, "svc-lost-node", false, 1, 1);
    let mut b_env = svc.worker_env.clone();
    for (k, v) in b_env.iter_mut() {
        match *k {
            "PAGECAST_NODE_ID" => *v = "node-b".into(),
            "PAGECAST_WORK_DIR" => *v = svc.dir.join("work-b").display().to_string(),
            _ => {}
        }
    }
    svc.procs
        .push(spawn(&["worker"], &b_env, &svc.dir.join("worker-b.log")));
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let started = describe(&svc.url, &id)["StartTime"].as_f64().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let (index, owner) = svc.procs[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p.child.id()))
        .find(|(_, pid)| has_children(*pid))
        .expect("one worker runs the recording");
    let other = svc.procs[if index == 1 { 2 } else { 1 }].child.id();
    std::process::Command::new("kill")
        .args(["-KILL", &owner.to_string()])
        .status()
        .unwrap();
    let killed_at = unix_now();
    // The other machine steps in once the lease has been expired for a while.
    let d = wait_for(&svc.url, &id, "a takeover", Duration::from_secs(60), |d| {
        d["Status"] == "recording" && d["Stats"]["Gaps"].as_array().is_some_and(|g| !g.is_empty())
    });
    assert!(
        has_children(other),
        "the other machine's worker records: {d}"
    );
    std::thread::sleep(Duration::from_secs(3));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "RecordIncomplete", "{d}");
    let why = d["Result"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        why.contains("node-"),
        "the message names the lost machine: {d}"
    );
    let gaps = d["Stats"]["Gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{d}");
    let (time, seconds) = (
        gaps[0]["Time"].as_f64().unwrap(),
        gaps[0]["Seconds"].as_f64().unwrap(),
    );
    assert!(
        (time - started).abs() < 1.0,
        "the gap starts with the recording ({time} vs {started}): {d}"
    );
    assert!(
        seconds > killed_at - started,
        "the gap covers the lost part and the time until the takeover: {seconds} s: {d}"
    );
    let file = fetch_video(&d, &scratch("svc-lost-node-dl"));
    assert_close(
        probe(&file, &[]).duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the video is the part recorded after the takeover",
    );
    std::mem::forget(svc.procs.remove(index));
}
