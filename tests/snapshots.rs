//! Snapshots end to end (`Output.Snapshots`): pictures taken from the recording while it
//! records, stored in the output directory (local delivery) and in a real S3 server (s3s-fs),
//! listed in Describe while recording, announced on the Redis stream `{prefix}events` and posted
//! to the snapshots' CallbackURL; none while paused; Start refuses bad fields. A snapshot-only
//! task (`Output.Video.Muxer: "none"`) stores its pictures and no video.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::{Value, json};
use service_support::*;

fn snapshots(d: &Value) -> Vec<Value> {
    d["Result"]["Snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn times(list: &[Value]) -> Vec<u64> {
    list.iter().map(|s| s["Time"].as_u64().unwrap()).collect()
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client.get(url).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body").to_vec())
    })
}

/// Decodes a picture with ffmpeg and returns its codec and size.
fn decoded(bytes: &[u8], dir: &Path, name: &str) -> Probe {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{name} does not decode cleanly: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    probe(&path, &[])
}

/// The entries of the `{prefix}events` stream, as field maps.
fn events(redis: &TestRedis, prefix: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut c = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}events"))
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

/// The count of pictures a recording of `recorded` seconds has at one per `interval` seconds:
/// one at 0 and one at each full interval after it.
fn expected_count(recorded: f64, interval: f64) -> usize {
    ((recorded / interval) - 1e-3).ceil().max(1.0) as usize
}

/// The pictures a finished task `d` lists, after asserting that every `interval_ms` of its
/// recorded time has its picture, at its time, in order.
fn one_per_interval(d: &Value, interval_ms: u64) -> Vec<Value> {
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    let list = snapshots(d);
    let want = expected_count(recorded, interval_ms as f64 / 1000.0);
    assert_eq!(
        times(&list),
        (0..want as u64)
            .map(|k| k * interval_ms)
            .collect::<Vec<_>>(),
        "one picture per {interval_ms} ms of the {recorded} s recorded: {d}"
    );
    list
}

#[test]
fn snapshots_are_stored_listed_announced_and_posted_with_none_while_paused() {
    let redis = TestRedis::start();
    let receiver = CallbackReceiver::start();
    let fixtures = fixture_server();
    let svc = service_with(
        &redis,
        "snap-local",
        true,
        0,
        1,
        &[("PAGECAST_CALLBACK_SECRET", "s3cret")],
    );
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 10,
            "CallbackURL": format!("{}/ok", receiver.url),
            "Output": {"Cos": {"TargetDir": "class/9"},
                "Snapshots": {"Interval": 1, "Format": "png", "Width": 320,
                "CallbackURL": format!("{}/ok", receiver.url)}},
        }),
    );
    // Listed while recording, not only at the end.
    let d = wait_for(
        &svc.url,
        &id,
        "two snapshots",
        Duration::from_secs(30),
        |d| snapshots(d).len() >= 2,
    );
    assert_eq!(d["Status"], "recording", "{d}");
    assert_eq!(times(&snapshots(&d))[..2], [0, 1000], "{d}");

    // Paused: no pictures (the one being stored may still land).
    ok(&svc.url, "Pause", &id);
    wait_for(
        &svc.url,
        &id,
        "paused",
        Duration::from_secs(10),
        status_is("paused"),
    );
    // The recording pauses when its worker reads the Pause, a moment after the status shows it,
    // and the picture of a second recorded before that may still be converted and stored: wait
    // until no picture has arrived for 2 s (twice the interval, so a recording that went on
    // taking pictures never gets there), then none may arrive for 3 s more.
    let settle = Instant::now() + Duration::from_secs(15);
    let mut before = snapshots(&describe(&svc.url, &id)).len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        assert!(
            Instant::now() < settle,
            "pictures kept arriving while paused"
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = snapshots(&describe(&svc.url, &id)).len();
        if now != before {
            (before, quiet_since) = (now, Instant::now());
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = snapshots(&describe(&svc.url, &id)).len();
    assert_eq!(before, after, "no snapshots while paused");
    ok(&svc.url, "Resume", &id);
    // Pictures again after the pause.
    wait_for(
        &svc.url,
        &id,
        "a snapshot after the pause",
        Duration::from_secs(30),
        |d| snapshots(d).len() > after || d["Status"] == "finished",
    );

    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let list = one_per_interval(&d, 1000);
    let scratch_dir = scratch("snap-local-check");
    for s in &list {
        let key = s["Key"].as_str().unwrap();
        let time = s["Time"].as_u64().unwrap();
        assert_eq!(key, format!("class/9/snapshots/{time}.png"), "{s}");
        assert_eq!(s["Filename"], format!("{time}.png"), "{s}");
        let on_disk = std::fs::read(svc.out.join(key)).expect("the picture is in the output dir");
        assert_eq!(on_disk.len() as u64, s["FileSize"].as_u64().unwrap(), "{s}");
        // Served through its signed URL.
        let (status, body) = get(s["FileURL"].as_str().unwrap());
        assert_eq!(status, 200, "{s}");
        assert_eq!(body, on_disk);
        let p = decoded(&body, &scratch_dir, &format!("{time}.png"));
        assert_eq!((p.codec.as_str(), p.width), ("png", 320), "{s}");
        // The recording's 16:9 kept.
        assert_eq!(p.height, 180, "{s}");
    }

    // Announced on the events stream.
    let ev = events(&redis, &svc.prefix);
    let mine: Vec<_> = ev.iter().filter(|e| e["task"] == id).collect();
    assert_eq!(mine.len(), list.len(), "{ev:?}");
    for (e, s) in mine.iter().zip(&list) {
        assert_eq!(e["kind"], "snapshot");
        assert_eq!(e["key"], s["Key"].as_str().unwrap());
        assert_eq!(e["time"], s["Time"].to_string());
        assert!(e["url"].contains("/files/"), "{e:?}");
    }

    // The task's own callback lists them as Describe does.
    let task_callbacks: Vec<Value> = receiver
        .received()
        .iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap())
        .filter(|b| b.get("Kind").is_none())
        .collect();
    assert_eq!(task_callbacks.len(), 1);
    assert_eq!(times(&snapshots(&task_callbacks[0])), times(&list));

    // One signed callback per picture.
    let is_snapshot =
        |d: &Delivery| serde_json::from_slice::<Value>(&d.body).unwrap()["Kind"] == "snapshot";
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver
        .received()
        .iter()
        .filter(|d| is_snapshot(d))
        .count()
        < list.len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got: Vec<Delivery> = receiver
        .received()
        .into_iter()
        .filter(|d| is_snapshot(d))
        .collect();
    assert_eq!(got.len(), list.len(), "one callback per snapshot");
    let mut posted: Vec<u64> = Vec::new();
    for delivery in &got {
        assert_eq!(
            delivery.signature.as_deref(),
            Some(pagecast::pipeline::callback::signature(b"s3cret", &delivery.body).as_str()),
        );
        assert!(delivery.event_id.is_some());
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["TaskID"], id.as_str());
        assert_eq!(body["Kind"], "snapshot");
        posted.push(body["Snapshot"]["Time"].as_u64().unwrap());
    }
    posted.sort();
    assert_eq!(posted, times(&list));
}

