//! End-to-end delivery: results uploaded to a real S3-compatible server (s3s-fs, which checks
//! signatures) through the Action API, per-task storage overrides, encrypted HLS whose key comes
//! from AuthUrl, a storage outage waited out at upload time, multipart uploads, and callbacks
//! delivered through the durable outbox (receiver down at first; receiver never up).

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::{Value, json};
use service_support::*;

const KEY: &str = "00112233445566778899aabbccddeeff";

fn s3_env(s3: &TestS3, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// pagecast on `s3`. The test server's buckets are private (as most are), so result URLs are
/// presigned unless a task names a Domain.
fn service_on_s3(
    redis: &TestRedis,
    s3: &TestS3,
    name: &str,
    extra: &[(&'static str, &str)],
) -> Service {
    let mut env = s3_env(s3, extra);
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    service_with(redis, name, true, 0, 2, &env)
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client.get(url).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body").to_vec())
    })
}

/// `Result.Videos` as (object key, size, URL); `Filename` is the key's base name.
fn videos(d: &Value) -> Vec<(String, u64, String)> {
    d["Result"]["Videos"]
        .as_array()
        .unwrap_or_else(|| panic!("no videos in {d}"))
        .iter()
        .map(|v| {
            let key = v["Key"].as_str().unwrap().to_string();
            assert_eq!(
                v["Filename"].as_str(),
                key.rsplit('/').next(),
                "Filename is the base name: {v}"
            );
            assert!(v["FileDuration"].as_u64().is_some(), "{v}");
            (
                key,
                v["FileSize"].as_u64().unwrap(),
                v["FileURL"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The segment file names an HLS playlist names (percent-decoded), after checking that
/// `Result.Videos` lists only the playlist, with their number.
fn playlist_segments(d: &Value, playlist_text: &str) -> Vec<String> {
    let listed = d["Result"]["Videos"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "HLS lists only its playlist: {d}");
    let names: Vec<String> = playlist_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            percent_encoding::percent_decode_str(l)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        listed[0]["SegmentCount"].as_u64(),
        Some(names.len() as u64),
        "SegmentCount: {d}"
    );
    names
}

fn finished(url: &str, id: &str) -> Value {
    wait_finished(url, id, Duration::from_secs(90))
}

#[test]
fn mp4_results_land_in_the_bucket_with_working_urls_and_per_task_overrides() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    s3.create_bucket("other");
    let fixtures = fixture_server();
    // A CDN in front of the "other" bucket, for the task that names it as its Domain.
    let cdn = static_server(s3.data().join("other"));
    let svc = service_on_s3(
        &redis,
        &s3,
        "dlv-mp4",
        &[("PAGECAST_S3_ALLOWED_BUCKETS", "other")],
    );
    let default_id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html"), "MaxDurationLimit": 3 }),
    );
    let domain = format!("{cdn}/pub");
    let override_id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/static.html"),
            "MaxDurationLimit": 2,
            "Output": { "S3": {
                "Bucket": "other",
                "Endpoint": s3.endpoint,
                "TargetDir": "class/7",
                "TargetName": "lesson",
                "Domain": domain,
            }},
        }),
    );

    // Server defaults: <TaskID>/<stop time in ms>.mp4 in the configured bucket.
    let d = finished(&svc.url, &default_id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = videos(&d);
    assert_eq!(v.len(), 1, "{d}");
    let (name, size, url) = &v[0];
    let millis: i64 = name
        .strip_prefix(&format!("{default_id}/"))
        .and_then(|n| n.strip_suffix(".mp4"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(millis / 1000, d["StopTime"].as_i64().unwrap(), "{name}");
    let stored = s3
        .object(s3_support::BUCKET, name)
        .expect("the object is in the bucket");
    assert_eq!(stored.len() as u64, *size);
    assert!(
        url.starts_with(&format!("{}/{}/{name}?", s3.endpoint, s3_support::BUCKET))
            && url.contains("X-Amz-Signature="),
        "a presigned URL of the object: {url}"
    );
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(get(unsigned).0, 403, "the bucket itself is private");
    let (status, body) = get(url);
    assert_eq!(status, 200, "FileURL downloads");
    assert_eq!(body, stored, "the download is the stored object");
    let file = svc.dir.join("default.mp4");
    std::fs::write(&file, &body).unwrap();
    assert_close(
        probe(&file, &[]).duration,
        3.0,
        0.15,
        "uploaded MP4 duration",
    );
    assert!(
        !svc.dir
            .join("work")
            .join(format!("{default_id}.deliver"))
            .exists(),
        "the local copy is removed once the upload is confirmed"
    );

    // Output.S3 overrides bucket, endpoint, directory and name; Domain sets the URL's base.
    let d = finished(&svc.url, &override_id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = videos(&d);
    assert_eq!(v[0].0, "class/7/lesson.mp4");
    assert_eq!(v[0].2, format!("{domain}/class/7/lesson.mp4"));
    let stored = s3
        .object("other", "class/7/lesson.mp4")
        .expect("in the task's bucket");
    assert_eq!(get(&v[0].2), (200, stored));
    assert!(
        s3.object(s3_support::BUCKET, "class/7/lesson.mp4")
            .is_none(),
        "not in the server's bucket"
    );
}

/// A TCP listener that counts the connections it gets (and answers none).
fn connection_counter() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, count)
}

/// A task may send its result only to the server's endpoint and bucket or those on the
/// allow-lists: anything else is refused at Start, and a task that reached the queue anyway
/// (accepted under other settings) fails at upload; the server's credentials never reach the
/// endpoint it named. An allowed endpoint (a second server) works end to end.
#[test]
fn tasks_send_results_only_to_allowed_endpoints_and_buckets() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let allowed = TestS3::start();
    let fixtures = fixture_server();
    let (trap, connections) = connection_counter();
    let svc = service_on_s3(
        &redis,
        &s3,
        "dlv-allow",
        &[("PAGECAST_S3_ALLOWED_ENDPOINTS", allowed.endpoint.as_str())],
    );
    let page = format!("{fixtures}/static.html");
    for (output, field) in [
        (json!({"S3": {"Endpoint": trap}}), "Data.Output.S3.Endpoint"),
        (
            json!({"S3": {"Endpoint": format!("{trap}/"), "Bucket": s3_support::BUCKET}}),
            "Data.Output.S3.Endpoint",
        ),
        (json!({"S3": {"Bucket": "other"}}), "Data.Output.S3.Bucket"),
        (
            json!({"Cos": {"Bucket": "other"}}),
            "Data.Output.Cos.Bucket",
        ),
    ] {
        let (status, body) = call(
            &svc.url,
            "Start",
            json!({"RecordURL": page, "Output": output}),
        );
        assert_eq!(status, 400, "{output}: {body}");
        assert_eq!(body["ErrorCode"], "StorageNotAllowed", "{body}");
        let message = body["ErrorMessage"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field} ")), "{message}");
    }

    let id = start(
        &svc.url,
        json!({
            "RecordURL": page,
            "MaxDurationLimit": 2,
            "Output": {"S3": {
                "Endpoint": allowed.endpoint,
                "TargetDir": "allowed",
                "TargetName": "clip",
            }},
        }),
    );
    // A task accepted by a server whose settings allowed the trap, queued behind the API's back.
    let sneaked = {
        let mut limits = pagecast::api::start::StartLimits::default();
        limits.storage.s3_allowed_endpoints = vec![trap.clone()];
        let data = json!({"RecordURL": page, "MaxDurationLimit": 2,
            "Output": {"S3": {"Endpoint": trap}}});
        let (spec, secrets) = pagecast::api::start::parse_start(&data, &limits).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        http().0.block_on(async {
            let store = pagecast::task::store::TaskStore::connect(&redis.url, &svc.prefix)
                .await
                .unwrap();
            store.create(&id, &spec, &secrets, 0, 100).await.unwrap();
        });
        id
    };

    let d = finished(&svc.url, &id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let (name, size, url) = videos(&d).remove(0);
    assert_eq!(name, "allowed/clip.mp4");
    let stored = allowed
        .object(s3_support::BUCKET, &name)
        .expect("in the allowed server's bucket");
    assert_eq!(stored.len() as u64, size);
    assert!(s3.object(s3_support::BUCKET, &name).is_none());
    assert!(url.starts_with(&allowed.endpoint), "{url}");
    assert_eq!(get(&url), (200, stored));

    let d = finished(&svc.url, &sneaked);
    assert_eq!(d["Result"]["ErrorCode"], "UploadFailed", "{d}");
    let message = d["Result"]["ErrorMessage"].as_str().unwrap();
    assert!(message.contains("not allowed"), "{message}");
    // Where the files are kept, without the server's paths.
    assert!(message.contains(&format!("{sneaked}.deliver")), "{message}");
    let root = svc.dir.display().to_string();
    assert!(!message.contains(&root), "a server path in {message}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was ever sent to an endpoint that is not allowed"
    );
}

/// A long MP4 goes to the bucket while it is recorded: whole parts of its samples go up during
/// the recording, and at the end only the head (the index, moved in front) and the tail are sent.
/// Without a TargetName the name is the stop time, so the parts go to a staging object that the
/// storage copies to its name at the end.
#[test]
fn an_mp4_goes_to_the_bucket_while_it_is_recorded() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let svc = service_on_s3(
        &redis,
        &s3,
        "dlv-live-mp4",
        &[("PAGECAST_S3_PART_SIZE_MIB", "5")],
    );
    // Random pixels: about 3 MB a second at 640x360, so parts fill within seconds.
    let id = start_recording(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/noise.html"),
            "Width": 640,
            "Height": 360,
            "MaxDurationLimit": 60,
        }),
    );
    let state_file = svc.dir.join("work").join(&id).join("live-mp4.json");
    let deadline = Instant::now() + Duration::from_secs(40);
    let parts_while_recording = loop {
        let parts = std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["parts"].as_array().map(Vec::len))
            .unwrap_or(0);
        if parts >= 2 {
            break parts;
        }
        assert!(
            Instant::now() < deadline,
            "no parts were sent while recording"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(describe(&svc.url, &id)["Status"], "recording");
    ok(&svc.url, "Stop", &id);
    let d = finished(&svc.url, &id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let (name, size, url) = videos(&d).remove(0);
    assert!(
        name.starts_with(&format!("{id}/")) && name.ends_with(".mp4"),
        "{name}"
    );
    let stored = s3.object(s3_support::BUCKET, &name).expect("in the bucket");
    assert_eq!(stored.len() as u64, size);
    assert!(size > 15 << 20, "{size} bytes");
    assert!(
        s3.object(s3_support::BUCKET, &format!("{id}/{id}.mp4.part"))
            .is_none(),
        "the staging object is removed"
    );
    let layout = pagecast::media::faststart::layout(&mut std::io::Cursor::new(&stored))
        .expect("a whole MP4");
    assert!(
        layout.moov.end <= layout.payload.start,
        "fast start: index first"
    );
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("MP4 completed in the bucket"),
        "the parts sent while recording were used ({parts_while_recording} at least)"
    );
    let (status, body) = get(&url);
    assert_eq!((status, body.len() as u64), (200, size));
    let file = svc.dir.join("live.mp4");
    std::fs::write(&file, &body).unwrap();
    let p = probe(&file, &[]);
    assert!(p.duration > 3.0, "{}", p.duration);
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

/// Names at the limits (counted in bytes, with what pagecast appends) record and deliver: an MP4
/// named with 251 bytes (mostly CJK) and an HLS playlist named with 237 bytes (its segments are
/// `<name>_NNNNNN.ts`, written as `.ts.partial` first: 255 bytes). One byte more is refused, and
/// so is an object key beyond 1024 bytes. (The 1024-byte key itself is not stored here: the test
/// server keeps a file named after each key's base64, so it cannot hold keys beyond ~160 bytes.)
#[test]
fn names_at_the_storage_limits_record_and_deliver() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let page = format!("{fixtures}/animated.html");
    let local = service(&redis, "dlv-names-local", true, 0, 2);
    let mp4_name = format!("{}ab", "录".repeat(83));
    assert_eq!(mp4_name.len(), 251);
    let hls_name = "h".repeat(237);
    let mp4 = start(
        &local.url,
        json!({"RecordURL": page, "MaxDurationLimit": 2,
               "Output": {"Cos": {"TargetName": mp4_name}}}),
    );
    let hls = start(
        &local.url,
        json!({"RecordURL": page, "MaxDurationLimit": 3,
               "Output": {"Cos": {"TargetDir": "limits", "TargetName": hls_name}, "Video": {"Muxer": "hls"}}}),
    );
    for output in [
        json!({"Cos": {"TargetName": format!("{mp4_name}c")}}),
        json!({"Cos": {"TargetName": format!("{hls_name}h")}, "Video": {"Muxer": "hls"}}),
    ] {
        let (status, body) = call(
            &local.url,
            "Start",
            json!({"RecordURL": page, "Output": output}),
        );
        assert_eq!(
            (status, body["ErrorCode"].as_str()),
            (400, Some("InvalidParam")),
            "{body}"
        );
    }
    // With a bucket, keys count: 3 segments of 255 bytes and one of 9 make a 777-byte
    // directory, and 777 + 1 + 237 + "_NNNNNN.ts" is 1025 bytes.
    let remote = service_on_s3(&redis, &s3, "dlv-names-s3", &[]);
    let deep = format!("{0}/{0}/{0}/{1}", "k".repeat(255), "k".repeat(9));
    let (status, body) = call(
        &remote.url,
        "Start",
        json!({"RecordURL": page,
               "Output": {"S3": {"TargetDir": deep, "TargetName": hls_name}, "Video": {"Muxer": "hls"}}}),
    );
    assert_eq!(
        (status, body["ErrorCode"].as_str()),
        (400, Some("InvalidParam")),
        "{body}"
    );
    let message = body["ErrorMessage"].as_str().unwrap();
    assert!(message.contains("1025 bytes"), "{message}");

    let d = finished(&local.url, &mp4);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let (name, size, url) = videos(&d).remove(0);
    assert_eq!(name, format!("{mp4}/{mp4_name}.mp4"));
    let (status, bytes) = get(&url);
    assert_eq!((status, bytes.len() as u64), (200, size));
    let file = local.dir.join("limit.mp4");
    std::fs::write(&file, &bytes).unwrap();
    assert_close(
        probe(&file, &[]).duration,
        2.0,
        0.15,
        "the MP4 at the name limit",
    );

    let d = finished(&local.url, &hls);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = videos(&d);
    assert_eq!(v[0].0, format!("limits/{hls_name}.m3u8"));
    let (_, text) = get(&v[0].2);
    let segments = playlist_segments(&d, &String::from_utf8(text).unwrap());
    assert!(!segments.is_empty(), "{d}");
    for segment in &segments {
        assert_eq!(segment.len(), 247, "{segment}");
    }
    let (ok, errors) = ffmpeg_decodes(&v[0].2);
    assert!(ok, "the playlist at {} plays: {errors}", v[0].2);
}

