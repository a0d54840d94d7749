//! Faults that could lose a recording in the service: Redis losing the task or pausing as a
//! recording ends, a full work disk, graceful handovers, a lost machine. Real `serve` and
//! `worker` processes, a real redis-server, Chromium and ffmpeg.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::TestRedis;
use serde_json::json;
use service_support::*;

/// `redis-cli -p <port> <args>`, its stdout.
fn redis_cli(redis: &TestRedis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(redis.port().to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many XREAD commands the server has run (the control-stream reader's command).
fn xread_calls(redis: &TestRedis) -> u64 {
    let stats = redis_cli(redis, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `file` contains `text`.
fn wait_for_log(file: &std::path::Path, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = std::fs::read_to_string(file).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} within {limit:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Redis loses its data (restarted without persistence) while a task records; the job ends
/// early on the store error. Its control-stream reader must end with it, not poll Redis forever.
#[test]
fn a_record_job_that_ends_early_stops_reading_the_control_stream() {
    let mut redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "svc-reader-leak", true, 0, 1);
    // The page pauses itself 6 s after it loads: the worker then writes `paused`, and finds the
    // task gone.
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/clock.html?pause=6000") }),
    );
    redis.restart();
    let log = svc.dir.join("serve.log");
    wait_for_log(
        &log,
        "record stage ended with a store error",
        Duration::from_secs(30),
    );
    // At most the read in flight when the job ended finishes (it blocks for 1 s).
    std::thread::sleep(Duration::from_secs(2));
    let before = xread_calls(&redis);
    std::thread::sleep(Duration::from_secs(4));
    let after = xread_calls(&redis);
    assert_eq!(
        after, before,
        "the control stream of {id} is still read after its job ended ({before} then {after} XREADs)"
    );
}
