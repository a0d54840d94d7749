//! Store writes that must not be lost to a Redis blip. A worker that holds a task's lease retries
//! its moves (a recording ending, a result handed on) while Redis is unavailable, renewing the
//! lease between tries, like its heartbeat: a move that failed once and was dropped would leave
//! the task to look abandoned, and another worker would take it over (a phantom takeover that
//! reopens the page). Other outcomes (the lease lost, a conflict) are answers and end the retries.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::WorkerContext;
use crate::clock::now_ms;
use crate::task::store::{StoreError, Transition};

/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a worker that is shutting down keeps trying (its orchestrator's grace period is
/// usually about a minute; the task's lease then runs out and another worker takes over).
const RETRY_WHILE_DRAINING: Duration = Duration::from_secs(30);
/// How long writes without a lease (the diagnose loop's) are tried: its next sweep starts over.
const RETRY_WITHOUT_LEASE: Duration = Duration::from_secs(60);

/// The pause before try number `attempt` (1-based): 250 ms doubling up to [`MAX_BACKOFF`].
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(4));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// Runs `op` until it gives an answer other than [`StoreError::Unavailable`]. With `lease`
/// (`fence` of the caller's lease on task `id`) the lease is renewed between tries and the
/// tries go on as long as the worker runs (30 s more once it drains); without, for a minute.
pub(crate) async fn retry<T, F, Fut>(
    ctx: &WorkerContext,
    id: &str,
    lease: Option<u64>,
    what: &str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let began = tokio::time::Instant::now();
    let mut draining_since: Option<tokio::time::Instant> = None;
    let mut attempt = 0u32;
    loop {
        let error = match op().await {
            Err(StoreError::Unavailable(e)) => e,
            other => return other,
        };
        attempt += 1;
        let limit_passed = match lease {
            None => began.elapsed() > RETRY_WITHOUT_LEASE,
            Some(_) if ctx.drain.is_cancelled() => draining_since
                .get_or_insert_with(tokio::time::Instant::now)
                .elapsed()
                .gt(&RETRY_WHILE_DRAINING),
            Some(_) => false,
        };
        if limit_passed {
            return Err(StoreError::Unavailable(error));
        }
        if attempt == 1 || attempt.is_multiple_of(10) {
            warn!(task_id = id, attempt, %error, "{what}: the task store is unavailable; retrying");
        }
        tokio::time::sleep(backoff(attempt)).await;
        if let Some(fence) = lease {
            // Keeps the lease from looking abandoned the moment Redis is back. Its answer does
            // not matter here: the next try of `op` says whether the lease is still ours.
            let _ = ctx
                .store
                .renew(id, &ctx.worker_id, fence, now_ms(), ctx.lease_ms())
                .await;
        }
    }
}

/// [`TaskStore::transition`](crate::task::store::TaskStore::transition), retried through
/// outages (see [`retry`]; `t.lease` is the lease renewed). A try whose answer was lost may
/// have been applied: a retry that finds the task already at `t.to` (as a conflict, or as a
/// lease the move itself released) counts as done.
pub(crate) async fn transition(
    ctx: &WorkerContext,
    id: &str,
    t: Transition,
) -> Result<(), StoreError> {
    let fence = t.lease().map(|(_, f)| *f);
    let mut tried = false;
    let to = t.to();
    let what = format!("moving the task to {to}");
    retry(ctx, id, fence, &what, || {
        let t = t.clone();
        let retried = std::mem::replace(&mut tried, true);
        async move {
            match ctx.store.transition(id, t).await {
                Err(StoreError::Conflict { actual, .. }) if retried && actual == to => Ok(()),
                Err(StoreError::LeaseLost) if retried => match ctx.store.get(id).await {
                    Ok(task) if task.status == to => Ok(()),
                    Ok(_) => Err(StoreError::LeaseLost),
                    Err(e) => Err(e),
                },
                other => other,
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_two_seconds() {
        let ms: Vec<u128> = (1..=7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, vec![250, 500, 1000, 2000, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
