//! The upload stage. Results are currently delivered to the local output directory (served by
//! `pagecast serve` under /files/), which the transcode stage already wrote; this stage confirms
//! every file is in place and moves the task on to its callback.

use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::warn;

use super::{WorkerContext, now_ms};
use crate::error::ErrorCode;
use crate::task::Status;
use crate::task::store::{Claim, StoreError};

/// Entry point for the stage loop.
pub fn run(ctx: WorkerContext, id: String) -> BoxFuture<'static, ()> {
    async move {
        if let Err(e) = upload(&ctx, &id).await {
            warn!(error = %e, "upload stage ended with a store error");
        }
    }
    .boxed()
}

async fn upload(ctx: &WorkerContext, id: &str) -> Result<(), StoreError> {
    let (fence, task) = match ctx
        .store
        .claim(
            id,
            &ctx.worker_id,
            &[Status::Upload],
            now_ms(),
            ctx.lease_ms(),
        )
        .await?
    {
        Claim::Acquired { fence, task } => (fence, task),
        Claim::Busy | Claim::NotClaimable(_) => return Ok(()),
    };
    let result = task.result.clone().unwrap_or_default();
    let missing: Vec<_> = result
        .videos
        .iter()
        .filter(|v| !ctx.cfg.output_dir.join(&v.filename).is_file())
        .map(|v| v.filename.clone())
        .collect();
    if !missing.is_empty() {
        return ctx
            .fail_task(
                id,
                Status::Upload,
                Some(fence),
                ErrorCode::UploadFailed,
                format!("result files are missing: {}", missing.join(", ")),
            )
            .await;
    }
    ctx.finish_or_callback(id, Status::Upload, Some(fence), Some(result))
        .await
}
