//! The transcode stage: join the recorded segments into the deliverable (MP4 or HLS, encrypted
//! if asked) in the output directory, without re-encoding.

use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::{info, warn};

use super::{WorkerContext, now_ms};
use crate::error::ErrorCode;
use crate::media::encoder::completed_segments;
use crate::media::finalize::{HlsKey, OutputFormat, finalize};
use crate::task::store::{Claim, Stage, StoreError, Transition};
use crate::task::{Muxer, Status, TaskRecord, TaskResult, Video};

/// Entry point for the stage loop.
pub fn run(ctx: WorkerContext, id: String) -> BoxFuture<'static, ()> {
    async move {
        if let Err(e) = transcode(&ctx, &id).await {
            warn!(error = %e, "transcode stage ended with a store error");
        }
    }
    .boxed()
}

/// The result's location below the output root: `<TargetDir>/<TargetName>.<ext>`.
pub fn output_rel_path(task: &TaskRecord) -> String {
    let dir = task
        .spec
        .output
        .target_dir
        .clone()
        .unwrap_or_else(|| task.id.clone());
    let name = task
        .spec
        .output
        .target_name
        .clone()
        .unwrap_or_else(|| (task.stop_time.unwrap_or(task.create_time) * 1000).to_string());
    let ext = match task.spec.muxer {
        Muxer::Mp4 => "mp4",
        Muxer::Hls => "m3u8",
    };
    format!("{}/{name}.{ext}", dir.trim_matches('/'))
}

async fn transcode(ctx: &WorkerContext, id: &str) -> Result<(), StoreError> {
    let (fence, task) = match ctx
        .store
        .claim(
            id,
            &ctx.worker_id,
            &[Status::Transcode],
            now_ms(),
            ctx.lease_ms(),
        )
        .await?
    {
        Claim::Acquired { fence, task } => (fence, task),
        Claim::Busy | Claim::NotClaimable(_) => return Ok(()),
    };
    let work_dir = ctx.cfg.work_root().join(id);
    let segments = match completed_segments(&work_dir) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            return ctx
                .fail_task(
                    id,
                    Status::Transcode,
                    Some(fence),
                    ErrorCode::TranscodeFailed,
                    "no recorded media was found on this node".into(),
                )
                .await;
        }
        Err(e) => {
            return ctx
                .fail_task(
                    id,
                    Status::Transcode,
                    Some(fence),
                    ErrorCode::TranscodeFailed,
                    e.to_string(),
                )
                .await;
        }
    };
    let key = match (
        ctx.store.secrets(id).await?.encrypt_key,
        &task.spec.auth_url,
    ) {
        (Some(k), Some(uri)) => match HlsKey::from_hex(&k, uri) {
            Ok(k) => Some(k),
            Err(e) => {
                return ctx
                    .fail_task(
                        id,
                        Status::Transcode,
                        Some(fence),
                        ErrorCode::TranscodeFailed,
                        e,
                    )
                    .await;
            }
        },
        _ => None,
    };
    let format = match task.spec.muxer {
        Muxer::Mp4 => OutputFormat::Mp4,
        Muxer::Hls => OutputFormat::Hls {
            key,
            segment_seconds: 2,
        },
    };
    let rel = output_rel_path(&task);
    let out_root = &ctx.cfg.output_dir;
    let output = out_root.join(&rel);
    info!(output = %output.display(), "finalizing");
    let files = match finalize(
        &ctx.cfg.recorder.ffmpeg,
        &segments,
        &work_dir,
        &output,
        &format,
    )
    .await
    {
        Ok(f) => f,
        Err(e) => {
            return ctx
                .fail_task(
                    id,
                    Status::Transcode,
                    Some(fence),
                    ErrorCode::TranscodeFailed,
                    e.to_string(),
                )
                .await;
        }
    };
    // Local delivery: the files are final where they are; Describe points at `serve`'s /files/.
    let base = ctx.public_url.trim_end_matches('/');
    let videos = files
        .iter()
        .filter_map(|f| {
            let rel = f
                .strip_prefix(out_root)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let size = std::fs::metadata(f).ok()?.len();
            Some(Video {
                filename: rel.clone(),
                file_size: size,
                file_url: format!("{base}/files/{rel}"),
            })
        })
        .collect();
    let mut t = Transition::new(Status::Transcode, Status::Upload);
    t.lease = Some((ctx.worker_id.clone(), fence));
    t.result = Some(TaskResult {
        videos,
        ..TaskResult::default()
    });
    t.enqueue = Some(ctx.node_queue(Stage::Upload));
    t.release_lease = true;
    ctx.store.transition(id, t).await?;
    // The segments are no longer needed once the deliverable is committed.
    let _ = std::fs::remove_dir_all(&work_dir);
    Ok(())
}
