//! The upload stage: sends the deliverable to object storage (when the server or the task names a
//! bucket) and records each object's URL; for local delivery it confirms the files are in the
//! published output directory.
//!
//! A storage outage does not fail the task: retryable failures (connection errors, timeouts,
//! throttling, 5xx) are waited out with backoff for up to `PAGECAST_UPLOAD_RETRY_SECONDS`, holding
//! the lease. Local files are deleted only after every object is confirmed in storage and the
//! task has moved on; a task that fails to upload keeps its files on the worker.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use tracing::{info, warn};

use super::WorkerContext;
use crate::error::ErrorCode;
use crate::metrics;
use crate::storage::s3::ObjectStore;
use crate::storage::{Destination, StorageError};
use crate::task::store::StoreError;
use crate::task::{Status, TaskRecord, TaskResult};

/// Objects sent at once (each multipart upload holds its own part buffers).
const PARALLEL_OBJECTS: usize = 4;

/// Whether (and after how long a wait) an upload whose attempt `attempt` failed is tried again:
/// only a retryable failure (connection errors, timeouts, throttling, 5xx), and only while less
/// than `budget` (PAGECAST_UPLOAD_RETRY_SECONDS) has passed since the first attempt. The waits
/// double from 2 s to at most 30 s.
pub(crate) fn retry_wait(
    attempt: u32,
    retryable: bool,
    elapsed: Duration,
    budget: Duration,
) -> Option<Duration> {
    (retryable && elapsed < budget)
        .then(|| Duration::from_millis((1000u64 << attempt.min(5)).min(30_000)))
}

/// Runs one upload job.
pub(super) async fn run(ctx: WorkerContext, id: String) -> Result<(), StoreError> {
    let (ctx, id) = (&ctx, id.as_str());
    let Some((fence, task)) = ctx.claim_stage(id, Status::Upload).await? else {
        return Ok(());
    };
    let _heartbeat = ctx.heartbeat(id, fence);
    let result = task.result.clone().unwrap_or_default();
    // Local delivery, or a snapshot-only task (no video to send: its pictures were stored
    // while recording).
    let Some(dest) = ctx
        .cfg
        .storage
        .destination(&task.spec.output)
        .filter(|_| task.spec.muxer != crate::task::Muxer::None)
    else {
        return confirm_local(ctx, id, fence, result).await;
    };
    let started = Instant::now();
    let budget = Duration::from_secs(ctx.cfg.storage.upload_retry_seconds);
    let mut attempt = 0u32;
    let outcome = loop {
        attempt += 1;
        let e = match upload_all(ctx, &task, &dest, &result).await {
            Ok(result) => break Ok(result),
            Err(e) => e,
        };
        let Some(wait) = retry_wait(attempt, e.is_retryable(), started.elapsed(), budget) else {
            break Err(e);
        };
        metrics::inc(&metrics::UPLOAD_RETRIES, &[]);
        warn!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "storage unavailable; will retry");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Shutting down: leave the task in `upload`; the job is redelivered.
            _ = ctx.shutdown.cancelled() => return Ok(()),
        }
    };
    match outcome {
        Ok(result) => {
            info!(
                objects = result.videos.len(),
                attempts = attempt,
                "result uploaded"
            );
            ctx.finish_or_callback(id, Status::Upload, Some(fence), Some(result))
                .await?;
            // Confirmed in storage and recorded: the local copy can go.
            let _ = tokio::fs::remove_dir_all(ctx.cfg.deliver_dir(id)).await;
            Ok(())
        }
        Err(e) => {
            let kept = ctx.cfg.deliver_dir(id);
            ctx.fail_task(
                id,
                Status::Upload,
                Some(fence),
                ErrorCode::UploadFailed,
                // Where on the node, relative to its work directory: server paths are not shown.
                format!(
                    "uploading the result to bucket {} failed after {attempt} attempts: {e} \
                     (the files are kept on node {} in its work directory, {})",
                    dest.bucket,
                    ctx.node,
                    kept.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ),
            )
            .await
        }
    }
}

/// Sends every file of the result and returns the result with the objects' URLs. Objects already
/// in storage with the right size (an earlier attempt got that far) are not sent again.
async fn upload_all(
    ctx: &WorkerContext,
    task: &TaskRecord,
    dest: &Destination,
    result: &TaskResult,
) -> Result<TaskResult, StorageError> {
    let store = task_store(ctx, task, dest).await?;
    let local_root = ctx.cfg.deliver_dir(&task.id);
    // HLS segments published while recording are in the bucket already.
    let stored = crate::delivery::stored_objects(&local_root);
    // Every file of the result: an HLS result lists only its playlist, the transcode stage
    // left the whole list beside the files.
    let files = super::videos::noted_files(&local_root).unwrap_or_else(|| {
        result
            .videos
            .iter()
            .map(|v| (v.filename.clone(), v.file_size))
            .collect()
    });
    // A few objects at a time: an HLS result is hundreds of small segments, and one request at
    // a time would spend most of its time waiting on round trips.
    let sends: Vec<_> = files
        .into_iter()
        .map(|(key, size)| {
            let (store, local_root) = (store.clone(), local_root.clone());
            let stored = &stored;
            async move {
                let path = local_root.join(&key);
                let mut bytes = 0;
                if path.is_file() {
                    bytes = store.upload_file(&path, &key).await?.bytes;
                    metrics::add(&metrics::UPLOAD_BYTES, &[], bytes as f64);
                } else if stored.get(&key) != Some(&size) {
                    // Not sent by the record stage either: an earlier attempt must have.
                    match store.size_of(&key).await? {
                        Some(there) if there == size => {}
                        other => {
                            return Err(StorageError::Request {
                                operation: "upload",
                                key: key.clone(),
                                message: format!(
                                    "the local file is gone and storage has {}",
                                    other.map_or("no such object".to_string(), |s| format!(
                                        "{s} bytes"
                                    ))
                                ),
                                retryable: false,
                            });
                        }
                    }
                }
                Ok::<_, StorageError>(bytes)
            }
        })
        .collect();
    let sent: Vec<u64> = futures::stream::iter(sends)
        .buffered(PARALLEL_OBJECTS)
        .try_collect()
        .await?;
    let sent: u64 = sent.iter().sum();
    // Each listed file's URL, once everything is in place.
    let mut out = result.clone();
    for video in &mut out.videos {
        video.file_url = store.url_of(&video.filename).await?;
    }
    info!(bucket = %dest.bucket, bytes = sent, "objects stored");
    Ok(out)
}

/// The store for `task`'s result at `dest` (see [`crate::delivery::result_store`]).
pub(super) async fn task_store(
    ctx: &WorkerContext,
    task: &TaskRecord,
    dest: &Destination,
) -> Result<ObjectStore, StorageError> {
    crate::delivery::result_store(
        &ctx.cfg.storage,
        &ctx.cfg.url_policy(),
        &task.spec.output,
        dest,
    )
    .await
}

/// Local delivery: every file must be in the output directory.
async fn confirm_local(
    ctx: &WorkerContext,
    id: &str,
    fence: u64,
    result: TaskResult,
) -> Result<(), StoreError> {
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
