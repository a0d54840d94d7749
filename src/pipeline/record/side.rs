//! What a record job runs beside its recording: the watch on the work disk, and the side work
//! (the bucket copy of the work directory, HLS publishing, the live MP4 upload).

use std::time::Duration;

use tracing::warn;

use super::RecordJob;
use crate::error::ErrorCode;
use crate::pipeline::publish::{Publisher, task_key};
use crate::task::store::StoreError;

impl RecordJob {
    /// The watch on the work disk, which must keep room for this task's result.
    pub(super) fn disk_watch(&self) -> crate::pipeline::disk::DiskWatch {
        let cfg = &self.ctx.cfg;
        let result_root = if cfg.storage.destination(&self.task.spec.output).is_some() {
            cfg.deliver_dir(&self.id)
        } else {
            cfg.output_dir.clone()
        };
        crate::pipeline::disk::DiskWatch::new(
            &cfg.work_root(),
            &result_root,
            cfg.min_free_mb,
            self.task.spec.muxer == crate::task::Muxer::Mp4,
        )
    }

    /// Why the recording must end to spare the disk, if its media reached the task's quota.
    pub(super) fn over_quota(&self, work_dir: &std::path::Path) -> Option<(ErrorCode, String)> {
        let quota = self.ctx.cfg.task_disk_mb;
        let used = crate::media::segments::bytes_written(work_dir) >> 20;
        (quota > 0 && used >= quota).then(|| {
            (
                ErrorCode::RecordFailed,
                format!(
                    "the recording's media reached the task disk quota ({used} MiB of \
                     PAGECAST_TASK_DISK_MB={quota}); it was ended there"
                ),
            )
        })
    }

    /// Starts the side work of a recording (copying the work directory to the bucket, publishing
    /// HLS segments) every two seconds; it does a last round and ends when told to stop.
    pub(super) async fn side_work(
        &mut self,
        work_dir: &std::path::Path,
    ) -> Result<Option<crate::pipeline::side_tasks::SideWork>, StoreError> {
        use tracing::Instrument;
        let mut mirror = self.mirror.take();
        // Published segments leave the work directory unless it is being copied to a bucket.
        let mut publisher = self.publisher().await?.map(|p| {
            if mirror.is_none() {
                p.removing_sources()
            } else {
                p
            }
        });
        let mut live_mp4 = self.live_mp4(work_dir).await;
        if mirror.is_none() && publisher.is_none() && live_mp4.is_none() {
            return Ok(None);
        }
        let dir = work_dir.to_path_buf();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(
            async move {
                loop {
                    let stopping = tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => false,
                        _ = &mut stop_rx => true,
                    };
                    if let Some(m) = &mut mirror
                        && let Err(e) = m.sync(&dir).await
                    {
                        warn!(error = %e, "copying intermediate media to the bucket failed; will retry");
                    }
                    if let Some(p) = &mut publisher {
                        let published = match crate::media::hls::segments_in(&dir) {
                            Ok(segments) => p.publish(&segments).await.map(|_| ()),
                            Err(e) => Err(e.into()),
                        };
                        if let Err(e) = published {
                            warn!(error = %e, "publishing HLS segments failed; will retry");
                        }
                    }
                    if stopping {
                        if let Some(l) = live_mp4.take() {
                            l.finish().await;
                        }
                        return;
                    }
                    if let Some(l) = &mut live_mp4
                        && !l.round().await
                    {
                        live_mp4 = None;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(Some(crate::pipeline::side_tasks::SideWork::new(
            stop_tx, handle,
        )))
    }

    /// The live upload of an MP4 result to its bucket; `None` for HLS, local delivery, a
    /// takeover (the recorded segments have more than one clock), or when the bucket cannot be
    /// used now (the later stages then send the file).
    async fn live_mp4(
        &self,
        work_dir: &std::path::Path,
    ) -> Option<crate::pipeline::live_mp4::LiveMp4> {
        if self.task.spec.muxer != crate::task::Muxer::Mp4 {
            return None;
        }
        let dest = self.ctx.cfg.storage.destination(&self.task.spec.output)?;
        let store = match crate::pipeline::upload::task_store(&self.ctx, &self.task, &dest).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "the bucket cannot be used now; the MP4 is uploaded after the recording");
                return None;
            }
        };
        if self.takeover.is_some() {
            crate::pipeline::live_mp4::discard(&store, work_dir).await;
            return None;
        }
        Some(
            crate::pipeline::live_mp4::LiveMp4::new(
                store,
                &self.task,
                work_dir,
                &self.ctx.cfg.recorder.ffmpeg,
                self.ctx.cfg.storage.part_size(),
            )
            .await,
        )
    }

    /// The publisher of an HLS result's segments during the recording; `None` for MP4, or when
    /// the key or the bucket cannot be used now (the later stages then publish everything, and
    /// say why if it still fails).
    async fn publisher(&self) -> Result<Option<Publisher>, StoreError> {
        if self.task.spec.muxer != crate::task::Muxer::Hls {
            return Ok(None);
        }
        let key = match task_key(&self.ctx, &self.task).await? {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, "the HLS key cannot be used; segments are published after the recording");
                return Ok(None);
            }
        };
        let store = match self.ctx.cfg.storage.destination(&self.task.spec.output) {
            None => None,
            Some(dest) => {
                match crate::pipeline::upload::task_store(&self.ctx, &self.task, &dest).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        warn!(error = %e, "the bucket cannot be used now; segments are uploaded after the recording");
                        return Ok(None);
                    }
                }
            }
        };
        Ok(Publisher::new(&self.ctx, &self.task, key, store))
    }
}
