//! Live push end to end (`Output.Live`): a real RTMP server (Debian's nginx with its RTMP
//! module, started here on a free port with a generated configuration) and a real SRT listener
//! (ffmpeg), the stream read back with ffprobe/ffmpeg while the task records; a target that goes
//! away mid-recording and comes back; and Start's validation of the field.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/rtmp.rs"]
mod rtmp_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/srt.rs"]
mod srt_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use rtmp_support::{KEY, TestRtmp};
use serde_json::{Value, json};
use service_support::*;
use srt_support::SrtListener;

/// Video packet times read from a live stream for `seconds`.
fn packet_times(url: &str, seconds: u32) -> Vec<f64> {
    let out = Command::new("timeout")
        .arg((seconds + 15).to_string())
        .args(["ffprobe", "-v", "error", "-rw_timeout", "10000000"])
        .args(["-read_intervals", &format!("%+{seconds}")])
        .args(["-select_streams", "v:0", "-show_entries", "packet=pts_time"])
        .args(["-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The codecs of a live stream's streams, e.g. `["h264", "aac"]` (sorted).
fn codecs(url: &str) -> Vec<String> {
    let out = Command::new("timeout")
        .args(["20", "ffprobe", "-v", "error", "-rw_timeout", "10000000"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    let mut c: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    c.sort();
    c
}

/// What `seconds` of the live stream look and sound like: whether the picture froze (ffmpeg's
/// freezedetect, over 2 s) and the loudest sample in dB.
fn watch(url: &str, seconds: u32) -> (bool, f64) {
    let out = Command::new("timeout")
        .arg((seconds + 20).to_string())
        .args([
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-rw_timeout",
            "10000000",
        ])
        .args(["-i", url, "-t", &seconds.to_string()])
        .args(["-vf", "freezedetect=n=0.003:d=2", "-af", "volumedetect"])
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let max = err
        .lines()
        .find_map(|l| l.split("max_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no volume in ffmpeg's output: {err}"));
    (err.contains("freeze_start"), max)
}

fn live_stats(d: &Value) -> Vec<Value> {
    d["Stats"]["Live"].as_array().cloned().unwrap_or_default()
}

fn log_of(svc: &Service) -> String {
    std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default()
}

#[test]
fn an_rtmp_push_carries_picture_and_sound_and_holds_still_through_a_pause() {
    let redis = TestRedis::start();
    let rtmp = TestRtmp::start("live-rtmp");
    let fixtures = fixture_server();
    let svc = service(&redis, "live-rtmp-svc", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/av_sync.html"),
            "MaxDurationLimit": 120,
            // No bit rate: the push carries the recording's own stream (the relay).
            "Output": {"Live": {"Url": rtmp.url()}},
        }),
    );
    let recording_since = Instant::now();
    // The stream comes up within a few seconds of recording (the reader itself needs a keyframe).
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let c = codecs(&rtmp.url());
        if c == ["aac", "h264"] || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found, ["aac", "h264"], "H.264 + AAC on the RTMP server");
    eprintln!(
        "live stream readable {:.1} s after the task was seen recording",
        recording_since.elapsed().as_secs_f64()
    );

    // Frames arrive and their timestamps advance.
    let times = packet_times(&rtmp.url(), 4);
    assert!(times.len() >= 30, "few frames: {times:?}");
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(span >= 2.0, "timestamps advance: {span} s in {times:?}");

    // Recording: the picture changes (the clock strip, the flashes) and the page beeps.
    let (frozen, loudest) = watch(&rtmp.url(), 4);
    assert!(!frozen, "the picture moves while recording");
    assert!(loudest > -30.0, "the page's beeps are heard: {loudest} dB");

    // Paused: the stream runs on with a still picture and silence.
    ok(&svc.url, "Pause", &id);
    wait_for(
        &svc.url,
        &id,
        "paused",
        Duration::from_secs(10),
        status_is("paused"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (frozen, loudest) = watch(&rtmp.url(), 4);
    assert!(frozen, "the picture holds still while paused");
    assert!(loudest < -60.0, "silence while paused: {loudest} dB");
    ok(&svc.url, "Resume", &id);
    wait_for(
        &svc.url,
        &id,
        "resumed",
        Duration::from_secs(10),
        status_is("recording"),
    );
    let times = packet_times(&rtmp.url(), 2);
    assert!(times.len() >= 15, "frames after resume: {times:?}");
    // A Refresh reloads the page; the push stays up (no reconnect).
    ok(&svc.url, "Refresh", &id);
    let times = packet_times(&rtmp.url(), 3);
    assert!(times.len() >= 20, "frames across a refresh: {times:?}");

    let d = describe(&svc.url, &id);
    let live = live_stats(&d);
    assert_eq!(live.len(), 1, "{d}");
    assert_eq!(live[0]["State"], "live", "{d}");
    assert_eq!(live[0]["Attempts"], 1, "{d}");
    let url = live[0]["Url"].as_str().unwrap();
    assert_eq!(url, format!("rtmp://127.0.0.1:{}/live/***", rtmp.port));

    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert_eq!(live_stats(&d)[0]["State"], "ended", "{d}");
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let video = fetch_video(&d, &svc.dir);
    let p = probe(&video, &[]);
    let recorded = d["RecordedDuration"].as_f64().unwrap_or(0.0);
    assert!(recorded > 5.0, "{d}");
    assert_close(
        p.duration,
        recorded,
        0.5,
        "the file is the recording, pause excluded",
    );
    // The stream key never reaches the log, Describe or the stored task.
    assert!(!d.to_string().contains(KEY), "{d}");
    assert!(!log_of(&svc).contains(KEY), "the key is in the log");
}

#[test]
fn a_target_that_drops_is_reconnected_and_the_recording_finishes_whole() {
    let redis = TestRedis::start();
    let mut rtmp = TestRtmp::start("live-drop");
    let fixtures = fixture_server();
    let svc = service(&redis, "live-drop-svc", true, 0, 1);
    let began = Instant::now();
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 120,
            "Audio": false,
            // A bit rate: the push encodes its own stream (the other tests: the recording's).
            "Output": {"Live": [{"Url": rtmp.url(), "VideoBitrate": 1500}]},
        }),
    );
    wait_for(
        &svc.url,
        &id,
        "the push to be up",
        Duration::from_secs(20),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    assert_eq!(
        codecs(&rtmp.url()),
        ["aac", "h264"],
        "a silent track without sound"
    );

    // The target goes away: the push fails, says why, and tries again.
    rtmp.kill();
    let d = wait_for(
        &svc.url,
        &id,
        "the push to retry",
        Duration::from_secs(30),
        |d| {
            live_stats(d).first().is_some_and(|l| {
                l["Attempts"].as_u64().unwrap_or(0) >= 2 && l["LastError"].is_string()
            })
        },
    );
    let error = live_stats(&d)[0]["LastError"].as_str().unwrap().to_string();
    assert!(!error.contains(KEY), "{error}");
    assert_eq!(d["Status"], "recording", "the recording goes on: {d}");

    // It comes back on the same port: the push reconnects and the stream flows again.
    rtmp.spawn();
    wait_for(
        &svc.url,
        &id,
        "the push to reconnect",
        Duration::from_secs(60),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    let times = packet_times(&rtmp.url(), 3);
    assert!(times.len() >= 20, "frames after the reconnect: {times:?}");

    ok(&svc.url, "Stop", &id);
    let wall = began.elapsed().as_secs_f64();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let p = probe(&fetch_video(&d, &svc.dir), &[]);
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert_close(p.duration, recorded, 0.5, "the file is whole");
    // Nothing was lost while the target was away: the file covers the time recorded (the wall
    // time since Start less the page load).
    assert!(recorded > wall - 8.0, "recorded {recorded} s of {wall} s");
    assert_eq!(d["Stats"]["LostSeconds"].as_f64(), Some(0.0), "{d}");
    assert!(!log_of(&svc).contains(KEY), "the key is in the log");
}

#[test]
fn an_srt_push_reaches_an_srt_listener_as_mpeg_ts() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let dir = scratch("live-srt");
    let listener = SrtListener::start(&dir);
    let port = listener.port;
    let svc = service(&redis, "live-srt-svc", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 120,
            // Screencast capture: the push gets JPEG pictures (the other tests: raw x11 ones).
            "Capture": "screencast",
            "Output": {"Live": {"Url": format!("srt://127.0.0.1:{port}?latency=200000")}},
        }),
    );
    wait_for(
        &svc.url,
        &id,
        "the push to be up",
        Duration::from_secs(20),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    std::thread::sleep(Duration::from_secs(5));
    ok(&svc.url, "Stop", &id);
    wait_finished(&svc.url, &id, Duration::from_secs(90));
    // The push ended with the recording: the listener sees the end of its input and exits.
    let received = listener.finish();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=format_name,duration",
        ])
        .args(["-of", "json"])
        .arg(&received)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut names: Vec<&str> = v["streams"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["codec_name"].as_str()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["aac", "h264"], "{v}");
    assert_eq!(v["format"]["format_name"], "mpegts", "{v}");
    let seconds: f64 = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(seconds >= 4.0, "the listener got {seconds} s: {v}");
}