/// An HLS result named with characters that mean something in a URL (`?`, `#`, `%`, spaces,
/// CJK) plays from its FileURL: its playlist names the segments percent-encoded. Locally (served
/// under /files/) and from a bucket (through a CDN, the task's Domain).
#[test]
fn hls_names_with_url_characters_play() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let page = format!("{fixtures}/animated.html");
    let name = "50% done? #1 录";
    let local = service(&redis, "dlv-uri-local", true, 0, 2);
    let cdn = static_server(s3.data().join(s3_support::BUCKET));
    let remote = service_on_s3(&redis, &s3, "dlv-uri-s3", &[]);
    let output = |extra: Value| {
        let mut cos = json!({"TargetDir": "odd names", "TargetName": name});
        for (k, v) in extra.as_object().unwrap() {
            cos[k] = v.clone();
        }
        json!({"RecordURL": page, "MaxDurationLimit": 3,
               "Output": {"Cos": cos, "Video": {"Muxer": "hls"}}})
    };
    let here = start(&local.url, output(json!({})));
    let there = start(&remote.url, output(json!({"Domain": format!("{cdn}/pub")})));
    for (svc, id) in [(&local, &here), (&remote, &there)] {
        let d = finished(&svc.url, id);
        assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
        let v = videos(&d);
        assert_eq!(v[0].0, format!("odd names/{name}.m3u8"));
        let (status, playlist) = get(&v[0].2);
        assert_eq!(status, 200, "{}", v[0].2);
        let playlist = String::from_utf8(playlist).unwrap();
        assert!(
            playlist.contains("\n50%25%20done%3F%20%231%20%E5%BD%95_000000.ts\n"),
            "{playlist}"
        );
        let (ok, errors) = ffmpeg_decodes(&v[0].2);
        assert!(ok, "the playlist at {} plays: {errors}", v[0].2);
        assert!(probe_url(&v[0].2) > 2.0, "{}", v[0].2);
    }
}

