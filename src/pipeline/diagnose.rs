//! The diagnose loop: finds tasks whose worker stopped renewing its lease and hands each one to
//! another worker (recordings are continued, delivery stages run again) or ends it explicitly,
//! so no task stays in a non-final status forever. Safe on many workers at once:
//! the store hands an expired task to exactly one caller.

use std::time::Duration;

use tracing::{Instrument, debug, info, warn};

use super::WorkerContext;
use crate::clock::now_ms;
use crate::error::ErrorCode;
use crate::task::store::{Stage, StageQueue};
use crate::task::{Status, moves};

/// How often the stream index is pruned ([`crate::task::store::TaskStore::prune_streams`]).
const PRUNE_STREAMS_EVERY: Duration = Duration::from_secs(300);

/// Runs until shutdown.
pub(super) async fn run(ctx: WorkerContext) {
    let every = Duration::from_millis((ctx.cfg.lease_ms / 2).clamp(500, 10_000));
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        if let Err(e) = sweep(&ctx).await {
            warn!(error = %e, "diagnose sweep failed");
        }
        // Finished tasks whose retention is over go (and leave the counts).
        if let Err(e) = ctx.store.trim_expired(now_ms() / 1000, 500).await {
            debug!(error = %e, "deleting expired tasks failed");
        }
        // The empty queues of nodes that are gone leave the index the scrape reads.
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_STREAMS_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            if let Err(e) = ctx.store.prune_streams(now_ms()).await {
                debug!(error = %e, "pruning the queues of gone nodes failed");
            }
        }
    }
}

/// A task a stopping worker handed over that no worker of its node continued within
/// `PAGECAST_HANDOVER_TIMEOUT`. On its node the recorded parts are delivered, with an error
/// saying the recording ended early; elsewhere they are out of reach and the task fails.
async fn abandoned_handover(
    ctx: &WorkerContext,
    task: &crate::task::TaskRecord,
    ours: bool,
) -> Result<(), crate::task::store::StoreError> {
    let node = task.node.clone().unwrap_or_default();
    let message = format!(
        "the recording was handed over at shutdown, but no worker of node {node} continued it within {} s",
        ctx.cfg.handover_timeout
    );
    let kept = crate::media::segments::has_recorded_media(&ctx.cfg.task_dir(&task.id));
    if !ours && super::mirror::store_for(ctx, task).is_some() {
        // StorageType s3: its media is in the bucket, so a worker of this machine continues it.
        info!(task_id = %task.id, node = %node, "no worker of its machine continued the recording; continuing it here from the bucket");
        let deadline = ctx.handover_deadline_ms();
        return ctx
            .store
            .requeue_with_deadline(&task.id, &ctx.node_queue(Stage::Record), deadline)
            .await;
    }
    if !ours || !kept {
        return ctx
            .fail_task(
                &task.id,
                task.status,
                None,
                ErrorCode::RecordFailed,
                format!("{message}; its media is not reachable from here"),
            )
            .await;
    }
    warn!(task_id = %task.id, "{message}; delivering what was recorded");
    let now = crate::clock::now_s();
    ctx.store
        .transition(&task.id, moves::cancel(task.status, now))
        .await?;
    let mut result = task.result.clone().unwrap_or_default();
    result.error_code = Some(ErrorCode::RecordFailed.as_str().to_string());
    result.error_message = Some(format!("{message}; what was recorded is delivered"));
    let t = moves::to_transcode(Status::Canceled, now, ctx.node_queue(Stage::Transcode))
        .with_result(result);
    ctx.store.transition(&task.id, t).await
}

/// A stopped task whose worker died before it handed the recording on (its media is on this
/// node): the segment its encoder had not finished is salvaged, and the recorded media goes to
/// transcode here.
async fn finish_stopped(
    ctx: &WorkerContext,
    task: &crate::task::TaskRecord,
) -> Result<(), crate::task::store::StoreError> {
    let work_dir = ctx.cfg.task_dir(&task.id);
    let span = tracing::info_span!("task", task_id = %task.id, stage = "diagnose");
    super::record::keep_unfinished_segment(ctx, &work_dir)
        .instrument(span)
        .await;
    if !crate::media::segments::has_recorded_media(&work_dir) {
        return ctx
            .fail_task(
                &task.id,
                Status::Canceled,
                None,
                ErrorCode::RecordFailed,
                "the worker ending this stopped recording died before any of it was written"
                    .to_string(),
            )
            .await;
    }
    info!(task_id = %task.id, "the worker ending this stopped recording died; making the result from what it recorded");
    let t = moves::to_transcode(
        Status::Canceled,
        crate::clock::now_s(),
        ctx.node_queue(Stage::Transcode),
    );
    ctx.store.transition(&task.id, t).await
}

