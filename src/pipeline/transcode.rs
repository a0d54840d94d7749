//! The transcode stage: join the recorded segments into the deliverable (MP4 or HLS, encrypted
//! if asked) without re-encoding: in the output directory (local delivery) or in a directory the
//! upload stage sends to object storage.

use std::path::Path;

use tracing::{info, warn};

use super::WorkerContext;
use super::publish::{Publisher, task_key};
use crate::delivery::ResultFile;
use crate::error::ErrorCode;
use crate::media::finalize::{OutputFormat, finalize};
use crate::media::hls::segments_in;
use crate::media::segments::completed_segments;
use crate::task::store::{Stage, StoreError};
use crate::task::{Muxer, Status, TaskRecord, Video};

/// Runs one transcode job.
pub(super) async fn run(ctx: WorkerContext, id: String) -> Result<(), StoreError> {
    let Some((fence, task)) = ctx.claim_stage(&id, Status::Transcode).await? else {
        return Ok(());
    };
    let _heartbeat = ctx.heartbeat(&id, fence);
    let work_dir = ctx.cfg.task_dir(&id);
    // Object storage: assemble beside the work directory, for the upload stage to send. Local
    // delivery: write straight into the published output directory.
    let to_storage = ctx.cfg.storage.destination(&task.spec.output).is_some();
    let out_root = if to_storage {
        ctx.cfg.deliver_dir(&id)
    } else {
        ctx.cfg.output_dir.clone()
    };
    let files = match produce(&ctx, &task, &work_dir, &out_root).await? {
        Ok(files) => files,
        Err(message) => {
            // The task ends here: nothing will read its segments again, and left behind they
            // would keep the disk full.
            let _ = std::fs::remove_dir_all(&work_dir);
            return ctx
                .fail_task(
                    &id,
                    Status::Transcode,
                    Some(fence),
                    ErrorCode::TranscodeFailed,
                    message,
                )
                .await;
        }
    };
    if to_storage
        && task.spec.muxer == Muxer::Hls
        && let Err(e) = super::videos::note_files(&out_root, &files)
    {
        let message = format!("listing the result's files for the upload: {e}");
        return ctx
            .fail_task(
                &id,
                Status::Transcode,
                Some(fence),
                ErrorCode::TranscodeFailed,
                message,
            )
            .await;
    }
    let domain = task.spec.output.domain.as_deref();
    let listed = super::videos::listed(&ctx.cfg.recorder.ffprobe, &task, files, &out_root).await;
    let videos = listed
        .into_iter()
        .map(|l| Video {
            // Object storage URLs are known once uploaded; local files are served by `serve`
            // (or by what the task's Domain names).
            file_url: if to_storage {
                String::new()
            } else {
                match domain {
                    // The operator's own domain serves the files: its URLs are not signed.
                    Some(_) => crate::storage::local_file_url(&ctx.public_url, domain, &l.file.key),
                    None => ctx.local_file_url(&l.file.key),
                }
            },
            filename: l.file.key,
            file_size: l.file.size,
            file_duration: Some(l.seconds),
            segment_count: l.segments,
        })
        .collect::<Vec<_>>();
    let count = videos.len();
    // Keep an error from recording (e.g. PageCrashed): the files come with it.
    let mut result = task.result.clone().unwrap_or_default();
    result.videos = videos;
    let t = crate::task::moves::to_upload(result, ctx.node_queue(Stage::Upload))
        .with_lease(ctx.worker_id.clone(), fence);
    ctx.store.transition(&id, t).await?;
    info!(files = count, "deliverable ready");
    // The segments are no longer needed once the deliverable is committed.
    let _ = std::fs::remove_dir_all(&work_dir);
    if let Some(store) = super::mirror::store_for(&ctx, &task) {
        super::mirror::remove(&store, &id).await;
    }
    Ok(())
}

/// Produces the deliverable from the node's recorded segments below `out_root`. The outer
/// error is the store's; the inner one says why the deliverable could not be made (the task
/// fails with it).
async fn produce(
    ctx: &WorkerContext,
    task: &TaskRecord,
    work_dir: &Path,
    out_root: &Path,
) -> Result<Result<Vec<ResultFile>, String>, StoreError> {
    // A snapshot-only task: the pictures were stored while recording; no video is made.
    if task.spec.muxer == Muxer::None {
        info!("snapshot-only task: no video file is made");
        return Ok(Ok(Vec::new()));
    }
    let rel = crate::task::names::rel_path(task);
    if task.spec.muxer == Muxer::Hls {
        // The recorded segments are the HLS segments; most were published while recording.
        let key = match task_key(ctx, task).await? {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let segments = match segments_in(work_dir) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return Ok(Err("no recorded media was found on this node".into())),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let Some(mut publisher) = Publisher::new(ctx, task, key, None) else {
            return Ok(Err("the task's result is not HLS".into()));
        };
        info!(playlist = %rel, segments = segments.len(), "finishing the HLS result");
        return Ok(publisher
            .finish(&segments, &rel)
            .await
            .map_err(|e| e.to_string()));
    }
    // Sent to the bucket while recording: only the head and the tail are left.
    if let Some(dest) = ctx.cfg.storage.destination(&task.spec.output) {
        match super::upload::task_store(ctx, task, &dest).await {
            Ok(store) => {
                let deliver = ctx.cfg.deliver_dir(&task.id);
                if let Some(file) =
                    super::live_mp4::complete(&store, work_dir, &deliver, &rel).await
                {
                    return Ok(Ok(vec![file]));
                }
            }
            Err(e) => warn!(error = %e, "the bucket cannot be used now"),
        }
    }
    // Segments whose file is gone cannot be joined; the rest still can.
    let segments = match completed_segments(work_dir)
        .map(|s| s.into_iter().filter(|p| p.exists()).collect::<Vec<_>>())
    {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return Ok(Err("no recorded media was found on this node".into())),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let output = out_root.join(&rel);
    info!(output = %output.display(), "finalizing");
    let made = finalize(
        &ctx.cfg.recorder.ffmpeg,
        &segments,
        work_dir,
        &output,
        &OutputFormat::Mp4,
    )
    .await
    .map_err(|e| e.to_string())
    .and_then(|_| {
        std::fs::metadata(&output)
            .map(|m| m.len())
            .map_err(|e| format!("reading {rel}: {e}"))
    });
    Ok(made.map(|size| {
        vec![ResultFile {
            key: rel,
            size,
            stored: false,
        }]
    }))
}
