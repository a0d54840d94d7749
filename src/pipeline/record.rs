//! The record stage: take a queued task, run its recording, follow its controls, hand the
//! media on to transcode.

use std::time::Duration;

use tracing::{info, warn};

use super::WorkerContext;
use super::takeover::{Takeover, combined, ended_progress, stats_of};
use crate::clock::{now_ms, now_s};
use crate::error::ErrorCode;
use crate::metrics;
use crate::recording::RecordingEvent;
use crate::task::store::{Claim, Stage, StageJob, StageQueue, StoreError, TimeField};
use crate::task::{Status, TaskRecord, TaskResult, TaskStats, moves};
use supervisor::EventMove;

mod before_start;
mod job_loop;
mod live_metrics;
mod side;
pub(crate) mod supervisor;
mod work_lock;

use work_lock::NotLocked;

/// Runs one record job from the queue.
pub(super) async fn run(ctx: WorkerContext, queue: StageQueue, job: StageJob) {
    let id = job.task_id.clone();
    // A started task in a record queue was handed over (its worker was killed, or shut down):
    // this worker continues it, or delivers it if it was stopped meanwhile. They come on the
    // node's own queue (media in the node's work directory) or, for StorageType s3 (media in
    // the bucket), on the shared queue.
    let expect: &[Status] = &[
        Status::Normal,
        Status::Recording,
        Status::Paused,
        Status::Canceled,
    ];
    let claim = ctx
        .store
        .claim(&id, &ctx.worker_id, expect, now_ms(), ctx.lease_ms())
        .await;
    // Whatever the claim says, this queue entry is done: the lease now guards the task.
    if let Err(e) = ctx.store.ack(&queue, &job.entry_id).await {
        warn!(error = %e, "ack failed");
    }
    let (fence, task) = match claim {
        Ok(Claim::Acquired { fence, task }) => (fence, task),
        Ok(Claim::Busy) => return,
        Ok(Claim::NotClaimable(status)) => {
            info!(%status, "task is no longer waiting to record; skipped");
            return;
        }
        Err(e) => {
            warn!(error = %e, "claiming the task failed; it stays queued for another try");
            return;
        }
    };
    // While this job runs, the diagnose loops know the task is this live worker's.
    let _active = ctx.active.hold(&id);
    if crate::task::prestart::canceled_before_start(&task) {
        // Stopped while it waited for a worker (or for a page whose worker died).
        if let Err(e) = super::canceled::end(&ctx, &id, Some(fence)).await {
            warn!(error = %e, "record stage ended with a store error");
        }
        return;
    }
    let work_dir = ctx.cfg.task_dir(&id);
    // One writer per work directory: a worker that stalled (and lost this task) lets go of it
    // before this one reads or writes there.
    let _lock = match work_lock::lock(&ctx, &id, fence, &work_dir).await {
        Ok(lock) => lock,
        Err(NotLocked::LeaseLost) => {
            info!("lost the lease while waiting for the work directory; skipped");
            return;
        }
        Err(why) => {
            let message = match why {
                NotLocked::Io(e) => format!("work directory: {e}"),
                _ => format!(
                    "the previous worker of this recording still held its work directory after {} s",
                    ctx.cfg.handover_timeout
                ),
            };
            if let Err(e) = ctx
                .fail_task(
                    &id,
                    task.status,
                    Some(fence),
                    ErrorCode::RecordFailed,
                    message,
                )
                .await
            {
                warn!(error = %e, "record stage ended with a store error");
            }
            return;
        }
    };
    let mirror = super::mirror::store_for(&ctx, &task);
    if task.status != Status::Normal
        && let Some(store) = &mirror
        && !crate::media::segments::has_recorded_media(&work_dir)
    {
        // Taken over from another machine: its media comes from the bucket.
        if let Err(e) = super::mirror::fetch(store, &id, &work_dir).await {
            warn!(error = %e, "could not fetch the intermediate media; continuing without it");
        }
    }
    if task.status != Status::Normal {
        keep_unfinished_segment(&ctx, &work_dir).await;
    }
    let takeover =
        (task.status != Status::Normal).then(|| Takeover::inspect(&task, &work_dir, &ctx.node));
    if let Some(t) = &takeover {
        metrics::inc(&metrics::TAKEOVERS, &[]);
        info!(
            status = %task.status,
            restarts = task.restarts,
            kept_seconds = t.base.recorded_duration,
            "taking over a recording whose worker stopped"
        );
    }
    let mut job = RecordJob {
        ctx: ctx.clone(),
        id: id.clone(),
        fence,
        status: task.status,
        task,
        takeover,
        mirror: mirror.map(|s| super::mirror::WorkMirror::new(s, &id)),
        push: None,
    };
    let outcome = match (&job.takeover, job.status) {
        // Stopped while it waited for this worker: deliver what was recorded before.
        (Some(t), Status::Canceled) => {
            let stats = t.base.clone();
            job.send_to_transcode(stats, None).await
        }
        _ => job.record(&work_dir).await,
    };
    if let Err(e) = outcome {
        warn!(error = %e, "record stage ended with a store error");
    }
}

