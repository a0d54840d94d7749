//! Configuration: the README's tables list exactly the settings `pagecast --help` knows, with the
//! same defaults, and settings that cannot work stop `serve` and `worker` at once with a message
//! naming the variable.

mod common;

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
    fails_fast("worker", &[("PAGECAST_WORKER_CAPACITY", "0")], "capacity");
    fails_fast("worker", &[("PAGECAST_SHUTDOWN", "later")], "shutdown");
    fails_fast("worker", &[("PAGECAST_LEASE_MS", "10")], "lease");
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
        "{} is missing: run scripts/install-deps.sh",
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
