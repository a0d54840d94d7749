//! Operating pagecast: readiness that follows Redis, metrics after a real recording, `pagecast
//! doctor` on a machine without ffmpeg, and a SIGTERMed worker handing its running recording
//! over to another worker. All against the real binary, Redis, Chromium and ffmpeg.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use serde_json::{Value, json};
use service_support::*;

/// GET `url`: (status, X-Request-Id, body).
fn get(url: &str, request_id: Option<&str>) -> (u16, Option<String>, String) {
    let (rt, client) = http();
    rt.block_on(async {
        let mut req = client.get(url).timeout(Duration::from_secs(15));
        if let Some(id) = request_id {
            req = req.header("X-Request-Id", id);
        }
        let r = req.send().await.expect("GET");
        let status = r.status().as_u16();
        let rid = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        (status, rid, r.text().await.expect("body"))
    })
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["Checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {body}"))
}

#[test]
fn readyz_goes_unready_when_redis_stops_and_ready_again_after() {
    let _machine = beside_others();
    let mut redis = TestRedis::start();
    let svc = service(&redis, "ops-readyz", true, 0, 1);
    let readyz = format!("{}/readyz", svc.url);

    // The worker loop comes up a moment after the listener on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (status, rid, body) = loop {
        let r = get(&readyz, Some("probe-1"));
        if (r.0 == 200 && r.2.contains("0 of 1")) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(rid.as_deref(), Some("probe-1"), "X-Request-Id is echoed");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["Status"], "ready");
    for name in ["redis", "chromium", "ffmpeg", "worker"] {
        assert_eq!(check(&body, name)["Ok"], true, "{body}");
    }
    assert!(
        check(&body, "worker")["Detail"]
            .as_str()
            .unwrap()
            .contains("0 of 1"),
        "{body}"
    );

    redis.stop();
    let began = Instant::now();
    let (status, _, body) = get(&readyz, None);
    assert!(began.elapsed() < Duration::from_secs(6), "answered in time");
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["Status"], "unready");
    assert_eq!(body["ErrorCode"], "ServiceUnavailable");
    assert_eq!(check(&body, "redis")["Ok"], false, "{body}");
    assert_eq!(check(&body, "ffmpeg")["Ok"], true, "{body}");
    // Liveness does not depend on Redis.
    assert_eq!(get(&format!("{}/healthz", svc.url), None).0, 200);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = get(&readyz, None);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still unready after Redis came back: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The value of the first series of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let bare = series.split('{').next().unwrap_or("");
            bare == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[test]
