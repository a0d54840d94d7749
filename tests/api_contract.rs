//! The HTTP Action API against its wire contract (`/work/shared/reference/api.md`) and its spec
//! (`api-spec/openapi.yaml`), in-process: the real router on a real socket, spoken to with reqwest,
//! backed by a real `redis-server` (one per test). No worker runs, so tasks stay `normal` unless a
//! test moves them with `TaskStore::transition`, as a worker would.
//!
//! Every answer of `POST /` is checked against the spec: declared status, declared content type,
//! the `X-Request-ID` header (equal to the body's `RequestID`), every body key a declared property,
//! every required property present, types, enums (so `ErrorCode` is one of the spec's codes) and
//! the code's HTTP status as listed in the spec's table.

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/spec.rs"]
mod spec_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagecast::api::guard::Tokens;
use pagecast::api::layers::HttpPolicy;
use pagecast::api::routes::{ApiState, app};
use pagecast::api::start::StartLimits;
use pagecast::command::Command as ControlMsg;
use pagecast::delivery::signed_url::UrlSigner;
use pagecast::task::store::{Claim, TaskStore, TimeField, Transition};
use pagecast::task::{Status, TaskResult, TaskStats, Video};
use redis_support::TestRedis;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use spec_support::SPEC;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An AES-128 key in mixed case: neither spelling may ever come back in a response.
const KEY: &str = "0123456789AbCdEf0123456789aBcDeF";
const PAGE: &str = "https://example.org/page";

/// The key the test servers sign result URLs with.
const SIGNING_KEY: &[u8] = b"api-contract-signing-key-0123456789";

fn signer() -> UrlSigner {
    UrlSigner::new(SIGNING_KEY, Duration::from_secs(3600))
}

fn tokens(list: &[&str]) -> Tokens {
    Tokens(Arc::new(list.iter().map(|t| t.to_string()).collect()))
}

// ---------------------------------------------------------------------------------------------
// The API spec, as a small validator (tests/support/spec.rs)
// ---------------------------------------------------------------------------------------------