/// Keeps what a stopped worker's (or a killed encoder's) encoder wrote of the segment it had
/// not finished (see `media/salvage.rs`), and returns its seconds; logged either way, never
/// fatal.
pub(super) async fn keep_unfinished_segment(
    ctx: &WorkerContext,
    work_dir: &std::path::Path,
) -> Option<f64> {
    match crate::media::salvage::salvage_unfinished(
        work_dir,
        &ctx.cfg.recorder.ffmpeg,
        &ctx.cfg.recorder.ffprobe,
    )
    .await
    {
        Ok(Some(r)) => {
            info!(
                segment = %r.name,
                seconds = r.seconds(),
                "kept the segment the stopped encoder had not finished"
            );
            Some(r.seconds())
        }
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "could not keep the segment the stopped encoder had not finished");
            None
        }
    }
}

struct RecordJob {
    ctx: WorkerContext,
    id: String,
    fence: u64,
    status: Status,
    task: TaskRecord,
    /// Set when this job continues a recording another worker started.
    takeover: Option<Takeover>,
    /// `StorageType: s3`: the work directory's copy in the bucket.
    mirror: Option<super::mirror::WorkMirror>,
    /// `Output.Live`: the pushes fed by this recording.
    push: Option<crate::media::live::LiveFeed>,
}

impl RecordJob {
    fn lease(&self) -> Option<(String, u64)> {
        Some((self.ctx.worker_id.clone(), self.fence))
    }

    /// After a takeover, whether the stopped worker's media is here to be delivered even if
    /// continuing failed.
    fn has_kept_media(&self, work_dir: &std::path::Path) -> bool {
        self.takeover.is_some() && crate::media::segments::has_recorded_media(work_dir)
    }

    /// Ends a taken-over task whose continuation failed: what was recorded before is delivered,
    /// with the error.
    async fn deliver_kept(&mut self, code: ErrorCode, message: String) -> Result<(), StoreError> {
        warn!(%code, %message, "continuing the recording failed; delivering what was kept");
        self.status = self.current().await?;
        let stats = self
            .takeover
            .as_ref()
            .map(|k| k.base.clone())
            .unwrap_or_default();
        self.send_to_transcode(stats, Some((code, message))).await
    }

    /// The recording is over: `canceled → transcode` on this node, with the final stats and the
    /// error it ended on, if any (what was recorded is delivered with it).
    async fn send_to_transcode(
        &mut self,
        stats: TaskStats,
        error: Option<(ErrorCode, String)>,
    ) -> Result<(), StoreError> {
        // A Pause or Resume from the API may race with this; `move_to` then adopts the stored
        // status and the move is tried again.
        for _ in 0..8 {
            if !self.status.is_live()
                || self
                    .move_to(Status::Canceled, vec![(TimeField::Cancel, now_s())])
                    .await?
            {
                break;
            }
        }
        let mut t =
            moves::to_transcode(self.status, now_s(), self.ctx.node_queue(Stage::Transcode))
                .with_lease_of(self.lease())
                .with_stats(stats)
                .with_node(self.ctx.node.clone())
                .releasing_lease();
        if let Some((code, message)) = error {
            warn!(%code, %message, "recording ended early; delivering what was recorded");
            t = t.with_result(TaskResult {
                error_code: Some(code.as_str().to_string()),
                error_message: Some(message),
                videos: Vec::new(),
            });
        }
        super::held::transition(&self.ctx, &self.id, t).await
    }

    /// The task's stored status (read through a Redis outage, holding the lease).
    async fn current(&self) -> Result<Status, StoreError> {
        let store = &self.ctx.store;
        super::held::retry(
            &self.ctx,
            &self.id,
            Some(self.fence),
            "reading the task",
            || store.get(&self.id),
        )
        .await
        .map(|t| t.status)
    }

