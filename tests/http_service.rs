//! The HTTP surface of the real `pagecast serve`, over real sockets: settings that would open
//! it up refuse to start, slow or numerous connections are cut off, big result files are
//! streamed, result URLs are signed (and an HLS result plays from its signed URL), /metrics
//! needs a token, and a Redis that comes up late is waited for while every request is answered.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use pagecast::delivery::signed_url::UrlSigner;
use redis_support::TestRedis;
use serde_json::{Value, json};
use service_support::*;

const SIGNING_KEY: &str = "http-service-test-signing-key-0123456789";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `pagecast serve` with these settings must stop at once with status 2, naming `naming`.
fn refuses_to_start(env: &[(&str, &str)], naming: &str) {
    let mut c = pagecast();
    c.args(["serve", "--no-worker"])
        // Port 0: the settings are refused before anything is bound.
        .env("PAGECAST_LISTEN", "127.0.0.1:0")
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
    refuses_to_start(
        &[("PAGECAST_URL_SIGNING_KEY", "short")],
        "PAGECAST_URL_SIGNING_KEY",
    );
    let dir = scratch("http-config");
    let empty = dir.join("empty-key");
    std::fs::write(&empty, "\n").unwrap();
    refuses_to_start(
        &[("PAGECAST_URL_SIGNING_KEY_FILE", empty.to_str().unwrap())],
        "PAGECAST_URL_SIGNING_KEY_FILE",
    );
    // A tokens file with no token in it would turn authentication off as well: empty, blank
    // lines, or only comments and separators.
    for (name, text) in [
        ("tokens-empty", ""),
        ("tokens-blank", "\n  \n"),
        ("tokens-comments", "# rotated out\n , ,\n# none yet\n"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        refuses_to_start(
            &[("PAGECAST_API_TOKENS_FILE", file.to_str().unwrap())],
            "PAGECAST_API_TOKENS_FILE",
        );
    }
}

/// `serve` (no worker) with a known signing key, on a free port; returns it and its base URL.
fn api_only(redis: &TestRedis, name: &str, extra: &[(&'static str, &str)]) -> Service {
    let mut env = vec![("PAGECAST_URL_SIGNING_KEY", SIGNING_KEY)];
    env.extend_from_slice(extra);
    service_with(redis, name, false, 0, 1, &env)
}

fn addr_of(svc: &Service) -> SocketAddr {
    svc.url.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `source` (a loopback address) to `to`.
fn connect_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = &http().0;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket.connect(to).await?;
        stream.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// Whether the server closed `stream` (EOF or reset) within `limit`; what it sent first.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let began = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(began.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some((began.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some((began.elapsed(), got)),
        }
    }
}

/// 300 half-sent requests are closed within the header timeout, and no client holds more than
/// its share of connections; a body that does not arrive is a 408 within the body timeout.
#[test]
fn half_sent_requests_are_cut_off_and_clients_are_capped() {
    let redis = TestRedis::start();
    let svc = api_only(
        &redis,
        "http-timeouts",
        &[
            ("PAGECAST_HEADER_READ_TIMEOUT", "4"),
            ("PAGECAST_BODY_READ_TIMEOUT", "2"),
            ("PAGECAST_MAX_CONNECTIONS_PER_CLIENT", "50"),
        ],
    );
    let to = addr_of(&svc);
    // Wait until the API itself answers (not only the port).
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_status(&format!("{}/healthz", svc.url)) != Some(200) {
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // 300 requests whose headers never end, from 6 client addresses (50 each).
    let began = Instant::now();
    let mut open: Vec<TcpStream> = Vec::new();
    for i in 0..300u16 {
        let mut s = connect_from([127, 0, 0, 10 + (i % 6) as u8], to).expect("connect");
        let _ =
            s.write_all(b"POST / HTTP/1.1\r\nHost: pagecast\r\nContent-Type: application/json\r\n");
        open.push(s);
    }
    // A 51st connection of one of those clients is closed at once, unanswered.
    let mut extra = connect_from([127, 0, 0, 10], to).expect("connect");
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: pagecast\r\n\r\n");
    let (after, sent) = closed_within(&mut extra, Duration::from_secs(2))
        .expect("a connection beyond the client's cap stays open");
    assert!(
        sent.is_empty(),
        "it was answered: {:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(after < Duration::from_secs(2));
    // Another client is not affected.
    let mut other = connect_from([127, 0, 0, 99], to).expect("connect");
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: pagecast\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (_, answer) = closed_within(&mut other, Duration::from_secs(5)).expect("answered");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Every half-sent request is closed by the header timeout (4 s), not held for minutes.
    for (i, s) in open.iter_mut().enumerate() {
        let limit = Duration::from_secs(9).saturating_sub(began.elapsed());
        assert!(
            closed_within(s, limit.max(Duration::from_millis(10))).is_some(),
            "half-sent request {i} still open {:?} after it began",
            began.elapsed()
        );
    }
    assert!(
        began.elapsed() < Duration::from_secs(9),
        "took {:?}",
        began.elapsed()
    );
    // Their slots are free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_status(&format!("{}/healthz", svc.url)) != Some(200) {
        assert!(Instant::now() < deadline, "the API did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A body that stops halfway: 408 RequestTimeout within the body timeout.
    let mut s = connect_from([127, 0, 0, 1], to).unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: pagecast\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Action\":",
    )
    .unwrap();
    let began = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"RequestTimeout\""), "{text}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "after {:?}",
        began.elapsed()
    );
}

fn get_status(url: &str) -> Option<u16> {
    let (rt, client) = http();
    rt.block_on(async {
        client
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
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
    let svc = api_only(&redis, "http-files", &[]);
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
    let signer = UrlSigner::new(SIGNING_KEY.as_bytes(), Duration::from_secs(600));
    let url = signer.file_url(&svc.url, "big-task/video.mp4", now());
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

    // A range past the end: 416 RangeNotSatisfiable. A signed URL of a file that is not there,
    // and a path nothing serves: 404 ResourceNotFound.
    let fetch = |url: String, range: Option<String>| {
        rt.block_on(async {
            let mut req = client.get(url);
            if let Some(r) = range {
                req = req.header("Range", r);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, text) = fetch(url.clone(), Some(format!("bytes={size}-")));
    assert_eq!(status, 416, "{text}");
    assert!(text.contains("\"RangeNotSatisfiable\""), "{text}");
    let missing = signer.file_url(&svc.url, "big-task/missing.mp4", now());
    let (status, text) = fetch(missing, None);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("\"ResourceNotFound\""), "{text}");
    let (status, text) = fetch(format!("{}/no-such-endpoint", svc.url), None);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("\"ResourceNotFound\""), "{text}");
}

/// An HLS result recorded by a worker process plays from the signed playlist URL Describe
/// gives (its segments inherit the signature), the URL in the callback plays too, and an
/// altered, expired or unsigned URL is refused. The key is the one the processes share
/// through Redis (none is configured).
#[test]
fn a_recorded_hls_result_plays_from_its_signed_url() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let receiver = CallbackReceiver::start();
    // An API-only node and a worker process: the worker signs, the API checks.
    let svc = service(&redis, "http-signed-hls", false, 1, 1);
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 4,
            "CallbackURL": format!("{}/ok", receiver.url),
            "Output": {"Video": {"Muxer": "hls"}},
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let playlist = d["Result"]["Videos"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|v| v["Filename"].as_str().unwrap_or("").ends_with(".m3u8"))
        })
        .unwrap_or_else(|| panic!("no playlist in {d}"))["FileURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        playlist.starts_with(&format!("{}/files/s/", svc.url)),
        "{playlist}"
    );
    let p = probe(std::path::Path::new(&playlist), &[]);
    assert!(p.duration > 2.0, "the playlist played {} s", p.duration);
    assert!(p.frames > 10, "{p:?}");

    // Each Describe gives a fresh URL (the expiry moves on), valid just the same.
    std::thread::sleep(Duration::from_millis(1100));
    let again = describe(&svc.url, &id)["Result"]["Videos"][0]["FileURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(again, d["Result"]["Videos"][0]["FileURL"].as_str().unwrap());
    assert_eq!(get_status(&again), Some(200));

    // The callback's URL, signed by the worker, is good on the API node.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered: Value = loop {
        if let Some(d) = receiver.received().first() {
            break serde_json::from_slice(&d.body).unwrap();
        }
        assert!(Instant::now() < deadline, "no callback arrived");
        std::thread::sleep(Duration::from_millis(200));
    };
    let from_callback = delivered["Result"]["Videos"][0]["FileURL"]
        .as_str()
        .unwrap();
    assert!(from_callback.contains("/files/s/"), "{from_callback}");
    assert_eq!(get_status(from_callback), Some(200));

    // Altered or unsigned: 403.
    let rest = playlist
        .strip_prefix(&format!("{}/files/s/", svc.url))
        .unwrap();
    let mut parts = rest.splitn(3, '/');
    let (expiry, sig, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let later: i64 = expiry.parse::<i64>().unwrap() + 86_400;
    let base = format!("{}/files/s", svc.url);
    for (what, url) in [
        ("a later expiry", format!("{base}/{later}/{sig}/{key}")),
        (
            "an expired one",
            format!("{base}/{}/{sig}/{key}", now() - 10),
        ),
        (
            "another directory",
            format!("{base}/{expiry}/{sig}/other-{key}"),
        ),
        ("no signature", format!("{}/files/{key}", svc.url)),
        (
            "a zero signature",
            format!("{base}/{expiry}/{}/{key}", "0".repeat(64)),
        ),
    ] {
        assert_eq!(get_status(&url), Some(403), "{what}: {url}");
    }
    let (rt, client) = http();
    let body: Value = rt.block_on(async {
        client
            .get(format!("{}/files/{key}", svc.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["ErrorCode"], "InvalidSignature", "{body}");
    // ffmpeg cannot read it either.
    let o = std::process::Command::new("ffprobe")
        .args(["-v", "error", &format!("{base}/{later}/{sig}/{key}")])
        .output()
        .unwrap();
    assert!(!o.status.success(), "ffprobe read an altered URL");
}

/// `(expiry, signature, key)` of a signed result URL served by `svc`.
fn signed_parts(svc: &Service, url: &str) -> (String, String, String) {
    let rest = url
        .strip_prefix(&format!("{}/files/s/", svc.url))
        .unwrap_or_else(|| panic!("not a signed result URL: {url}"));
    let mut parts = rest.splitn(3, '/');
    let mut next = || parts.next().unwrap().to_string();
    (next(), next(), next())
}

fn playlist_url(d: &Value) -> String {
    d["Result"]["Videos"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|v| v["Filename"].as_str().unwrap_or("").ends_with(".m3u8"))
        })
        .unwrap_or_else(|| panic!("no playlist in {d}"))["FileURL"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Two tasks write into one shared TargetDir. Task A's signed playlist URL plays with its
/// segments, and its signature opens nothing of task B's (playlist, segments) there: 403. Before,
/// a URL was signed for the whole directory and read every result in it for 7 days.
#[test]
fn a_result_url_opens_its_own_files_not_the_shared_directory() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "http-signed-scope", true, 0, 1);
    let task = |name: &str| {
        start(
            &svc.url,
            json!({
                "RecordURL": format!("{fixtures}/animated.html"),
                "MaxDurationLimit": 3,
                "Output": {"Cos": {"TargetDir": "class/7", "TargetName": name},
                           "Video": {"Muxer": "hls"}},
            }),
        )
    };
    let (a, b) = (task("lesson-a"), task("lesson-b"));
    let da = wait_finished(&svc.url, &a, Duration::from_secs(120));
    let db = wait_finished(&svc.url, &b, Duration::from_secs(120));
    assert!(da["Result"]["ErrorCode"].is_null(), "{da}");
    assert!(db["Result"]["ErrorCode"].is_null(), "{db}");
    let (a_url, b_url) = (playlist_url(&da), playlist_url(&db));
    // Each playlist plays from its own URL: its segments inherit its signature.
    for url in [&a_url, &b_url] {
        let p = probe(std::path::Path::new(url), &[]);
        assert!(p.duration > 1.5, "{url} played {} s", p.duration);
    }
    let (expiry, sig, key) = signed_parts(&svc, &a_url);
    assert_eq!(key, "class/7/lesson-a.m3u8");
    let with_a = |key: &str| format!("{}/files/s/{expiry}/{sig}/{key}", svc.url);
    let dir = svc.out.join("class/7");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let a_segment = names
        .iter()
        .find(|n| n.starts_with("lesson-a_") && n.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment of A in {names:?}"));
    let b_segment = names
        .iter()
        .find(|n| n.starts_with("lesson-b_") && n.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment of B in {names:?}"));
    assert_eq!(
        get_status(&with_a(&format!("class/7/{a_segment}"))),
        Some(200)
    );
    for other in [
        "class/7/lesson-b.m3u8".to_string(),
        format!("class/7/{b_segment}"),
    ] {
        assert_eq!(
            get_status(&with_a(&other)),
            Some(403),
            "task A's URL opened {other}"
        );
    }
    // ffmpeg cannot read B's playlist with A's signature either.
    let o = std::process::Command::new("ffprobe")
        .args(["-v", "error", &with_a("class/7/lesson-b.m3u8")])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "ffprobe read B's playlist with A's URL"
    );
}

/// With API tokens, /metrics answers only with one; PAGECAST_METRICS_LISTEN serves the
/// operations endpoints without a token on a separate address (for `serve` too). No metric
/// label names a task.
#[test]
fn metrics_need_a_token_or_the_metrics_listener() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // Port 0: serve picks a free port for its operations listener and logs it.
    let svc = service_with(
        &redis,
        "http-metrics",
        true,
        0,
        1,
        &[
            ("PAGECAST_API_TOKENS", "metrics-test-token"),
            ("PAGECAST_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let listen = logged_addr(&svc.dir.join("serve.log"), "health and metrics listening");
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

/// Redis unreachable when `serve` starts: it answers at once (`/healthz` 200, `/readyz` and the
/// API 503), and serves normally as soon as Redis is up.
#[test]
fn serve_answers_at_once_while_redis_is_not_up_yet() {
    let mut redis = TestRedis::start();
    redis.stop();
    let svc = service_with(&redis, "http-late-redis", true, 0, 1, &[]);
    let (rt, client) = http();
    let call = |method: &str, path: &str| {
        let began = Instant::now();
        let r = rt.block_on(async {
            let req = match method {
                "POST" => client.post(format!("{}{path}", svc.url)).json(
                    // A loopback page (private addresses are allowed here): no DNS needed.
                    &json!({"Action": "Start", "Data": {"RecordURL": "http://127.0.0.1:9/"}}),
                ),
                _ => client.get(format!("{}{path}", svc.url)),
            };
            let r = req.timeout(Duration::from_secs(5)).send().await;
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    Some((status, r.json::<Value>().await.unwrap_or(Value::Null)))
                }
                Err(_) => None,
            }
        });
        (r, began.elapsed())
    };
    for _ in 0..2 {
        let (r, took) = call("GET", "/healthz");
        assert_eq!(r.map(|r| r.0), Some(200), "healthz");
        assert!(took < Duration::from_secs(2), "healthz took {took:?}");
        let (r, took) = call("GET", "/readyz");
        let (status, body) = r.expect("readyz answered");
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["Checks"][0]["Name"], "redis", "{body}");
        assert!(took < Duration::from_secs(2), "readyz took {took:?}");
        let (r, took) = call("POST", "/");
        let (status, body) = r.expect("the API answered");
        assert_eq!(
            (status, body["ErrorCode"].as_str()),
            (503, Some("ServiceUnavailable")),
            "{body}"
        );
        assert!(took < Duration::from_secs(2), "Start took {took:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (r, _) = call("POST", "/");
        if let Some((200, body)) = &r {
            assert!(body["TaskID"].is_string(), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not serving after Redis came up: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (r, _) = call("GET", "/readyz");
    assert_eq!(r.map(|r| r.0), Some(200));
}
