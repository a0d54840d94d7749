//! The docs' example commands work as written. Each `pagecast` command in a shell block of
//! README.md or docs/ is parsed by the binary itself (`<command> --help` after its arguments:
//! clap checks every flag and value it reads first, then prints the help and starts nothing);
//! those that need nothing from outside are run. `docker run` lines are checked against the
//! commands and variables the binary knows, API request bodies parse as JSON with a known
//! Action. A pagecast example that is not run says why, in [`NOT_RUN`]; every other command
//! in a shell block (docker, kubectl, curl, benchmark drivers, ...) is named, with why it is
//! not run here, in [`OTHER_COMMANDS`].

mod common;
#[path = "support/doc_api.rs"]
mod doc_api;
#[path = "support/doc_examples.rs"]
mod doc_examples;
#[path = "support/docs.rs"]
mod docs;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/s3.rs"]
mod s3_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::Path;
use std::time::Duration;

use common::*;
use doc_examples::*;

/// Examples that are parsed but not run, by a part of their text, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "https://",
        "records a page on the internet; the test machine may be offline",
    ),
    (
        "http://127.0.0.1:",
        "records a fixture page that a benchmark driver serves on that port (bench/)",
    ),
    (
        "pagecast record demo --width 1920",
        "records until Ctrl-C (no --duration): the demo page runs in the test below",
    ),
    (
        "pagecast serve",
        "a long-running service: the_api_examples_run_against_a_service runs serve with the \
         README's token, a_worker_started_before_the_api_names_results_with_the_published_url \
         serve and a worker as deployment.md's Docker example does",
    ),
    (
        "pagecast worker",
        "a long-running service: a_worker_started_before_the_api_names_results_with_the_published_url runs it",
    ),
    (
        "pagecast doctor",
        "inside a cluster's pod: the same command runs in the_doctor_examples_run",
    ),
    (
        "pagecast analyze",
        "analyses a recording the benchmark notebook made: the_analyze_example_runs runs analyze",
    ),
    (
        "pagecast healthcheck",
        "probes a running service: a_worker_started_before_the_api_names_results_with_the_published_url runs it",
    ),
];

