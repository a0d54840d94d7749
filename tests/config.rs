//! Configuration: the README's tables list exactly the settings `pagecast --help` knows, with the
//! same defaults, and settings that cannot work stop `serve` and `worker` at once with a message
//! naming the variable.

mod common;
#[path = "support/redis.rs"]
mod redis_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const COMMANDS: [&str; 4] = ["record", "serve", "worker", "doctor"];

/// `PAGECAST_*` variables of every command's `--help`, with their clap default (if any).
fn settings_from_help() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for cmd in COMMANDS {
        let o = pagecast()
            .args([cmd, "--help"])
            .output()
            .expect("run --help");
        assert!(o.status.success(), "{cmd} --help failed");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        // Each option's block: its env line, then maybe its default line.
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("[env: ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let default = lines
                .get(i + 1)
                .and_then(|l| l.strip_prefix("[default: "))
                .and_then(|l| l.strip_suffix(']'))
                .map(String::from);
            out.insert(name, default);
        }
    }
    out
}

/// Rows of the README's tables whose first cell names `PAGECAST_*` variables:
/// variable → the whole row.
fn readme_rows() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `PAGECAST_")) {
        let first = line.split('|').nth(1).unwrap_or("");
        for name in first.split('`').filter(|s| s.starts_with("PAGECAST_")) {
            rows.insert(name.to_string(), line.to_string());
        }
    }
    rows
}

