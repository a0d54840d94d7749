//! pagecast where cloud deployments run it: storage credentials from the standard AWS
//! provider chain (here a container credentials endpoint, as ECS and EKS Pod Identity serve
//! them), fetched once per process and again before they expire; https storage and callbacks
//! behind a private certificate authority, on the one TLS stack (rustls).

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/tls.rs"]
mod tls_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use redis_support::TestRedis;
use s3_support::TestS3;
use serde_json::json;
use service_support::*;
use tls_support::{private_ca, tls_proxy};

/// The session token the credentials endpoint hands out.
const SESSION_TOKEN: &str = "pagecast-session-token-7f3a";
/// The authorization token the endpoint demands (EKS Pod Identity and ECS send one).
const ENDPOINT_TOKEN: &str = "container-auth-token-51c9";
/// How long each set of credentials it hands out is valid.
const CREDENTIALS_TTL: Duration = Duration::from_secs(40);

/// RFC 3339 UTC of a Unix time (days to civil date: Howard Hinnant's algorithm).
fn rfc3339(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
}

/// One request the credentials endpoint answered: when, and the Authorization it carried.
#[derive(Debug, Clone)]
struct Fetch {
    at: Instant,
    authorization: Option<String>,
}

/// A container credentials endpoint on loopback handing out the test S3 server's keys as
/// temporary credentials valid for [`CREDENTIALS_TTL`]; requests without the authorization
/// token get 401.
fn credentials_endpoint() -> (String, Arc<Mutex<Vec<Fetch>>>) {
    use axum::routing::get;
    let fetches = Arc::new(Mutex::new(Vec::new()));
    let seen = fetches.clone();
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
                "/v1/credentials",
                get(move |headers: axum::http::HeaderMap| {
                    let seen = seen.clone();
                    async move {
                        let authorization = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(String::from);
                        let ok = authorization.as_deref() == Some(ENDPOINT_TOKEN);
                        seen.lock().unwrap().push(Fetch {
                            at: Instant::now(),
                            authorization,
                        });
                        if !ok {
                            return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                        }
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                        let body = json!({
                            "AccessKeyId": s3_support::ACCESS_KEY,
                            "SecretAccessKey": s3_support::SECRET_KEY,
                            "Token": SESSION_TOKEN,
                            "Expiration": rfc3339((now + CREDENTIALS_TTL).as_secs()),
                        });
                        (axum::http::StatusCode::OK, body.to_string())
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}/v1/credentials"), fetches)
}

/// The storage settings of `s3` with no keys anywhere: credentials only from `endpoint`.
fn chain_env(s3: &TestS3, endpoint: &str, home: &std::path::Path) -> Vec<(&'static str, String)> {
    let none = home.join("none");
    vec![
        ("PAGECAST_S3_ENDPOINT", s3.endpoint.clone()),
        ("PAGECAST_S3_BUCKET", s3_support::BUCKET.to_string()),
        ("PAGECAST_S3_REGION", "us-east-1".to_string()),
        ("PAGECAST_S3_PATH_STYLE", "true".to_string()),
        ("PAGECAST_S3_PRESIGN_SECONDS", "3600".to_string()),
        // Blank keys count as none; no profile files; no instance metadata service.
        ("AWS_ACCESS_KEY_ID", String::new()),
        ("AWS_SECRET_ACCESS_KEY", String::new()),
        ("AWS_SESSION_TOKEN", String::new()),
        ("AWS_SHARED_CREDENTIALS_FILE", none.display().to_string()),
        ("AWS_CONFIG_FILE", none.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.to_string()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            ENDPOINT_TOKEN.to_string(),
        ),
    ]
}

fn in_bucket(s3: &TestS3, d: &serde_json::Value) -> (String, String) {
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let v = &d["Result"]["Videos"][0];
    // `Key` is the object's name (`Filename` its base name).
    let (name, url) = (
        v["Key"].as_str().unwrap().to_string(),
        v["FileURL"].as_str().unwrap().to_string(),
    );
    let stored = s3
        .object(s3_support::BUCKET, &name)
        .unwrap_or_else(|| panic!("{name} is not in the bucket: {d}"));
    assert_eq!(stored.len() as u64, v["FileSize"].as_u64().unwrap(), "{d}");
    (name, url)
}

#[test]
fn storage_credentials_come_from_a_container_endpoint_and_are_refreshed_before_expiry() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let fixtures = fixture_server();
    let (endpoint, fetches) = credentials_endpoint();
    let home = scratch("cloud-chain-home");
    let env = chain_env(&s3, &endpoint, &home);
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = service_with(&redis, "cloud-chain", true, 0, 2, &env);

    // Two tasks at once: their uploads share the process's one credentials cache.
    let page = json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 });
    let a = start(&svc.url, page.clone());
    let b = start(&svc.url, page.clone());
    let da = wait_finished(&svc.url, &a, Duration::from_secs(90));
    let db = wait_finished(&svc.url, &b, Duration::from_secs(90));
    let (_, url_a) = in_bucket(&s3, &da);
    in_bucket(&s3, &db);
    assert!(
        url_a.contains("X-Amz-Security-Token="),
        "the result URL is signed with the temporary credentials: {url_a}"
    );
    let first = fetches.lock().unwrap().clone();
    assert!(
        !first.is_empty(),
        "the credentials endpoint was never asked"
    );
    assert!(
        first
            .iter()
            .all(|f| f.authorization.as_deref() == Some(ENDPOINT_TOKEN)),
        "every request carries the endpoint's authorization token: {first:?}"
    );
    let fetched_at = first[0].at;
    // Both tasks finished well inside the credentials' life (minus the refresh margin).
    if fetched_at.elapsed() < CREDENTIALS_TTL - Duration::from_secs(12) {
        assert_eq!(
            first.len(),
            1,
            "one process, one credentials cache: fetched once for two tasks: {first:?}"
        );
    }

    // Past the expiry: the next upload fetches fresh credentials first.
    let wait = (fetched_at + CREDENTIALS_TTL + Duration::from_secs(1))
        .saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    let before = fetches.lock().unwrap().len();
    let c = start(&svc.url, page);
    let dc = wait_finished(&svc.url, &c, Duration::from_secs(90));
    in_bucket(&s3, &dc);
    let after = fetches.lock().unwrap().clone();
    assert!(
        after.len() > before,
        "expired credentials are fetched again: {after:?}"
    );

    // The keys never reach the log.
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap();
    for secret in [s3_support::SECRET_KEY, SESSION_TOKEN, ENDPOINT_TOKEN] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
    let dir = svc.dir.clone();
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn without_credentials_doctor_says_what_to_set_at_once() {
    let s3 = TestS3::start();
    let home = scratch("cloud-nocreds");
    let mut env = chain_env(&s3, "", &home);
    env.retain(|(k, _)| !k.starts_with("AWS_CONTAINER"));
    let mut cmd = pagecast();
    cmd.arg("doctor").env_remove("AWS_PROFILE");
    for var in [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let began = Instant::now();
    let out = run(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    let line = text
        .lines()
        .find(|l| l.contains("storage"))
        .unwrap_or_else(|| panic!("no storage line: {text}"));
    assert!(line.starts_with("[FAIL]"), "{text}");
    assert!(
        line.contains("no storage credentials found") && line.contains("AWS_ACCESS_KEY_ID"),
        "{text}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    let _ = std::fs::remove_dir_all(&home);
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// `pagecast doctor`'s storage line with `env`.
fn doctor_storage(env: &[(&str, String)]) -> String {
    let mut cmd = pagecast();
    cmd.arg("doctor");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains(" storage ") || l.contains(" tls "))
        .unwrap_or_else(|| panic!("no storage line: {text}{}", stderr(&out)))
        .to_string()
}

#[test]
fn https_storage_and_callbacks_behind_a_private_ca_work_with_the_ca_setting() {
    let redis = TestRedis::start();
    let s3 = TestS3::start();
    let dir = scratch("cloud-tls");
    let (ca, cert, key) = private_ca(&dir);
    let s3_tls = format!(
        "https://127.0.0.1:{}",
        tls_proxy(&cert, &key, port_of(&s3.endpoint))
    );
    let receiver = CallbackReceiver::start();
    let callbacks_tls = format!(
        "https://127.0.0.1:{}",
        tls_proxy(&cert, &key, port_of(&receiver.url))
    );
    let mut env: Vec<(&'static str, String)> = s3.env();
    env.retain(|(k, _)| *k != "PAGECAST_S3_ENDPOINT");
    env.push(("PAGECAST_S3_ENDPOINT", s3_tls.clone()));
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));

    // Without the CA the storage's certificate is refused (the system roots do not know it) ...
    let line = doctor_storage(&env);
    assert!(line.starts_with("[FAIL]"), "{line}");
    // ... with it, the same storage is reached; the system roots are read too (SSL_CERT_FILE
    // names the system bundle to rustls), so naming the CA there works as well.
    let mut with_ca = env.clone();
    with_ca.push(("PAGECAST_TLS_CA_FILE", ca.display().to_string()));
    let line = doctor_storage(&with_ca);
    assert!(line.starts_with("[ok"), "{line}");
    let mut system = env.clone();
    system.push(("SSL_CERT_FILE", ca.display().to_string()));
    let line = doctor_storage(&system);
    assert!(line.starts_with("[ok"), "{line}");
    // A file that is not a CA bundle stops the service at start, naming the setting.
    let mut bad = env.clone();
    bad.push(("PAGECAST_TLS_CA_FILE", key.display().to_string()));
    bad.push(("PAGECAST_REDIS_URL", redis.url.clone()));
    let mut cmd = pagecast();
    cmd.arg("worker");
    for (k, v) in &bad {
        cmd.env(k, v);
    }
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PAGECAST_TLS_CA_FILE"),
        "{}",
        stderr(&out)
    );

    // The whole service: the result goes up over https and the callback comes over https.
    let env: Vec<(&'static str, &str)> = with_ca.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = service_with(&redis, "cloud-tls-svc", true, 0, 1, &env);
    let fixtures = fixture_server();
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/static.html"),
            "MaxDurationLimit": 2,
            "CallbackURL": format!("{callbacks_tls}/ok"),
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    let (_, url) = in_bucket(&s3, &d);
    assert!(url.starts_with(&s3_tls), "{url}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one callback over https: {got:?}");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["TaskID"], id.as_str(), "{body}");
    let svc_dir = svc.dir.clone();
    drop(svc);
    let _ = std::fs::remove_dir_all(&svc_dir);
    let _ = std::fs::remove_dir_all(&dir);
}