#[test]
fn snapshots_land_in_the_bucket_as_the_screencast_jpegs() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let mut env = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    // The screencast's frames are JPEGs: a jpg at the recording's size is the frame itself.
    env.push(("PAGECAST_CAPTURE", "screencast".into()));
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = service_with(&redis, "snap-s3", true, 0, 1, &env);
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 5,
            "Output": {"S3": {"TargetDir": "cam/1"},
                "Snapshots": {"Interval": 2, "Format": "jpg"}},
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let list = one_per_interval(&d, 2000);
    let scratch_dir = scratch("snap-s3-check");
    for s in &list {
        let key = s["Key"].as_str().unwrap();
        assert_eq!(key, format!("cam/1/snapshots/{}.jpg", s["Time"]), "{s}");
        let stored = s3
            .object(s3_support::BUCKET, key)
            .expect("the picture is in the bucket");
        assert_eq!(stored.len() as u64, s["FileSize"].as_u64().unwrap());
        let url = s["FileURL"].as_str().unwrap();
        assert!(url.contains("X-Amz-Signature="), "presigned: {url}");
        let (status, body) = get(url);
        assert_eq!(status, 200, "{url}");
        assert_eq!(body, stored);
        let p = decoded(&body, &scratch_dir, &format!("{}.jpg", s["Time"]));
        assert_eq!(p.codec, "mjpeg", "{s}");
        assert!(
            p.width >= 1280,
            "the recording's size: {}x{}",
            p.width,
            p.height
        );
    }
    let ev = events(&redis, &svc.prefix);
    assert_eq!(ev.iter().filter(|e| e["task"] == id).count(), list.len());
    // Nothing of the snapshots' staging is left in the work directory.
    assert!(!svc.dir.join("work").join(&id).join("snapshots").exists());
}

