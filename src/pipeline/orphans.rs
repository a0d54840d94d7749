//! Takes the tasks of a worker that stopped beating (see `presence`) as soon as its liveness
//! runs out, instead of waiting for their leases to expire: a worker killed mid-recording is
//! replaced within about `PAGECAST_LIVENESS_MS` (two seconds by default) rather than two lease
//! periods. Safe on many workers at once: the store hands each task to exactly one caller, and
//! only while its worker is still silent and still holds it. A worker that was only stalled
//! finds its lease lost when it is back (its fence is stale), and the record stage's lock on
//! the work directory keeps the next worker out until the stalled one has let go of it.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::{WorkerContext, diagnose, now_ms};
use crate::task::Status;
use crate::task::store::StoreError;

/// How often this machine's workers' locks are looked at (`node_watch`: no Redis call unless
/// one of them died).
const LOCAL_SCAN: Duration = Duration::from_millis(200);

/// Runs until shutdown: looks for dead workers of this machine every [`LOCAL_SCAN`], and for
/// silent workers every quarter of the liveness period.
pub(super) async fn run(ctx: WorkerContext) {
    let root = ctx.cfg.work_root();
    // Held while this worker runs: the other workers of the machine see it die at once.
    let _registration = match super::node_watch::register(&root, &ctx.worker_id) {
        Ok(r) => Some(r),
        Err(e) => {
            warn!(error = %e, "could not register this worker in the work directory; its death is noticed by its beat only");
            None
        }
    };
    let every = super::presence::beat_every(ctx.cfg.liveness_ms);
    let mut tick = tokio::time::interval(LOCAL_SCAN.min(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        for (worker, file) in super::node_watch::dead_workers(&root, &ctx.worker_id) {
            info!(worker = %worker, "a worker of this machine died");
            match take_over(&ctx, &worker, true).await {
                Ok(()) => super::node_watch::forget(&file),
                Err(e) => {
                    debug!(error = %e, "taking over the tasks of a dead worker failed; retrying")
                }
            }
        }
        if last_sweep.elapsed() >= every {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = sweep(&ctx).await {
                debug!(error = %e, "looking for stopped workers failed");
            }
        }
    }
}

async fn sweep(ctx: &WorkerContext) -> Result<(), StoreError> {
    // Redis was away moments ago: nobody could beat, including the workers that are fine. Give
    // them two lease periods to beat again before judging any (as the diagnose loop does).
    if ctx
        .store
        .unavailable_within(Duration::from_millis(2 * ctx.cfg.lease_ms.max(1000)))
    {
        return Ok(());
    }
    for worker in ctx.store.silent_workers(now_ms(), 20).await? {
        // This worker's own beat is late (its process stalled): it judges nobody now.
        if worker == ctx.worker_id {
            return Ok(());
        }
        take_over(ctx, &worker, false).await?;
    }
    Ok(())
}

/// Takes the recordings of `worker`, silent (or `dead`: its process is gone), that are this
/// node's to continue, and re-dispatches them; forgets the worker once nothing of it is left.
async fn take_over(ctx: &WorkerContext, worker: &str, dead: bool) -> Result<(), StoreError> {
    let Some(tasks) = ctx.store.worker_tasks(worker).await? else {
        // Its announcement expired too: nothing of it is left to take (a lease it held
        // still expires, and the diagnose loop finds that).
        return ctx.store.forget_silent_worker(worker).await;
    };
    // Whether any of its tasks is still its own, left to its lease's expiry.
    let mut left = false;
    for id in tasks {
        let seen = match ctx.store.get(&id).await {
            Ok(seen) => seen,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if seen.owner.as_deref() != Some(worker) {
            continue;
        }
        // Recordings only (and tasks loading their page): the record stage locks the work
        // directory, so a stalled worker that comes back cannot write beside the next one.
        // Delivery stages wait for their leases to expire, as before.
        let recording = matches!(
            seen.status,
            Status::Normal | Status::Recording | Status::Paused
        );
        if !recording || !diagnose::for_this_node(ctx, &seen) {
            left = true;
            continue;
        }
        let taken = if dead {
            ctx.store.take_from_dead(&id, worker, now_ms()).await?
        } else {
            ctx.store.take_orphaned(&id, worker, now_ms()).await?
        };
        let Some(task) = taken else {
            continue;
        };
        info!(task_id = %id, status = %task.status, owner = %worker, dead, "its worker stopped beating: taking the task over");
        if let Err(e) = diagnose::dispatch(ctx, &id, &task).await {
            warn!(task_id = %id, error = %e, "re-dispatching the task of a stopped worker failed; its lease expiry will retry");
            return Err(e);
        }
    }
    if !left {
        // Nothing of it is left to take here: not looked at again (should it beat again,
        // it is back in the set).
        ctx.store.forget_silent_worker(worker).await?;
    }
    Ok(())
}