fn metrics_after_a_real_recording() {
    let _machine = alone();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "ops-metrics", true, 0, 1);
    let metrics_url = format!("{}/metrics", svc.url);

    // One Start refused, one accepted.
    let (status, _) = call(&svc.url, "Start", json!({ "RecordURL": "ftp://nope" }));
    assert_eq!(status, 400);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html"), "Fps": 25 }),
    );
    std::thread::sleep(Duration::from_secs(4));

    let (status, _, during) = get(&metrics_url, None);
    assert_eq!(status, 200);
    assert_eq!(
        metric(&during, "pagecast_recordings_running", &[]),
        Some(1.0)
    );
    // No metric names a task: scrapers must not learn the running task ids.
    assert!(
        !during.contains("task_id"),
        "a metric label carries a task id:\n{during}"
    );
    assert!(
        !during.contains(&id),
        "a metric carries the task id:\n{during}"
    );
    let fps = metric(&during, "pagecast_recordings_capture_fps", &[])
        .unwrap_or_else(|| panic!("no capture fps:\n{during}"));
    // An animated page paints at the display rate (60 Hz); the capture keeps at least one
    // picture per slot of the task's 25 fps. Measured 30 on the shared machine at load 13-16
    // (the test runs alone); bounds: 80 % of the task's rate for a loaded 2-core run, and the
    // display's 60 Hz. One recording runs: its rate is the lowest.
    eprintln!("capture fps {fps}");
    assert!((20.0..=60.0).contains(&fps), "capture fps {fps}");
    assert_eq!(
        metric(&during, "pagecast_recordings_capture_fps_lowest", &[]),
        Some(fps)
    );
    assert!(
        metric(&during, "pagecast_recordings_frames_dropped", &[]).is_some(),
        "{during}"
    );
    // The frame counters move while the recording runs, not only at its end.
    let written_during = metric(&during, "pagecast_frames_written_total", &[]).unwrap_or(0.0);
    assert!(written_during > 0.0, "no frames counted yet:\n{during}");
    assert!(metric(&during, "pagecast_frames_captured_total", &[]).unwrap_or(0.0) > 0.0);
    // The build, the process, the work disk, request and Redis latencies.
    assert_eq!(
        metric(
            &during,
            "pagecast_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(metric(&during, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    assert!(metric(&during, "process_cpu_seconds_total", &[]).is_some_and(|v| v > 0.0));
    assert!(metric(&during, "pagecast_work_disk_free_bytes", &[]).is_some_and(|v| v > 0.0));
    assert_eq!(
        metric(
            &during,
            "pagecast_api_request_duration_seconds_count",
            &[("action", "Start")]
        ),
        Some(2.0),
        "one Start refused, one accepted"
    );
    for op in ["create", "transition", "renew", "get"] {
        assert!(
            metric(
                &during,
                "pagecast_redis_command_duration_seconds_count",
                &[("op", op)]
            )
            .is_some_and(|n| n >= 1.0),
            "no Redis latency for {op}:\n{during}"
        );
    }
    assert_eq!(
        metric(&during, "pagecast_tasks", &[("status", "recording")]),
        Some(1.0)
    );

    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    let recorded = d["RecordedDuration"].as_f64().unwrap();

    // A stage's duration is recorded when its job returns, a moment after the task moved on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (_, _, text) = get(&metrics_url, None);
        let done = ["record", "transcode", "upload"].iter().all(|stage| {
            metric(
                &text,
                "pagecast_stage_duration_seconds_count",
                &[("stage", stage)],
            )
            .is_some()
        });
        if done || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let m = |name: &str, labels: &[(&str, &str)]| {
        metric(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(m("pagecast_starts_accepted_total", &[]), 1.0);
    assert_eq!(
        m(
            "pagecast_starts_rejected_total",
            &[("code", "InvalidParam")]
        ),
        1.0
    );
    assert_eq!(m("pagecast_tasks", &[("status", "finished")]), 1.0);
    assert_eq!(m("pagecast_tasks", &[("status", "recording")]), 0.0);
    assert_eq!(m("pagecast_recordings_running", &[]), 0.0);
    assert_eq!(m("pagecast_worker_capacity", &[]), 1.0);
    // 25 output frames per recorded second: counted while recording and at the end, once.
    let written = m("pagecast_frames_written_total", &[]);
    assert!(written >= written_during);
    assert!(
        (written - 25.0 * recorded).abs() <= 25.0,
        "{written} frames written for {recorded} s"
    );
    assert!(m("pagecast_frames_captured_total", &[]) > 0.0);
    assert_eq!(
        m(
            "pagecast_recordings_ended_total",
            &[("outcome", "recorded")]
        ),
        1.0
    );
    assert_eq!(m("pagecast_page_crashes_total", &[]), 0.0);
    assert_eq!(m("pagecast_page_hangs_total", &[]), 0.0);
    assert_eq!(m("pagecast_browser_restarts_total", &[]), 0.0);
    assert_eq!(m("pagecast_takeovers_total", &[]), 0.0);
    for stage in ["record", "transcode", "upload"] {
        assert_eq!(
            m("pagecast_stage_duration_seconds_count", &[("stage", stage)]),
            1.0,
            "{stage}"
        );
        assert_eq!(
            m(
                "pagecast_stage_duration_seconds_bucket",
                &[("stage", stage), ("le", "+Inf")]
            ),
            1.0
        );
    }
    let record_secs = m(
        "pagecast_stage_duration_seconds_sum",
        &[("stage", "record")],
    );
    assert!(record_secs >= recorded, "record stage took {record_secs} s");
    // The recording left the aggregates when it ended.
    assert_eq!(
        metric(&text, "pagecast_recordings_capture_fps", &[]),
        Some(0.0)
    );
    assert!(metric(&text, "pagecast_recordings_capture_fps_lowest", &[]).is_none());
    assert!(!text.contains("task_id"), "{text}");
    assert!(text.contains("# TYPE pagecast_upload_bytes_total counter"));
    assert!(text.contains("# TYPE pagecast_stage_duration_seconds histogram"));
}

/// A directory of symlinks to the tools doctor looks for, without ffmpeg.
fn path_without_ffmpeg(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["chromium", "ffprobe", "fc-list", "pulseaudio"] {
        let real = which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
        let _ = std::fs::remove_file(bin.join(tool));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    bin
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[test]
fn doctor_reports_a_missing_ffmpeg_and_fails() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let dir = scratch("ops-doctor");
    let env = [
        ("PAGECAST_REDIS_URL", redis.url.clone()),
        ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
    ];

    // A complete machine passes.
    let mut cmd = pagecast();
    cmd.arg("doctor").envs(env.iter().cloned());
    let out = run(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for name in ["chromium", "ffmpeg", "ffprobe", "fonts", "redis", "disk"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[ok  ]") && l.contains(name)),
            "{name} not ok:\n{text}"
        );
    }
    assert!(text.contains("Pagecast Sans CJK"), "{text}");

    // Without ffmpeg on PATH: reported with a fix, and the exit status says so.
    let bin = path_without_ffmpeg(&dir);
    let mut cmd = pagecast();
    cmd.arg("doctor")
        .envs(env.iter().cloned())
        .env("PATH", &bin);
    let out = run(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !out.status.success(),
        "doctor passed without ffmpeg:\n{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("[FAIL] ffmpeg"))
        .unwrap_or_else(|| panic!("ffmpeg not reported:\n{text}"));
    assert!(lines[at].contains("not found"), "{text}");
    assert!(
        lines[at + 1].contains("fix:") && lines[at + 1].contains("PAGECAST_FFMPEG"),
        "{text}"
    );
    // The rest is still checked and found.
    for name in ["chromium", "ffprobe", "redis"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[ok  ]") && l.contains(name)),
            "{name}:\n{text}"
        );
    }
}

/// Whether any process has `pid` as its parent.
fn has_children(pid: u32) -> bool {
    parents().iter().any(|(_, pp)| *pp == pid)
}

#[test]
fn a_sigtermed_worker_hands_its_recording_over_to_another() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // An API-only node and two workers of one node, one recording slot each.
    let mut svc = service(&redis, "ops-handover", false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (index, owner) = svc.procs[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p.child.id()))
        .find(|(_, pid)| has_children(*pid))
        .expect("one worker runs the recording");
    let other = svc.procs[if index == 1 { 2 } else { 1 }].child.id();
    assert!(!has_children(other), "the other worker is idle");

    // A rolling restart: SIGTERM the worker that records.
    std::process::Command::new("kill")
        .args(["-TERM", &owner.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = svc.procs[index].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the SIGTERMed worker did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "the worker exits cleanly: {exit:?}");

    // The other worker continues the task: it stays recording and its browser runs there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_children(other) {
        assert!(
            Instant::now() < deadline,
            "the other worker did not take the task over; {}",
            describe(&svc.url, &id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first part's duration is in Describe; the continuation adds to it as it records.
    let first = describe(&svc.url, &id)["RecordedDuration"]
        .as_f64()
        .unwrap();
    assert!(first > 1.0, "the first part was kept: {first} s");
    let d = wait_for(
        &svc.url,
        &id,
        "the second part recording",
        Duration::from_secs(30),
        |d| d["Status"] == "recording" && d["RecordedDuration"].as_f64().unwrap() >= first + 2.0,
    );
    assert_eq!(d["Status"], "recording");
    ok(&svc.url, "Stop", &id);
    let wall = began.elapsed().as_secs_f64();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    // A handover is counted apart from workers that stopped (which have a budget).
    assert_eq!(
        (&d["Restarts"], &d["Stats"]["Handovers"]),
        (&json!(0), &json!(1)),
        "{d}"
    );
    // Both parts are in the video: about the wall time, less the seconds the handover took.
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(
        recorded >= first + 2.0 && recorded <= wall + 1.0,
        "recorded {recorded} s of {wall} s (first part {first} s): {d}"
    );
    let file = fetch_video(&d, &scratch("ops-handover-dl"));
    let p = probe(&file, &[]);
    assert_close(p.duration, recorded, 1.0, "the video holds both parts");
    // The exited worker is reaped: its Drop must not signal a pid the system may have reused.
    std::mem::forget(svc.procs.remove(index));
}

#[test]
fn a_rolling_restart_of_the_only_worker_loses_nothing() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let mut svc = service(&redis, "ops-rolling", false, 1, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html") }),
    );
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Pause", &id);
    std::thread::sleep(Duration::from_secs(1));

    // Stop the worker; the paused task waits, handed over, for the next worker of its node.
    let old = svc.procs.remove(1);
    let pid = old.child.id();
    drop(old); // SIGTERM, then waits for the exit
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the old worker exited"
    );
    let d = describe(&svc.url, &id);
    assert_eq!(d["Status"], "paused", "{d}");

    // Its replacement continues the task, still paused; Resume and Stop work as before.
    let log = svc.dir.join("worker-new.log");
    svc.procs.push(spawn(&["worker"], &svc.worker_env, &log));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_children(svc.procs[1].child.id()) {
        assert!(
            Instant::now() < deadline,
            "the new worker did not continue the task; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let d = describe(&svc.url, &id);
    assert_eq!(d["Status"], "paused", "{d}");
    let first = d["RecordedDuration"].as_f64().unwrap();
    assert!(first > 1.0, "the first part was kept: {d}");
    ok(&svc.url, "Resume", &id);
    wait_for(
        &svc.url,
        &id,
        "the second part recording",
        Duration::from_secs(30),
        |d| d["RecordedDuration"].as_f64().unwrap() >= first + 2.0,
    );
    ok(&svc.url, "Stop", &id);
    let wall = began.elapsed().as_secs_f64();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    // A handover is counted apart from workers that stopped (which have a budget).
    assert_eq!(
        (&d["Restarts"], &d["Stats"]["Handovers"]),
        (&json!(0), &json!(1)),
        "{d}"
    );
    // Both parts; the paused time and the restart are not recorded.
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(
        recorded >= first + 2.0 && recorded < wall - 2.0,
        "recorded {recorded} s in {wall} s: {d}"
    );
    let file = fetch_video(&d, &scratch("ops-rolling-dl"));
    assert_close(
        probe(&file, &[]).duration,
        recorded,
        1.0,
        "the video holds both parts",
    );
}

#[test]
fn finish_mode_records_to_the_end_and_delivers_before_exiting() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let mut svc = service_with(
        &redis,
        "ops-finish",
        false,
        1,
        1,
        &[("PAGECAST_SHUTDOWN", "finish")],
    );
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "MaxDurationLimit": 6 }),
    );
    std::thread::sleep(Duration::from_secs(1));
    let pid = svc.procs[1].child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // The worker records on to the limit, delivers, and only then exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = svc.procs[1].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker in finish mode did not exit"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(exit.success(), "{exit:?}");
    let d = describe(&svc.url, &id);
    assert_eq!(d["Status"], "finished", "delivered before the exit: {d}");
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(recorded > 4.5, "recorded to the limit, not cut short: {d}");
    assert_eq!(d["Restarts"], 0);
    // Reaped already: its Drop must not signal a pid the system may have reused.
    std::mem::forget(svc.procs.remove(1));
}

#[test]
fn json_logs_carry_request_and_task_ids_and_no_page_tokens() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service_with(
        &redis,
        "ops-logs",
        true,
        0,
        1,
        &[("PAGECAST_LOG_FORMAT", "json")],
    );
    let (rt, client) = http();
    let body: Value = rt.block_on(async {
        client
            .post(format!("{}/", svc.url))
            .header("X-Request-Id", "req-ops-42")
            .json(&json!({ "Action": "Start", "Data": {
                "RecordURL": format!("{fixtures}/static.html?token=pagesecret"),
                "MaxDurationLimit": 2 } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["RequestID"], "req-ops-42", "{body}");
    let id = body["TaskID"].as_str().unwrap().to_string();
    wait_finished(&svc.url, &id, Duration::from_secs(60));
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap();
    assert!(!log.contains("pagesecret"), "a page token reached the log");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_span = |l: &Value, key: &str, value: &str| {
        l["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s[key] == value))
    };
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "task created"
                && in_span(l, "request_id", "req-ops-42")),
        "no 'task created' line in the request's span"
    );
    // The engine's own lines too.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "recording started" && in_span(l, "task_id", &id)),
        "the engine's 'recording started' line lacks the task id"
    );
    let task_lines = lines.iter().filter(|l| in_span(l, "task_id", &id)).count();
    assert!(task_lines >= 3, "{task_lines} lines carry the task id");
    assert!(
        lines
            .iter()
            .any(|l| in_span(l, "task_id", &id) && l["span"]["stage"] == "transcode"),
        "transcode lines carry the task id and stage"
    );
}

#[test]
fn with_storage_type_s3_a_worker_on_another_node_continues_a_handed_over_recording() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let s3 = s3_support::TestS3::start();
    let fixtures = fixture_server();
    let mut env: Vec<(&'static str, String)> = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    let env_ref: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The API and a worker on node-a; a worker on node-b (its own work directory) joins later.
    let mut svc = service_with(&redis, "ops-cross-node", false, 1, 1, &env_ref);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "StorageType": "s3" }),
    );
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
    wait_logged(
        &svc.dir.join("worker-b.log"),
        "worker started",
        Duration::from_secs(30),
    );
    // A first part worth keeping on node-a.
    wait_for(
        &svc.url,
        &id,
        "2 s on node-a",
        Duration::from_secs(30),
        |d| d["RecordedDuration"].as_f64().unwrap_or(0.0) >= 2.0,
    );
    let a = svc.procs[1].child.id();
    assert!(has_children(a), "node-a records");
    std::process::Command::new("kill")
        .args(["-TERM", &a.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while svc.procs[1].child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "node-a did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = describe(&svc.url, &id)["RecordedDuration"]
        .as_f64()
        .unwrap();
    assert!(first > 1.0, "the first part was kept: {first}");
    let d = wait_for(
        &svc.url,
        &id,
        "node-b recording the second part",
        Duration::from_secs(40),
        |d| d["Status"] == "recording" && d["RecordedDuration"].as_f64().unwrap() >= first + 2.0,
    );
    assert_eq!(
        (&d["Restarts"], &d["Stats"]["Handovers"]),
        (&json!(0), &json!(1)),
        "{d}"
    );
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(recorded >= first + 2.0, "both parts: {d}");
    let file = fetch_video(&d, &scratch("ops-cross-node-dl"));
    assert_close(
        probe(&file, &[]).duration,
        recorded,
        1.0,
        "the video joins the part from node-a and the part from node-b",
    );
    // The copy in the bucket was only for a hand-over: gone once the result is made.
    let parts = s3
        .data()
        .join(s3_support::BUCKET)
        .join("pagecast-work")
        .join(&id);
    let left: Vec<_> = walk(&parts);
    assert!(
        left.is_empty(),
        "intermediate media left in the bucket: {left:?}"
    );
    std::mem::forget(svc.procs.remove(1));
}

/// Files below `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_worker_serves_its_own_health_and_metrics_and_healthcheck_probes_them() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    // An API-only serve, and a worker with its own operations address (`serve` would bind
    // PAGECAST_METRICS_LISTEN too, so only the worker gets it). Port 0: the worker picks a free
    // port and logs it.
    let mut svc = service_with(&redis, "ops-worker-http", false, 0, 2, &[]);
    let mut env = svc.worker_env.clone();
    env.push(("PAGECAST_METRICS_LISTEN", "127.0.0.1:0".to_string()));
    let worker_log = svc.dir.join("worker0.log");
    svc.procs.push(spawn(&["worker"], &env, &worker_log));
    let listen = logged_addr(&worker_log, "health and metrics listening");
    let base = format!("http://{listen}");
    // The endpoint answers at once; it is ready once the worker has reached Redis.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, _, body) = get(&format!("{base}/readyz"), None);
        if status == 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        check(&body, "worker")["Detail"]
            .as_str()
            .unwrap()
            .contains("0 of 2"),
        "{body}"
    );
    // The endpoint comes up a moment before the worker loop that sets the capacity gauge.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, _, text) = get(&format!("{base}/metrics"), None);
        assert_eq!(status, 200);
        if metric(&text, "pagecast_worker_capacity", &[]).is_some() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metric(&text, "pagecast_worker_capacity", &[]), Some(2.0));
    // Service-wide numbers come from the API process only.
    assert!(metric(&text, "pagecast_tasks", &[("status", "normal")]).is_none());

    let probe = |url: &str| {
        let mut c = pagecast();
        c.args(["healthcheck", "--url", url, "--timeout", "3"]);
        run(c, Duration::from_secs(20)).status.success()
    };
    assert!(probe(&format!("{base}/healthz")));
    // A port held bound but not listening: the probe is refused.
    let closed = ReservedPort::new();
    assert!(!probe(&format!("http://127.0.0.1:{}/healthz", closed.port)));
    // From the environment, as in the image: the worker's address.
    let mut c = pagecast();
    c.arg("healthcheck")
        .env_remove("PAGECAST_LISTEN")
        .env("PAGECAST_METRICS_LISTEN", &listen);
    assert!(run(c, Duration::from_secs(20)).status.success());

    // SIGTERM with nothing running: the worker exits promptly and cleanly.
    let pid = svc.procs[1].child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = svc.procs[1].child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "an idle worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    std::mem::forget(svc.procs.remove(1));
}