#[test]
fn start_checks_live_targets_and_never_echoes_a_key() {
    let redis = TestRedis::start();
    let svc = service(&redis, "live-start-svc", false, 0, 1);
    let base = |live: Value| json!({"RecordURL": "https://example.com/", "Output": {"Live": live}});
    let (status, body) = call(
        &svc.url,
        "Start",
        base(json!({"Url": format!("rtsp://h/live/{KEY}")})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["ErrorCode"], "UnsupportedOutput", "{body}");
    assert!(!body.to_string().contains(KEY), "{body}");
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"Url": format!("rtmp://h/live/k{i}")}))
        .collect();
    let (status, body) = call(&svc.url, "Start", base(json!(four)));
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (400, Some("InvalidParam")),
        "{body}"
    );
    let (status, body) = call(&svc.url, "Start", base(json!({"Url": "srt://h"})));
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (400, Some("InvalidParam")),
        "{body}"
    );
    // Accepted: Describe never shows the key.
    let id = start(
        &svc.url,
        base(json!({"Url": format!("rtmp://live.example.com/live/{KEY}")})),
    );
    let d = describe(&svc.url, &id);
    assert!(!d.to_string().contains(KEY), "{d}");
}

#[test]
fn a_worker_that_dies_hands_the_push_to_the_worker_that_continues() {
    let redis = TestRedis::start();
    let rtmp = TestRtmp::start("live-takeover");
    let fixtures = fixture_server();
    // The API alone, and two workers; the one recording is killed.
    let svc = service(&redis, "live-takeover-svc", false, 2, 1);
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 120,
            "Audio": false,
            "Output": {"Live": {"Url": rtmp.url()}},
        }),
    );
    wait_for(
        &svc.url,
        &id,
        "the push to be up",
        Duration::from_secs(20),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    let owner = svc.procs[1..]
        .iter()
        .map(|p| p.child.id())
        .find(|pid| !descendants(*pid).is_empty())
        .expect("one worker records");
    Command::new("kill")
        .args(["-KILL", &owner.to_string()])
        .status()
        .unwrap();
    // The other worker continues the recording and connects the push again.
    let d = wait_for(&svc.url, &id, "a takeover", Duration::from_secs(60), |d| {
        d["Restarts"].as_u64().unwrap_or(0) >= 1
            && d["Status"] == "recording"
            && live_stats(d).first().is_some_and(|l| l["State"] == "live")
    });
    assert!(!d.to_string().contains(KEY), "{d}");
    let times = packet_times(&rtmp.url(), 3);
    assert!(times.len() >= 20, "frames from the new worker: {times:?}");
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert_eq!(live_stats(&d)[0]["State"], "ended", "{d}");
    for log in ["worker0.log", "worker1.log", "serve.log"] {
        let text = std::fs::read_to_string(svc.dir.join(log)).unwrap_or_default();
        assert!(!text.contains(KEY), "the key is in {log}");
    }
}

