//! Fuzzes the HTTP API with schemathesis against `api-spec/openapi.yaml`: thousands of generated
//! requests, valid and invalid, must get no 5xx and no response that violates the spec, and
//! requests that violate the spec must be refused. Runs `pagecast serve` (API only, with API
//! tokens, private addresses refused as by default) against a real redis-server.
//!
//! schemathesis comes from `scripts/install-test-deps.sh` (a venv in the tools directory);
//! `PAGECAST_FUZZ_EXAMPLES` sets the examples per operation (default 150);
//! `PAGECAST_FUZZ_SEED` the seed (default fixed, so the suite is repeatable; `random` explores).

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::PathBuf;
use std::time::Duration;

use redis_support::TestRedis;
use service_support::*;

fn schemathesis() -> PathBuf {
    let tools = std::env::var_os("PAGECAST_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/pagecast-tools")
        });
    let st = tools.join("venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is missing at {}: run scripts/install-test-deps.sh",
        st.display()
    );
    st
}

#[test]
fn the_api_survives_schemathesis_and_conforms_to_its_spec() {
    let st = schemathesis();
    let redis = TestRedis::start();
    let svc = service_with(
        &redis,
        "fuzz-api",
        false,
        0,
        1,
        &[
            ("PAGECAST_API_TOKENS", "fuzz-token-old,fuzz-token-new"),
            ("PAGECAST_ALLOW_PRIVATE_URLS", "false"),
            // Not even loopback (the test services name it for their fixture pages).
            ("PAGECAST_ALLOWED_PRIVATE_NETWORKS", ""),
        ],
    );
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api-spec/openapi.yaml");
    let examples = std::env::var("PAGECAST_FUZZ_EXAMPLES").unwrap_or_else(|_| "150".into());
    // A fixed seed keeps the suite repeatable; PAGECAST_FUZZ_SEED=random explores further.
    let seed = std::env::var("PAGECAST_FUZZ_SEED").unwrap_or_else(|_| "20261202".into());
    let mut cmd = std::process::Command::new(st);
    // schemathesis keeps its example database in the working directory.
    cmd.current_dir(&svc.dir)
        .arg("run")
        .arg(&spec)
        .args(["--url", &svc.url])
        .args(["-H", "Authorization: Bearer fuzz-token-new"])
        .args(["--checks", "all"])
        // Cross-field rules (EncryptKey needs Muxer hls and AuthUrl, sizes 1-15 are too small
        // for Chromium...) are enforced by the API and documented, but not expressible in the
        // schema: a schema-valid request may still be refused with InvalidParam.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", &examples])
        // One worker: with two, hypothesis parses lambda sources with `ast` on two threads at
        // once, and CPython 3.11's parser keeps its recursion depth in shared state (CPython
        // issue 106905): now and then a run died with "SystemError: AST constructor recursion
        // depth mismatch", a failure of the tool rather than of the API.
        .args(["--workers", "1"])
        .args(if seed == "random" {
            vec![]
        } else {
            vec!["--seed".to_string(), seed.clone()]
        })
        .env("NO_COLOR", "1");
    // Its report goes to a file: a pipe nobody reads while it runs could fill up and stall it.
    let report = svc.dir.join("schemathesis.txt");
    cmd.stdout(std::fs::File::create(&report).expect("report file"))
        .stderr(std::process::Stdio::inherit());
    let mut child = cmd.spawn().expect("run schemathesis");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran for 10 minutes; see {}", report.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        status.success(),
        "schemathesis found problems:\n{out}\n(server log: {})",
        svc.dir.join("serve.log").display()
    );
    assert!(out.contains("passed"), "{out}");
}
