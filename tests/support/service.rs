//! Running pagecast as a service in tests: `serve` and `worker` processes against a real Redis,
//! a client for the Action API, and a callback receiver.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{pagecast, scratch};
use super::redis_support::TestRedis;

/// A pagecast process (serve or worker) that is stopped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Service {
    pub url: String,
    pub out: PathBuf,
    pub dir: PathBuf,
    pub procs: Vec<Proc>,
    /// The Redis key prefix the service's processes share.
    pub prefix: String,
    /// The environment of the service's workers (node `node-a`), to start more of them.
    pub worker_env: Vec<(&'static str, String)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn spawn(args: &[&str], env: &[(&str, String)], log: &Path) -> Proc {
    let mut cmd = pagecast();
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd.env("PAGECAST_LOG", "info,pagecast=debug,chromiumoxide=off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawn pagecast"),
    }
}

/// `serve` (with `workers` in-process capacity, or none) plus `extra_workers` worker processes.
pub fn service(
    redis: &TestRedis,
    name: &str,
    in_process_worker: bool,
    extra_workers: usize,
    capacity: usize,
) -> Service {
    service_with(redis, name, in_process_worker, extra_workers, capacity, &[])
}

/// [`service`] with extra environment for every process.
pub fn service_with(
    redis: &TestRedis,
    name: &str,
    in_process_worker: bool,
    extra_workers: usize,
    capacity: usize,
    extra_env: &[(&'static str, &str)],
) -> Service {
    service_at(
        &redis.url,
        name,
        in_process_worker,
        extra_workers,
        capacity,
        extra_env,
    )
}

/// [`service_with`] against the Redis at `redis_url` (TLS, a cluster, sentinels: with the
/// settings for it in `extra_env`).
pub fn service_at(
    redis_url: &str,
    name: &str,
    in_process_worker: bool,
    extra_workers: usize,
    capacity: usize,
    extra_env: &[(&'static str, &str)],
) -> Service {
    let dir = scratch(name);
    let out = dir.join("out");
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = |port: u16, node: &str| {
        vec![
            ("PAGECAST_REDIS_URL", redis_url.to_string()),
            ("PAGECAST_KEY_PREFIX", prefix.clone()),
            ("PAGECAST_LISTEN", format!("127.0.0.1:{port}")),
            ("PAGECAST_OUTPUT_DIR", out.display().to_string()),
            ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
            ("PAGECAST_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("PAGECAST_WORKER_CAPACITY", capacity.to_string()),
            ("PAGECAST_LEASE_MS", "3000".to_string()),
            ("PAGECAST_NODE_ID", node.to_string()),
            // The fixture pages are served on loopback.
            ("PAGECAST_ALLOW_PRIVATE_URLS", "true".to_string()),
            (
                "PAGECAST_ALLOWED_PRIVATE_NETWORKS",
                "127.0.0.0/8,::1".to_string(),
            ),
        ]
        .into_iter()
        .chain(extra_env.iter().map(|(k, v)| (*k, v.to_string())))
        .collect::<Vec<_>>()
    };
    let mut serve_args = vec!["serve"];
    if !in_process_worker {
        serve_args.push("--no-worker");
    }
    let log = dir.join("serve.log");
    // The port is chosen here and released before serve binds it (its public URL must be known
    // up front); when another process takes it in between, serve exits naming the bind failure
    // and is started again on a new port.
    let (serve, port) = (1..=5)
        .find_map(|attempt| {
            let port = free_port();
            let mut serve = spawn(&serve_args, &env(port, "node-a"), &log);
            match wait_serving(&mut serve, port, &log, Some(redis_url)) {
                Ok(()) => Some((serve, port)),
                Err(why) if attempt < 5 && why.contains("Address already in use") => None,
                Err(why) => panic!("pagecast serve did not start: {why}"),
            }
        })
        .expect("pagecast serve started within 5 ports");
    let mut procs = vec![serve];
    for i in 0..extra_workers {
        // All on one machine, so they share the node id (and its work directory).
        procs.push(spawn(
            &["worker"],
            &env(port, "node-a"),
            &dir.join(format!("worker{i}.log")),
        ));
    }
    let worker_env = env(port, "node-a");
    Service {
        url: format!("http://127.0.0.1:{port}"),
        out,
        worker_env,
        dir,
        procs,
        prefix,
    }
}

/// Whether the first `host:port` of a Redis URL accepts connections (false when the URL names
/// none).
fn redis_reachable(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split(['/', ',', '?']).next().unwrap_or_default();
    std::net::TcpStream::connect(host_port).is_ok()
}

/// Waits (until `deadline`) until serve's API answers a Describe with something other than
/// ServiceUnavailable (it has reached Redis); on failure, why (with serve's log when it exited).
fn wait_api_ready(
    serve: &mut Proc,
    port: u16,
    log: &Path,
    deadline: Instant,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(Some(status)) = serve.child.try_wait() {
            return Err(format!(
                "serve exited with {status} before it reached Redis; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        let (status, body) = describe_status(&url, &uuid::Uuid::new_v4().to_string());
        // web-record's compatibility mode answers every error with HTTP 200 and the code in
        // the body.
        if status != 503 && body["ErrorCode"] != "ServiceUnavailable" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "serve did not reach Redis within 20 s ({body}); see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the listener on `port` is this `serve` process: its `/healthz` answers
/// pagecast's `{"Status":"ok"}` and echoes the request id this check sent. With `redis_url`
/// naming a Redis that is up, also until the API takes requests: it answers 503 until serve has
/// reached Redis (a test that starts serve before Redis gets it at once). On failure, why (with
/// serve's log when it exited).
pub fn wait_serving(
    serve: &mut Proc,
    port: u16,
    log: &Path,
    redis_url: Option<&str>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let rid = format!("up-{}", uuid::Uuid::new_v4().simple());
    let (rt, client) = http();
    loop {
        if let Ok(Some(status)) = serve.child.try_wait() {
            return Err(format!(
                "serve exited with {status}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        let answered = rt.block_on(async {
            let r = client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .header("x-request-id", &rid)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            let echoed = r.headers().get("x-request-id")?.to_str().ok()? == rid;
            let body: Value = r.json().await.ok()?;
            Some(echoed && body["Status"] == "ok" && body["RequestID"] == rid.as_str())
        });
        if answered == Some(true) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no pagecast /healthz on port {port} within 20 s (last: {answered:?}); see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match redis_url {
        Some(url) if redis_reachable(url) => wait_api_ready(serve, port, log, deadline),
        _ => Ok(()),
    }
}

/// One runtime and one HTTP client for all calls (building a TLS-capable client per call costs
/// hundreds of milliseconds on a loaded machine and would skew the tests' timelines).
pub fn http() -> &'static (tokio::runtime::Runtime, reqwest::Client) {
    static HTTP: std::sync::OnceLock<(tokio::runtime::Runtime, reqwest::Client)> =
        std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        (rt, reqwest::Client::new())
    })
}

pub fn call(url: &str, action: &str, data: Value) -> (u16, Value) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client
            .post(format!("{url}/"))
            .json(&json!({ "Action": action, "Data": data }))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    })
}

pub fn start(url: &str, data: Value) -> String {
    let (status, body) = call(url, "Start", data);
    assert_eq!(status, 200, "Start failed: {body}");
    body["TaskID"].as_str().unwrap().to_string()
}

/// Starts a task and waits until a worker records it.
pub fn start_recording(url: &str, data: Value) -> String {
    let id = start(url, data);
    wait_for(
        url,
        &id,
        "recording",
        Duration::from_secs(30),
        status_is("recording"),
    );
    id
}

/// One Describe of task `id`: the HTTP status and the body.
pub fn describe_status(url: &str, id: &str) -> (u16, Value) {
    call(url, "Describe", json!({ "TaskID": id }))
}

pub fn describe(url: &str, id: &str) -> Value {
    let (status, body) = describe_status(url, id);
    assert_eq!(status, 200, "Describe failed: {body}");
    body
}

pub fn ok(url: &str, action: &str, id: &str) {
    let (status, body) = call(url, action, json!({ "TaskID": id }));
    assert_eq!(status, 200, "{action} failed: {body}");
}

/// Polls Describe until `pred` holds; returns that Describe.
pub fn wait_for(
    url: &str,
    id: &str,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        // A 503 is transient by contract (Redis failing over, restarting): wait on.
        let (status, d) = describe_status(url, id);
        assert!(
            status == 200 || status == 503,
            "Describe failed while waiting for {what}: {d}"
        );
        if status == 200 && pred(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last Describe: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |d| d["Status"] == s
}

/// Polls Describe until the task is `finished` (or `limit` passes); returns that Describe.
pub fn wait_finished(url: &str, id: &str, limit: Duration) -> Value {
    wait_for(url, id, "finished", limit, status_is("finished"))
}

/// Downloads the task's first result file through its FileURL.
pub fn fetch_video(d: &Value, to: &Path) -> PathBuf {
    let videos = d["Result"]["Videos"]
        .as_array()
        .unwrap_or_else(|| panic!("no videos in {d}"));
    let url = videos[0]["FileURL"].as_str().unwrap().to_string();
    let size = videos[0]["FileSize"].as_u64().unwrap();
    let (rt, client) = http();
    let bytes = rt.block_on(async {
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert_eq!(bytes.len() as u64, size, "FileSize matches the served file");
    let path = to.join("result.mp4");
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// One request a [`CallbackReceiver`] got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `/ok` or `/fail`.
    pub path: String,
    /// `X-Pagecast-Signature`.
    pub signature: Option<String>,
    /// `X-Pagecast-Event-Id`.
    pub event_id: Option<String>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// A loopback port bound but not listening: nothing else can take it, and connections to it are
/// refused until a [`CallbackReceiver`] starts on it.
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
    /// The port.
    pub port: u16,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        ReservedPort { socket, port }
    }
}

/// A callback receiver on loopback: `/ok` answers 204, `/fail` answers 500; every request is
/// kept. Runs until the test process ends.
pub struct CallbackReceiver {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl CallbackReceiver {
    /// On a free port.
    pub fn start() -> CallbackReceiver {
        Self::start_on(ReservedPort::new())
    }

    /// On a port reserved earlier (until now, connections to it were refused).
    pub fn start_on(reserved: ReservedPort) -> CallbackReceiver {
        use axum::extract::Path as UrlPath;
        use axum::routing::post;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = got.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = reserved.socket.listen(1024).unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().route(
                    "/{path}",
                    post(
                        move |UrlPath(path): UrlPath<String>,
                              headers: axum::http::HeaderMap,
                              body: axum::body::Bytes| {
                            let store = store.clone();
                            async move {
                                let header = |name: &str| {
                                    headers
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .map(String::from)
                                };
                                store.lock().unwrap().push(Delivery {
                                    path: format!("/{path}"),
                                    signature: header("x-pagecast-signature"),
                                    event_id: header("x-pagecast-event-id"),
                                    body: body.to_vec(),
                                });
                                if path == "ok" {
                                    axum::http::StatusCode::NO_CONTENT
                                } else {
                                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                                }
                            }
                        },
                    ),
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        CallbackReceiver {
            url: format!("http://{}", rx.recv().unwrap()),
            got,
        }
    }

    /// What arrived so far.
    pub fn received(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

/// The address a pagecast process logged it listens on for `what` (e.g. "health and metrics
/// listening"), waiting up to 20 s: a listener given port 0 picks a free port itself, so no
/// other process can take it between choosing and binding.
pub fn logged_addr(log: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains(what))
            .find_map(|l| l.split_once("addr=").map(|(_, a)| a))
            .map(|a| a.split_whitespace().next().unwrap_or_default().to_string());
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no \"{what}\" line in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the log file `log` contains `text` (up to `limit`).
pub fn wait_logged(log: &Path, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} within {limit:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