/// A `Domain` without a scheme makes result URLs `http://` + Domain + `/` + key, for object
/// storage and local delivery alike (something in front of the bucket or the output directory
/// serves them: here a static server on each).
#[test]
fn a_domain_without_a_scheme_gives_http_urls_locally_and_in_the_bucket() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let page = format!("{fixtures}/static.html");
    let local = service(&redis, "dlv-domain-local", true, 0, 2);
    let remote = service_on_s3(&redis, &s3, "dlv-domain-s3", &[]);
    let local_cdn = root_server(local.out.clone());
    let bucket_cdn = root_server(s3.data().join(s3_support::BUCKET));
    let task = |svc: &Service, cdn: &str| {
        let domain = cdn.strip_prefix("http://").unwrap().to_string();
        let id = start(
            &svc.url,
            json!({"RecordURL": page, "MaxDurationLimit": 2,
                   "Output": {"Cos": {"TargetDir": "d", "TargetName": "a b", "Domain": domain}}}),
        );
        (id, cdn.to_string())
    };
    for (svc, (id, cdn)) in [
        (&local, task(&local, &local_cdn)),
        (&remote, task(&remote, &bucket_cdn)),
    ] {
        let d = finished(&svc.url, &id);
        assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
        let (name, size, url) = videos(&d).remove(0);
        assert_eq!(name, "d/a b.mp4");
        assert_eq!(url, format!("{cdn}/d/a%20b.mp4"));
        let (status, body) = get(&url);
        assert_eq!((status, body.len() as u64), (200, size), "{url}");
    }
}

