//! Ending a task that was stopped before its recording began (the rule is in
//! [`crate::task::prestart`]): it goes on to `callback` or `finished` with
//! `Result.ErrorCode = Canceled` and no videos, whoever notices it: the worker that held it
//! while its page loaded or waited for `startRecord()`, a worker that takes it up from the queue,
//! or the diagnose loop after its worker died.

use tracing::{info, warn};

use super::WorkerContext;
use crate::clock::now_s;
use crate::task::prestart::{canceled_before_start, end_canceled};
use crate::task::store::StoreError;
use crate::task::{Status, moves};

/// Ends task `id`, stopped before its recording began, holding the lease `fence` if given. A
/// task still `normal` (the page called `stopRecord()` before `startRecord()`) is canceled
/// first. Anything it recorded meanwhile on this node is thrown away. Losing a race (another
/// worker or the API ended it first, or took it over) is fine.
pub(super) async fn end(
    ctx: &WorkerContext,
    id: &str,
    fence: Option<u64>,
) -> Result<(), StoreError> {
    let _ = std::fs::remove_dir_all(ctx.cfg.task_dir(id));
    let lease = fence.map(|f| (ctx.worker_id.clone(), f));
    let mut task = ctx.store.get(id).await?;
    if task.status == Status::Normal {
        let t = moves::cancel(Status::Normal, now_s()).with_lease_of(lease.clone());
        ignore_lost_races(super::held::transition(ctx, id, t).await)?;
        task = ctx.store.get(id).await?;
    }
    if !canceled_before_start(&task) {
        // Not this case after all (it began, or moved on): only let go of it.
        return match fence {
            Some(f) => ignore_lost_races(ctx.store.release(id, &ctx.worker_id, f).await),
            None => Ok(()),
        };
    }
    info!(
        task_id = id,
        "stopped before its recording began; ending it as Canceled"
    );
    let t = end_canceled(&task, now_s()).with_lease_of(lease);
    // Held through a Redis blip, as every move of a task a worker holds.
    ignore_lost_races(super::held::transition(ctx, id, t).await)
}

/// Another party moved the task first, or took the lease: nothing left to do here.
fn ignore_lost_races(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(()) | Err(StoreError::Conflict { .. }) | Err(StoreError::LeaseLost) => Ok(()),
        Err(e) => {
            warn!(error = %e, "ending a task stopped before its recording began failed");
            Err(e)
        }
    }
}
