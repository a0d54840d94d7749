//! Per-snapshot callbacks (`Output.Snapshots.CallbackURL`): each stored picture is announced by
//! a POST signed as task callbacks are (`X-Pagecast-Signature`, `X-Pagecast-Event-Id`), through
//! a durable outbox in Redis (see `task::store::snapshot_outbox`): the callback is put there when
//! the picture is stored, and any worker's loop sends it, retrying with the task callbacks'
//! backoff, attempt limit and retry period (`PAGECAST_CALLBACK_*`). A worker that stops (or
//! dies) leaves its callbacks in the outbox for the next worker.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tracing::{Instrument, debug, warn};

use super::callback::{EVENT_ID_HEADER, SIGNATURE_HEADER, backoff, signature};
use super::{WorkerContext, now_ms};
use crate::task::SnapshotEntry;
use crate::task::store::SnapshotCallback;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Callbacks taken from the outbox at a time.
const BATCH: usize = 32;
/// How long a claimed callback is kept from other workers beyond the request's own timeout.
const LEASE_SLACK_MS: u64 = 30_000;

/// The body posted to the snapshots' CallbackURL.
pub(crate) fn callback_body(id: &str, entry: &SnapshotEntry) -> serde_json::Value {
    json!({
        "TaskID": id,
        "Kind": "snapshot",
        "Snapshot": entry,
    })
}

/// Puts the callback announcing `entry` (a picture of task `id`) in the outbox, due now.
pub(super) async fn enqueue(ctx: &WorkerContext, url: &str, id: &str, entry: &SnapshotEntry) {
    let cb = SnapshotCallback {
        event_id: uuid::Uuid::new_v4().to_string(),
        task: id.to_owned(),
        url: url.to_owned(),
        body: callback_body(id, entry).to_string(),
        first_ms: now_ms(),
        attempts: 0,
        last_error: None,
    };
    if let Err(e) = ctx.store.put_snapshot_callback(&cb, cb.first_ms).await {
        warn!(time = entry.time, error = %e, "a snapshot callback could not be queued");
    }
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Try again at this unix ms.
    RetryAt(i64),
    /// The attempts or the retry period are spent.
    GiveUp,
}

/// After attempt number `attempts` failed at `now`, with a back-off of `wait`: again, or not
/// (the same rule as task callbacks: `limit` attempts, 0 for no limit, within `retry_ms` of
/// the first).
pub(crate) fn after_failure(
    attempts: u32,
    limit: u32,
    first_ms: i64,
    retry_ms: i64,
    now: i64,
    wait: Duration,
) -> AfterFailure {
    let due = now + wait.as_millis() as i64;
    let attempts_left = limit == 0 || attempts < limit;
    if !attempts_left || due > first_ms + retry_ms {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(due)
    }
}

/// Sends the snapshot callbacks that are due, until the worker shuts down.
pub(super) async fn run(ctx: WorkerContext) {
    let lease = ctx.cfg.callback_timeout.max(1) * 1000 + LEASE_SLACK_MS;
    let parallel = (ctx.cfg.callback_concurrency as usize).max(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let due = match ctx
            .store
            .claim_snapshot_callbacks(now_ms(), BATCH, lease)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                warn!(error = %e, "reading the snapshot callbacks' outbox failed");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        futures::stream::iter(due)
            .for_each_concurrent(parallel, |cb| {
                let span = tracing::info_span!("snapshot_callback", task_id = %cb.task);
                deliver(&ctx, cb).instrument(span)
            })
            .await;
    }
}

/// One attempt at `cb`, and what follows from it in the outbox.
async fn deliver(ctx: &WorkerContext, mut cb: SnapshotCallback) {
    cb.attempts += 1;
    let Some(error) = attempt(ctx, &cb).await else {
        debug!(attempts = cb.attempts, "snapshot callback delivered");
        if let Err(e) = ctx.store.drop_snapshot_callback(&cb.event_id).await {
            // It is sent again a lease later, with the same event id.
            warn!(error = %e, "a delivered snapshot callback could not be removed");
        }
        return;
    };
    let cfg = &ctx.cfg;
    let wait = backoff(
        cb.attempts,
        Duration::from_millis(cfg.callback_backoff_ms.max(1)),
        Duration::from_secs(cfg.callback_max_backoff_seconds.max(1)),
        fastrand::f64(),
    );
    let next = after_failure(
        cb.attempts,
        cfg.callback_attempts,
        cb.first_ms,
        (cfg.callback_retry_seconds as i64) * 1000,
        now_ms(),
        wait,
    );
    let stored = match next {
        AfterFailure::RetryAt(due) => {
            debug!(attempts = cb.attempts, %error, "snapshot callback not delivered; will retry");
            cb.last_error = Some(error);
            ctx.store.put_snapshot_callback(&cb, due).await
        }
        AfterFailure::GiveUp => {
            warn!(attempts = cb.attempts, %error, "snapshot callback given up");
            ctx.store.drop_snapshot_callback(&cb.event_id).await
        }
    };
    if let Err(e) = stored {
        warn!(error = %e, "the snapshot callbacks' outbox could not be updated");
    }
}

/// Posts `cb`; `None` when the receiver took it (2xx), else why not.
async fn attempt(ctx: &WorkerContext, cb: &SnapshotCallback) -> Option<String> {
    let cfg = &ctx.cfg;
    let timeout = Duration::from_secs(cfg.callback_timeout.max(1));
    let http = match super::callback::client(&cb.url, cfg.url_policy(), timeout) {
        Ok(http) => http,
        Err(e) => return Some(format!("no HTTP client: {e}")),
    };
    let mut request = http
        .post(&cb.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, &cb.event_id);
    if let Some(secret) = &cfg.callback_secret {
        request = request.header(
            SIGNATURE_HEADER,
            signature(secret.expose().as_bytes(), cb.body.as_bytes()),
        );
    }
    match request.body(cb.body.clone()).send().await {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!(
            "the receiver answered HTTP {}",
            resp.status().as_u16()
        )),
        Err(e) => Some(crate::redact::text(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_retry_within_the_limits() {
        let s = Duration::from_secs(1);
        // Attempts left and time left: again after the wait.
        assert_eq!(
            after_failure(1, 10, 0, 60_000, 5_000, s),
            AfterFailure::RetryAt(6_000)
        );
        // No attempt limit (0).
        assert_eq!(
            after_failure(500, 0, 0, 60_000, 5_000, s),
            AfterFailure::RetryAt(6_000)
        );
        // The last attempt allowed was made.
        assert_eq!(
            after_failure(10, 10, 0, 60_000, 5_000, s),
            AfterFailure::GiveUp
        );
        // The next attempt would fall after the retry period.
        assert_eq!(
            after_failure(1, 10, 0, 60_000, 59_500, s),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn the_body_names_the_task_and_the_picture() {
        let entry = SnapshotEntry {
            filename: "t/snapshots/1000.jpg".into(),
            file_size: 10,
            file_url: "http://x/t/snapshots/1000.jpg".into(),
            time: 1000,
        };
        let body = callback_body("t", &entry);
        assert_eq!(body["TaskID"], "t");
        assert_eq!(body["Snapshot"]["FileURL"], "http://x/t/snapshots/1000.jpg");
        assert_eq!(body["Snapshot"]["Time"], 1000);
        assert_eq!(body["Kind"], "snapshot");
    }
}
