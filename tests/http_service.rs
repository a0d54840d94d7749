//! The HTTP surface of the real `pagecast serve`, over real sockets.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use serde_json::{Value, json};
use service_support::*;

/// `pagecast serve` with these settings must stop at once with status 2, naming `naming`.
fn refuses_to_start(env: &[(&str, &str)], naming: &str) {
    let mut c = pagecast();
    c.args(["serve", "--no-worker"])
        .env("PAGECAST_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1/")
        .envs(env.iter().copied());
    let began = Instant::now();
    let o = run(c, Duration::from_secs(20));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{env:?}: took {:?}",
        began.elapsed()
    );
    assert_eq!(o.status.code(), Some(2), "{env:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(naming), "{env:?}: {}", stderr(&o));
}

#[test]
fn settings_that_would_open_the_api_refuse_to_start() {
    // A token list with no token in it would turn authentication off.
    refuses_to_start(&[("PAGECAST_API_TOKENS", " , ")], "PAGECAST_API_TOKENS");
    refuses_to_start(&[("PAGECAST_API_TOKENS", ",")], "PAGECAST_API_TOKENS");
    refuses_to_start(&[("PAGECAST_API_TOKENS", "")], "PAGECAST_API_TOKENS");
    refuses_to_start(
        &[("PAGECAST_CORS_ORIGINS", "evil.example")],
        "PAGECAST_CORS_ORIGINS",
    );
    refuses_to_start(
        &[("PAGECAST_CORS_ORIGINS", "*,https://a.example")],
        "PAGECAST_CORS_ORIGINS",
    );
}

/// With API tokens, /metrics answers only with one; PAGECAST_METRICS_LISTEN serves the
/// operations endpoints without a token on a separate address (for `serve` too). No metric
/// label names a task.
#[test]
fn metrics_need_a_token_or_the_metrics_listener() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let svc = service_with(
        &redis,
        "http-metrics",
        true,
        0,
        1,
        &[
            ("PAGECAST_API_TOKENS", "metrics-test-token"),
            ("PAGECAST_METRICS_LISTEN", listen.as_str()),
        ],
    );
    let (rt, client) = http();
    let get = |url: String, token: Option<&str>| {
        rt.block_on(async {
            let mut req = client.get(url).timeout(Duration::from_secs(10));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let metrics = format!("{}/metrics", svc.url);
    let (status, body) = get(metrics.clone(), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"Unauthorized\""), "{body}");
    assert_eq!(get(metrics.clone(), Some("wrong")).0, 401);
    assert_eq!(get(metrics.clone(), Some("metrics-test-token")).0, 200);
    assert_eq!(get(format!("{}/healthz", svc.url), None).0, 200);

    // A recording runs: the scrape (token or metrics listener) names no task.
    let id = rt.block_on(async {
        let r: Value = client
            .post(format!("{}/", svc.url))
            .bearer_auth("metrics-test-token")
            .json(&json!({"Action": "Start", "Data": {"RecordURL": format!("{fixtures}/animated.html"), "MaxDurationLimit": 30}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["TaskID"].as_str().unwrap().to_string()
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let scrape = loop {
        let (status, text) = get(format!("http://{listen}/metrics"), None);
        assert_eq!(status, 200, "the metrics listener needs no token: {text}");
        let fps = text
            .lines()
            .find(|l| l.starts_with("pagecast_recordings_capture_fps "))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if fps > 0.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no recording showed up:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(!scrape.contains("task_id"), "{scrape}");
    assert!(!scrape.contains(&id), "{scrape}");
    assert!(scrape.contains("pagecast_recordings_running 1"), "{scrape}");
    let (_, with_token) = get(metrics, Some("metrics-test-token"));
    assert!(!with_token.contains("task_id") && !with_token.contains(&id));
    assert_eq!(get(format!("http://{listen}/readyz"), None).0, 200);
    rt.block_on(async {
        client
            .post(format!("{}/", svc.url))
            .bearer_auth("metrics-test-token")
            .json(&json!({"Action": "Stop", "Data": {"TaskID": id}}))
            .send()
            .await
            .unwrap();
    });
}

/// VmHWM (peak resident memory) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// A 1 GiB result is streamed: downloading it twice leaves the server's peak memory far below
/// the file's size, and a Range gives exactly the bytes asked for.
#[test]
fn big_results_are_streamed_and_ranges_are_exact() {
    let redis = TestRedis::start();
    let svc = service_with(&redis, "http-files", false, 0, 1, &[]);
    let dir = svc.out.join("big-task");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("video.mp4");
    let size: u64 = 1 << 30;
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap(); // sparse: costs no disk
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"MARKER-AT-512-MIB", 512 << 20).unwrap();
    }
    let url = format!("{}/files/big-task/video.mp4", svc.url);
    let pid = svc.procs[0].child.id();
    let before = peak_rss_mib(pid);
    let (rt, client) = http();
    for _ in 0..2 {
        let total = rt.block_on(async {
            let mut resp = client.get(&url).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(resp.headers()["content-type"], "video/mp4");
            let mut total = 0u64;
            while let Some(chunk) = resp.chunk().await.unwrap() {
                total += chunk.len() as u64;
            }
            total
        });
        assert_eq!(total, size);
    }
    let peak = peak_rss_mib(pid);
    assert!(
        peak < before + 128,
        "serving 2 x 1 GiB took the server from {before} MiB to a peak of {peak} MiB"
    );
    let (status, range, body) = rt.block_on(async {
        let r = client
            .get(&url)
            .header("Range", format!("bytes={}-{}", 512 << 20, (512 << 20) + 16))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let range = r.headers()["content-range"].to_str().unwrap().to_string();
        (status, range, r.bytes().await.unwrap())
    });
    assert_eq!(status, 206);
    assert_eq!(
        range,
        format!("bytes {}-{}/{size}", 512 << 20, (512 << 20) + 16)
    );
    assert_eq!(body.as_ref(), b"MARKER-AT-512-MIB");
}