#[test]
fn the_spec_validator_catches_what_it_should() {
    let spec = &*SPEC;
    let schema = json!({"$ref": "#/components/schemas/ErrorResponse"});
    let mut errs = Vec::new();
    spec.validate(
        &schema,
        &json!({"ErrorCode": "InvalidParam", "ErrorMessage": "m", "RequestID": "r"}),
        "body",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
    for bad in [
        json!({"ErrorCode": "Exploded", "ErrorMessage": "m", "RequestID": "r"}),
        json!({"ErrorCode": "InvalidParam", "RequestID": "r"}),
        json!({"ErrorCode": "InvalidParam", "ErrorMessage": "m", "RequestID": "r", "Extra": 1}),
        json!({"ErrorCode": "InvalidParam", "ErrorMessage": 5, "RequestID": "r"}),
    ] {
        let mut errs = Vec::new();
        spec.validate(&schema, &bad, "body", &mut errs);
        assert!(!errs.is_empty(), "{bad} passed");
    }
    let describe = json!({"$ref": "#/components/schemas/DescribeResponse"});
    let mut errs = Vec::new();
    spec.validate(
        &describe,
        &json!({"TaskID": "not-a-uuid", "RequestID": "r", "Status": "sleeping", "CreateTime": 1}),
        "body",
        &mut errs,
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    // A Describe answer matches exactly one of the 200 answers, as a client's JSON Schema
    // validator (objects open by default) decides it; so does Start's.
    let ok_answer = SPEC.deref(&SPEC.root["paths"]["/"]["post"]["responses"]["200"]);
    let answers = ok_answer["content"]["application/json"]["schema"].clone();
    for ok in [
        json!({"TaskID": "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f", "RequestID": "r"}),
        json!({"TaskID": "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f", "RequestID": "r",
               "Status": "normal", "CreateTime": 1, "Restarts": 0, "Muxer": "mp4"}),
    ] {
        let mut errs = Vec::new();
        spec.validate(&answers, &ok, "body", &mut errs);
        assert!(errs.is_empty(), "{ok}: {errs:?}");
    }
    assert_eq!(SPEC.http_of_code.get("InvalidState"), Some(&409));
}

// ---------------------------------------------------------------------------------------------
// An API server on a socket, and a client for it
// ---------------------------------------------------------------------------------------------

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    fn request_id(&self) -> &str {
        self.json["RequestID"].as_str().unwrap_or("")
    }
}

struct Api {
    base: String,
    addr: SocketAddr,
    client: reqwest::Client,
    store: TaskStore,
    out_dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
    _out: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn unique_prefix() -> String {
    format!("ac-{}:", uuid::Uuid::new_v4().simple())
}

async fn connect(redis: &TestRedis) -> TaskStore {
    TaskStore::connect(&redis.url, &unique_prefix())
        .await
        .expect("connect to the test redis-server")
}

/// Serves `app()` on 127.0.0.1:0 with a fresh store; `tune` adjusts the state first.
async fn serve(redis: &TestRedis, tune: impl FnOnce(&mut ApiState)) -> Api {
    let store = connect(redis).await;
    let out = tempfile::Builder::new()
        .prefix("pagecast-api-contract-")
        .tempdir()
        .expect("temporary directory");
    let out_dir = out.path().join("out");
    std::fs::create_dir(&out_dir).expect("create the output directory");
    let mut state = ApiState {
        store: store.clone(),
        tokens: Tokens::default(),
        max_queued: 1000,
        limits: StartLimits::default(),
        output_dir: out_dir.clone(),
        // The tests' pages live on loopback; the guard itself is tested separately below.
        url_policy: pagecast::url_guard::UrlPolicy {
            allow_private: true,
            ..Default::default()
        },
        readiness: pagecast::ops::health::Readiness::redis_only(store.clone()),
        signer: signer(),
        http: HttpPolicy::default(),
    };
    tune(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let router = app(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client");
    Api {
        base: format!("http://{addr}"),
        addr,
        client,
        store,
        out_dir,
        server,
        _out: out,
    }
}

impl Api {
    /// POSTs raw bytes to `/` with this `Authorization` header, and checks the answer against the
    /// spec (and the contract's JSON, Content-Type and X-Request-ID rules).
    async fn post_raw(&self, body: impl Into<Vec<u8>>, auth: Option<&str>) -> Reply {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        self.post_with("/", body, &headers).await
    }

    /// POSTs raw bytes to `path` (`/` or `/record`) with exactly these headers, and checks the
    /// answer as [`Self::post_raw`] does.
    async fn post_with(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .body(body.into());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("read the body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("HTTP {status}: the body is not JSON ({e}): {text:?}"));
        assert_ne!(status, 500, "an InternalError (a bug): {text}");
        let errs = SPEC.check_response(path, "post", status, &headers, &bytes);
        assert!(
            errs.is_empty(),
            "HTTP {status} {text}\ndoes not conform to api-spec/openapi.yaml:\n  {}",
            errs.join("\n  ")
        );
        let request_id = json["RequestID"].as_str().unwrap_or("");
        assert!(!request_id.is_empty(), "no RequestID: {text}");
        assert_eq!(
            headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some(request_id),
            "X-Request-ID must equal RequestID: {text}"
        );
        let ctype = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ctype.starts_with("application/json"),
            "Content-Type {ctype:?}"
        );
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    async fn post(&self, body: &Value) -> Reply {
        self.post_raw(body.to_string(), None).await
    }

    async fn action(&self, action: &str, data: Value) -> Reply {
        self.post(&json!({"Action": action, "Data": data})).await
    }

    async fn on_task(&self, action: &str, id: &str) -> Reply {
        self.action(action, json!({"TaskID": id})).await
    }

    /// Starts a task (asserting success) and returns its TaskID.
    async fn start(&self, data: Value) -> String {
        let r = self.action("Start", data).await;
        assert_eq!(r.status, 200, "Start failed: {}", r.text);
        let id = r.json["TaskID"].as_str().expect("TaskID").to_owned();
        uuid::Uuid::parse_str(&id).expect("TaskID is a UUID");
        id
    }

    async fn start_page(&self) -> String {
        self.start(json!({"RecordURL": PAGE})).await
    }

    async fn describe(&self, id: &str) -> Value {
        let r = self.on_task("Describe", id).await;
        assert_eq!(r.status, 200, "Describe failed: {}", r.text);
        assert_eq!(r.json["TaskID"], id);
        r.json
    }

    async fn status_of(&self, id: &str) -> String {
        self.describe(id).await["Status"]
            .as_str()
            .expect("Status")
            .to_owned()
    }

    /// Moves the task as a worker would.
    async fn move_task(&self, id: &str, t: Transition) {
        let (from, to) = (t.from(), t.to());
        self.store
            .transition(id, t)
            .await
            .unwrap_or_else(|e| panic!("transition {from} -> {to}: {e}"));
    }

    async fn begin_recording(&self, id: &str) {
        self.move_task(
            id,
            Transition::new(Status::Normal, Status::Recording).with_time(TimeField::Start, now()),
        )
        .await;
    }

    async fn controls(&self, id: &str) -> Vec<ControlMsg> {
        self.store
            .read_controls(id, "0", 0)
            .await
            .expect("read the control stream")
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// A GET with a request target sent exactly as given (no client-side normalisation of `..`).
    async fn raw_get(&self, target: &str) -> RawReply {
        self.raw_get_with(target, &[]).await
    }

    /// [`Self::raw_get`] with extra headers.
    async fn raw_get_with(&self, target: &str, headers: &[(&str, &str)]) -> RawReply {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        read_raw_reply(stream).await
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

struct RawReply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn read_raw_reply(mut stream: tokio::net::TcpStream) -> RawReply {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers within 10 s")
        .expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("name"),
                reqwest::header::HeaderValue::from_str(value.trim()).expect("value"),
            );
        }
    }
    let chunked = headers
        .get(reqwest::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = out;
    }
    RawReply {
        status,
        headers,
        body,
    }
}

/// Asserts an error answer: HTTP status, ErrorCode, and a message naming `field` (as a word:
/// followed by a space, or at the end).
fn assert_error(r: &Reply, status: u16, code: &str, field: &str) {
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (status, Some(code)),
        "expected {status} {code} naming {field}, got {}",
        r.text
    );
    let message = r.json["ErrorMessage"].as_str().expect("ErrorMessage");
    assert!(
        message.contains(&format!("{field} ")) || message.ends_with(field),
        "the message should name {field}: {message:?}"
    );
    assert_eq!(
        r.json.as_object().map(|o| o.len()),
        Some(3),
        "the error body is exactly ErrorCode, ErrorMessage, RequestID: {}",
        r.text
    );
}

/// A Start body with `extra` merged into a minimal valid Data.
fn start_with(extra: Value) -> Value {
    let mut data = json!({"RecordURL": PAGE});
    for (k, v) in extra.as_object().expect("an object") {
        data[k] = v.clone();
    }
    json!({"Action": "Start", "Data": data})
}

// ---------------------------------------------------------------------------------------------
// Start and Describe
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn start_answers_a_task_id_and_describe_shows_the_new_task() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;

    let before = now();
    let r = api
        .post(&json!({"Action": "Start", "Data": {"RecordURL": PAGE}}))
        .await;
    let after = now();
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json.as_object().expect("an object");
    assert_eq!(
        body.keys().map(String::as_str).collect::<Vec<_>>(),
        ["RequestID", "TaskID"],
        "Start answers exactly TaskID and RequestID: {}",
        r.text
    );
    let id = r.json["TaskID"].as_str().expect("TaskID").to_owned();
    uuid::Uuid::parse_str(&id).expect("TaskID is a UUID");
    assert_eq!(
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some(r.request_id())
    );

    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "normal");
    let created = d["CreateTime"].as_i64().expect("CreateTime is an integer");
    assert!(
        (before..=after).contains(&created),
        "CreateTime {created} not in [{before}, {after}]"
    );
    for absent in [
        "StartTime",
        "CancelTime",
        "StopTime",
        "FinishTime",
        "Result",
    ] {
        assert!(d.get(absent).is_none(), "{absent} of a new task: {d}");
    }
    for hidden in [
        "RecordURL",
        "CallbackURL",
        "EncryptKey",
        "AuthUrl",
        "Output",
    ] {
        assert!(
            d.get(hidden).is_none(),
            "{hidden} must not be returned: {d}"
        );
    }
    assert!(!d.to_string().contains("example.org/page"), "{d}");
    assert_eq!(d["Muxer"], "mp4");

    // Every request gets its own RequestID; the task is durably there for the next request.
    let again = api.on_task("Describe", &id).await;
    assert_ne!(again.request_id(), d["RequestID"].as_str().unwrap());
    let second = api.start_page().await;
    assert_ne!(second, id);

    // A TaskID is accepted in upper case and with surrounding spaces, and answered canonically.
    let r = api
        .on_task("Describe", &format!(" {} ", id.to_uppercase()))
        .await;
    assert_eq!(
        (r.status, r.json["TaskID"].as_str()),
        (200, Some(id.as_str()))
    );
}

#[tokio::test]
async fn user_context_is_echoed_and_secrets_never_come_back() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let context = "{\"lesson\":7,\"note\":\"字\"}";
    let auth_url = "https://keys.example.org/hls/key?sig=abc";

    let mut texts = Vec::new();
    let r = api
        .post(&start_with(json!({
            "UserContext": context,
            "Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": auth_url}},
        })))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["TaskID"].as_str().unwrap().to_owned();
    texts.push(r.text);
    // The key (its first 16 bytes, as in the source product) is kept apart from the task.
    let secrets = api.store.secrets(&id).await.expect("secrets");
    assert_eq!(
        secrets.encrypt_key.as_deref(),
        Some(hex::encode(&KEY.as_bytes()[..16]).as_str())
    );

    let d = api.describe(&id).await;
    assert_eq!(d["UserContext"], context);
    assert_eq!(d["Muxer"], "hls");
    assert!(
        d.get("AuthUrl").is_none() && d.get("EncryptKey").is_none(),
        "{d}"
    );
    texts.push(d.to_string());

    // Through the task's life, and in every error about the key, the key never appears.
    api.begin_recording(&id).await;
    for action in ["Pause", "Resume", "Refresh", "Stop", "Describe"] {
        texts.push(api.on_task(action, &id).await.text);
    }
    let video = |v: Value| start_with(json!({"Output": {"Video": v}}));
    let key_errors = [
        (
            video(json!({"Muxer": "mp4", "EncryptKey": KEY, "AuthUrl": auth_url})),
            "Data.Output.Video.EncryptKey",
        ),
        (
            video(json!({"Muxer": "hls", "EncryptKey": KEY})),
            "Data.Output.Video.AuthUrl",
        ),
        (
            video(json!({"Muxer": "hls", "EncryptKey": &KEY[..15], "AuthUrl": auth_url})),
            "Data.Output.Video.EncryptKey",
        ),
        (
            video(
                json!({"Muxer": "hls", "EncryptKeyHex": format!("{}zz", &KEY[..30]), "AuthUrl": auth_url}),
            ),
            "Data.Output.Video.EncryptKeyHex",
        ),
        (
            start_with(json!({
                "Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": auth_url}},
                "Video": {"EncryptKey": KEY.replace('0', "1")},
            })),
            "EncryptKey",
        ),
        (
            start_with(
                json!({"Width": 4000, "Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": auth_url}}}),
            ),
            "Data.Width",
        ),
    ];
    for (body, field) in key_errors {
        let r = api.post(&body).await;
        assert_error(&r, 400, "InvalidParam", field);
        texts.push(r.text);
    }
    let lower = KEY.to_ascii_lowercase();
    let upper = KEY.to_ascii_uppercase();
    for text in &texts {
        let folded = text.to_ascii_lowercase();
        assert!(
            !folded.contains(&lower)
                && !folded.contains(&lower[..16])
                && !text.contains(&upper)
                && !folded.contains(&hex::encode(&KEY.as_bytes()[..16])),
            "the EncryptKey leaked: {text}"
        );
        assert!(!text.contains("sig=abc"), "the AuthUrl leaked: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_validation_failure_has_its_code_status_and_field() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;

    // Whole bodies.
    let bodies: &[(&str, &str, &str)] = &[
        (
            r#"{"Action": "Start", "Data": {}}"#,
            "MissingParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": ""}}"#,
            "MissingParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": null}}"#,
            "MissingParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"recordUrl": "https://a.org/"}}"#,
            "MissingParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": "ftp://a.org/f"}}"#,
            "InvalidParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": "javascript:alert(1)"}}"#,
            "InvalidParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": "not a url"}}"#,
            "InvalidParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": "https://"}}"#,
            "InvalidParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": {"RecordURL": 42}}"#,
            "InvalidParam",
            "Data.RecordURL",
        ),
        (
            r#"{"Action": "Start", "Data": ["https://a.org/"]}"#,
            "InvalidParam",
            "Data",
        ),
        (
            r#"{"Action": "Start", "Data": "https://a.org/"}"#,
            "InvalidParam",
            "Data",
        ),
        (r#"{"Action": "Start", "Data": 7}"#, "InvalidParam", "Data"),
        (r#"{"Action": "Start"}"#, "MissingParam", "Data"),
        (
            r#"{"Action": "Start", "Data": null}"#,
            "MissingParam",
            "Data",
        ),
        (
            r#"{"Data": {"RecordURL": "https://a.org/"}}"#,
            "MissingParam",
            "Action",
        ),
        (
            r#"{"Action": null, "Data": {"RecordURL": "https://a.org/"}}"#,
            "MissingParam",
            "Action",
        ),
        (
            r#"{"Action": 42, "Data": {"RecordURL": "https://a.org/"}}"#,
            "InvalidParam",
            "Action",
        ),
        (
            r#"{"Action": ["Start"], "Data": {"RecordURL": "https://a.org/"}}"#,
            "InvalidParam",
            "Action",
        ),
        (
            r#"{"Action": "Explode", "Data": {}}"#,
            "UnsupportedAction",
            "Action",
        ),
        (
            r#"{"Action": "start", "Data": {"RecordURL": "https://a.org/"}}"#,
            "UnsupportedAction",
            "Action",
        ),
        (
            r#"{"Action": "", "Data": {}}"#,
            "UnsupportedAction",
            "Action",
        ),
    ];
    for (body, code, field) in bodies {
        let r = api.post_raw(*body, None).await;
        assert_error(&r, 400, code, field);
    }

    // Start's Data fields, each added to a valid minimal Data.
    let long_context = "x".repeat(4097);
    let long_url = format!("https://example.org/{}", "a".repeat(2048));
    let fields: Vec<(Value, &str, &str)> = vec![
        (json!({"Width": 4000}), "InvalidParam", "Data.Width"),
        (json!({"Width": "abc"}), "InvalidParam", "Data.Width"),
        (json!({"Width": "1280px"}), "InvalidParam", "Data.Width"),
        (
            json!({"ManualStart": "1"}),
            "InvalidParam",
            "Data.ManualStart",
        ),
        (json!({"Width": -1}), "InvalidParam", "Data.Width"),
        (json!({"Width": 1280.5}), "InvalidParam", "Data.Width"),
        (json!({"Width": 8}), "InvalidParam", "Data.Width"),
        (json!({"Height": 2561}), "InvalidParam", "Data.Height"),
        (
            json!({"MaxDurationLimit": 40000}),
            "InvalidParam",
            "Data.MaxDurationLimit",
        ),
        (
            json!({"MaxDurationLimit": "600s"}),
            "InvalidParam",
            "Data.MaxDurationLimit",
        ),
        (
            json!({"ManualStart": "yes"}),
            "InvalidParam",
            "Data.ManualStart",
        ),
        (
            json!({"CallbackURL": "file:///etc/passwd"}),
            "InvalidParam",
            "Data.CallbackURL",
        ),
        (
            json!({"StorageType": "tape"}),
            "InvalidParam",
            "Data.StorageType",
        ),
        (
            json!({"StorageType": 1}),
            "InvalidParam",
            "Data.StorageType",
        ),
        (json!({"Output": "cos"}), "InvalidParam", "Data.Output"),
        (
            json!({"Output": {"Video": {"Muxer": "avi"}}}),
            "InvalidParam",
            "Data.Output.Video.Muxer",
        ),
        (
            json!({"Video": {"Muxer": "avi"}}),
            "InvalidParam",
            "Data.Video.Muxer",
        ),
        (
            json!({"Output": {"Video": {"Muxer": "hls"}}, "Video": {"Muxer": "mp4"}}),
            "InvalidParam",
            "Data.Output.Video.Muxer",
        ),
        (
            json!({"Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY}}}),
            "InvalidParam",
            "Data.Output.Video.AuthUrl",
        ),
        (
            json!({"Video": {"Muxer": "hls", "EncryptKey": KEY}}),
            "InvalidParam",
            "Data.Video.AuthUrl",
        ),
        (
            json!({"Output": {"Video": {"EncryptKey": KEY, "AuthUrl": "https://k.example.org/k"}}}),
            "InvalidParam",
            "Data.Output.Video.EncryptKey",
        ),
        (
            json!({"Output": {"Video": {"Muxer": "mp4", "EncryptKey": KEY, "AuthUrl": "https://k.example.org/k"}}}),
            "InvalidParam",
            "Data.Output.Video.EncryptKey",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": "../x"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": "a/../../x"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": "//abs"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": "a\\b"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"S3": {"TargetName": "a/b"}}}),
            "InvalidParam",
            "Data.Output.S3.TargetName",
        ),
        (
            json!({"Output": {"S3": {"TargetName": ".."}}}),
            "InvalidParam",
            "Data.Output.S3.TargetName",
        ),
        (
            json!({"Output": {"Cos": {"Bucket": "a b"}}}),
            "InvalidParam",
            "Data.Output.Cos.Bucket",
        ),
        // Names that cannot be stored: lengths in bytes, with what pagecast appends.
        (
            json!({"Output": {"Cos": {"TargetName": "a".repeat(300)}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetName",
        ),
        (
            json!({"Output": {"Cos": {"TargetName": "录".repeat(100)}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetName",
        ),
        (
            json!({"Output": {"S3": {"TargetName": "a".repeat(238)}, "Video": {"Muxer": "hls"}}}),
            "InvalidParam",
            "Data.Output.S3.TargetName",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": format!("ok/{}", "d".repeat(256))}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"Cos": {"TargetName": "a\u{0}b"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetName",
        ),
        (
            json!({"Output": {"Cos": {"TargetDir": "a/./b"}}}),
            "InvalidParam",
            "Data.Output.Cos.TargetDir",
        ),
        (
            json!({"Output": {"Cos": {}, "S3": {}}}),
            "InvalidParam",
            "Data.Output.Cos",
        ),
        (json!({"Fps": 61}), "InvalidParam", "Data.Fps"),
        (
            json!({"StartTimeout": 86401}),
            "InvalidParam",
            "Data.StartTimeout",
        ),
        (
            json!({"UserContext": long_context}),
            "InvalidParam",
            "Data.UserContext",
        ),
        (
            json!({"UserContext": {"lesson": 7}}),
            "InvalidParam",
            "Data.UserContext",
        ),
        (
            json!({"RecordURL": long_url}),
            "InvalidParam",
            "Data.RecordURL",
        ),
    ];
    for (extra, code, field) in fields {
        let r = api.post(&start_with(extra.clone())).await;
        assert!(r.status == 400, "{extra}: {}", r.text);
        assert_error(&r, 400, code, field);
    }

    // The unsupported action is quoted back.
    let r = api.post(&json!({"Action": "Explode", "Data": {}})).await;
    assert!(
        r.json["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("\"Explode\"")
    );

    // Bodies that are not a JSON object.
    for raw in [
        "{\"Action\": \"Start\", \"Data\": {",
        "not json",
        "",
        "[1, 2]",
        "\"Start\"",
        "null",
        "42",
    ] {
        let r = api.post_raw(raw, None).await;
        assert_eq!(
            (r.status, r.json["ErrorCode"].as_str()),
            (400, Some("MalformedRequest")),
            "body {raw:?}: {}",
            r.text
        );
    }

    // Nothing was created by any of them.
    assert_eq!(api.store.queued_count().await.unwrap(), 0);

    // Unknown fields, nulls and source-product fields are accepted.
    let id = api
        .start(json!({
            "RecordURL": PAGE,
            "Width": null,
            "CallbackURL": "",
            "Something": {"New": true},
            "Output": {"Video": {"Muxer": "HLS"}},
        }))
        .await;
    assert_eq!(api.describe(&id).await["Muxer"], "hls");
    // But not a delivery pagecast cannot make: VOD is refused, not silently ignored.
    let r = api
        .post(&start_with(
            json!({"Output": {"Vod": {"MediaInfo": {"ClassId": 3}}}}),
        ))
        .await;
    assert_error(&r, 400, "UnsupportedOutput", "Data.Output.Vod");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| s.http.max_body_bytes = 1024).await;

    // 4 KiB of otherwise valid JSON.
    let padding = " ".repeat(4096);
    let big =
        format!("{{\"Action\": \"Start\", \"Data\": {{\"RecordURL\": \"{PAGE}\"}}{padding}}}");
    let r = api.post_raw(big, None).await;
    assert_error(&r, 413, "PayloadTooLarge", "1024");

    // Exactly at the limit is fine; one byte more is not.
    let body = format!("{{\"Action\": \"Start\", \"Data\": {{\"RecordURL\": \"{PAGE}\"}}}}");
    let at_limit = format!("{body}{}", " ".repeat(1024 - body.len()));
    assert_eq!(at_limit.len(), 1024);
    let r = api.post_raw(at_limit.clone(), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post_raw(format!("{at_limit} "), None).await;
    assert_eq!(r.status, 413, "{}", r.text);

    // Without a Content-Length (chunked), the limit holds too.
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let mut request = String::from(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..8 {
        request.push_str(&format!("200\r\n{}\r\n", " ".repeat(0x200)));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let raw = read_raw_reply(stream).await;
    assert_eq!(raw.status, 413, "{:?}", String::from_utf8_lossy(&raw.body));
    let v: Value = serde_json::from_slice(&raw.body).expect("a JSON error body");
    assert_eq!(v["ErrorCode"], "PayloadTooLarge");
    let errs = SPEC.check_response("/", "post", raw.status, &raw.headers, &raw.body);
    assert!(errs.is_empty(), "{errs:?}");
}

#[tokio::test]
async fn task_actions_need_a_valid_existing_task_id() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for action in ["Pause", "Resume", "Refresh", "Stop", "Describe"] {
        let r = api.action(action, json!({})).await;
        assert_error(&r, 400, "MissingParam", "Data.TaskID");
        let r = api.action(action, json!({"TaskID": null})).await;
        assert_error(&r, 400, "MissingParam", "Data.TaskID");
        let r = api.post(&json!({"Action": action})).await;
        assert_error(&r, 400, "MissingParam", "Data");
        let r = api.action(action, json!("TaskID")).await;
        assert_error(&r, 400, "InvalidParam", "Data");
        let r = api.action(action, json!({"TaskID": "not-a-task"})).await;
        assert_error(&r, 400, "InvalidParam", "Data.TaskID");
        let r = api.action(action, json!({"TaskID": 42})).await;
        assert_error(&r, 400, "InvalidParam", "Data.TaskID");
        let r = api.action(action, json!({"TaskID": ""})).await;
        assert_eq!(r.status, 400, "{action} with an empty TaskID: {}", r.text);
        let r = api.on_task(action, &unknown).await;
        assert_error(&r, 404, "TaskNotFound", &format!("{unknown}\""));
    }
    // Nothing was created for the unknown id (no control stream, no task).
    assert!(api.controls(&unknown).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// State rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn control_actions_follow_the_status_machine() {
    use ControlMsg::*;
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let id = api.start_page().await;

    // Not recording yet: Pause and Resume are remembered for when recording begins, Refresh
    // goes to the worker (it reloads a page waiting for startRecord()); the status stays.
    assert!(!api.store.start_paused(&id).await.unwrap());
    assert_eq!(api.on_task("Pause", &id).await.status, 200);
    assert!(api.store.start_paused(&id).await.unwrap(), "remembered");
    assert_eq!(api.status_of(&id).await, "normal");
    assert_eq!(api.on_task("Refresh", &id).await.status, 200);
    assert_eq!(api.on_task("Resume", &id).await.status, 200);
    assert!(!api.store.start_paused(&id).await.unwrap(), "and forgotten");
    assert_eq!(api.on_task("Pause", &id).await.status, 200);
    assert_eq!(api.status_of(&id).await, "normal");
    assert_eq!(api.controls(&id).await, [Pause, Refresh, Resume, Pause]);

    api.begin_recording(&id).await;
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "recording");
    assert!(d["StartTime"].is_i64(), "{d}");

    // Pause, and Pause again: idempotent.
    let before = api.controls(&id).await.len();
    let before_pause = before;
    assert_eq!(api.on_task("Pause", &id).await.status, 200);
    assert_eq!(api.status_of(&id).await, "paused");
    assert_eq!(api.controls(&id).await[before..], [Pause]);
    let r = api.on_task("Pause", &id).await;
    assert_eq!(
        (r.status, r.json["TaskID"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(api.status_of(&id).await, "paused");
    assert_eq!(
        api.controls(&id).await[before..],
        [Pause],
        "a repeated Pause changes nothing"
    );

    // Refresh while paused is passed on, and changes no status.
    assert_eq!(api.on_task("Refresh", &id).await.status, 200);
    assert_eq!(api.status_of(&id).await, "paused");

    // Resume, and Resume again.
    assert_eq!(api.on_task("Resume", &id).await.status, 200);
    assert_eq!(api.status_of(&id).await, "recording");
    assert_eq!(api.on_task("Resume", &id).await.status, 200);
    assert_eq!(api.status_of(&id).await, "recording");
    assert_eq!(api.controls(&id).await[before..], [Pause, Refresh, Resume]);

    // Refresh while recording lands on the control stream.
    let r = api.on_task("Refresh", &id).await;
    assert_eq!(
        (r.status, r.json["TaskID"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(api.status_of(&id).await, "recording");
    assert_eq!(api.controls(&id).await.last(), Some(&Refresh));

    // Stop: canceled, with CancelTime; Stop again changes nothing.
    let before = now();
    assert_eq!(api.on_task("Stop", &id).await.status, 200);
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "canceled");
    let cancel = d["CancelTime"].as_i64().expect("CancelTime");
    assert!((before..=now()).contains(&cancel), "{d}");
    assert!(d.get("FinishTime").is_none(), "{d}");
    let r = api.on_task("Stop", &id).await;
    assert_eq!(
        (r.status, r.json["TaskID"].as_str()),
        (200, Some(id.as_str()))
    );
    let again = api.describe(&id).await;
    assert_eq!(again["Status"], "canceled");
    assert_eq!(again["CancelTime"], cancel);
    assert_eq!(
        api.controls(&id).await[before_pause..],
        [Pause, Refresh, Resume, Refresh, Stop]
    );

    // Recording is over: no more Pause, Resume or Refresh.
    for action in ["Pause", "Resume", "Refresh"] {
        let r = api.on_task(action, &id).await;
        assert_error(&r, 409, "InvalidState", action);
    }

    // The worker delivers; Stop stays a no-op all the way, and Describe shows the result.
    for (from, to) in [
        (Status::Canceled, Status::Transcode),
        (Status::Transcode, Status::Upload),
        (Status::Upload, Status::Callback),
    ] {
        api.move_task(&id, Transition::new(from, to)).await;
        assert_eq!(api.on_task("Stop", &id).await.status, 200);
        assert_eq!(api.status_of(&id).await, to.as_str());
        let r = api.on_task("Pause", &id).await;
        assert_error(&r, 409, "InvalidState", "Pause");
    }
    let mut done = Transition::new(Status::Callback, Status::Finished)
        .with_time(TimeField::Stop, cancel)
        .with_time(TimeField::Finish, now());
    done = done.with_result(TaskResult {
        error_code: None,
        error_message: None,
        videos: vec![Video {
            filename: format!("{id}/1700000000000.mp4"),
            file_size: 1234,
            file_url: format!("http://127.0.0.1/files/{id}/1700000000000.mp4"),
            file_duration: Some(12.3),
            segment_count: None,
        }],
    });
    done = done.with_stats(TaskStats {
        recorded_duration: 12.3456,
        frames_captured: 300,
        frames_written: 370,
        frames_duplicated: 70,
        frames_dropped: 0,
        pauses: 1,
        refreshes: 2,
        callback_attempts: 1,
        page_crashes: 0,
        page_hangs: 0,
        browser_restarts: 0,
        encoder_restarts: 1,
        lost_seconds: 0.0,
        gaps: vec![pagecast::task::RecordingGap {
            time: 1_700_000_005.25,
            seconds: 6.5,
        }],
        handovers: 1,
        lost_media: None,
        live: vec![pagecast::media::live::LiveTargetStats {
            url: "rtmp://live.example.com/app/***".into(),
            state: "retrying".into(),
            attempts: 2,
            last_error: Some("Connection refused".into()),
        }],
    });
    api.move_task(&id, done).await;
    let d = api.describe(&id).await; // checked against the spec, Result and Stats included
    assert_eq!(d["Status"], "finished");
    assert!(d["FinishTime"].is_i64() && d["StopTime"].is_i64(), "{d}");
    assert_eq!(d["Result"]["Videos"][0]["FileSize"], 1234);
    assert_eq!(d["Result"]["Videos"][0]["Filename"], "1700000000000.mp4");
    assert_eq!(d["Result"]["Videos"][0]["FileDuration"], 12);
    assert_eq!(d["RecordedDuration"], 12.346);
    assert_eq!(d["Stats"]["Refreshes"], 2);

    let r = api.on_task("Stop", &id).await;
    assert_eq!(
        r.status, 200,
        "Stop on a finished task succeeds: {}",
        r.text
    );
    for action in ["Pause", "Resume", "Refresh"] {
        let r = api.on_task(action, &id).await;
        assert_error(&r, 409, "InvalidState", action);
        assert!(
            r.json["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("finished")
        );
    }
    assert_eq!(api.status_of(&id).await, "finished");
}

/// A Start aiming at the result a task in progress will write is refused with 409 OutputInUse
/// (and creates nothing); so is one aiming into another task's own TaskID directory. Once that
/// task has finished, its result may be replaced by name.
#[tokio::test]
async fn starts_aiming_at_a_result_in_progress_are_409() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let lesson = json!({"RecordURL": PAGE, "Output": {"Cos": {"TargetDir": "class/7", "TargetName": "lesson"}}});
    let first = api.start(lesson.clone()).await;
    let r = api.action("Start", lesson.clone()).await;
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (409, Some("OutputInUse")),
        "{}",
        r.text
    );
    let message = r.json["ErrorMessage"].as_str().unwrap();
    assert!(message.contains("class/7/lesson.mp4"), "{message}");
    assert!(
        !message.contains(&first),
        "the other task's id is not told: {message}"
    );
    let own = api.start_page().await;
    let r = api
        .action(
            "Start",
            json!({"RecordURL": PAGE, "Output": {"S3": {"TargetDir": own, "TargetName": "x"}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (409, Some("OutputInUse")),
        "{}",
        r.text
    );
    assert_eq!(
        api.store.queued_count().await.unwrap(),
        2,
        "the refused Starts created nothing"
    );

    // Stop before recording finishes the task: its name is free again.
    assert_eq!(api.on_task("Stop", &first).await.status, 200);
    assert_eq!(api.status_of(&first).await, "finished");
    let again = api.start(lesson).await;
    assert_ne!(again, first);
}

#[tokio::test]
async fn stop_before_recording_cancels_the_task() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let id = api.start_page().await;
    let before = now();
    let r = api.on_task("Stop", &id).await;
    assert_eq!(
        (r.status, r.json["TaskID"].as_str()),
        (200, Some(id.as_str()))
    );
    // No worker had it: it ends at once, through the stages, as Canceled with no videos.
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "finished");
    let finish = d["FinishTime"].as_i64().expect("FinishTime");
    assert!((before..=now()).contains(&finish), "{d}");
    assert!(d["CancelTime"].is_i64(), "{d}");
    assert!(d.get("StartTime").is_none(), "{d}");
    assert_eq!(d["Result"]["ErrorCode"], "Canceled", "{d}");
    assert_eq!(d["Result"]["Videos"], json!([]), "{d}");
    assert!(d["Result"]["ErrorMessage"].as_str().is_some(), "{d}");
    // The task is no longer waiting for a worker.
    assert_eq!(api.store.queued_count().await.unwrap(), 0);

    let r = api.on_task("Stop", &id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.describe(&id).await["FinishTime"], finish);
    for action in ["Pause", "Resume", "Refresh"] {
        let r = api.on_task(action, &id).await;
        assert_error(&r, 409, "InvalidState", action);
    }
    assert_eq!(api.status_of(&id).await, "finished");

    // With a CallbackURL it goes on to `callback` (the callback stage reports the outcome).
    let id = api
        .start(json!({"RecordURL": PAGE, "CallbackURL": "https://hooks.example.org/cb"}))
        .await;
    assert_eq!(api.on_task("Cancel", &id).await.status, 200);
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "callback", "{d}");
    assert_eq!(d["Result"]["ErrorCode"], "Canceled", "{d}");

    // A worker holds it (loading its page, or waiting for startRecord()): the task is
    // `canceled`, and that worker ends it.
    let id = api.start_page().await;
    let claim = api
        .store
        .claim(&id, "worker-1", &[Status::Normal], now() * 1000, 60_000)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired { .. }), "{claim:?}");
    assert_eq!(api.on_task("Stop", &id).await.status, 200);
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "canceled", "{d}");
    assert!(d.get("Result").is_none(), "{d}");
    assert_eq!(api.controls(&id).await, [ControlMsg::Stop]);

    // Stop on a paused task ends the recording like Stop on a recording one.
    let id = api.start_page().await;
    api.begin_recording(&id).await;
    assert_eq!(api.on_task("Pause", &id).await.status, 200);
    assert_eq!(api.on_task("Stop", &id).await.status, 200);
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "canceled");
    assert!(
        d["CancelTime"].is_i64() && d.get("FinishTime").is_none(),
        "{d}"
    );
    assert_eq!(
        api.controls(&id).await,
        [ControlMsg::Pause, ControlMsg::Stop]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pause_and_stop_end_canceled_with_one_stop() {
    let redis = TestRedis::start();
    let api = Arc::new(serve(&redis, |_| {}).await);
    for round in 0..3 {
        let id = api.start_page().await;
        api.begin_recording(&id).await;
        let mut handles = Vec::new();
        for i in 0..20 {
            let api = api.clone();
            let id = id.clone();
            let action = if (i + round) % 2 == 0 {
                "Pause"
            } else {
                "Stop"
            };
            handles.push(tokio::spawn(async move {
                (action, api.on_task(action, &id).await)
            }));
        }
        for h in handles {
            let (action, r) = h.await.expect("request task");
            assert!(
                r.status == 200 || r.status == 409,
                "{action}: HTTP {} {}",
                r.status,
                r.text
            );
            if r.status == 409 {
                assert_eq!(
                    action, "Pause",
                    "Stop on a live task never conflicts: {}",
                    r.text
                );
                assert_eq!(r.json["ErrorCode"], "InvalidState");
            }
        }
        assert_eq!(api.status_of(&id).await, "canceled");
        let controls = api.controls(&id).await;
        let stops = controls.iter().filter(|m| **m == ControlMsg::Stop).count();
        let pauses = controls.iter().filter(|m| **m == ControlMsg::Pause).count();
        assert_eq!(stops, 1, "round {round}: exactly one stop: {controls:?}");
        assert!(
            pauses <= 1,
            "round {round}: at most one pause: {controls:?}"
        );
        assert_eq!(controls.last(), Some(&ControlMsg::Stop), "{controls:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication, limits, outages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_are_checked_before_anything_else() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| {
        s.tokens = tokens(&["t1", "t2"]);
        s.http.max_body_bytes = 1024;
    })
    .await;
    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();

    for auth in [
        None,
        Some("t1"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer t3"),
        Some("Bearer t1x"),
        Some("Bearer t"),
        Some("Basic dDE6dDE="),
        Some("Bearer t1,t2"),
    ] {
        let r = api.post_raw(start.clone(), auth).await;
        assert_error(&r, 401, "Unauthorized", "Authorization:");
        // The message does not say which tokens exist.
        assert!(!r.text.contains("t2"), "{}", r.text);
    }
    // Auth comes before parsing, size and validation.
    for body in [
        "not json".to_owned(),
        "[]".to_owned(),
        json!({"Action": "Explode"}).to_string(),
        json!({"Action": "Describe", "Data": {"TaskID": uuid::Uuid::new_v4().to_string()}})
            .to_string(),
        " ".repeat(4096),
    ] {
        let r = api.post_raw(body, Some("Bearer wrong")).await;
        assert_eq!(
            (r.status, r.json["ErrorCode"].as_str()),
            (401, Some("Unauthorized")),
            "{}",
            r.text
        );
    }
    assert_eq!(api.store.queued_count().await.unwrap(), 0);

    // Either configured token works.
    let r = api.post_raw(start.clone(), Some("Bearer t2")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["TaskID"].as_str().unwrap().to_owned();
    let describe = json!({"Action": "Describe", "Data": {"TaskID": id}}).to_string();
    let r = api.post_raw(describe.clone(), Some("Bearer t1")).await;
    assert_eq!((r.status, r.json["Status"].as_str()), (200, Some("normal")));
    let r = api.post_raw(describe, None).await;
    assert_eq!(r.status, 401);
    // With a valid token, errors are the ordinary ones again.
    let r = api.post_raw("not json", Some("Bearer t1")).await;
    assert_eq!(r.json["ErrorCode"], "MalformedRequest");
}

/// RFC 9110 §11.1: the authentication scheme name is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| s.tokens = tokens(&["t1"])).await;
    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();
    for auth in ["bearer t1", "BEARER t1"] {
        let r = api.post_raw(start.clone(), Some(auth)).await;
        assert_eq!(r.status, 200, "Authorization: {auth}: {}", r.text);
    }
}

#[tokio::test]
async fn start_beyond_the_queue_limit_is_429() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| s.max_queued = 2).await;
    let first = api.start_page().await;
    let second = api.start_page().await;
    let r = api.action("Start", json!({"RecordURL": PAGE})).await;
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (429, Some("LimitExceeded")),
        "{}",
        r.text
    );
    assert_eq!(api.store.queued_count().await.unwrap(), 2);

    // A task taken by a worker frees its place...
    api.begin_recording(&first).await;
    let third = api.start_page().await;
    let r = api.action("Start", json!({"RecordURL": PAGE})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    // ...and so does a task canceled before it started.
    assert_eq!(api.on_task("Stop", &second).await.status, 200);
    api.start_page().await;
    let r = api.action("Start", json!({"RecordURL": PAGE})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(api.status_of(&third).await, "normal");
}

#[tokio::test]
async fn a_redis_outage_is_503_and_the_api_recovers() {
    let mut redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let id = api.start_page().await;
    api.begin_recording(&id).await;

    redis.stop();
    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}});
    for body in [
        start.clone(),
        json!({"Action": "Describe", "Data": {"TaskID": id}}),
        json!({"Action": "Pause", "Data": {"TaskID": id}}),
        json!({"Action": "Stop", "Data": {"TaskID": id}}),
        start.clone(),
    ] {
        let began = Instant::now();
        let r = api.post(&body).await;
        let took = began.elapsed();
        assert_eq!(
            (r.status, r.json["ErrorCode"].as_str()),
            (503, Some("ServiceUnavailable")),
            "{body}: {}",
            r.text
        );
        assert!(
            took < Duration::from_secs(6),
            "{body} took {took:?} to answer 503"
        );
        // The detail (address, port) stays in the log.
        let message = r.json["ErrorMessage"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.contains(&redis.port().to_string()),
            "{message}"
        );
    }
    // Validation does not need Redis.
    let r = api.action("Start", json!({"Width": 1})).await;
    assert_eq!(r.status, 400, "{}", r.text);

    redis.restart();
    // The same ApiState (same store, same connection manager) serves again at once: the store
    // retries a call once on a broken connection. Redis came back empty.
    let r = api.post(&start).await;
    assert_eq!(
        r.status, 200,
        "the first Start after Redis came back: {}",
        r.text
    );
    let new_id = r.json["TaskID"].as_str().unwrap().to_owned();
    assert_eq!(api.status_of(&new_id).await, "normal");
    // The old task went with the old (non-persistent) Redis.
    let r = api.on_task("Describe", &id).await;
    assert_error(&r, 404, "TaskNotFound", &format!("{id}\""));
}

/// A frozen Redis (accepting connections, answering nothing) is a 503 within the store's deadline
/// too, and the API serves again once it thaws.
#[tokio::test]
async fn a_frozen_redis_is_503_within_the_deadline() {
    let mut redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let id = api.start_page().await;

    redis.freeze();
    let describe = json!({"Action": "Describe", "Data": {"TaskID": id}});
    let began = Instant::now();
    let r = api.post(&describe).await;
    let took = began.elapsed();
    redis.thaw();
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (503, Some("ServiceUnavailable")),
        "{}",
        r.text
    );
    assert!(took < Duration::from_secs(6), "503 after {took:?}");

    let began = Instant::now();
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "normal");
    assert!(began.elapsed() < Duration::from_secs(6));
    api.start_page().await;
}

/// The spec: `GET /readyz` answers 200 when the API can reach Redis and 503 `ServiceUnavailable`
/// (the error body) when it cannot; `GET /healthz` answers 200 while the process is alive, whatever
/// Redis does.
#[tokio::test]
async fn readyz_reports_whether_redis_is_reachable() {
    let mut redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let get = || async {
        let began = Instant::now();
        let resp = api
            .client
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .expect("GET /readyz");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        (status, headers, body, began.elapsed())
    };
    let mut problems = Vec::new();
    let (status, headers, body, _) = get().await;
    if status != 200 {
        problems.push(format!("Redis up: HTTP {status}, expected 200"));
    }
    for e in SPEC.check_response("/readyz", "get", status, &headers, &body) {
        problems.push(format!(
            "Redis up: {e} (body {:?})",
            String::from_utf8_lossy(&body)
        ));
    }

    redis.stop();
    let live = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .expect("GET /healthz");
    let (live_status, live_headers) = (live.status().as_u16(), live.headers().clone());
    let live_body = live.bytes().await.expect("body").to_vec();
    if live_status != 200 {
        problems.push(format!(
            "Redis down: /healthz answered {live_status}; liveness must not depend on Redis"
        ));
    }
    for e in SPEC.check_response("/healthz", "get", live_status, &live_headers, &live_body) {
        problems.push(format!("/healthz: {e}"));
    }
    let (status, headers, body, took) = get().await;
    if took >= Duration::from_secs(6) {
        problems.push(format!("Redis down: answered after {took:?}"));
    }
    if status != 503 {
        problems.push(format!(
            "Redis down: HTTP {status} {:?}, expected 503",
            String::from_utf8_lossy(&body)
        ));
    }
    for e in SPEC.check_response("/readyz", "get", status, &headers, &body) {
        problems.push(format!("Redis down: {e}"));
    }
    assert!(
        problems.is_empty(),
        "GET /readyz or /healthz does not follow the spec:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// /files
// ---------------------------------------------------------------------------------------------

/// The signed path of result file `key` (below the output directory), as Describe gives it.
fn signed(key: &str) -> String {
    signer().signed_path(key, now())
}

#[tokio::test]
async fn files_are_served_from_the_output_directory_only() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    // A file next to the output directory that traversal would reach.
    let secret = api.out_dir.parent().unwrap().join("secret.txt");
    std::fs::write(&secret, "do not serve").unwrap();
    let task_dir = api.out_dir.join("task-1");
    std::fs::create_dir_all(&task_dir).unwrap();
    let files = [
        ("1700000000000.mp4", "video/mp4"),
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("seg-00001.ts", "video/mp2t"),
        ("cover.jpg", "image/jpeg"),
        ("notes.bin", "application/octet-stream"),
    ];
    for (name, _) in files {
        std::fs::write(task_dir.join(name), format!("content of {name}")).unwrap();
    }

    for (name, ctype) in files {
        let resp = api
            .client
            .get(format!("{}{}", api.base, signed(&format!("task-1/{name}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{name}");
        assert_eq!(
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(ctype),
            "{name}"
        );
        assert_eq!(resp.text().await.unwrap(), format!("content of {name}"));
    }

    let in_task = signed("task-1/index.m3u8");
    let (task_prefix, _) = in_task.rsplit_once('/').unwrap();
    let at_root = signed("x");
    let (root_prefix, _) = at_root.rsplit_once('/').unwrap();
    let mut targets: Vec<(String, u16)> = [
        "/files/../etc/passwd",
        "/files/../secret.txt",
        "/files/a/../../x",
        "/files/task-1/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/..%2fsecret.txt",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/..%5csecret.txt",
        "/files/task-1/index.m3u8",
    ]
    .iter()
    .map(|t| (t.to_string(), 403))
    .collect();
    // Signed for task-1 (or the root), with a path that tries to leave it.
    for rest in [
        "../secret.txt",
        "..%2fsecret.txt",
        "..%2F..%2Fsecret.txt",
        "%2e%2e/secret.txt",
        "./index.m3u8",
        "/index.m3u8",
        "..%5csecret.txt",
        "sub/index.m3u8",
    ] {
        targets.push((format!("{task_prefix}/{rest}"), 403));
        targets.push((format!("{root_prefix}/{rest}"), 403));
    }
    // Signed correctly, but nothing (or a directory) is there.
    targets.push((signed("task-1/missing.mp4"), 404));
    targets.push((signed("task-1"), 404));
    for (target, status) in targets {
        let r = api.raw_get(&target).await;
        assert_eq!(
            r.status,
            status,
            "GET {target}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("do not serve"),
            "GET {target} served a file outside the output directory"
        );
    }
    // The same paths through a normal client (which folds `..` itself) do not escape either.
    let resp = api
        .client
        .get(format!("{}{task_prefix}/../../secret.txt", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

/// A result URL needs a valid, unexpired signature over its directory: unsigned, altered or
/// expired URLs are 403 `InvalidSignature`.
#[tokio::test]
async fn result_urls_must_be_signed_and_unexpired() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    std::fs::create_dir_all(api.out_dir.join("t1")).unwrap();
    std::fs::create_dir_all(api.out_dir.join("t2")).unwrap();
    std::fs::write(api.out_dir.join("t1/a.mp4"), b"t1 video").unwrap();
    std::fs::write(api.out_dir.join("t1/p.m3u8"), b"t1 playlist").unwrap();
    std::fs::write(api.out_dir.join("t1/p_000001.ts"), b"t1 segment").unwrap();
    std::fs::write(api.out_dir.join("t2/a.mp4"), b"t2 video").unwrap();
    let good = signed("t1/a.mp4");
    let r = api.raw_get(&good).await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"t1 video".as_slice()));
    // An HLS segment beside its playlist is covered by the playlist's URL...
    let beside = signed("t1/p.m3u8").replace("/p.m3u8", "/p_000001.ts");
    assert_eq!(api.raw_get(&beside).await.status, 200);

    // The expiry in the good URL (`/files/s/{expiry}/{signature}/...`), not recomputed: a
    // second may have passed since it was signed.
    let exp = good.split('/').nth(3).unwrap().to_string();
    assert!(exp.parse::<u64>().is_ok(), "{good}");
    let other_key = UrlSigner::new(
        b"not the server's key at all......",
        Duration::from_secs(3600),
    );
    let expired = {
        let s = UrlSigner::new(SIGNING_KEY, Duration::from_secs(60));
        s.signed_path("t1/a.mp4", now() - 3600)
    };
    for (what, target) in [
        ("unsigned", "/files/t1/a.mp4".to_string()),
        ("another directory", good.replace("/t1/", "/t2/")),
        // ...and nothing else of the directory by another file's URL.
        ("another file", good.replace("/a.mp4", "/p_000001.ts")),
        (
            "a later expiry",
            good.replacen(&exp, &(now() + 999_999).to_string(), 1),
        ),
        ("another key", other_key.signed_path("t1/a.mp4", now())),
        ("expired", expired),
        ("a cut signature", good.replacen("/t1/", "0/t1/", 1)),
    ] {
        let r = api.raw_get(&target).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 403, "{what}: GET {target}: {body}");
        assert!(body.contains("\"InvalidSignature\""), "{what}: {body}");
        assert!(!body.contains("video"), "{what}: {body}");
        let errs = SPEC.check_response("/files/{path}", "get", r.status, &r.headers, &r.body);
        assert!(errs.is_empty(), "{what}: {errs:?}");
    }
    assert!(
        api.raw_get(&format!("/files/s/{exp}/{}/t1/a.mp4", "0".repeat(64)))
            .await
            .status
            == 403
    );
}

/// `/files` is streamed by a file service: Range gives 206 with exactly those bytes, HEAD the
/// headers alone, ETag and Last-Modified make revalidation cheap.
#[tokio::test]
async fn files_support_range_head_and_validators() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    std::fs::create_dir_all(api.out_dir.join("t")).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(api.out_dir.join("t/v.mp4"), &data).unwrap();
    let url = format!("{}{}", api.base, signed("t/v.mp4"));

    let r = api
        .client
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert!(r.headers().get("x-request-id").is_some());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1000..2000]);
    let r = api
        .client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[data.len() - 10..]);

    let full = api.client.get(&url).send().await.unwrap();
    assert_eq!(full.status().as_u16(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let modified = full.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(full.bytes().await.unwrap().as_ref(), data.as_slice());

    let head = api.client.head(&url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert!(head.bytes().await.unwrap().is_empty());

    for (name, value) in [
        ("If-None-Match", etag.as_str()),
        ("If-Modified-Since", modified.as_str()),
    ] {
        let r = api
            .client
            .get(&url)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 304, "{name}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // An If-Range naming another version gets the whole (current) file.
    let r = api
        .client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), data.len());

    let r = api
        .raw_get_with(&signed("t/v.mp4"), &[("Range", "bytes=200000-")])
        .await;
    assert_eq!(r.status, 416, "{:?}", String::from_utf8_lossy(&r.body));
    let errs = SPEC.check_response("/files/{path}", "get", r.status, &r.headers, &r.body);
    assert!(errs.is_empty(), "416: {errs:?}");
    let r = api
        .raw_get_with(&signed("t/v.mp4"), &[("Range", "bytes=0-0")])
        .await;
    assert_eq!(r.status, 206);
    let errs = SPEC.check_response("/files/{path}", "get", r.status, &r.headers, &r.body);
    assert!(errs.is_empty(), "206: {errs:?}");
}

/// The spec declares, for `GET /files/{path}`: 200 and 206 carry an X-Request-ID header;
/// 403 and 404 are JSON `ErrorResponse`s.
#[tokio::test]
async fn files_answers_follow_the_spec() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    std::fs::write(api.out_dir.join("a.mp4"), b"mp4").unwrap();
    let mut problems = Vec::new();
    for (target, status) in [
        (signed("a.mp4"), 200),
        (signed("missing.mp4"), 404),
        ("/files/a.mp4".to_string(), 403),
        ("/files/../etc/passwd".to_string(), 403),
        ("/files/%ff.mp4".to_string(), 403),
        (signed("a.mp4").replace("a.mp4", "%ff.mp4"), 403),
    ] {
        let r = api.raw_get(&target).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if r.status != status {
            problems.push(format!(
                "GET {target}: HTTP {}, expected {status} ({body:?})",
                r.status
            ));
        }
        for e in SPEC.check_response("/files/{path}", "get", r.status, &r.headers, &r.body) {
            problems.push(format!("GET {target}: {e} (body {body:?})"));
        }
    }
    assert!(
        problems.is_empty(),
        "GET /files does not follow the spec:\n  {}",
        problems.join("\n  ")
    );
}

/// By default (no PAGECAST_ALLOW_PRIVATE_URLS) Start refuses pages and callbacks on loopback,
/// private and link-local (cloud metadata) addresses, by literal IP or by name.
#[tokio::test]
async fn private_destinations_are_refused_by_default() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| {
        s.url_policy = pagecast::url_guard::UrlPolicy::default()
    })
    .await;
    for (field, data) in [
        (
            "Data.RecordURL",
            json!({"RecordURL": "http://127.0.0.1:8080/page"}),
        ),
        (
            "Data.RecordURL",
            json!({"RecordURL": "http://localhost/page"}),
        ),
        ("Data.RecordURL", json!({"RecordURL": "http://[::1]/page"})),
        (
            "Data.RecordURL",
            json!({"RecordURL": "http://10.1.2.3/page"}),
        ),
        (
            "Data.CallbackURL",
            json!({"RecordURL": "https://example.org/", "CallbackURL": "http://169.254.169.254/latest/meta-data/"}),
        ),
        (
            "Data.CallbackURL",
            json!({"RecordURL": "https://example.org/", "CallbackURL": "http://192.168.0.10/hook"}),
        ),
    ] {
        let r = api.action("Start", data.clone()).await;
        assert_error(&r, 400, "InvalidParam", field);
        let setting = if data.to_string().contains("169.254.") {
            "PAGECAST_ALLOW_LINK_LOCAL_URLS"
        } else {
            "PAGECAST_ALLOW_PRIVATE_URLS"
        };
        assert!(
            r.text.contains(setting),
            "the message says how to allow it: {}",
            r.text
        );
    }
    assert_eq!(
        api.store.queued_count().await.unwrap(),
        0,
        "nothing was queued"
    );
    // A public literal address is fine.
    let r = api
        .action("Start", json!({"RecordURL": "http://93.184.215.14/"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// Browsers: Content-Type, Origin, CORS
// ---------------------------------------------------------------------------------------------

fn code_of(r: &Reply) -> (u16, &str) {
    (r.status, r.json["ErrorCode"].as_str().unwrap_or("OK"))
}

/// A page (the one being recorded, or any site the operator's browser opens) can send a
/// `no-cors` POST: `text/plain` body, the page's `Origin`. Such a request can no longer Start
/// a task, nor can any body not declared as JSON.
#[tokio::test]
async fn cross_site_and_non_json_requests_cannot_drive_the_api() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();
    // What `fetch(url, {method: "POST", mode: "no-cors", body})` sends from another site.
    let r = api
        .post_with(
            "/",
            start.clone(),
            &[
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Origin", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(code_of(&r), (403, "OriginNotAllowed"), "{}", r.text);
    // JSON from a foreign origin too (and /record), and a preflight from one.
    for path in ["/", "/record"] {
        let r = api
            .post_with(
                path,
                start.clone(),
                &[("Content-Type", "application/json"), ("Origin", "null")],
            )
            .await;
        assert_eq!(code_of(&r), (403, "OriginNotAllowed"), "{path}: {}", r.text);
    }
    let pre = api
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/", api.base))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 403);
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    // Without an Origin, a body not declared as JSON is 415 before it is parsed.
    for ctype in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ctype.map(|c| ("Content-Type", c)).into_iter().collect();
        let r = api.post_with("/", start.clone(), &headers).await;
        assert_eq!(
            code_of(&r),
            (415, "UnsupportedMediaType"),
            "{ctype:?}: {}",
            r.text
        );
        // Even a body that is not JSON at all: the content type is checked first.
        let r = api.post_with("/", "not json", &headers).await;
        assert_eq!(
            code_of(&r),
            (415, "UnsupportedMediaType"),
            "{ctype:?}: {}",
            r.text
        );
    }
    assert_eq!(
        api.store.queued_count().await.unwrap(),
        0,
        "nothing was started"
    );
    // The declared JSON type, with or without parameters, from a non-browser client: fine.
    for ctype in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let r = api
            .post_with("/", start.clone(), &[("Content-Type", ctype)])
            .await;
        assert_eq!(r.status, 200, "{ctype}: {}", r.text);
    }
    assert_eq!(api.store.queued_count().await.unwrap(), 3);
}

/// Origins listed in PAGECAST_CORS_ORIGINS get CORS answers (preflight included) and can call
/// the API; `*` allows any origin.
#[tokio::test]
async fn allowed_origins_get_cors_answers() {
    let redis = TestRedis::start();
    let app_origin = "https://app.example.org";
    let api = serve(&redis, |s| {
        s.http.cors = pagecast::api::guard::CorsOrigins::parse(&[app_origin.to_string()]).unwrap();
        s.tokens = tokens(&["t1"]);
    })
    .await;
    let pre = api
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/", api.base))
        .header("Origin", app_origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 200);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], app_origin);
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();
    let r = api
        .post_with(
            "/",
            start.clone(),
            &[
                ("Content-Type", "application/json"),
                ("Origin", app_origin),
                ("Authorization", "Bearer t1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], app_origin);
    let exposed = r.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // An allowed origin still needs the token; another origin is refused first.
    let r = api
        .post_with(
            "/",
            start.clone(),
            &[("Content-Type", "application/json"), ("Origin", app_origin)],
        )
        .await;
    assert_eq!(code_of(&r), (401, "Unauthorized"));
    let r = api
        .post_with(
            "/",
            start.clone(),
            &[
                ("Content-Type", "application/json"),
                ("Origin", "https://app.example.org.evil.example"),
                ("Authorization", "Bearer t1"),
            ],
        )
        .await;
    assert_eq!(code_of(&r), (403, "OriginNotAllowed"));

    let any = serve(&redis, |s| {
        s.http.cors = pagecast::api::guard::CorsOrigins::Any
    })
    .await;
    let r = any
        .post_with(
            "/",
            start,
            &[
                ("Content-Type", "application/json"),
                ("Origin", "https://anywhere.example"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
}

/// What a browser asks before a client shaped like web-record's request helper (`request.js`)
/// POSTs from a page: it sends `Authorization`, `Content-Type`, and the API gateway's `x-date`
/// and `Content-MD5` (`Accept: application/json` and `Content-Length` need no permission).
const WEB_RECORD_HELPER_HEADERS: &str = "authorization,content-md5,content-type,x-date";

/// A browser-side web-record client passes its preflight on `/` and `/record`, with or without
/// `PAGECAST_COMPAT=web-record`, and its actual cross-origin POST is answered with CORS headers
/// (a browser hands the page the body only then).
#[tokio::test]
async fn a_browser_side_web_record_client_passes_its_preflight() {
    let redis = TestRedis::start();
    let app_origin = "https://classroom.example.org";
    for compat in [
        pagecast::api::compat::Compat::Off,
        pagecast::api::compat::Compat::WebRecord,
    ] {
        let api = serve(&redis, |s| {
            s.http.cors =
                pagecast::api::guard::CorsOrigins::parse(&[app_origin.to_string()]).unwrap();
            s.http.compat = compat;
        })
        .await;
        for path in ["/", "/record"] {
            let pre = api
                .client
                .request(reqwest::Method::OPTIONS, format!("{}{path}", api.base))
                .header("Origin", app_origin)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", WEB_RECORD_HELPER_HEADERS)
                .send()
                .await
                .unwrap();
            assert_eq!(pre.status().as_u16(), 200, "{compat:?} {path}");
            let h = pre.headers();
            assert_eq!(
                h["access-control-allow-origin"], app_origin,
                "{compat:?} {path}"
            );
            let methods = h["access-control-allow-methods"].to_str().unwrap();
            assert!(methods.to_ascii_uppercase().contains("POST"), "{methods}");
            // The browser lets the request go only if every header it asked for is allowed.
            let allowed: Vec<String> = h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|v| v.trim().to_ascii_lowercase())
                .collect();
            for wanted in WEB_RECORD_HELPER_HEADERS.split(',') {
                assert!(
                    allowed.iter().any(|a| a == wanted),
                    "{compat:?} {path}: {wanted} is not allowed: {allowed:?}"
                );
            }

            // The POST itself, with the helper's headers (no API tokens: its HMAC is ignored).
            let describe =
                json!({"Action": "Describe", "Data": {"TaskID": uuid::Uuid::new_v4().to_string()}});
            let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();
            let helper_headers = |body: &str| -> Vec<(&'static str, String)> {
                vec![
                    ("Origin", app_origin.to_string()),
                    ("Accept", "application/json".to_string()),
                    ("Content-Type", "application/json".to_string()),
                    ("x-date", "Mon, 07 Dec 2026 10:00:00 GMT".to_string()),
                    (
                        "Authorization",
                        "hmac id=\"AKIDexample\", algorithm=\"hmac-sha1\", headers=\"x-date\", \
                         signature=\"c2lnbmF0dXJl\""
                            .to_string(),
                    ),
                    ("Content-MD5", format!("{:x}", body.len())),
                ]
            };
            let headers = helper_headers(&start);
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = api.post_with(path, start.clone(), &pairs).await;
            assert_eq!(r.status, 200, "{compat:?} {path}: {}", r.text);
            assert!(r.json["TaskID"].as_str().is_some(), "{}", r.text);
            assert_eq!(r.headers["access-control-allow-origin"], app_origin);
            let exposed = r.headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase();
            assert!(exposed.contains("x-request-id"), "{exposed}");
            // An error reaches the page too, as each mode answers it.
            let body = describe.to_string();
            let headers = helper_headers(&body);
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = api.post_with(path, body, &pairs).await;
            let expected = match compat {
                pagecast::api::compat::Compat::WebRecord => (200, "InvalidParam"),
                _ => (404, "TaskNotFound"),
            };
            assert_eq!(code_of(&r), expected, "{compat:?} {path}: {}", r.text);
            assert_eq!(
                r.headers["access-control-allow-origin"], app_origin,
                "{compat:?} {path}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layers: request ids and envelopes on every rejection, metrics counted outside the handler
// ---------------------------------------------------------------------------------------------

/// Rejections made by the layers (token, content type, body limit, origin, method) carry the
/// request id and the error body like the handler's own answers.
#[tokio::test]
async fn every_rejection_has_the_envelope_and_the_request_id() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| {
        s.tokens = tokens(&["t1"]);
        s.http.max_body_bytes = 100;
    })
    .await;
    let big =
        json!({"Action": "Start", "Data": {"RecordURL": PAGE, "UserContext": "x".repeat(500)}})
            .to_string();
    for (headers, body, expect) in [
        (
            vec![("Content-Type", "application/json")],
            "{}".to_string(),
            (401, "Unauthorized"),
        ),
        (
            vec![
                ("Authorization", "Bearer t1"),
                ("Content-Type", "text/plain"),
            ],
            "{}".to_string(),
            (415, "UnsupportedMediaType"),
        ),
        (
            vec![
                ("Authorization", "Bearer t1"),
                ("Content-Type", "application/json"),
            ],
            big,
            (413, "PayloadTooLarge"),
        ),
        (
            vec![
                ("Origin", "https://x.example"),
                ("Content-Type", "application/json"),
            ],
            "{}".to_string(),
            (403, "OriginNotAllowed"),
        ),
    ] {
        let mut with_id = headers.clone();
        with_id.push(("X-Request-ID", "client-id-7"));
        let r = api.post_with("/", body.clone(), &with_id).await;
        assert_eq!(code_of(&r), expect, "{}", r.text);
        assert_eq!(r.request_id(), "client-id-7");
        let mut bad_id = headers.clone();
        bad_id.push(("X-Request-ID", "has space"));
        let r = api.post_with("/", body, &bad_id).await;
        assert_eq!(code_of(&r), expect, "{}", r.text);
        assert_eq!(r.request_id().len(), 36, "a new UUID: {}", r.text);
    }
    // A method the path does not serve: 405 with the envelope and Allow.
    let r = api
        .client
        .get(format!("{}/", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().get("allow").is_some());
    assert!(r.headers().get("x-request-id").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ErrorCode"], "MethodNotAllowed");
}

/// Action requests are counted by the metrics layer, by action and outcome, whichever layer
/// answered them.
#[tokio::test]
async fn the_metrics_layer_counts_actions_and_rejections() {
    use pagecast::metrics::{API_REQUESTS, registry};
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let count = |action: &'static str, code: &'static str| {
        registry().get(&API_REQUESTS, &[("action", action), ("code", code)])
    };
    let (cancels, media) = (
        count("Cancel", "OK"),
        count("unknown", "UnsupportedMediaType"),
    );
    let id = api.start_page().await;
    assert_eq!(api.on_task("Cancel", &id).await.status, 200);
    let r = api
        .post_with("/", "{}", &[("Content-Type", "text/plain")])
        .await;
    assert_eq!(r.status, 415);
    assert!(count("Cancel", "OK") >= cancels + 1.0);
    assert!(count("unknown", "UnsupportedMediaType") >= media + 1.0);
}

// ---------------------------------------------------------------------------------------------
// web-record compatibility: Cancel, POST /record, PAGECAST_COMPAT=web-record
// ---------------------------------------------------------------------------------------------

/// `Cancel` is Stop under web-record's name, and `POST /record` is the Action endpoint too.
#[tokio::test]
async fn cancel_is_stop_and_record_is_an_action_path() {
    let redis = TestRedis::start();
    let api = serve(&redis, |_| {}).await;
    let json_ct = [("Content-Type", "application/json")];
    let r = api
        .post_with(
            "/record",
            json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string(),
            &json_ct,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["TaskID"].as_str().unwrap().to_string();
    let describe = json!({"Action": "Describe", "Data": {"TaskID": id}}).to_string();
    let r = api.post_with("/record", describe.clone(), &json_ct).await;
    assert_eq!(
        (r.status, r.json["Status"].as_str()),
        (200, Some("normal")),
        "{}",
        r.text
    );

    // Cancel while recording: the task stops like Stop (CancelTime set, control sent).
    api.begin_recording(&id).await;
    let cancel = json!({"Action": "Cancel", "Data": {"TaskID": id}}).to_string();
    let r = api.post_with("/record", cancel.clone(), &json_ct).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = api.describe(&id).await;
    assert_eq!(d["Status"], "canceled", "{d}");
    assert!(d["CancelTime"].is_i64(), "{d}");
    assert_eq!(api.controls(&id).await, vec![ControlMsg::Stop]);
    // Repeated: already in effect.
    assert_eq!(api.post_with("/", cancel, &json_ct).await.status, 200);
    // Before recording began, Cancel cancels the task as Stop does.
    let (canceled, stopped) = (api.start_page().await, api.start_page().await);
    assert_eq!(api.on_task("Cancel", &canceled).await.status, 200);
    assert_eq!(api.on_task("Stop", &stopped).await.status, 200);
    assert_eq!(
        api.status_of(&canceled).await,
        api.status_of(&stopped).await
    );
    // Unknown actions list Cancel among the known ones.
    let r = api.action("Abort", json!({})).await;
    assert_eq!(code_of(&r), (400, "UnsupportedAction"));
    assert!(r.text.contains("Stop, Cancel, Describe"), "{}", r.text);
}

/// With PAGECAST_COMPAT=web-record, errors of the Action endpoint are HTTP 200 with the same
/// body and web-record's codes; the default mode is unchanged; other endpoints keep their
/// statuses.
#[tokio::test]
async fn web_record_mode_answers_errors_with_200_and_its_codes() {
    let redis = TestRedis::start();
    let compat = serve(&redis, |s| {
        s.http.compat = pagecast::api::compat::Compat::WebRecord;
        s.tokens = tokens(&["t1"]);
    })
    .await;
    let plain = serve(&redis, |s| s.tokens = tokens(&["t1"])).await;
    let auth = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer t1"),
    ];
    let start = json!({"Action": "Start", "Data": {"RecordURL": PAGE}}).to_string();
    let mut ids = Vec::new();
    // Tasks stopped before they began: finished (Canceled), so Pause is in the wrong status.
    let mut done = Vec::new();
    for api in [&plain, &compat] {
        let r = api.post_with("/", start.clone(), &auth).await;
        assert_eq!(r.status, 200);
        ids.push(r.json["TaskID"].as_str().unwrap().to_string());
        let r = api.post_with("/", start.clone(), &auth).await;
        let id = r.json["TaskID"].as_str().unwrap().to_string();
        let stop = json!({"Action": "Stop", "Data": {"TaskID": id}}).to_string();
        assert_eq!(api.post_with("/", stop, &auth).await.status, 200);
        done.push(id);
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    // (body, headers, default answer, web-record code)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, (u16, &'a str), &'a str);
    let cases = |done: &str| -> Vec<Case<'_>> {
        vec![
            (
                json!({"Action": "Describe", "Data": {}}).to_string(),
                auth.to_vec(),
                (400, "MissingParam"),
                "InvalidParam",
            ),
            (
                json!({"Action": "Describe", "Data": {"TaskID": unknown}}).to_string(),
                auth.to_vec(),
                (404, "TaskNotFound"),
                "InvalidParam",
            ),
            (
                json!({"Action": "Pause", "Data": {"TaskID": done}}).to_string(),
                auth.to_vec(),
                (409, "InvalidState"),
                "InvalidStatus",
            ),
            (
                json!({"Action": "Start", "Data": {"RecordURL": "ftp://x"}}).to_string(),
                auth.to_vec(),
                (400, "InvalidParam"),
                "InvalidParam",
            ),
            (
                json!({"Action": "Explode"}).to_string(),
                auth.to_vec(),
                (400, "UnsupportedAction"),
                "UnsupportedAction",
            ),
            (
                "{}".to_string(),
                vec![("Content-Type", "application/json")],
                (401, "Unauthorized"),
                "Unauthorized",
            ),
            (
                "{}".to_string(),
                vec![
                    ("Authorization", "Bearer t1"),
                    ("Content-Type", "text/plain"),
                ],
                (415, "UnsupportedMediaType"),
                "UnsupportedMediaType",
            ),
        ]
    };
    for ((plain_case, compat_case), path) in cases(&done[0])
        .into_iter()
        .zip(cases(&done[1]))
        .flat_map(|c| [(c.clone(), "/"), (c, "/record")])
    {
        let (body, headers, default, _) = plain_case;
        let r = plain.post_with(path, body.clone(), &headers).await;
        assert_eq!(
            code_of(&r),
            default,
            "default mode {path} {body}: {}",
            r.text
        );
        let (body, headers, _, web_record) = compat_case;
        let r = compat.post_with(path, body.clone(), &headers).await;
        assert_eq!(
            code_of(&r),
            (200, web_record),
            "web-record mode {path} {body}: {}",
            r.text
        );
        assert_eq!(r.json.as_object().map(|o| o.len()), Some(3), "{}", r.text);
        assert!(!r.json["ErrorMessage"].as_str().unwrap().is_empty());
    }
    let id = ids[1].clone();
    // Successes are the same in both modes.
    let describe = json!({"Action": "Describe", "Data": {"TaskID": id}}).to_string();
    let r = compat.post_with("/record", describe, &auth).await;
    assert_eq!((r.status, r.json["Status"].as_str()), (200, Some("normal")));
    // Not the Action endpoint: real statuses (a player, a probe must see them).
    assert_eq!(compat.raw_get("/files/x.mp4").await.status, 403);
    assert_eq!(compat.raw_get("/nowhere").await.status, 404);
}

/// web-record's internal actions (`List`, `DescribeDetail`, `ForceStop`) and its Tencent Cloud
/// API envelope (`RecordAction`/`RecordData`) are refused as docs/api.md says, in both modes,
/// on both paths, and start or stop nothing.
#[tokio::test]
async fn web_record_internal_actions_are_refused_as_documented() {
    let redis = TestRedis::start();
    for compat in [
        pagecast::api::compat::Compat::Off,
        pagecast::api::compat::Compat::WebRecord,
    ] {
        let api = serve(&redis, |s| s.http.compat = compat).await;
        let web_record = compat == pagecast::api::compat::Compat::WebRecord;
        let id = api.start_page().await;
        let json_only = [("Content-Type", "application/json")];
        for path in ["/", "/record"] {
            for action in ["List", "DescribeDetail", "ForceStop"] {
                let body = json!({"Action": action, "Data": {"TaskID": id}}).to_string();
                let r = api.post_with(path, body, &json_only).await;
                let status = if web_record { 200 } else { 400 };
                assert_eq!(
                    code_of(&r),
                    (status, "UnsupportedAction"),
                    "{compat:?} {path} {action}: {}",
                    r.text
                );
                assert!(
                    r.json["ErrorMessage"].as_str().unwrap().contains(action),
                    "{}",
                    r.text
                );
            }
            // The envelope web-record's dispatcher also read, for its Tencent Cloud API.
            let body = json!({
                "RecordAction": "Start",
                "RecordData": {"RecordURL": PAGE},
                "RequestId": "req-1",
            })
            .to_string();
            let r = api.post_with(path, body, &json_only).await;
            let expected = if web_record {
                (200, "InvalidParam")
            } else {
                (400, "MissingParam")
            };
            assert_eq!(code_of(&r), expected, "{compat:?} {path}: {}", r.text);
            let message = r.json["ErrorMessage"].as_str().unwrap();
            assert!(
                message.starts_with("Action is required") && message.contains("RecordAction"),
                "{message}"
            );
            assert!(
                r.json.get("Response").is_none(),
                "no Tencent Cloud envelope: {}",
                r.text
            );
        }
        // ForceStop stopped nothing; only the one Start created a task.
        assert_eq!(api.status_of(&id).await, "normal", "{compat:?}");
        assert_eq!(api.store.queued_count().await.unwrap(), 1, "{compat:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics behind the token
// ---------------------------------------------------------------------------------------------

/// With API tokens, /metrics needs one too; the probes do not.
#[tokio::test]
async fn metrics_need_a_token_when_tokens_are_configured() {
    let redis = TestRedis::start();
    let api = serve(&redis, |s| s.tokens = tokens(&["t1"])).await;
    let get = |path: &'static str, token: Option<&'static str>| {
        let mut req = api.client.get(format!("{}{path}", api.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap().to_vec();
            (status, headers, body)
        }
    };
    for (token, status) in [(None, 401), (Some("wrong"), 401), (Some("t1"), 200)] {
        let (s, headers, body) = get("/metrics", token).await;
        assert_eq!(s, status, "{token:?}: {}", String::from_utf8_lossy(&body));
        let errs = SPEC.check_response("/metrics", "get", s, &headers, &body);
        assert!(errs.is_empty(), "{errs:?}");
        if s == 200 {
            assert!(String::from_utf8_lossy(&body).contains("pagecast_api_requests_total"));
        }
    }
    assert_eq!(get("/healthz", None).await.0, 200);
    assert_eq!(get("/readyz", None).await.0, 200);
    // Without tokens (the API is open then), /metrics is open too.
    let open = serve(&redis, |_| {}).await;
    let r = open
        .client
        .get(format!("{}/metrics", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
