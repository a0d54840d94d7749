//! The upload stage. Results are currently delivered to the local output directory (served by
//! `pagecast serve` under /files/), which the transcode stage already wrote; this stage confirms
//! every file is in place and moves the task on to its callback.

use super::WorkerContext;
use crate::error::ErrorCode;
use crate::task::Status;
use crate::task::store::StoreError;

/// Runs one upload job.
pub async fn run(ctx: WorkerContext, id: String) -> Result<(), StoreError> {
    let (ctx, id) = (&ctx, id.as_str());
    let Some((fence, task)) = ctx.claim_stage(id, Status::Upload).await? else {
        return Ok(());
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