async fn sweep(ctx: &WorkerContext) -> Result<(), crate::task::store::StoreError> {
    // Two lease periods: time enough for a live worker to renew its lease.
    let two_leases = Duration::from_millis(2 * ctx.cfg.lease_ms.max(1000));
    // Redis was away moments ago: every lease ran on without renewal, including those of
    // workers that are fine. Give them two lease periods to renew before judging any.
    if ctx.store.unavailable_within(two_leases) {
        debug!(
            "the task store was unavailable moments ago; leases are judged once their workers could renew them"
        );
        return Ok(());
    }
    // A recording whose worker stopped is continued on the machine that holds its media; other
    // machines step in only when nobody there has for a while (the machine itself is gone).
    let grace = two_leases.as_millis() as i64;
    let long_expired: std::collections::HashSet<String> = ctx
        .store
        .expired_leases(now_ms() - grace, 50)
        .await?
        .into_iter()
        .collect();
    for id in ctx.store.expired_leases(now_ms(), 50).await? {
        let Ok(seen) = ctx.store.get(&id).await else {
            continue;
        };
        if !long_expired.contains(&id) && !for_this_node(ctx, &seen) {
            continue;
        }
        // An overdue lease is not an abandoned task: its worker may be alive and only unable to
        // renew for a moment (Redis was away). Only a worker that no longer says it works on
        // the task has left it.
        if let Some(owner) = &seen.owner
            && super::presence::works_on(ctx, owner, &id).await
        {
            debug!(task_id = %id, owner = %owner, "lease overdue, but its worker is alive and still on the task");
            continue;
        }
        let Some(task) = ctx.store.take_expired(&id, now_ms()).await? else {
            continue;
        };
        info!(task_id = %id, status = %task.status, owner = ?task.owner, "lease expired: the worker stopped responding");
        dispatch(ctx, &id, &task).await?;
    }
    Ok(())
}

/// Whether a task of a stopped worker, as `seen`, is for this worker's node to act on now: a
/// recording is continued on the machine that holds its media.
pub(super) fn for_this_node(ctx: &WorkerContext, seen: &crate::task::TaskRecord) -> bool {
    !(seen.status.is_live() && seen.node.as_deref().is_some_and(|n| n != ctx.node))
}

/// Acts on `task`, just taken from a worker that stopped (its lease cleared): recordings are
/// continued, delivery stages run again, anything else ends explicitly.
pub(super) async fn dispatch(
    ctx: &WorkerContext,
    id: &str,
    task: &crate::task::TaskRecord,
) -> Result<(), crate::task::store::StoreError> {
    let ours = task.node.as_deref() == Some(ctx.node.as_str());
    match task.status {
        // Delivery stages can simply run again; local media is only reachable on its node.
        Status::Callback => {
            ctx.store
                .requeue(
                    id,
                    &StageQueue {
                        stage: Stage::Callback,
                        node: None,
                    },
                )
                .await?
        }
        Status::Transcode if ours => {
            ctx.store
                .requeue(id, &ctx.node_queue(Stage::Transcode))
                .await?
        }
        Status::Upload if ours => {
            ctx.store
                .requeue(id, &ctx.node_queue(Stage::Upload))
                .await?
        }
        Status::Finished => {}
        // Handed over (at shutdown, or by this loop after its worker died) and not continued
        // in time: no worker of its node is left to continue it.
        status if status.is_live() && task.owner.is_none() => {
            abandoned_handover(ctx, task, ours).await?;
        }
        // Its worker stopped: another worker of the node holding its media continues the
        // same task (the record stage appends to the kept media and reports the gap).
        Status::Recording | Status::Paused => {
            let deadline = ctx.handover_deadline_ms();
            ctx.store
                .requeue_with_deadline(id, &ctx.node_queue(Stage::Record), deadline)
                .await?
        }
        Status::Normal => {
            ctx.store
                .requeue(id, &StageQueue::shared(Stage::Record))
                .await?
        }
        // Stopped before its recording began, and its worker died meanwhile: it ends as
        // Canceled (nothing was recorded).
        _ if crate::task::prestart::canceled_before_start(task) => {
            super::canceled::end(ctx, id, None).await?
        }
        // Stopped, and its worker died while ending the recording: what it recorded is
        // here, so the result is made from it.
        Status::Canceled if ours => finish_stopped(ctx, task).await?,
        status => {
            let message = format!(
                "the worker handling this task ({status}) stopped responding and its media is not reachable from here"
            );
            ctx.fail_task(id, status, None, ErrorCode::RecordFailed, message)
                .await?;
        }
    }
    Ok(())
}