#[test]
fn the_one_shot_command_pushes_with_live_and_hides_the_key() {
    let rtmp = TestRtmp::start("live-cli");
    let fixtures = fixture_server();
    let dir = scratch("live-cli-out");
    let out = dir.join("out.mp4");
    let url = rtmp.url();
    // Read the stream while the command records (it starts after the page loads).
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = codecs(&url);
            if c == ["aac", "h264"] || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let o = record_ok(
        &format!("{fixtures}/animated.html"),
        &out,
        &["--duration", "8", "--no-audio", "--live", &rtmp.url()],
    );
    assert_eq!(reader.join().unwrap(), ["aac", "h264"], "the stream was up");
    let said = stderr(&o);
    assert!(
        said.contains(&format!(
            "live push to rtmp://127.0.0.1:{}/live/***: 1 connection attempt(s)",
            rtmp.port
        )),
        "{said}"
    );
    assert!(!said.contains(KEY), "{said}");
    assert_close(probe(&out, &[]).duration, 8.0, 0.2, "the file");
    // A URL that is not a push target is refused before anything runs, without echoing it.
    let mut cmd = pagecast();
    cmd.args(["record", "https://example.com", "-o"])
        .arg(dir.join("never.mp4"))
        .args(["--live", &format!("rtsp://h/live/{KEY}")]);
    let o = run(cmd, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rtmp://, rtmps:// or srt://"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(KEY), "{}", stderr(&o));
}

#[test]
fn a_target_that_hangs_is_given_up_and_reconnected_without_holding_the_recording() {
    let redis = TestRedis::start();
    let rtmp = TestRtmp::start("live-hang");
    let fixtures = fixture_server();
    let svc = service(&redis, "live-hang-svc", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 120,
            "Output": {"Live": {"Url": rtmp.url()}},
        }),
    );
    wait_for(
        &svc.url,
        &id,
        "the push to be up",
        Duration::from_secs(20),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    // The server stops answering but keeps its connections open.
    rtmp.signal("STOP");
    let d = wait_for(
        &svc.url,
        &id,
        "the push to give up",
        Duration::from_secs(60),
        |d| {
            live_stats(d)
                .first()
                .is_some_and(|l| l["Attempts"].as_u64().unwrap_or(0) >= 2)
        },
    );
    assert_eq!(d["Status"], "recording", "{d}");
    eprintln!("gave up with: {}", live_stats(&d)[0]["LastError"]);
    rtmp.signal("CONT");
    wait_for(
        &svc.url,
        &id,
        "the push to reconnect",
        Duration::from_secs(60),
        |d| live_stats(d).first().is_some_and(|l| l["State"] == "live"),
    );
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let p = probe(&fetch_video(&d, &svc.dir), &[]);
    assert_close(
        p.duration,
        d["RecordedDuration"].as_f64().unwrap(),
        0.5,
        "the file is whole",
    );
    assert_eq!(d["Stats"]["LostSeconds"].as_f64(), Some(0.0), "{d}");
}

