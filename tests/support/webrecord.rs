//! A client of the service written the way web-record's own clients are (its `demo.js` and
//! `request.js`): requests, and the answers read as they read them; and the client's own web
//! server (its pages, its HLS key server, what pages report). For `tests/webrecord_client.rs`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::redis_support::TestRedis;
use super::service_support::*;
use super::spec_support::SPEC;

/// pagecast's default behaviour, or `PAGECAST_COMPAT=web-record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Compat,
}

/// A running service and a web-record client of it.
pub struct WebRecord {
    pub svc: Service,
    pub mode: Mode,
}

pub fn webrecord(redis: &TestRedis, name: &str, mode: Mode, capacity: usize) -> WebRecord {
    webrecord_with(redis, name, mode, capacity, &[])
}

/// [`webrecord`] with extra settings.
pub fn webrecord_with(
    redis: &TestRedis,
    name: &str,
    mode: Mode,
    capacity: usize,
    extra: &[(&'static str, &str)],
) -> WebRecord {
    let mut env: Vec<(&'static str, &str)> = extra.to_vec();
    if mode == Mode::Compat {
        env.push(("PAGECAST_COMPAT", "web-record"));
    }
    let svc = service_with(redis, name, true, 0, capacity, &env);
    WebRecord { svc, mode }
}

/// An answer: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body's `ErrorCode`, if it is an error (the way web-record clients tell).
    pub fn error_code(&self) -> Option<&str> {
        self.body["ErrorCode"].as_str()
    }
}

impl WebRecord {
    /// `POST /record` as web-record's request helper sends it.
    pub fn post(&self, action: &str, data: Value) -> Answer {
        let body = json!({ "Action": action, "Data": data }).to_string();
        // The API gateway's signature headers: shaped like the helper's, never checked here.
        let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(&digest[..32]);
        let date = "Mon, 07 Dec 2026 10:00:00 GMT";
        let authorization = format!(
            "hmac id=\"AKIDexample\", algorithm=\"hmac-sha1\", headers=\"x-date\", signature=\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(&digest[32..52])
        );
        let (rt, client) = http();
        rt.block_on(async {
            let r = client
                .post(format!("{}/record", self.svc.url))
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .header("x-date", date)
                .header("Authorization", authorization)
                .header("Content-MD5", content_md5)
                .body(body)
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .expect("POST /record");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.expect("read the body");
            // Every answer, success or error in either mode, as the spec declares it.
            let errs = SPEC.check_response("/record", "post", status, &headers, &bytes);
            assert!(
                errs.is_empty(),
                "{action}: HTTP {status} {}\ndoes not conform to api-spec/openapi.yaml:\n  {}",
                String::from_utf8_lossy(&bytes),
                errs.join("\n  ")
            );
            let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
            Answer { status, body }
        })
    }

    /// An action that must succeed: HTTP 200 without `ErrorCode`.
    pub fn ok(&self, action: &str, data: Value) -> Value {
        let a = self.post(action, data);
        assert!(
            a.status == 200 && a.error_code().is_none(),
            "{action} failed: HTTP {} {}",
            a.status,
            a.body
        );
        a.body
    }

    /// An action that must fail with `code` (in default mode) or `compat_code` (web-record's
    /// name, answered with HTTP 200, in compatibility mode).
    pub fn refused(&self, action: &str, data: Value, code: &str, compat_code: &str) -> Value {
        let a = self.post(action, data);
        match self.mode {
            Mode::Default => {
                assert!(a.status >= 400, "{action}: HTTP {} {}", a.status, a.body);
                assert_eq!(a.error_code(), Some(code), "{action}: {}", a.body);
            }
            Mode::Compat => {
                assert_eq!(a.status, 200, "{action}: {}", a.body);
                assert_eq!(a.error_code(), Some(compat_code), "{action}: {}", a.body);
            }
        }
        assert!(a.body["ErrorMessage"].as_str().is_some(), "{}", a.body);
        a.body
    }

    /// Start as `request.js` sends it, with `extra` fields merged into `Data`.
    pub fn start(&self, record_url: &str, extra: Value) -> String {
        let mut data = json!({
            "RecordURL": record_url,
            "Width": 1280,
            "Height": 720,
            "CallbackURL": "",
            "MaxDurationLimit": 36000,
        });
        for (k, v) in extra.as_object().expect("extra fields") {
            data[k] = v.clone();
        }
        let body = self.ok("Start", data);
        body["TaskID"]
            .as_str()
            .unwrap_or_else(|| panic!("no TaskID: {body}"))
            .to_string()
    }

    pub fn describe(&self, id: &str) -> Value {
        let d = self.ok("Describe", json!({ "TaskID": id }));
        assert_eq!(d["TaskID"], id, "{d}");
        d
    }

    /// Polls Describe until `pred` holds.
    pub fn wait(
        &self,
        id: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let d = self.describe(id);
            if pred(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last Describe: {d}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_status(&self, id: &str, status: &'static str, limit: Duration) -> Value {
        self.wait(id, status, limit, move |d| d["Status"] == status)
    }
}

/// The callbacks `receiver` got so far, each checked against the spec's callback body (the task
/// as Describe shows it) and parsed.
pub fn callbacks(receiver: &CallbackReceiver) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .map(|d| {
            let errs = SPEC.check_callback(&d.body);
            assert!(
                errs.is_empty(),
                "callback {}\ndoes not conform to api-spec/openapi.yaml:\n  {}",
                String::from_utf8_lossy(&d.body),
                errs.join("\n  ")
            );
            assert!(
                d.event_id.is_some(),
                "the callback has its X-Pagecast-Event-Id"
            );
            serde_json::from_slice(&d.body).expect("a JSON callback body")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The client's own web server: the pages it records, its key server, and what pages report
// ---------------------------------------------------------------------------------------------

/// A request the app server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub user_agent: String,
}

/// Serves `tests/fixtures/*` under `/pages/`, the HLS key (16 bytes) under `/key`, an empty
/// answer after `ms` milliseconds under `/delay?ms=<ms>` (a slow resource), and records every
/// request, so pages can report to `/report?...` what they saw.
pub struct AppServer {
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl AppServer {
    pub fn start(key: &'static [u8; 16]) -> AppServer {
        use axum::extract::{Path as UrlPath, RawQuery};
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::response::IntoResponse;
        use axum::routing::get;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
        let log = seen.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let record = move |path: String, query: Option<String>, headers: &HeaderMap| {
                    let user_agent = headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    log.lock().unwrap().push(Seen {
                        path,
                        query: query.unwrap_or_default(),
                        user_agent,
                    });
                };
                let (r1, r2, r3, r4) = (record.clone(), record.clone(), record.clone(), record);
                let app = axum::Router::new()
                    .route(
                        "/pages/{file}",
                        get(
                            move |UrlPath(file): UrlPath<String>,
                                  RawQuery(q): RawQuery,
                                  headers: HeaderMap| async move {
                                r1(format!("/pages/{file}"), q, &headers);
                                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                                    .join("tests/fixtures")
                                    .join(&file);
                                match std::fs::read(&path) {
                                    Ok(body) if !file.contains("..") => (
                                        StatusCode::OK,
                                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                                        body,
                                    )
                                        .into_response(),
                                    _ => StatusCode::NOT_FOUND.into_response(),
                                }
                            },
                        ),
                    )
                    .route(
                        "/key",
                        get(
                            move |RawQuery(q): RawQuery, headers: HeaderMap| async move {
                                r2("/key".into(), q, &headers);
                                (
                                    [(header::CONTENT_TYPE, "application/octet-stream")],
                                    key.to_vec(),
                                )
                            },
                        ),
                    )
                    .route(
                        "/delay",
                        get(
                            move |RawQuery(q): RawQuery, headers: HeaderMap| async move {
                                let ms: u64 = q
                                    .as_deref()
                                    .and_then(|q| q.strip_prefix("ms="))
                                    .and_then(|ms| ms.parse().ok())
                                    .unwrap_or(0);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                r4("/delay".into(), q, &headers);
                                StatusCode::NO_CONTENT
                            },
                        ),
                    )
                    .route(
                        "/report",
                        get(
                            move |RawQuery(q): RawQuery, headers: HeaderMap| async move {
                                r3("/report".into(), q, &headers);
                                StatusCode::NO_CONTENT
                            },
                        ),
                    );
                axum::serve(listener, app).await.unwrap();
            });
        });
        AppServer {
            url: format!("http://{}", rx.recv().unwrap()),
            seen,
        }
    }

    pub fn page(&self, file: &str) -> String {
        format!("{}/pages/{file}", self.url)
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

pub fn get(url: &str) -> (u16, Vec<u8>) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client.get(url).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body").to_vec())
    })
}

/// The HLS result of a finished task: its playlist's URL and text.
pub fn playlist_of(d: &Value) -> (String, String) {
    let videos = d["Result"]["Videos"].as_array().expect("Result.Videos");
    let playlist = videos
        .iter()
        .find(|v| v["Filename"].as_str().unwrap_or("").ends_with(".m3u8"))
        .unwrap_or_else(|| panic!("no playlist in {d}"));
    let url = playlist["FileURL"].as_str().unwrap().to_string();
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{url}");
    (url, String::from_utf8(body).expect("a text playlist"))
}

pub fn ffmpeg_decodes(url: &str) -> (bool, String) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A stand-in for the CDN a web-record client names as `Output.Cos.Domain`: serves the files
/// under `root` (a bucket's directory) at `/<key>`; returns its `host:port`, without a scheme.
pub fn cdn(root: std::path::PathBuf) -> String {
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
                "/{*key}",
                get(move |UrlPath(key): UrlPath<String>| {
                    let file = root.join(&key);
                    async move {
                        if key.split('/').any(|part| part == "..") {
                            return Err(axum::http::StatusCode::NOT_FOUND);
                        }
                        std::fs::read(file).map_err(|_| axum::http::StatusCode::NOT_FOUND)
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap().to_string()
}
