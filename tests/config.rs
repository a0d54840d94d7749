//! Configuration: docs/configuration.md's tables list exactly the settings `pagecast --help`
//! knows, cell by cell (variable, flag, default, limits, commands), and settings that cannot
//! work stop `serve` and `worker` at once with a message naming the variable.

mod common;
#[path = "support/docs.rs"]
mod docs;
#[path = "support/redis.rs"]
mod redis_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

/// The commands the tables' `commands` column names (`doctor` takes `worker`'s settings).
const TABLE_COMMANDS: [&str; 4] = ["record", "serve", "worker", "healthcheck"];

/// `PAGECAST_*` variables of every command's `--help`, with their clap default (if any).
fn settings_from_help() -> BTreeMap<String, Option<String>> {
    docs::help_settings()
        .into_iter()
        .filter_map(|((_, _), o)| o.env.clone().map(|e| (e, o.default.clone())))
        .collect()
}

fn configuration_page() -> std::path::PathBuf {
    docs::root().join("docs/configuration.md")
}

/// Every (setting, command) pair `--help` knows has one row, and every row's cells say what
/// the binary does: its variable and flag, its default, its limits and its commands.
#[test]
fn the_configuration_page_matches_the_binary_cell_by_cell() {
    let help = docs::help_settings();
    let rows = docs::doc_rows(&configuration_page());
    assert!(rows.len() > 80, "too few rows found: {}", rows.len());
    let mut problems = Vec::new();

    // Rows by (key, command); each pair once.
    let mut documented: BTreeMap<(String, String), &docs::DocRow> = BTreeMap::new();
    for row in &rows {
        for cmd in &row.commands {
            if !TABLE_COMMANDS.contains(&cmd.as_str()) {
                problems.push(format!("unknown command {cmd:?}: {}", row.line));
            }
            if documented.insert((row.key(), cmd.clone()), row).is_some() {
                problems.push(format!("{} for {cmd} is in two rows", row.key()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = help
        .keys()
        .filter(|(_, cmd)| TABLE_COMMANDS.contains(&cmd.as_str()))
        .cloned()
        .collect();
    for (key, cmd) in &known {
        if !documented.contains_key(&(key.clone(), cmd.clone())) {
            problems.push(format!("{key} ({cmd}) is in no row naming {cmd}"));
        }
    }
    for (key, cmd) in documented.keys() {
        if !known.contains(&(key.clone(), cmd.clone())) {
            problems.push(format!(
                "{key} is documented for {cmd}, whose --help does not know it"
            ));
        }
    }
    // doctor takes the settings of worker, as the page says.
    for (key, cmd) in help.keys() {
        if cmd == "doctor" && !help.contains_key(&(key.clone(), "worker".to_string())) {
            problems.push(format!("doctor knows {key}, which worker does not"));
        }
    }

    for ((key, cmd), row) in &documented {
        let Some(opt) = help.get(&(key.clone(), cmd.clone())) else {
            continue;
        };
        if opt.flag != row.flag {
            problems.push(format!(
                "{key}: flag {} in --help, {} in the row",
                opt.flag, row.flag
            ));
        }
        if row.short.is_some() && opt.short != row.short {
            problems.push(format!(
                "{key}: short flag {:?} in --help, {:?} in the row",
                opt.short, row.short
            ));
        }
        if opt.env != row.variable {
            problems.push(format!(
                "{key}: variable {:?} in --help, {:?} in the row",
                opt.env, row.variable
            ));
        }
        // The default, cell by cell.
        let expected = match (&opt.default, opt.takes_value) {
            (Some(d), _) => Some(format!("`{d}`")),
            (None, false) if opt.flag != "--verbose" => Some("false".to_string()),
            _ => None,
        };
        match expected {
            Some(e) if row.default != e => problems.push(format!(
                "{key} ({cmd}): default {e} in --help, {:?} in the row",
                row.default
            )),
            None if row.default.contains('`') || row.default.is_empty() => problems.push(format!(
                "{key} ({cmd}) has no fixed default: say in words what it is, not {:?}",
                row.default
            )),
            _ => {}
        }
        // The accepted words, when clap lists them.
        if !opt.possible.is_empty() {
            let listed: BTreeSet<String> = docs::code_spans(&row.limits).into_iter().collect();
            let possible: BTreeSet<String> = opt.possible.iter().cloned().collect();
            if listed != possible {
                problems.push(format!(
                    "{key}: --help accepts {possible:?}, the row lists {listed:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every numeric limit in the tables holds at both ends (and one past them), and a numeric
/// setting whose row says `—` takes 0 and a million: no limit the page does not state.
#[test]
fn the_documented_limits_are_the_binarys() {
    let help = docs::help_settings();
    let rows = docs::doc_rows(&configuration_page());
    let mut problems = Vec::new();
    let mut checked = 0;
    for row in &rows {
        let cmd = row.commands[0].as_str();
        let Some(opt) = help.get(&(row.key(), cmd.to_string())) else {
            continue; // reported by the cell-by-cell test
        };
        if !opt.possible.is_empty() {
            continue;
        }
        let mut expect = |value: String, accepted: bool| {
            if docs::accepts(cmd, &row.flag, &value) != accepted {
                problems.push(format!(
                    "pagecast {cmd} {} {value}: {} by the binary, but the row says {:?}",
                    row.flag,
                    if accepted { "refused" } else { "accepted" },
                    row.limits
                ));
            }
        };
        if let Some(range) = docs::parse_range(&row.limits) {
            checked += 1;
            expect(
                range.min.to_string(),
                range.min != 0 || range.zero != Some(false),
            );
            if range.min > 1 || (range.min == 1 && range.zero.is_none()) {
                expect((range.min - 1).to_string(), false);
            }
            if let Some(zero) = range.zero {
                expect("0".to_string(), zero);
            }
            if let Some(max) = range.max {
                expect(max.to_string(), true);
                expect((max + 1).to_string(), false);
            }
        } else if row.limits == "—" {
            if opt
                .default
                .as_deref()
                .is_some_and(|d| d.parse::<u64>().is_ok())
            {
                checked += 1;
                expect("0".to_string(), true);
                expect("1000000".to_string(), true);
            }
        } else if row.flag == "--hls-key" && row.limits == "32 hex digits" {
            // Checked by record's own tests (tests/cli.rs); probing it would start a recording.
        } else {
            problems.push(format!("limits the test cannot read: {}", row.line));
        }
    }
    assert!(checked > 25, "only {checked} limits checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `PAGECAST_*` name the docs mention is a setting some command knows, or one of the
/// variables read from the environment only, listed on the configuration page.
#[test]
fn the_docs_name_only_real_variables() {
    let help = settings_from_help();
    let env_only = [
        "PAGECAST_LOG",
        "PAGECAST_TOOLS_DIR",
        "PAGECAST_S3S_FS",
        "PAGECAST_FUZZ_EXAMPLES",
        "PAGECAST_FUZZ_SEED",
        "PAGECAST_BENCH_TOKEN",
        "PAGECAST_FONT_PYTHON",
    ];
    let config = std::fs::read_to_string(configuration_page()).expect("configuration.md");
    for name in env_only {
        assert!(
            config.contains(&format!("| `{name}`")) || config.contains(&format!(", `{name}`")),
            "{name} is not in the configuration page's environment-only table"
        );
    }
    let mut problems = Vec::new();
    for page in docs_pages() {
        let text = std::fs::read_to_string(&page).expect("read a doc page");
        for name in names_in(&text) {
            if !help.contains_key(&name) && !env_only.contains(&name.as_str()) {
                problems.push(format!("{}: {name} is no setting", page.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// README.md and every page under docs/.
fn docs_pages() -> Vec<std::path::PathBuf> {
    let mut pages = vec![docs::root().join("README.md")];
    let mut dirs = vec![docs::root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read docs/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
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
    // (It waits PAGECAST_PUBLIC_URL_WAIT for an API server to publish one: 1 s here.)
    let mut c = pagecast();
    c.arg("worker")
        .envs(env("nothing:"))
        .env("PAGECAST_PUBLIC_URL_WAIT", "1");
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
        .filter(|w| w.starts_with("PAGECAST_") && !w.ends_with('_'))
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