/// A TCP listener that must never be connected to; counts what reaches it.
fn trap(addr: &str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, hits)
}

/// DNS rebinding on live targets. Start's check (in `serve`) and the push's connection (in a
/// worker) ask the resolver at different times; here they get different answers: `serve` finds
/// no address for `rebind.test` and `tls.test`, and the worker runs with its own /etc/hosts (a
/// mount namespace) in which `rebind.test` is 127.0.0.2, a loopback address the policy refuses
/// (only 127.0.0.1, where the test page is, is allowed), and `tls.test` is 127.0.0.1.
///
/// Proves: the worker resolves and checks each target before connecting (the refusal names the
/// address it resolved, so the name did resolve there) and no push connection reaches the
/// refused address, for RTMP and RTMPS; an allowed RTMPS target is still reached with its name
/// as TLS SNI (through the egress proxy) at the address that was checked. Before the fix ffmpeg
/// got the name, resolved it itself and connected to 127.0.0.2.
#[test]
fn live_targets_are_checked_again_when_the_push_connects() {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let (rebound, hits) = trap("127.0.0.2:0");
    let tls = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = tls.local_addr().unwrap().port();
    let (hello_tx, hello_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for conn in tls.incoming() {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            buf.truncate(n);
            let _ = hello_tx.send(buf);
        }
    });
    let svc = service_with(
        &redis,
        "live-rebind",
        false,
        0,
        1,
        &[
            ("PAGECAST_ALLOW_PRIVATE_URLS", "false"),
            ("PAGECAST_ALLOWED_PRIVATE_NETWORKS", "127.0.0.1"),
        ],
    );
    let hosts = svc.dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 rebind.test\n127.0.0.1 tls.test\n",
    )
    .unwrap();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount");
    if !root {
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "--",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
    ])
    .arg(&hosts)
    .arg(env!("CARGO_BIN_EXE_pagecast"))
    .arg("worker")
    .env("PAGECAST_LOG", "info,pagecast=debug,chromiumoxide=off")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(svc.dir.join("worker0.log")).unwrap());
    for (k, v) in &svc.worker_env {
        cmd.env(k, v);
    }
    let _worker = Proc {
        child: cmd.spawn().expect("unshare (util-linux) is needed"),
    };
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 60,
            "Output": {"Live": [
                {"Url": format!("rtmp://rebind.test:{rebound}/live/{KEY}")},
                {"Url": format!("rtmps://rebind.test:{rebound}/live/{KEY}")},
                {"Url": format!("rtmps://tls.test:{tls_port}/live/{KEY}")},
            ]},
        }),
    );
    // The allowed RTMPS target is reached, and its TLS hello names it.
    let hello = hello_rx
        .recv_timeout(Duration::from_secs(40))
        .expect("the allowed RTMPS target was connected to");
    assert!(
        hello.windows(8).any(|w| w == b"tls.test"),
        "the TLS hello carries the name (SNI): {hello:?}"
    );
    // The rebound targets are refused at every attempt, naming the address the worker found.
    let deadline = Instant::now() + Duration::from_secs(40);
    let d = loop {
        let d = describe(&svc.url, &id);
        let live = live_stats(&d);
        let refused = |t: &Value| {
            t["LastError"]
                .as_str()
                .is_some_and(|e| e.contains("rebind.test resolves to 127.0.0.2"))
                && t["Attempts"].as_u64().unwrap_or(0) >= 2
        };
        if (live.len() == 3 && refused(&live[0]) && refused(&live[1])) || Instant::now() > deadline
        {
            break d;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let live = live_stats(&d);
    for t in &live[..2] {
        assert_eq!(t["State"], "retrying", "{d}");
        let e = t["LastError"].as_str().unwrap_or_default();
        assert!(e.contains("rebind.test resolves to 127.0.0.2"), "{d}");
        assert!(t["Attempts"].as_u64().unwrap_or(0) >= 2, "{d}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a push reached the rebound address: {d}"
    );
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "after the end: {d}");
    let log = std::fs::read_to_string(svc.dir.join("worker0.log")).unwrap_or_default();
    assert!(!log.contains(KEY), "the key is in the worker's log");
}