#[test]
fn every_pagecast_example_parses() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for page in pages() {
        for ex in examples(&page) {
            if ex.text.starts_with("docker") || ex.text.starts_with("cargo") {
                continue;
            }
            let Some(args) = pagecast_args(&ex.text) else {
                continue;
            };
            if args.is_empty() || args[0].starts_with('-') {
                continue; // `pagecast --version` and the like
            }
            seen += 1;
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_pagecast"))
                .args(&args)
                .arg("--help")
                .output()
                .expect("run pagecast");
            if !o.status.success() {
                problems.push(format!(
                    "{}: `{}` does not parse: {}",
                    ex.page.display(),
                    ex.text,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    assert!(seen >= 10, "only {seen} examples found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every example that is not run names its reason; the others run here.
#[test]
fn the_examples_that_need_nothing_outside_run() {
    let mut runnable = Vec::new();
    for page in pages() {
        for ex in examples(&page) {
            let Some(args) = pagecast_args(&ex.text) else {
                continue;
            };
            if ex.text.starts_with("docker") || ex.text.starts_with("cargo") {
                continue;
            }
            if args.first().is_none_or(|a| a.starts_with('-')) {
                continue;
            }
            if NOT_RUN.iter().any(|(part, _)| ex.text.contains(part)) {
                continue;
            }
            runnable.push((ex, args));
        }
    }
    // The README's first command, without the script: the demo page for 10 s.
    assert!(
        runnable
            .iter()
            .any(|(_, a)| a.starts_with(&["record".into(), "demo".into()])),
        "the README's record command is not among the runnable examples: {runnable:?}"
    );
    for (ex, args) in runnable {
        let dir = scratch("docs-example");
        let mut c = pagecast();
        c.args(&args).current_dir(&dir);
        let o = run(c, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "{}: `{}` failed: {}",
            ex.page.display(),
            ex.text,
            stderr(&o)
        );
        if let Some(i) = args.iter().position(|a| a == "-o") {
            let out = dir.join(&args[i + 1]);
            let p = probe(&out, &[]);
            assert!(
                p.duration > 9.0,
                "{}: {} is too short: {p:?}",
                ex.text,
                out.display()
            );
        }
    }
}

/// `docker run ... pagecast <command>` (in the docs and the Dockerfile's comment) uses real
/// commands and real variables, publishes a port the image listens on, reaches Redis by name
/// only on a network, and gives `serve`, which listens on every address in the image, the
/// public URL that local results need (it exits 2 without).
#[test]
fn docker_examples_use_real_commands_and_settings() {
    let settings = docs::help_settings();
    let mut seen = 0;
    let mut problems = Vec::new();
    let dockerfile = std::fs::read_to_string(docs::root().join("Dockerfile")).expect("Dockerfile");
    let exposed: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!exposed.is_empty(), "the Dockerfile exposes no port");
    let mut all: Vec<Example> = pages().iter().flat_map(|p| examples(p)).collect();
    all.extend(dockerfile_examples());
    let built: Vec<String> = all
        .iter()
        .filter(|e| e.text.starts_with("docker build"))
        .filter_map(|e| {
            let w = words(&e.text);
            w.windows(2).find(|p| p[0] == "-t").map(|p| p[1].clone())
        })
        .collect();
    assert!(
        built.contains(&"pagecast".to_string()),
        "no `docker build -t pagecast`: {built:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.page.ends_with("Dockerfile") && e.text.starts_with("docker run")),
        "no docker run line read from the Dockerfile's comment"
    );
    {
        for ex in all {
            if !ex.text.starts_with("docker run") {
                continue;
            }
            let w = words(&ex.text);
            for pair in w.windows(2) {
                if pair[0] == "-e"
                    && let Some((name, _)) = pair[1].split_once('=')
                    && name.starts_with("PAGECAST_")
                    && !settings.keys().any(|(k, _)| k == name)
                {
                    problems.push(format!("{}: {name} is no setting", ex.text));
                }
            }
            let image = docker_image_args(&w).unwrap_or_default();
            // The image is the one `docker build -t` made, or a pinned public one (redis:7-…).
            if let Some(name) = image.first()
                && !built.contains(name)
                && !name.contains(':')
            {
                problems.push(format!(
                    "{}: image {name} is neither built nor pinned",
                    ex.text
                ));
            }
            if image.first().is_some_and(|x| x == "pagecast") {
                seen += 1;
                let Some(cmd) = image.get(1) else { continue };
                if !docs::COMMANDS.contains(&cmd.as_str()) {
                    problems.push(format!("{}: no command {cmd}", ex.text));
                }
                // A container on a network of its own reaches Redis by name only on it.
                if ex.text.contains("redis://redis") && !ex.text.contains("--network") {
                    problems.push(format!(
                        "{}: reaches redis by name without a network",
                        ex.text
                    ));
                }
                if cmd == "serve"
                    && !ex.text.contains("PAGECAST_PUBLIC_URL=")
                    && !ex.text.contains("PAGECAST_S3_BUCKET=")
                {
                    problems.push(format!(
                        "{}: serve with local results and no PAGECAST_PUBLIC_URL exits 2",
                        ex.text
                    ));
                }
                for pair in w.windows(2).filter(|p| p[0] == "-p") {
                    let inside = pair[1].rsplit(':').next().unwrap_or_default();
                    if !exposed.contains(&inside) {
                        problems.push(format!(
                            "{}: publishes port {inside}, the image listens on {exposed:?}",
                            ex.text
                        ));
                    }
                }
            }
        }
    }
    assert!(seen >= 3, "only {seen} docker examples");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The API examples' bodies are JSON with an Action the API knows.
#[test]
fn api_example_bodies_are_json_with_a_known_action() {
    let actions = [
        "Start", "Pause", "Resume", "Refresh", "Stop", "Cancel", "Describe",
    ];
    let mut seen = 0;
    for page in pages() {
        for ex in examples(&page) {
            let w = words(&ex.text);
            let body = match w.first().map(String::as_str) {
                Some("pc") => w.get(1).cloned(),
                Some("curl") => w.windows(2).find(|p| p[0] == "-d").map(|p| p[1].clone()),
                _ => None,
            };
            let Some(body) = body.filter(|b| b.starts_with('{')) else {
                continue;
            };
            seen += 1;
            let v: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", ex.page.display()));
            let action = v["Action"].as_str().unwrap_or_default();
            assert!(
                actions.contains(&action),
                "{}: unknown Action in {body}",
                ex.page.display()
            );
        }
    }
    assert!(seen >= 6, "only {seen} API examples");
}

/// docs/testing.md says what each test file proves: every file under tests/ has its row.
#[test]
fn the_testing_page_names_every_test_file() {
    let page = std::fs::read_to_string(docs::root().join("docs/testing.md")).expect("testing.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(docs::root().join("tests")).expect("read tests/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if !page.contains(&format!("| `{name}` |")) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/testing.md's table: {missing:?}"
    );
}

/// Every relative link in README.md and docs/ reaches a file, and its `#anchor` a heading.
#[test]
fn relative_links_resolve() {
    let mut problems = Vec::new();
    let mut all = pages();
    all.push(docs::root().join("BENCHMARKS.md"));
    for page in all {
        let text = std::fs::read_to_string(&page).expect("read a page");
        for part in text.split("](").skip(1) {
            let Some(target) = part.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.starts_with('#') && target.len() == 1 {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page's directory").join(file)
            };
            if !path.exists() {
                problems.push(format!("{}: {target} does not exist", page.display()));
                continue;
            }
            if !anchor.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let linked = std::fs::read_to_string(&path).expect("read the linked page");
                let found = linked
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|h| slug(h.trim_start_matches('#')))
                    .any(|s| s == anchor);
                if !found {
                    problems.push(format!("{}: no heading for {target}", page.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The other commands in the docs' shell blocks, by their first word, and why they are not run.
const OTHER_COMMANDS: &[(&str, &str)] = &[
    (
        "redis-cli",
        "reads the events stream of a running service: tests/snapshots.rs reads the same entries",
    ),
    (
        "docker",
        "needs a Docker engine (none on the test machines): docker_examples_use_real_commands_and_settings \
         checks them offline, a_worker_started_before_the_api_names_results_with_the_published_url plays \
         deployment.md's topology with the binary",
    ),
    (
        "kubectl",
        "needs a Kubernetes cluster: kubectl_examples_name_real_objects checks them against the \
         manifests offline, tests/deploy.rs validates the manifests",
    ),
    (
        "curl",
        "sent to a test service by the_api_examples_run_against_a_service",
    ),
    (
        "pc",
        "sent to a test service by the_api_examples_run_against_a_service",
    ),
    (
        "pc()",
        "defines the curl wrapper, used as written by the same test",
    ),
    (
        "TOKEN=",
        "sets the example token: the test services are given the literal one",
    ),
    (
        "export",
        "sets example settings, checked against --help by tests/config.rs",
    ),
    ("redis-server", "the tests start their own Redis servers"),
    ("cargo", "builds and test runs: what scripts/test does"),
    (
        "python3",
        "benchmark drivers, minutes each: BENCHMARKS.md's runs",
    ),
    (
        "bash",
        "installers and benchmark scripts: scripts/test runs install-test-deps.sh",
    ),
    ("scripts/test", "the whole suite: this test is part of it"),
    ("scripts/pagecast", "runs as the pagecast command (above)"),
    (
        "target/release/pagecast",
        "runs as the pagecast command (above)",
    ),
    ("pagecast", "parsed or run above"),
    (
        "PAGECAST_API_TOKENS=",
        "`pagecast serve` with a token: parsed above",
    ),
];

/// Every command in a shell block is a pagecast command (parsed, or run) or one of
/// [`OTHER_COMMANDS`], which names why it is not run; a new kind of example must be added there.
#[test]
fn every_example_command_is_run_checked_or_named() {
    let mut unknown = Vec::new();
    for page in pages() {
        if page.components().any(|c| c.as_os_str() == "benchmarks") {
            continue; // the dated lab notebook and decision records: commands as they were run
        }
        for ex in examples(&page) {
            let first = words(&ex.text).into_iter().next().unwrap_or_default();
            let named = OTHER_COMMANDS
                .iter()
                .any(|(w, _)| *w == first || w.ends_with('=') && first.starts_with(w));
            if !named {
                unknown.push(format!("{}: {}", page.display(), ex.text));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "examples this test neither runs nor names (add them to OTHER_COMMANDS with why):\n{}",
        unknown.join("\n")
    );
}

/// The token of the docs' API examples; the test services are given it.
const DOCS_TOKEN: &str = "a-long-random-token";

/// Every API request example (`pc '…'`, and `curl` lines that send a body or read a probe) in
/// README.md and docs/ is sent, through bash and curl as written, to a test `serve` (real
/// Redis; local delivery, or the S3 test server for an example that names `Output.S3`). What is
/// substituted (hosts, ports, the token, example pages) is listed in `support/doc_api.rs`. Each
/// answer must be JSON without an `ErrorCode` (no example shows an error), each task must
/// record, finish without an error code, and its FileURLs download; a Filename an example's
/// comment shows must be the result's.
#[test]
fn the_api_examples_run_against_a_service() {
    let redis = redis_support::TestRedis::start();
    let fixtures = fixture_server();
    let receiver = service_support::CallbackReceiver::start();
    let closed = service_support::ReservedPort::new();
    let target = |url: &str| doc_api::Target {
        url: url.to_string(),
        token: DOCS_TOKEN.to_string(),
        page: format!("{fixtures}/animated.html"),
        callback: format!("{}/ok", receiver.url),
        closed_tcp: closed.port,
        closed_udp: closed.port,
    };
    let token = [("PAGECAST_API_TOKENS", DOCS_TOKEN)];
    let local = service_support::service_with(&redis, "docs-api", true, 0, 2, &token);
    let local_target = target(&local.url);
    local_target.wait_ready();
    // Started when an example first needs it.
    let mut s3: Option<(s3_support::TestS3, service_support::Service)> = None;
    let mut pc_def = String::new();
    let mut problems = Vec::new();
    let mut sent = 0;
    for page in pages() {
        if page.components().any(|c| c.as_os_str() == "benchmarks") {
            continue;
        }
        let name = page.display().to_string();
        for block in blocks(&page, "sh") {
            let commands = commands_of(&block);
            let requests = commands
                .iter()
                .filter(|c| {
                    let first = words(c).into_iter().next().unwrap_or_default();
                    first == "pc" || first == "curl" && c.contains("localhost:8080")
                })
                .count();
            if requests == 0 {
                // A pc() definition alone is kept for the pages that use it.
                if let Some(def) = commands.iter().find(|c| c.starts_with("pc()")) {
                    pc_def = def.clone();
                }
                continue;
            }
            sent += requests;
            let t = if block.contains("\"S3\":") {
                let (_, svc) = s3.get_or_insert_with(|| {
                    let store = s3_support::TestS3::start();
                    let env = store.env();
                    let mut extra: Vec<(&'static str, &str)> =
                        env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    extra.extend(token);
                    let svc =
                        service_support::service_with(&redis, "docs-api-s3", true, 0, 2, &extra);
                    (store, svc)
                });
                target(&svc.url)
            } else {
                target(&local.url)
            };
            t.wait_ready();
            problems.extend(doc_api::run_block(
                &t,
                &name,
                &block,
                &commands,
                words,
                &mut pc_def,
            ));
        }
    }
    assert!(sent >= 15, "only {sent} API examples found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// deployment.md's Docker example on one machine: a worker without `PAGECAST_PUBLIC_URL`
/// started before the API (containers start in any order) waits for the URL the API publishes
/// through Redis, records, and names its result with that URL, which downloads. The API
/// listens on every address, as in the image, with the public URL set as the example sets it;
/// it runs `--no-worker` here so that the separate worker is the one that records.
#[test]
fn a_worker_started_before_the_api_names_results_with_the_published_url() {
    use service_support::*;
    let redis = redis_support::TestRedis::start();
    let fixtures = fixture_server();
    let dir = scratch("docs-docker-example");
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = vec![
        ("PAGECAST_REDIS_URL", redis.url.clone()),
        ("PAGECAST_KEY_PREFIX", prefix),
        ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
        // The shared output volume.
        ("PAGECAST_OUTPUT_DIR", dir.join("out").display().to_string()),
        ("PAGECAST_ALLOW_PRIVATE_URLS", "true".to_string()),
        // The machine's own addresses are refused unless named (the fixtures are on loopback).
        (
            "PAGECAST_ALLOWED_PRIVATE_NETWORKS",
            "127.0.0.0/8,::1".to_string(),
        ),
        ("PAGECAST_LEASE_MS", "3000".to_string()),
    ];
    let worker_log = dir.join("worker.log");
    let mut worker = spawn(&["worker"], &env, &worker_log);
    wait_logged(
        &worker_log,
        "no API server has published the results' base URL",
        Duration::from_secs(30),
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker did not wait for the API's URL"
    );
    // One stopped while it waits exits cleanly: it had taken nothing on.
    let mut other_env = env.clone();
    other_env[1].1 = format!("t{}:", uuid::Uuid::new_v4().simple());
    let other_log = dir.join("other-worker.log");
    // A plain child, not a `Proc`: it is expected to exit by itself here.
    let mut other = pagecast();
    other
        .arg("worker")
        .envs(other_env.iter().map(|(k, v)| (*k, v)))
        .env("PAGECAST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&other_log).unwrap());
    let mut other = other.spawn().unwrap();
    wait_logged(
        &other_log,
        "no API server has published the results' base URL",
        Duration::from_secs(30),
    );
    std::process::Command::new("kill")
        .args(["-TERM", &other.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = other.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the waiting worker ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&other_log).unwrap_or_default()
    );
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let mut api_env = env.clone();
    api_env.push(("PAGECAST_LISTEN", format!("0.0.0.0:{port}")));
    api_env.push(("PAGECAST_PUBLIC_URL", public.clone()));
    let api_log = dir.join("serve.log");
    let mut api = spawn(&["serve", "--no-worker"], &api_env, &api_log);
    wait_serving(&mut api, port, &api_log, Some(&redis.url)).expect("serve started");
    wait_logged(
        &worker_log,
        "an API server published the results' base URL",
        Duration::from_secs(30),
    );
    let url = format!("http://127.0.0.1:{port}");
    let id = start_recording(
        &url,
        serde_json::json!({"RecordURL": format!("{fixtures}/animated.html"), "Audio": false}),
    );
    std::thread::sleep(Duration::from_secs(3));
    ok(&url, "Stop", &id);
    let d = wait_finished(&url, &id, Duration::from_secs(120));
    assert!(d["Result"].get("ErrorCode").is_none(), "{d}");
    let file_url = d["Result"]["Videos"][0]["FileURL"]
        .as_str()
        .unwrap_or_default();
    assert!(
        file_url.starts_with(&format!("{public}/files/")),
        "the FileURL is not under the published URL {public}: {d}"
    );
    let video = fetch_video(&d, &dir);
    assert!(probe(&video, &[]).duration > 2.0, "{}", video.display());
    // The image's health check (`pagecast healthcheck` with its PAGECAST_LISTEN and
    // PAGECAST_METRICS_LISTEN, the ports this test's): healthy while serve answers on one of
    // them, not once it is gone.
    let closed = ReservedPort::new();
    let healthcheck = || {
        let mut c = pagecast();
        c.arg("healthcheck")
            .env("PAGECAST_LISTEN", format!("0.0.0.0:{port}"))
            .env(
                "PAGECAST_METRICS_LISTEN",
                format!("0.0.0.0:{}", closed.port),
            )
            .args(["--timeout", "3"]);
        run(c, Duration::from_secs(30))
    };
    let up = healthcheck();
    assert!(up.status.success(), "{}", stderr(&up));
    drop(api);
    let down = healthcheck();
    assert_eq!(down.status.code(), Some(1), "{}", stderr(&down));
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker exited"
    );
}

/// operations.md's `pagecast doctor` samples run as written (the binary under test first on
/// PATH, from the source tree as the page says, its Redis address the test Redis's): the same
/// summary line and exit status, every row the sample shows (a FAIL row failing the same way,
/// with the same fix; an ok row ok, or a warning about this machine), and nothing failing that
/// the sample shows passing.
#[test]
fn the_doctor_examples_run() {
    let redis = redis_support::TestRedis::start();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pagecast"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let samples = console_samples(&docs::root().join("docs/operations.md"));
    let doctors: Vec<_> = samples
        .iter()
        .filter(|(cmd, _)| cmd.contains("pagecast doctor"))
        .collect();
    assert!(doctors.len() >= 2, "doctor samples: {samples:?}");
    let mut problems = Vec::new();
    for (cmd, shown) in doctors {
        // The sample's Redis (port 6391) is the test Redis.
        let sent = cmd.replace("redis://127.0.0.1:6391", &redis.url);
        let mut c = std::process::Command::new("bash");
        c.args(["-c", &sent])
            .current_dir(docs::root())
            .env("PATH", &path)
            .env("PAGECAST_REDIS_URL", &redis.url)
            .env_remove("PAGECAST_LOG");
        let o = run(c, Duration::from_secs(120));
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let summary = shown
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .cloned()
            .unwrap_or_default();
        let code = if summary.starts_with("All required") {
            0
        } else {
            1
        };
        if o.status.code() != Some(code) || !text.lines().any(|l| l == summary) {
            problems.push(format!(
                "`{cmd}`: exit {:?}, the sample says {summary:?}:\n{text}",
                o.status.code()
            ));
        }
        let rows: Vec<(String, String)> = text.lines().filter_map(doctor_row).collect();
        for line in shown {
            if let Some((level, name)) = doctor_row(line) {
                let got = rows
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map(|(l, _)| l.as_str());
                let fine = match level.as_str() {
                    "FAIL" => got == Some("FAIL"),
                    _ => matches!(got, Some("ok" | "warn")),
                };
                if !fine {
                    problems.push(format!(
                        "`{cmd}`: row {name} is {got:?}, shown [{level}]:\n{text}"
                    ));
                }
                if level == "FAIL" {
                    let start = line.split(['(', '…']).next().unwrap_or(line).trim_end();
                    if !text.lines().any(|l| l.starts_with(start)) {
                        problems.push(format!("`{cmd}`: no line starts {start:?}:\n{text}"));
                    }
                }
            }
            if line.trim_start().starts_with("fix: ")
                && !text.lines().any(|l| l.trim() == line.trim())
            {
                problems.push(format!(
                    "`{cmd}`: the shown {:?} is not printed:\n{text}",
                    line.trim()
                ));
            }
        }
        if summary.starts_with("All required") {
            for (level, name) in &rows {
                if level == "FAIL" {
                    problems.push(format!("`{cmd}`: {name} fails here:\n{text}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// recording.md's `pagecast analyze --av-sync FILE`, on a short recording of the page it names:
/// it prints each flash's offset to its beep, and the mean and max.
#[test]
fn the_analyze_example_runs() {
    let page =
        std::fs::read_to_string(docs::root().join("docs/recording.md")).expect("recording.md");
    assert!(
        page.contains("`pagecast analyze --av-sync FILE`"),
        "the example moved"
    );
    let fixtures = fixture_server();
    let dir = scratch("docs-analyze");
    let file = dir.join("av.mp4");
    record_ok(
        &format!("{fixtures}/av_sync.html"),
        &file,
        &["--duration", "6"],
    );
    let mut c = pagecast();
    c.args(["analyze", "--av-sync"]).arg(&file);
    let o = run(c, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", stderr(&o));
    let flashes = text
        .lines()
        .filter(|l| l.trim_start().starts_with("flash "))
        .count();
    assert!(flashes >= 3, "{text}");
    assert!(
        text.contains("mean |offset|") && text.contains("max |offset|"),
        "{text}"
    );
}

/// The A/V limits recording.md and testing.md quote are the ones tests/audio.rs asserts.
#[test]
fn the_quoted_av_limits_are_the_tests() {
    let audio = std::fs::read_to_string(docs::root().join("tests/audio.rs")).expect("audio.rs");
    let limit = |name: &str| -> String {
        let line = audio
            .lines()
            .find(|l| l.starts_with(&format!("const {name}: f64 = ")))
            .unwrap_or_else(|| panic!("no {name} in tests/audio.rs"));
        let v: f64 = line
            .rsplit("= ")
            .next()
            .and_then(|v| v.trim_end_matches(';').parse().ok())
            .unwrap_or_else(|| panic!("not a number: {line}"));
        format!("{v}")
    };
    let recording =
        std::fs::read_to_string(docs::root().join("docs/recording.md")).expect("recording.md");
    let testing =
        std::fs::read_to_string(docs::root().join("docs/testing.md")).expect("testing.md");
    let (mean_abs, max_abs) = (limit("MEAN_ABS_LIMIT_MS"), limit("MAX_ABS_LIMIT_MS"));
    let (mean, median) = (limit("MEAN_LIMIT_MS"), limit("MEDIAN_LIMIT_MS"));
    for quote in [
        format!("mean |error| ≤ {mean_abs} ms, max ≤ {max_abs} ms"),
        format!("within ±{mean} ms"),
        format!("median |error| ≤ {median} ms after a resume"),
    ] {
        assert!(
            recording.contains(&quote),
            "recording.md does not say {quote:?}"
        );
    }
    let quote = format!("mean \\|error\\| ≤ {mean_abs} ms, max ≤ {max_abs} ms");
    assert!(
        testing.contains(&quote),
        "testing.md does not say {quote:?}"
    );
}

/// Phrases of changelog asides ("as before", "12 a minute before"): the docs say what is, not
/// how it changed (the dated history is docs/benchmarks/ and git).
const CHANGELOG_ASIDES: &[&str] = &[
    "as before",
    "a minute before",
    "than before",
    "previously",
    "used to be",
    "no longer",
    "formerly",
    "in earlier versions",
    "before this change",
    "is now ",
    "are now ",
];

/// README.md and docs/ (but the dated lab notebook) hold no changelog asides.
#[test]
fn the_docs_hold_no_changelog_asides() {
    let mut found = Vec::new();
    for page in pages() {
        if page.components().any(|c| c.as_os_str() == "benchmarks") {
            continue;
        }
        let text = std::fs::read_to_string(&page).expect("read a page");
        // Sentences wrap across lines: judge the page as one line.
        let flat = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        for phrase in CHANGELOG_ASIDES {
            if let Some(at) = flat.find(phrase) {
                let from = flat[..at]
                    .char_indices()
                    .rev()
                    .nth(60)
                    .map_or(0, |(i, _)| i);
                let context: String = flat[from..].chars().take(140).collect();
                found.push(format!("{}: {phrase:?} in \"…{context}…\"", page.display()));
            }
        }
    }
    assert!(found.is_empty(), "changelog asides:\n{}", found.join("\n"));
}

/// The kubectl lines need a cluster, so they are checked offline against the manifests: the
/// files they apply exist, the objects they wait for, exec into, forward to or patch are
/// defined (with the port forwarded to), and the secret they create holds every key a manifest
/// requires, and the keys they read back.
#[test]
fn kubectl_examples_name_real_objects() {
    let objects = manifests();
    let has = |kind: &str, name: &str| {
        objects
            .iter()
            .any(|(k, n, _)| k.eq_ignore_ascii_case(kind) && n == name)
    };
    let mut refs = Vec::new();
    for (_, _, v) in &objects {
        secret_refs(v, &mut refs);
    }
    let mut created: Vec<(String, String)> = Vec::new();
    let mut read: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    let mut seen = 0;
    for page in pages() {
        for ex in examples(&page) {
            let w = words(&ex.text);
            if w.first().is_none_or(|x| x != "kubectl") {
                continue;
            }
            seen += 1;
            let after = |verb: &str| w.iter().position(|x| x == verb).and_then(|i| w.get(i + 1));
            let mut problem = |why: String| problems.push(format!("{}: {why}", ex.text));
            if let Some(path) = w
                .windows(2)
                .find(|p| p[0] == "-f" && p[1] != "-")
                .map(|p| &p[1])
                && !docs::root().join(path).exists()
            {
                problem(format!("{path} does not exist"));
            }
            if w.iter().any(|x| x == "rollout")
                && let Some((kind, name)) = after("status").and_then(|x| x.split_once('/'))
                && !has(kind, name)
            {
                problem(format!("no {kind} {name} in deploy/kubernetes"));
            }
            if let Some(target) = after("port-forward") {
                let (kind, name) = target.split_once('/').unwrap_or(("pod", target));
                let remote = after(target)
                    .and_then(|p| p.rsplit(':').next())
                    .and_then(|p| p.parse::<u64>().ok());
                let port_ok = objects.iter().any(|(k, n, v)| {
                    k.eq_ignore_ascii_case(kind)
                        && n == name
                        && v["spec"]["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| remote.is_some_and(|r| p["port"] == r))
                });
                if !port_ok {
                    problem(format!("no {kind} {name} with port {remote:?}"));
                }
            }
            if let Some(pod) = after("exec") {
                let from_set = pod
                    .rsplit_once('-')
                    .is_some_and(|(set, i)| i.parse::<u32>().is_ok() && has("StatefulSet", set));
                if !from_set {
                    problem(format!("no StatefulSet makes pod {pod}"));
                }
            }
            if let Some(name) = after("scaledobject")
                && !has("ScaledObject", name)
            {
                problem(format!("no ScaledObject {name}"));
            }
            if let Some(name) = after("generic") {
                for x in &w {
                    if let Some((key, _)) = x
                        .strip_prefix("--from-literal=")
                        .and_then(|kv| kv.split_once('='))
                    {
                        created.push((name.clone(), key.to_string()));
                    }
                }
            }
            if w.iter().any(|x| x == "get")
                && let Some(name) = after("secret")
                && let Some(key) = ex
                    .text
                    .split("{.data.")
                    .nth(1)
                    .and_then(|r| r.split('}').next())
            {
                read.push((name.clone(), key.to_string()));
            }
        }
    }
    assert!(seen >= 8, "only {seen} kubectl examples");
    assert!(
        !created.is_empty(),
        "no `kubectl create secret generic` example"
    );
    for (secret, key, optional) in &refs {
        if !optional && !created.contains(&(secret.clone(), key.clone())) {
            problems.push(format!(
                "the manifests need key {key} of secret {secret}; deployment.md's secret has none"
            ));
        }
    }
    for (secret, key) in &read {
        if !created.contains(&(secret.clone(), key.clone())) {
            problems.push(format!(
                "key {key} of secret {secret} is read but never created"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