#[test]
fn a_draining_serve_is_unready_but_still_answers_until_its_recordings_end() {
    let _machine = beside_others();
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let mut svc = service_with(
        &redis,
        "ops-drain",
        true,
        0,
        1,
        &[("PAGECAST_SHUTDOWN", "finish")],
    );
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html") }),
    );
    let pid = svc.procs[0].child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // Unready once serve has taken the signal (polled, not after a guessed delay).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, _, body) = get(&format!("{}/readyz", svc.url), None);
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 503, "draining is not ready: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(check(&body, "shutdown")["Ok"], false, "{body}");
    // The recording goes on (still recording a second into the drain), and the API still takes
    // its Stop.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(describe(&svc.url, &id)["Status"], "recording");
    ok(&svc.url, "Stop", &id);
    // serve delivers, then exits (so the outcome is read from Redis, not through its API).
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = svc.procs[0].child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    std::mem::forget(svc.procs.remove(0));
    let prefix = svc
        .worker_env
        .iter()
        .find(|(k, _)| *k == "PAGECAST_KEY_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let task = http().0.block_on(async {
        let store = pagecast::task::store::TaskStore::connect(&redis.url, &prefix)
            .await
            .unwrap();
        store.get(&id).await.unwrap()
    });
    assert_eq!(task.status, pagecast::task::Status::Finished, "{task:?}");
    assert!(
        task.result
            .as_ref()
            .is_some_and(|r| r.error_code.is_none() && !r.videos.is_empty()),
        "{task:?}"
    );
}
