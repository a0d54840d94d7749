//! The diagnose loop: finds tasks whose worker stopped renewing its lease and hands each one to
//! another worker (recordings are continued, delivery stages run again) or ends it explicitly,
//! so no task stays in a non-final status forever. Safe on many workers at once:
//! the store hands an expired task to exactly one caller.

use std::time::Duration;

use tracing::{info, warn};

use super::{WorkerContext, now_ms};
use crate::error::ErrorCode;
use crate::task::Status;
use crate::task::store::{Stage, StageQueue};

/// Runs until shutdown.
pub async fn run(ctx: WorkerContext) {
    let every = Duration::from_millis((ctx.cfg.lease_ms / 2).clamp(500, 10_000));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        if let Err(e) = sweep(&ctx).await {
            warn!(error = %e, "diagnose sweep failed");
        }
    }
}

async fn sweep(ctx: &WorkerContext) -> Result<(), crate::task::store::StoreError> {
    // A recording whose worker stopped is continued on the machine that holds its media; other
    // machines step in only when nobody there has for a while (the machine itself is gone).
    let grace = 2 * ctx.cfg.lease_ms.max(1000) as i64;
    let long_expired: std::collections::HashSet<String> = ctx
        .store
        .expired_leases(now_ms() - grace, 50)
        .await?
        .into_iter()
        .collect();
    for id in ctx.store.expired_leases(now_ms(), 50).await? {
        if !long_expired.contains(&id)
            && let Ok(t) = ctx.store.get(&id).await
            && t.status.is_live()
            && t.node.as_deref().is_some_and(|n| n != ctx.node)
        {
            continue;
        }
        let Some(task) = ctx.store.take_expired(&id, now_ms()).await? else {
            continue;
        };
        info!(task_id = %id, status = %task.status, owner = ?task.owner, "lease expired: the worker stopped responding");
        let ours = task.node.as_deref() == Some(ctx.node.as_str());
        match task.status {
            // Delivery stages can simply run again; local media is only reachable on its node.
            Status::Callback => {
                ctx.store
                    .requeue(
                        &id,
                        &StageQueue {
                            stage: Stage::Callback,
                            node: None,
                        },
                    )
                    .await?
            }
            Status::Transcode if ours => {
                ctx.store
                    .requeue(&id, &ctx.node_queue(Stage::Transcode))
                    .await?
            }
            Status::Upload if ours => {
                ctx.store
                    .requeue(&id, &ctx.node_queue(Stage::Upload))
                    .await?
            }
            Status::Finished => {}
            // Recording, paused or about to: another worker continues the same task (the record
            // stage appends to the media kept in this node's work directory and reports the gap).
            Status::Recording | Status::Paused => {
                ctx.store
                    .requeue(&id, &ctx.node_queue(Stage::Record))
                    .await?
            }
            Status::Normal => {
                ctx.store
                    .requeue(&id, &StageQueue::shared(Stage::Record))
                    .await?
            }
            status => {
                let message = format!(
                    "the worker handling this task ({status}) stopped responding and its media is not reachable from here"
                );
                ctx.fail_task(&id, status, None, ErrorCode::RecordFailed, message)
                    .await?;
            }
        }
    }
    Ok(())
}
