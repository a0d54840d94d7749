//! What the delivery settings do, each given as its flag: the callback request timeout against
//! a receiver that never answers, the handover timeout's deadline, the upload retry period and
//! storage request attempts. (End to end: tests/fault_paths.rs.)

use std::time::{Duration, Instant};

use clap::Parser;

use crate::config::WorkerConfig;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    worker: WorkerConfig,
}

fn worker(args: &[&str]) -> Result<WorkerConfig, clap::Error> {
    Cli::try_parse_from(std::iter::once("pagecast").chain(args.iter().copied())).map(|c| c.worker)
}

/// A receiver that takes connections and requests and never answers; its URL.
async fn hanging_receiver() -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Read whatever comes, answer nothing, keep the connection open.
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                std::future::pending::<()>().await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/cb")
}

#[tokio::test]
async fn the_callback_timeout_ends_an_attempt_on_a_receiver_that_hangs() {
    assert_eq!(
        worker(&[]).unwrap().callback_attempt_timeout(),
        Duration::from_secs(10)
    );
    assert!(
        worker(&["--callback-timeout", "0"]).is_err(),
        "at least 1 s"
    );
    let cfg = worker(&[
        "--callback-timeout",
        "1",
        "--allowed-private-networks",
        "127.0.0.0/8",
    ])
    .unwrap();
    let limit = cfg.callback_attempt_timeout();
    assert_eq!(limit, Duration::from_secs(1));

    let url = hanging_receiver().await;
    let client = super::callback::client(&url, cfg.url_policy(), limit).unwrap();
    let started = Instant::now();
    let err = client.post(&url).body("{}").send().await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "the attempt timed out: {err}");
    // Not before the timeout, and not long after it (margin for a loaded 2-core machine).
    assert!(
        took >= limit && took < limit + Duration::from_secs(2),
        "the attempt ended after {took:?} (timeout {limit:?})"
    );
}

#[test]
fn the_handover_timeout_sets_the_deadline_of_a_handed_over_task() {
    let now = 1_800_000_000_000_i64;
    let secs = |args: &[&str]| worker(args).unwrap().handover_timeout;
    assert_eq!(secs(&[]), 300);
    assert_eq!(secs(&["--handover-timeout", "7"]), 7);
    assert!(
        worker(&["--handover-timeout", "0"]).is_err(),
        "at least 1 s"
    );
    assert_eq!(super::handover_deadline(now, 7), now + 7_000);
    assert_eq!(super::handover_deadline(now, 300), now + 300_000);
    // Beyond what the clock counts: as late as it can be, never in the past (a plain cast made
    // u64::MAX seconds -1, a deadline a second ago: the task abandoned at once).
    let huge = secs(&["--handover-timeout", &u64::MAX.to_string()]);
    assert_eq!(super::handover_deadline(now, huge), i64::MAX);
    assert_eq!(super::handover_deadline(now, i64::MAX as u64), i64::MAX);
}

#[test]
fn the_upload_retry_period_and_storage_attempts_bound_the_retries() {
    use super::upload::retry_wait;
    let defaults = worker(&[]).unwrap().storage;
    assert_eq!(defaults.upload_retry_seconds, 3600);
    assert_eq!(defaults.upload_settings().max_attempts, 4);
    let s = worker(&["--upload-retry-seconds", "4", "--s3-max-attempts", "2"])
        .unwrap()
        .storage;
    assert_eq!(
        s.upload_settings().max_attempts,
        2,
        "each storage request's attempts"
    );
    assert!(worker(&["--s3-max-attempts", "0"]).is_err());
    assert!(worker(&["--s3-max-attempts", "21"]).is_err());
    let budget = Duration::from_secs(s.upload_retry_seconds);
    assert_eq!(budget, Duration::from_secs(4));

    // Retryable failures are waited out, twice as long each time up to 30 s, within the period.
    let secs = |attempt, elapsed: u64| {
        retry_wait(attempt, true, Duration::from_secs(elapsed), budget).map(|w| w.as_secs())
    };
    assert_eq!(secs(1, 0), Some(2));
    assert_eq!(secs(2, 2), Some(4));
    assert_eq!(secs(3, 3), Some(8));
    let long = Duration::from_secs(3600);
    assert_eq!(
        retry_wait(4, true, Duration::ZERO, long),
        Some(Duration::from_secs(16))
    );
    assert_eq!(
        retry_wait(9, true, Duration::ZERO, long),
        Some(Duration::from_secs(30))
    );
    // The period spent, the upload gives up (UploadFailed); a failure that is not retryable
    // (a refused key, a missing bucket) gives up at once.
    assert_eq!(secs(4, 4), None);
    assert_eq!(retry_wait(1, false, Duration::ZERO, budget), None);
    // A period of 0: no retry at all.
    assert_eq!(retry_wait(1, true, Duration::ZERO, Duration::ZERO), None);
}