    /// Shutting down in `handover` mode: gives the task back for another worker to continue. A
    /// task that has started recording goes to this node's record queue (its media is in this
    /// node's work directory); one that has not goes back to the shared queue.
    async fn hand_over(&mut self, stats: Option<TaskStats>) -> Result<(), StoreError> {
        // StorageType s3: the media is in the bucket (the last copy was made when the recording
        // stopped), so any machine's worker may continue.
        let anywhere = self.status == Status::Normal
            || super::mirror::store_for(&self.ctx, &self.task).is_some();
        let queue = if anywhere {
            StageQueue::shared(Stage::Record)
        } else {
            self.ctx.node_queue(Stage::Record)
        };
        info!(status = %self.status, "shutting down: handing the task over to another worker");
        // Counted apart from the workers that stopped (`restarts`), which have a budget.
        let stats = stats.map(|s| TaskStats {
            handovers: s.handovers + 1,
            ..s
        });
        metrics::inc(&metrics::HANDOVERS, &[]);
        let deadline = self.ctx.handover_deadline_ms();
        let handed = super::held::retry(
            &self.ctx,
            &self.id,
            Some(self.fence),
            "handing the task over",
            || {
                self.ctx.store.hand_over(
                    &self.id,
                    &self.ctx.worker_id,
                    self.fence,
                    stats.as_ref(),
                    &queue,
                    deadline,
                )
            },
        )
        .await;
        // A lost lease after a try whose answer was lost: that try handed it over.
        match handed {
            Ok(()) | Err(StoreError::LeaseLost) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remaining_limit(&self, limit_secs: u32) -> Duration {
        let limit = Duration::from_secs(u64::from(limit_secs));
        match (&self.takeover, self.task.start_time) {
            (Some(_), Some(start)) => {
                let elapsed = Duration::from_secs(u64::try_from(now_s() - start).unwrap_or(0));
                limit.saturating_sub(elapsed).max(Duration::from_secs(1))
            }
            _ => limit,
        }
    }

    /// The task's figures: the earlier attempts' (after a takeover) plus this recording's.
    fn stats(&self, p: &crate::recording::Progress) -> TaskStats {
        let mut now = stats_of(p);
        if let Some(push) = &self.push {
            now.live = push.stats();
        }
        match &self.takeover {
            Some(t) => combined(&t.base, &now),
            None => now,
        }
    }

    /// Moves the task `self.status → to` under our lease; on a status conflict, adopts the actual
    /// status (the API moved it) and reports false.
    async fn move_to(
        &mut self,
        to: Status,
        times: Vec<(TimeField, i64)>,
    ) -> Result<bool, StoreError> {
        if self.status == to {
            return Ok(true);
        }
        let t =
            moves::record_step(self.status, to, times, &self.ctx.node).with_lease_of(self.lease());
        match super::held::transition(&self.ctx, &self.id, t).await {
            Ok(()) => {
                self.status = to;
                Ok(true)
            }
            Err(StoreError::Conflict { actual, .. }) => {
                self.status = actual;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The task's figures once this worker's recording ended.
    fn final_stats(
        &self,
        p: &crate::recording::Progress,
        media: &crate::recording::RecordedMedia,
    ) -> TaskStats {
        self.stats(&ended_progress(p, media))
    }

    /// Mirrors what happened in the recording into the task's status.
    async fn on_event(&mut self, ev: RecordingEvent) -> Result<(), StoreError> {
        match supervisor::event_move(ev.control, ev.origin, self.status) {
            Some(EventMove::Started) => {
                if let Some(t) = &mut self.takeover {
                    // The task kept its status and start time; what is missing is recorded.
                    let gap = t.gap(ev.at);
                    info!(
                        gap_seconds = gap.seconds,
                        "recording continues after the takeover"
                    );
                    t.base.gaps.push(gap);
                } else if !self
                    .move_to(Status::Recording, vec![(TimeField::Start, ev.at as i64)])
                    .await?
                {
                    info!(status = %self.status, "recording started but the task moved on");
                }
            }
            Some(EventMove::Paused) => {
                self.move_to(Status::Paused, vec![]).await?;
            }
            Some(EventMove::Resumed) => {
                self.move_to(Status::Recording, vec![]).await?;
            }
            Some(EventMove::EndedItself) => {
                info!(origin = ?ev.origin, "the recording ended itself (MaxDurationLimit, the page or a failure)");
                self.move_to(Status::Canceled, vec![(TimeField::Cancel, ev.at as i64)])
                    .await?;
            }
            None => {}
        }
        Ok(())
    }
}