/// Serves the files under `root` at `/<path>`.
fn root_server(root: std::path::PathBuf) -> String {
    use axum::extract::Path as UrlPath;
    use axum::routing::get;
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
                "/{*path}",
                get(move |UrlPath(path): UrlPath<String>| {
                    let file = root.join(path);
                    async move { std::fs::read(file).map_err(|_| axum::http::StatusCode::NOT_FOUND) }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Serves the files under `root` at `/pub/<path>` (a stand-in for a CDN in front of a bucket).
fn static_server(root: std::path::PathBuf) -> String {
    use axum::extract::Path as UrlPath;
    use axum::routing::get;
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
                "/pub/{*path}",
                get(move |UrlPath(path): UrlPath<String>| {
                    let file = root.join(path);
                    async move { std::fs::read(file).map_err(|_| axum::http::StatusCode::NOT_FOUND) }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// The key a [`key_server`] serves; `None`: 404.
type ServedKey = std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>;

/// Serves the HLS key at `/key` once one is set; 404 before.
fn key_server(key: ServedKey) -> String {
    use axum::routing::get;
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
                "/key",
                get(move || {
                    let key = key.lock().unwrap().clone();
                    async move { key.ok_or(axum::http::StatusCode::NOT_FOUND) }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/key", rx.recv().unwrap())
}

fn ffmpeg_decodes(url: &str) -> (bool, String) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn encrypted_hls_is_uploaded_whole_and_plays_only_with_the_key_from_auth_url() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let served = ServedKey::default();
    let auth_url = key_server(served.clone());
    // Players fetch segments relative to the playlist, so HLS from a private bucket is served
    // through a CDN (the task's Domain), as in production.
    let cdn = static_server(s3.data().join(s3_support::BUCKET));
    let svc = service_on_s3(&redis, &s3, "dlv-hls", &[]);
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 8,
            "Output": {
                "Video": { "Muxer": "hls", "EncryptKeyHex": KEY, "AuthUrl": auth_url },
                "Cos": { "Domain": format!("{cdn}/pub") },
            },
        }),
    );
    // Segments reach the bucket while the page is still being recorded, so that Stop leaves
    // only the last ones and the playlist to send.
    let task_dir = s3.data().join(s3_support::BUCKET).join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    let published = loop {
        let ts = count_files_ending(&task_dir, ".ts");
        if ts > 0 {
            break ts;
        }
        assert!(
            Instant::now() < deadline,
            "no segment was published while recording"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = describe(&svc.url, &id)["Status"].clone();
    assert_eq!(
        status, "recording",
        "{published} segment(s) were in the bucket before the recording ended"
    );
    let d = finished(&svc.url, &id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = videos(&d);
    let playlist = v
        .iter()
        .find(|(name, ..)| name.ends_with(".m3u8"))
        .unwrap_or_else(|| panic!("no playlist in {d}"));
    // The default names: <TaskID>/playlist.m3u8 and playlist_NNNNNN.ts beside it; only the
    // playlist is listed, with its number of segments.
    assert_eq!(playlist.0, format!("{id}/playlist.m3u8"));
    let (status, text) = get(&playlist.2);
    assert_eq!(status, 200, "{}", playlist.2);
    let text = String::from_utf8(text).unwrap();
    let stored = s3
        .object(s3_support::BUCKET, &playlist.0)
        .expect("in the bucket");
    assert_eq!(stored.len() as u64, playlist.1);
    let segments = playlist_segments(&d, &text);
    assert!(segments.len() >= 2, "{text}");
    let base = playlist.2.rsplit_once('/').unwrap().0;
    for file in &segments {
        let n = file.strip_prefix("playlist_").unwrap_or_default();
        assert!(n.len() == 9 && n.ends_with(".ts"), "{file}");
        let stored = s3
            .object(s3_support::BUCKET, &format!("{id}/{file}"))
            .expect("every segment is in the bucket");
        let (status, body) = get(&format!("{base}/{file}"));
        assert_eq!(status, 200, "{file}");
        assert_eq!(body, stored);
        assert_ne!(body[0], 0x47, "{file} must not be plain MPEG-TS");
    }
    assert!(
        text.contains(&format!("URI=\"{auth_url}\"")),
        "the playlist's key URI is AuthUrl: {text}"
    );
    // The key is not in the bucket, and without it nothing decodes...
    assert!(!v.iter().any(|(name, ..)| name.ends_with(".key")));
    let (ok, err) = ffmpeg_decodes(&playlist.2);
    assert!(!ok, "decoding without the key must fail");
    assert!(!err.is_empty());
    // ...with it (fetched by the player from AuthUrl), the whole recording plays.
    *served.lock().unwrap() = Some(hex::decode(KEY).unwrap());
    let (ok, err) = ffmpeg_decodes(&playlist.2);
    assert!(ok, "decoding with the key: {err}");
    let p = probe_url(&playlist.2);
    assert_close(p, 8.0, 0.2, "HLS duration from the bucket");
    assert_eq!(d["Muxer"], "hls");
}

fn probe_url(url: &str) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_storage_outage_at_upload_time_is_waited_out_and_nothing_is_deleted_early() {
    let redis = TestRedis::start();
    let mut s3 = TestS3::start();
    let fixtures = fixture_server();
    let svc = service_on_s3(
        &redis,
        &s3,
        "dlv-outage",
        &[("PAGECAST_S3_MAX_ATTEMPTS", "2")],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 }),
    );
    s3.stop();
    // The task reaches upload and stays there while storage is down, its files kept.
    wait_for(
        &svc.url,
        &id,
        "upload",
        Duration::from_secs(60),
        status_is("upload"),
    );
    let deliver = svc.dir.join("work").join(format!("{id}.deliver"));
    let held_since = Instant::now();
    while held_since.elapsed() < Duration::from_secs(4) {
        let d = describe(&svc.url, &id);
        assert_eq!(d["Status"], "upload", "waits for storage: {d}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        files_under(&deliver) > 0,
        "the deliverable is kept while storage is down"
    );
    s3.resume();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(
        d["Result"]["ErrorCode"].is_null(),
        "the outage did not fail the task: {d}"
    );
    let (name, size, url) = videos(&d).remove(0);
    assert_eq!(
        s3.object(s3_support::BUCKET, &name).map(|b| b.len() as u64),
        Some(size)
    );
    assert_eq!(get(&url).0, 200);
    assert!(!deliver.exists(), "removed once confirmed");
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn large_files_go_up_in_parts_and_errors_are_classified() {
    use pagecast::storage::credentials::{S3Clients, StorageCredentials};
    use pagecast::storage::s3::{ObjectStore, UploadSettings};
    use pagecast::storage::{StorageConfig, StorageError};

    let mut s3 = TestS3::start();
    let dir = scratch("dlv-multipart");
    let file = dir.join("big.bin");
    // 12 MiB of non-repeating bytes: three parts of 5 + 5 + 2 MiB.
    let data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let cfg = StorageConfig {
        s3_endpoint: Some(s3.endpoint.clone()),
        s3_bucket: Some(s3_support::BUCKET.into()),
        s3_path_style: true,
        ..StorageConfig::default()
    };
    let dest = cfg.destination(&Default::default()).unwrap();
    let creds = |secret: &str| StorageCredentials {
        access_key_id: s3_support::ACCESS_KEY.to_string().into(),
        secret_access_key: secret.to_string().into(),
        session_token: None,
    };
    let settings = UploadSettings {
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        max_attempts: 2,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = ObjectStore::with_clients(
        S3Clients::with_keys(&creds(s3_support::SECRET_KEY)),
        dest.clone(),
        settings,
    );
    let up = rt
        .block_on(store.upload_file(&file, "big/file.bin"))
        .expect("multipart upload");
    assert_eq!(up.parts, 3);
    assert_eq!(up.bytes, data.len() as u64);
    assert!(
        s3.object(s3_support::BUCKET, "big/file.bin").as_deref() == Some(&data[..]),
        "stored byte for byte"
    );

    // A wrong secret is the operator's problem: not worth retrying.
    let bad = ObjectStore::with_clients(
        S3Clients::with_keys(&creds("wrong")),
        dest.clone(),
        settings,
    );
    let e = rt
        .block_on(bad.upload_file(&file, "big/other.bin"))
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(matches!(e, StorageError::Request { .. }), "{e}");
    // An unreachable server may come back: retryable.
    s3.stop();
    let e = rt
        .block_on(store.upload_file(&file, "big/again.bin"))
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[test]
fn callbacks_survive_a_receiver_outage_and_give_up_only_after_the_retry_period() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    // A port where nothing listens yet (held, so no other process takes it): the receiver comes
    // up later.
    let late = ReservedPort::new();
    let late_port = late.port;
    let never = CallbackReceiver::start();
    let svc = service_with(
        &redis,
        "dlv-callback",
        true,
        0,
        2,
        &[
            ("PAGECAST_CALLBACK_SECRET", "s3cret"),
            ("PAGECAST_CALLBACK_BACKOFF_MS", "500"),
            ("PAGECAST_CALLBACK_MAX_BACKOFF_SECONDS", "2"),
            ("PAGECAST_CALLBACK_RETRY_SECONDS", "6"),
        ],
    );
    let late_id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2,
                "CallbackURL": format!("http://127.0.0.1:{late_port}/ok") }),
    );
    let fail_id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2,
                "CallbackURL": format!("{}/fail", never.url) }),
    );

    // Receiver down: the delivery waits in the outbox, visible in Describe.
    let d = wait_for(
        &svc.url,
        &late_id,
        "a failed attempt",
        Duration::from_secs(60),
        // The attempt is counted (stored) before it is sent; it has failed once its error is
        // recorded.
        |d| {
            d["Callback"]["Attempts"].as_u64().unwrap_or(0) >= 1
                && d["Callback"]["LastError"].is_string()
        },
    );
    assert_eq!(d["Status"], "callback", "{d}");
    assert_eq!(d["Callback"]["State"], "pending", "{d}");
    assert!(
        d["Callback"]["LastError"]
            .as_str()
            .unwrap_or("")
            .contains("request failed"),
        "{d}"
    );
    let event_id = d["Callback"]["EventID"].as_str().unwrap().to_string();
    let receiver = CallbackReceiver::start_on(late);
    let d = finished(&svc.url, &late_id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(d["Callback"]["State"], "delivered", "{d}");
    let got = receiver.received();
    assert_eq!(got.len(), 1, "delivered exactly once");
    let delivery = &got[0];
    assert_eq!(
        delivery.signature.as_deref(),
        Some(pagecast::pipeline::callback::signature(b"s3cret", &delivery.body).as_str()),
        "the signature is the HMAC-SHA256 of the body"
    );
    assert_eq!(delivery.event_id.as_deref(), Some(event_id.as_str()));
    let sent: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(sent["TaskID"], late_id.as_str());
    // As web-record posts it: the task in status callback, with its finish time.
    assert_eq!(sent["Status"], "callback");
    assert_eq!(sent["FinishTime"], d["FinishTime"], "{sent}\n{d}");
    assert!(!sent["Result"]["Videos"].as_array().unwrap().is_empty());

    // A receiver that never accepts: retried with backoff until the period is spent.
    let d = finished(&svc.url, &fail_id);
    assert_eq!(d["Result"]["ErrorCode"], "CallbackFailed", "{d}");
    assert_eq!(d["Callback"]["State"], "failed", "{d}");
    let attempts = d["Callback"]["Attempts"].as_u64().unwrap();
    assert!(attempts >= 3, "retried: {d}");
    assert_eq!(d["Stats"]["CallbackAttempts"].as_u64(), Some(attempts));
    let tried = never.received();
    assert_eq!(tried.len() as u64, attempts);
    assert!(
        tried.iter().all(|t| t.event_id == tried[0].event_id),
        "one event id across retries"
    );
    assert!(
        !d["Result"]["Videos"].as_array().unwrap().is_empty(),
        "the files are still there: {d}"
    );
}

/// URL credentials and query values never reach the logs, Describe or the callback: a task whose
/// RecordURL (`user:secret@`, `?token=`) fails to load and whose CallbackURL (`?sig=`) fails,
/// once answered 500 and once refused; the service logs at debug level.
#[test]
fn url_secrets_reach_no_log_no_describe_and_no_callback() {
    let redis = TestRedis::start();
    let receiver = CallbackReceiver::start();
    // Held (bound, not listening): connections are refused and no other process takes it.
    let closed_port = ReservedPort::new();
    let closed = closed_port.port;
    let svc = service_with(
        &redis,
        "dlv-redact",
        true,
        0,
        2,
        &[
            ("PAGECAST_CALLBACK_BACKOFF_MS", "200"),
            ("PAGECAST_CALLBACK_ATTEMPTS", "2"),
        ],
    );
    let secrets = ["pw-7Q2x", "tok-9Zr4", "sig-4Kd8", "sig-8Hn3"];
    let page = format!("http://rec:pw-7Q2x@127.0.0.1:{closed}/room?token=tok-9Zr4&role=rec#frag");
    let answered = start(
        &svc.url,
        json!({"RecordURL": page, "CallbackURL": format!("{}/fail?sig=sig-4Kd8", receiver.url)}),
    );
    let refused = start(
        &svc.url,
        json!({"RecordURL": page, "CallbackURL": format!("http://127.0.0.1:{closed}/cb?sig=sig-8Hn3")}),
    );
    let mut shown = String::new();
    for id in [&answered, &refused] {
        let d = finished(&svc.url, id);
        assert_eq!(d["Result"]["ErrorCode"], "PageLoadFailed", "{d}");
        assert_eq!(d["Callback"]["State"], "failed", "{d}");
        shown.push_str(&d.to_string());
    }
    // The failures are described, with the URLs in their redacted form.
    assert!(shown.contains("token=***"), "{shown}");
    assert!(
        shown.contains("sig=***"),
        "the refused callback's error names its URL: {shown}"
    );
    let deliveries = receiver.received();
    assert_eq!(
        deliveries.len(),
        2,
        "two attempts at the answering receiver"
    );
    for delivery in &deliveries {
        shown.push_str(&String::from_utf8_lossy(&delivery.body));
    }
    let mut logs = String::new();
    for entry in std::fs::read_dir(&svc.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(
        logs.contains("PageLoadFailed") || logs.contains("could not load"),
        "{logs}"
    );
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "{secret} in Describe or a callback: {shown}"
        );
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{secret} in the log: {line}");
        }
    }
}

#[test]
fn a_generated_key_goes_only_to_the_callback_receiver_and_decrypts_the_result() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let receiver = CallbackReceiver::start();
    let served = ServedKey::default();
    let auth_url = key_server(served.clone());
    let svc = service(&redis, "dlv-genkey", true, 0, 1);
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/animated.html"),
            "MaxDurationLimit": 3,
            "CallbackURL": format!("{}/ok", receiver.url),
            "Output": { "Video": { "Muxer": "hls", "GenerateKey": true, "AuthUrl": auth_url } },
        }),
    );
    let d = finished(&svc.url, &id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert!(
        d.get("EncryptKey").is_none() && d.get("EncryptKeyHex").is_none(),
        "Describe never shows the key: {d}"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let key = body["EncryptKeyHex"]
        .as_str()
        .unwrap_or_else(|| panic!("the callback carries the key: {body}"))
        .to_string();
    assert_eq!(key.len(), 32);
    let playlist = videos(&d)
        .into_iter()
        .find(|(name, ..)| name.ends_with(".m3u8"))
        .unwrap();
    let (ok, _) = ffmpeg_decodes(&playlist.2);
    assert!(!ok, "encrypted: no key, no picture");
    *served.lock().unwrap() = Some(hex::decode(&key).unwrap());
    let (ok, err) = ffmpeg_decodes(&playlist.2);
    assert!(ok, "the generated key decrypts the result: {err}");
    assert!(
        !std::fs::read_to_string(svc.dir.join("serve.log"))
            .unwrap()
            .contains(&key),
        "the key is never logged"
    );
}

/// `StorageType: s3`: the intermediate media goes to the bucket while recording, so when the
/// machine recording a task is lost, a worker on another machine continues the same task into
/// the same output.
#[test]
fn with_storage_type_s3_a_worker_on_another_machine_continues_a_lost_recording() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let mut env = s3_env(&s3, &[]);
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    let env_refs: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The API alone; each "machine" is a worker with its own node id and work directory.
    let svc = service_with(&redis, "dlv-machine-lost", false, 0, 1, &env_refs);
    let machine = |name: &str| {
        let mut e: Vec<(&str, String)> = svc
            .worker_env
            .iter()
            .filter(|(k, _)| !matches!(*k, "PAGECAST_NODE_ID" | "PAGECAST_WORK_DIR"))
            .cloned()
            .collect();
        e.push(("PAGECAST_NODE_ID", name.to_string()));
        e.push((
            "PAGECAST_WORK_DIR",
            svc.dir.join(format!("work-{name}")).display().to_string(),
        ));
        spawn(&["worker"], &e, &svc.dir.join(format!("{name}.log")))
    };
    let a = machine("machine-a");
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html"), "StorageType": "s3" }),
    );
    let b = machine("machine-b");
    let work_prefix = s3
        .data()
        .join(s3_support::BUCKET)
        .join(format!("pagecast-work/{id}"));
    let mirrored = || -> Vec<String> {
        std::fs::read_dir(&work_prefix)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Segments, their list and the timeline reach the bucket while the recording goes on.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let names = mirrored();
        if names.iter().filter(|n| n.ends_with(".ts")).count() >= 2
            && names.iter().any(|n| n.starts_with("segments-"))
            && names.iter().any(|n| n == "timeline.csv")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no intermediate media in the bucket: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Machine A is lost: its worker dies with everything it started.
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-KILL", &a.child.id().to_string()])
        .status()
        .unwrap();
    let d = wait_for(
        &svc.url,
        &id,
        "machine B continuing",
        Duration::from_secs(60),
        |d| d["Stats"]["Gaps"].as_array().is_some_and(|g| !g.is_empty()),
    );
    assert_eq!(d["Status"], "recording", "{d}");
    let taken_over_in = killed_at.elapsed();
    std::thread::sleep(Duration::from_secs(4));
    ok(&svc.url, "Stop", &id);
    let d = finished(&svc.url, &id);
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = videos(&d);
    assert_eq!(v.len(), 1, "{d}");
    let gap = d["Stats"]["Gaps"][0]["Seconds"].as_f64().unwrap();
    let kept_until = d["Stats"]["Gaps"][0]["Time"].as_f64().unwrap();
    assert!(
        kept_until > d["StartTime"].as_f64().unwrap() + 1.0,
        "machine A's media was kept: {d}"
    );
    let (status, body) = get(&v[0].2);
    assert_eq!(status, 200);
    let file = scratch("dlv-machine-lost-dl").join("result.mp4");
    std::fs::write(&file, body).unwrap();
    let p = probe(&file, &[]);
    let span = page_clock_span(&file, p.frames);
    eprintln!(
        "machine lost: taken over after {taken_over_in:?}, gap {gap:.3} s, video {:.3} s, page span {span:.3} s",
        p.duration
    );
    assert!(
        p.duration > 4.0,
        "media from both machines: {} s",
        p.duration
    );
    assert_close(
        span,
        p.duration + gap,
        0.5,
        "page time = video + reported gap",
    );
    // The intermediate copy is gone once the result is made.
    let left = mirrored();
    assert!(
        left.is_empty(),
        "intermediate media left in the bucket: {left:?}"
    );
    drop(b);
}