/// Every file below `dir`, as paths relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_snapshot_only_task_stores_pictures_and_no_video() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let receiver = CallbackReceiver::start();
    let fixtures = fixture_server();
    let mut env = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = service_with(&redis, "snap-only", true, 0, 1, &env);
    // The X11 capture (the default): raw frames, converted and encoded in process.
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 6,
            "CallbackURL": format!("{}/ok", receiver.url),
            "Output": {"S3": {"TargetDir": "mod/7"}, "Video": {"Muxer": "none"},
                "Snapshots": {"Interval": 1, "Format": "jpg"}},
        }),
    );
    let d = wait_for(&svc.url, &id, "a snapshot", Duration::from_secs(30), |d| {
        !snapshots(d).is_empty()
    });
    assert_eq!(d["Muxer"], "none", "{d}");
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Result"]["Videos"], json!([]), "no video: {d}");
    let list = one_per_interval(&d, 1000);
    // The bucket holds the pictures and nothing else: no video, no parts.
    let stored = files_below(&s3.data().join(s3_support::BUCKET));
    let keys: Vec<String> = list
        .iter()
        .map(|s| s["Key"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(stored, sorted, "only the pictures are stored");
    let scratch_dir = scratch("snap-only-check");
    for s in &list {
        let (status, body) = get(s["FileURL"].as_str().unwrap());
        assert_eq!(status, 200, "{s}");
        let p = decoded(&body, &scratch_dir, &format!("{}.jpg", s["Time"]));
        assert_eq!(
            (p.codec.as_str(), p.width, p.height),
            ("mjpeg", 1280, 720),
            "{s}"
        );
    }
    // The task's callback as usual: no videos, the pictures listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one task callback");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["Result"]["Videos"], json!([]), "{body}");
    assert_eq!(times(&snapshots(&body)), times(&list), "{body}");
    // The recording's segments are gone from the work directory.
    assert!(!svc.dir.join("work").join(&id).exists());
}

/// The snapshot callbacks waiting in the outbox (`{prefix}snapcb:items`), as JSON.
fn outbox(redis: &TestRedis, prefix: &str) -> Vec<Value> {
    let mut c = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let items: Vec<String> = redis::cmd("HVALS")
        .arg(format!("{prefix}snapcb:items"))
        .query(&mut c)
        .unwrap();
    items
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

#[test]
fn snapshot_callbacks_wait_in_redis_for_their_receiver_across_a_worker_restart() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // Nothing listens there yet (the port is held so that nothing else takes it).
    let late = ReservedPort::new();
    let port = late.port;
    // The API in one process, the worker in another: the worker is restarted below.
    let mut svc = service_with(
        &redis,
        "snap-outbox",
        false,
        1,
        1,
        &[
            ("PAGECAST_CALLBACK_SECRET", "s3cret"),
            ("PAGECAST_CALLBACK_BACKOFF_MS", "300"),
            ("PAGECAST_CALLBACK_MAX_BACKOFF_SECONDS", "1"),
            ("PAGECAST_CALLBACK_RETRY_SECONDS", "600"),
        ],
    );
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/static.html"),
            "MaxDurationLimit": 3,
            "Output": {"Snapshots": {"Interval": 1, "Format": "jpg", "Width": 320,
                "CallbackURL": format!("http://127.0.0.1:{port}/ok")}},
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let list = snapshots(&d);
    assert!(list.len() >= 2, "{d}");
    // The receiver is down: every picture's callback waits in the outbox, tried and failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let waiting = outbox(&redis, &svc.prefix);
        let tried = waiting
            .iter()
            .filter(|cb| cb["attempts"].as_u64() >= Some(2) && cb["last_error"].is_string())
            .count();
        if tried == list.len() {
            break waiting;
        }
        assert!(Instant::now() < deadline, "callbacks tried: {waiting:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(waiting.len(), list.len(), "{waiting:?}");
    assert!(waiting.iter().all(|cb| cb["task"] == id.as_str()));

    // The worker stops; its callbacks stay in Redis.
    drop(svc.procs.remove(1));
    assert_eq!(outbox(&redis, &svc.prefix).len(), list.len());

    // The receiver comes up, and a new worker delivers every callback, once, signed, with the
    // event id it had from the start.
    let receiver = CallbackReceiver::start_on(late);
    let log = svc.dir.join("worker-new.log");
    svc.procs.push(spawn(&["worker"], &svc.worker_env, &log));
    let deadline = Instant::now() + Duration::from_secs(90);
    while !outbox(&redis, &svc.prefix).is_empty() {
        assert!(
            Instant::now() < deadline,
            "callbacks still waiting; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = receiver.received();
    assert_eq!(got.len(), list.len(), "each delivered once");
    let mut sent_ids: Vec<String> = got.iter().map(|d| d.event_id.clone().unwrap()).collect();
    let mut stored_ids: Vec<String> = waiting
        .iter()
        .map(|cb| cb["event_id"].as_str().unwrap().to_string())
        .collect();
    sent_ids.sort();
    stored_ids.sort();
    assert_eq!(sent_ids, stored_ids);
    let mut posted = Vec::new();
    for delivery in &got {
        assert_eq!(
            delivery.signature.as_deref(),
            Some(pagecast::pipeline::callback::signature(b"s3cret", &delivery.body).as_str()),
        );
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(
            (body["TaskID"].as_str(), body["Kind"].as_str()),
            (Some(id.as_str()), Some("snapshot"))
        );
        posted.push(body["Snapshot"]["Time"].as_u64().unwrap());
    }
    posted.sort();
    assert_eq!(posted, times(&list));
}

#[test]
fn start_refuses_bad_snapshot_fields() {
    let redis = TestRedis::start();
    let svc = service(&redis, "snap-start", false, 0, 1);
    let base = |s: Value| json!({"RecordURL": "https://example.com/", "Output": {"Snapshots": s}});
    for (bad, code) in [
        (json!({"Interval": 0, "Format": "jpg"}), "InvalidParam"),
        (json!({"Interval": 0.5, "Format": "jpg"}), "InvalidParam"),
        (json!({"Interval": 1, "Format": "gif"}), "InvalidParam"),
        (json!({"Interval": 1}), "MissingParam"),
        (json!({"Format": "png"}), "MissingParam"),
        (
            json!({"Interval": 1, "Format": "png", "Width": 4}),
            "InvalidParam",
        ),
        (
            json!({"Interval": 1, "Format": "png", "CallbackURL": "ftp://h.example/"}),
            "InvalidParam",
        ),
    ] {
        let (status, body) = call(&svc.url, "Start", base(bad.clone()));
        assert_eq!(
            (status, body["ErrorCode"].as_str()),
            (400, Some(code)),
            "{bad}: {body}"
        );
        assert!(
            body["Message"]
                .as_str()
                .unwrap_or("")
                .contains("Output.Snapshots")
                || body.to_string().contains("Output.Snapshots"),
            "{body}"
        );
    }
    // A snapshot-only task needs snapshots.
    let (status, body) = call(
        &svc.url,
        "Start",
        json!({"RecordURL": "https://example.com/", "Output": {"Video": {"Muxer": "none"}}}),
    );
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (400, Some("MissingParam")),
        "{body}"
    );
    assert!(
        body.to_string()
            .contains("Data.Output.Snapshots is required with Muxer"),
        "{body}"
    );
    // The CallbackURL follows the egress rules (this service allows no private addresses).
    let (status, body) = call(
        &svc.url,
        "Start",
        base(json!({"Interval": 1, "Format": "png", "CallbackURL": "http://169.254.169.254/x"})),
    );
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (400, Some("InvalidParam")),
        "{body}"
    );
    assert!(
        body.to_string()
            .contains("Data.Output.Snapshots.CallbackURL"),
        "{body}"
    );
}

#[test]
fn a_storage_outage_loses_pictures_never_the_recording() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let mut env = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = service_with(&redis, "snap-outage", true, 0, 1, &env);
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 14,
            "Output": {"Snapshots": {"Interval": 1, "Format": "jpg", "Width": 640}},
        }),
    );
    wait_for(
        &svc.url,
        &id,
        "two snapshots",
        Duration::from_secs(30),
        |d| snapshots(d).len() >= 2,
    );
    s3.stop();
    std::thread::sleep(Duration::from_secs(5));
    s3.resume();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(120));
    assert!(
        d["Result"]["ErrorCode"].is_null(),
        "the recording is whole: {d}"
    );
    assert_eq!(
        d["Result"]["Videos"].as_array().map(Vec::len),
        Some(1),
        "{d}"
    );
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    let list = snapshots(&d);
    let t = times(&list);
    // Listed pictures are stored ones, in order, on the interval's multiples; pictures after the
    // outage are there again.
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    assert!(t.iter().all(|ms| ms % 1000 == 0), "{t:?}");
    assert!(t.len() <= expected_count(recorded, 1.0), "{t:?}");
    let last = *t.last().unwrap();
    assert!(
        last as f64 >= (recorded - 3.0) * 1000.0,
        "pictures are stored again after the outage: {t:?} of {recorded} s"
    );
    for s in &list {
        let key = s["Key"].as_str().unwrap();
        assert!(
            s3.object(s3_support::BUCKET, key).is_some(),
            "{key} is listed, so it is in the bucket"
        );
    }
    eprintln!(
        "{} of {} pictures stored across a 5 s storage outage",
        list.len(),
        expected_count(recorded, 1.0)
    );
}