#[test]
fn readme_lists_every_setting_with_its_default() {
    let help = settings_from_help();
    let readme = readme_rows();
    assert!(
        help.len() > 40,
        "too few settings found in --help: {help:?}"
    );
    let mut problems = Vec::new();
    for (name, default) in &help {
        match readme.get(name) {
            None => problems.push(format!("{name} is not in a README table")),
            Some(row) => {
                if let Some(d) = default
                    && !row.contains(d.as_str())
                {
                    problems.push(format!(
                        "{name}: the README row does not show the default {d:?}: {row}"
                    ));
                }
            }
        }
    }
    // PAGECAST_LOG is read directly (a tracing filter), not through clap.
    for name in readme.keys() {
        if !help.contains_key(name) && name != "PAGECAST_LOG" {
            problems.push(format!("{name} is in the README but no command knows it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn fails_fast(cmd: &str, env: &[(&str, &str)], naming: &str) {
    let mut c = pagecast();
    c.arg(cmd).envs(env.iter().copied());
    let began = Instant::now();
    let o = run(c, Duration::from_secs(20));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{cmd} {env:?}: took {:?}",
        began.elapsed()
    );
    assert_eq!(o.status.code(), Some(2), "{cmd} {env:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(naming), "{cmd} {env:?}: {err}");
}

#[test]
fn settings_that_cannot_work_stop_the_start_with_a_clear_message() {
    let secret = "redis://:hunter2@host:notaport";
    fails_fast(
        "worker",
        &[("PAGECAST_REDIS_URL", secret)],
        "PAGECAST_REDIS_URL",
    );
    let o = {
        let mut c = pagecast();
        c.arg("worker").env("PAGECAST_REDIS_URL", secret);
        run(c, Duration::from_secs(20))
    };
    assert!(
        !stderr(&o).contains("hunter2"),
        "the password leaked: {}",
        stderr(&o)
    );
    fails_fast("serve", &[("PAGECAST_LISTEN", "8080")], "PAGECAST_LISTEN");
    fails_fast(
        "worker",
        &[("PAGECAST_FFMPEG", "/nonexistent/ffmpeg")],
        "PAGECAST_FFMPEG",
    );
    fails_fast(
        "serve",
        &[("PAGECAST_PUBLIC_URL", "files.example.org")],
        "PAGECAST_PUBLIC_URL",
    );
    fails_fast(
        "worker",
        &[("PAGECAST_S3_ENDPOINT", "ftp://minio:9000")],
        "PAGECAST_S3_ENDPOINT",
    );
    // A bad value from the environment is reported under the variable's name.
    fails_fast(
        "worker",
        &[("PAGECAST_WORKER_CAPACITY", "0")],
        "PAGECAST_WORKER_CAPACITY",
    );
    fails_fast(
        "worker",
        &[("PAGECAST_SHUTDOWN", "later")],
        "PAGECAST_SHUTDOWN",
    );
    fails_fast(
        "worker",
        &[("PAGECAST_LEASE_MS", "10")],
        "PAGECAST_LEASE_MS",
    );

    // Redis settings that cannot work together.
    fails_fast(
        "worker",
        &[("PAGECAST_REDIS_URL", "redis://a:1,redis://b:2")],
        "PAGECAST_REDIS_MODE",
    );
    fails_fast(
        "worker",
        &[("PAGECAST_REDIS_MODE", "sentinel")],
        "PAGECAST_REDIS_SENTINEL_MASTER",
    );
    fails_fast(
        "serve",
        &[("PAGECAST_REDIS_CA_FILE", "/etc/hostname")],
        "PAGECAST_REDIS_CA_FILE",
    );
    fails_fast(
        "serve",
        &[
            ("PAGECAST_REDIS_URL", "rediss://127.0.0.1:6380"),
            ("PAGECAST_REDIS_CLIENT_CERT", "/etc/hostname"),
        ],
        "PAGECAST_REDIS_CLIENT_KEY",
    );
    fails_fast(
        "worker",
        &[("PAGECAST_REDIS_MODE", "ring")],
        "PAGECAST_REDIS_MODE",
    );

    // A listen address that cannot be bound is a configuration error too (exit 2), for the
    // API and the metrics listener alike.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    fails_fast("serve", &[("PAGECAST_LISTEN", &taken)], "PAGECAST_LISTEN");
    fails_fast(
        "worker",
        &[("PAGECAST_METRICS_LISTEN", &taken)],
        "PAGECAST_METRICS_LISTEN",
    );

    // Listening on every address with results kept locally: no URL clients could reach
    // would be advertised, so the public URL must be set.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let wildcard = format!("0.0.0.0:{port}");
    fails_fast(
        "serve",
        &[("PAGECAST_LISTEN", &wildcard)],
        "PAGECAST_PUBLIC_URL",
    );
}

/// A separate worker that keeps results locally names them with the URL of the API server
/// that serves them: its own setting, or what an API server published; never a guess.
#[test]
fn a_worker_names_local_results_with_the_api_servers_url() {
    let redis = redis_support::TestRedis::start();
    let dir = scratch("config-public-url");
    let env = |prefix: &str| {
        vec![
            ("PAGECAST_REDIS_URL", redis.url.clone()),
            ("PAGECAST_KEY_PREFIX", prefix.to_string()),
            ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
            ("PAGECAST_OUTPUT_DIR", dir.join("out").display().to_string()),
        ]
    };
    // Nothing published, nothing set: the worker says what to set.
    let mut c = pagecast();
    c.arg("worker").envs(env("nothing:"));
    let o = run(c, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("PAGECAST_PUBLIC_URL"), "{}", stderr(&o));

    // An API server on a loopback address publishes its URL; a worker then starts and stays.
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut serve = pagecast();
    serve
        .args(["serve", "--no-worker"])
        .envs(env("shared:"))
        .env("PAGECAST_LISTEN", &listen)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut serve = serve.spawn().unwrap();
    let published = wait_for_key(&redis.url, "shared:public-url");
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(
        published.as_deref(),
        Some(format!("http://{listen}").as_str())
    );
    let mut worker = pagecast();
    worker
        .arg("worker")
        .envs(env("shared:"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut worker = worker.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let exited = worker.try_wait().unwrap();
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(exited.is_none(), "the worker stopped: {exited:?}");
}

/// Polls `key` in Redis (with redis-cli) for up to 20 s.
fn wait_for_key(url: &str, key: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let o = std::process::Command::new("redis-cli")
            .args(["-u", url, "--raw", "GET", key])
            .output()
            .expect("redis-cli");
        let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !v.is_empty() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Every `PAGECAST_*` name in `text`.
fn names_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.starts_with("PAGECAST_") && w.len() > "PAGECAST_".len())
        .map(String::from)
        .collect()
}

#[test]
fn the_deployment_files_use_only_real_settings() {
    let help = settings_from_help();
    let root = env!("CARGO_MANIFEST_DIR");
    let compose_text =
        std::fs::read_to_string(format!("{root}/docs/deploy/compose.yaml")).expect("compose.yaml");
    let compose: serde_json::Value =
        serde_norway::from_str(&compose_text).expect("compose.yaml is YAML");
    for service in ["redis", "api", "worker"] {
        assert!(
            compose["services"][service].is_object(),
            "no {service} service"
        );
    }
    assert_eq!(compose["services"]["worker"]["command"][0], "worker");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).expect("Dockerfile");
    for (file, text) in [("compose.yaml", &compose_text), ("Dockerfile", &dockerfile)] {
        for name in names_in(text) {
            assert!(
                help.contains_key(&name),
                "{file} sets {name}, which no command knows"
            );
        }
    }
    // tini as PID 1 reaps what Chromium's helpers orphan; pagecast gets the signals.
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/bin/tini\", \"--\", \"pagecast\"]"));
    let runtime = dockerfile.rsplit("FROM ").next().unwrap_or_default();
    assert!(
        runtime.contains(" tini "),
        "tini is installed in the runtime stage"
    );
    assert!(
        !dockerfile.contains("libssl"),
        "no OpenSSL in the build or the image (TLS is rustls)"
    );
    assert!(dockerfile.contains("HEALTHCHECK"));
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let tools = std::env::var("PAGECAST_TOOLS_DIR").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/pagecast-tools")
        },
        std::path::PathBuf::from,
    );
    let hadolint = tools.join("bin/hadolint");
    assert!(
        hadolint.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        hadolint.display()
    );
    let o = std::process::Command::new(&hadolint)
        .args([
            "--no-color",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"),
        ])
        .output()
        .expect("run hadolint");
    assert!(
        o.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
