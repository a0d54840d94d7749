//! The record stage: take a queued task, run its recording, follow its controls, hand the
//! media on to transcode.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::publish::{Publisher, task_key};
use super::takeover::{
    Takeover, combined, crash_budget_spent, ended_progress, stats_of, this_part,
};
use super::{WorkerContext, now_ms, now_s};
use crate::config::ShutdownMode;
use crate::error::{ErrorCode, HasErrorCode};
use crate::ops::metrics;
use crate::recording::{Control, Origin, Outcome, RecordOptions, Recording, RecordingEvent};
use crate::task::prestart::StartWait;
use crate::task::store::{Claim, Stage, StageJob, StageQueue, StoreError, TimeField, Transition};
use crate::task::{Status, TaskRecord, TaskResult, TaskStats};

mod before_start;

/// Runs one record job from the queue.
pub async fn run(ctx: WorkerContext, queue: StageQueue, job: StageJob) {
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
    let work_dir = ctx.cfg.work_root().join(&id);
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
        let mut t = Transition::new(self.status, Status::Transcode);
        t.lease = self.lease();
        t.times = vec![(TimeField::Stop, now_s())];
        t.stats = Some(stats);
        if let Some((code, message)) = error {
            warn!(%code, %message, "recording ended early; delivering what was recorded");
            t.result = Some(TaskResult {
                error_code: Some(code.as_str().to_string()),
                error_message: Some(message),
                videos: Vec::new(),
            });
        }
        t.node = Some(self.ctx.node.clone());
        t.enqueue = Some(self.ctx.node_queue(Stage::Transcode));
        t.release_lease = true;
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
        let mut t = Transition::new(self.status, to);
        t.lease = self.lease();
        t.times = times;
        if to == Status::Recording && self.status == Status::Normal {
            t.node = Some(self.ctx.node.clone());
        }
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

    async fn record(&mut self, work_dir: &std::path::Path) -> Result<(), StoreError> {
        let spec = self.task.spec.clone();
        if crash_budget_spent(self.task.restarts) {
            // Whatever stops its workers (a page that exhausts memory, say) would stop the next.
            let message = format!(
                "the workers recording this task stopped {} times; giving up",
                self.task.restarts
            );
            if self.has_kept_media(work_dir) {
                return self.deliver_kept(ErrorCode::RecordFailed, message).await;
            }
            let _ = std::fs::remove_dir_all(work_dir);
            return self
                .ctx
                .fail_task(
                    &self.id,
                    self.status,
                    Some(self.fence),
                    ErrorCode::RecordFailed,
                    message,
                )
                .await;
        }
        if let Err(e) = std::fs::create_dir_all(work_dir) {
            return self
                .ctx
                .fail_task(
                    &self.id,
                    Status::Normal,
                    Some(self.fence),
                    ErrorCode::RecordFailed,
                    format!("work directory: {e}"),
                )
                .await;
        }
        let rec_cfg = &self.ctx.cfg.recorder;
        let start_wait = StartWait::of(&spec, self.task.create_time, now_s());
        self.push = super::live_push::feed_for(&self.ctx, &self.task).await;
        let snapshots = super::snapshots::start(&self.ctx, &self.task, work_dir).await;
        let opts = RecordOptions {
            url: spec.record_url.clone(),
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            max_duration: None,
            // MaxDurationLimit counts wall-clock time, pauses included. The engine enforces it on
            // its own clock: a busy worker reacting late must not make the file longer. A
            // takeover gets what is left of it.
            wall_limit: Some(self.remaining_limit(spec.max_duration_secs)),
            // A taken-over page already started its recording once.
            manual_start: spec.manual_start && self.takeover.is_none(),
            start_timeout: start_wait.limit,
            start_paused: self.begins_paused().await,
            navigation_timeout: Duration::from_secs(rec_cfg.navigation_timeout),
            browser: {
                let mut browser = rec_cfg.browser(spec.width, spec.height);
                // Headers.UserAgent: navigator.userAgent and every request's User-Agent, for
                // this browser and any that replaces it.
                browser.extra_args.extend(
                    spec.user_agent
                        .as_ref()
                        .map(|ua| format!("--user-agent={ua}")),
                );
                browser
            },
            capture: crate::recording::CaptureSettings {
                backend: spec.capture.unwrap_or(rec_cfg.capture),
                ..rec_cfg.capture()
            },
            encoder: rec_cfg.encoder(),
            audio: spec.audio.then(|| rec_cfg.audio()),
            url_policy: self.ctx.cfg.url_policy(),
            // A service records pages it was sent: every request they make is checked.
            guard_egress: true,
            work_dir: work_dir.to_path_buf(),
            live: self.push.clone(),
            snapshots: snapshots.as_ref().map(|s| s.feed.clone()),
        };
        info!(url = %crate::redact::url(&spec.record_url), "starting recording");

        // Keep the lease alive while the page loads.
        let heartbeat_every = Duration::from_millis((self.ctx.lease_ms() / 3) as u64);
        let started = {
            let start = Recording::start(opts);
            tokio::pin!(start);
            let mut beat = tokio::time::interval(heartbeat_every);
            loop {
                tokio::select! {
                    r = &mut start => break r,
                    _ = beat.tick() => { let _ = self.ctx.store.renew(&self.id, &self.ctx.worker_id, self.fence, now_ms(), self.ctx.lease_ms()).await; }
                }
            }
        };
        let mut recording = match started {
            Ok(r) => r,
            Err(e) => {
                let (code, msg) = (e.code(), e.to_string());
                if self.has_kept_media(work_dir) {
                    return self.deliver_kept(code, msg).await;
                }
                let _ = std::fs::remove_dir_all(work_dir);
                return self
                    .ctx
                    .fail_task(&self.id, self.status, Some(self.fence), code, msg)
                    .await;
            }
        };
        let mut events = recording
            .take_events()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        let controls = recording.controls_handle();
        let progress = recording.progress();
        let cut = recording.cut_handle();
        let mut done = std::pin::pin!(recording.wait());

        // Ends the recording should this job end early (a store error).
        let _stop_on_drop = super::side_tasks::StopOnDrop(controls.clone());
        // API commands arrive on the task's control stream; read it on the side (until this
        // job ends, however it ends).
        let mut ctl_rx =
            super::side_tasks::ControlReader::spawn(self.ctx.store.clone(), self.id.clone());

        let mut beat = tokio::time::interval(heartbeat_every);
        let mut stop_sent = false;
        let mut lease_lost = false;
        let mut handing_over = false;
        // The work disk is watched closely: a fast recording fills a small disk in seconds.
        let mut disk_full: Option<(ErrorCode, String)> = None;
        let mut disk = self.disk_watch();
        let mut disk_tick = tokio::time::interval(super::disk::CHECK_EVERY);
        let mut live = LiveMetrics::new();
        // On the side, as the media is made: StorageType s3 copies it to the bucket, and an HLS
        // result's segments are published.
        let side = self.side_work(work_dir).await?;
        // What was given while the page loaded (the control stream is read from now on).
        stop_sent |= self.catch_up(&controls).await;
        let outcome = loop {
            tokio::select! {
                out = &mut done => break out,
                Some(ev) = events.recv() => self.on_event_with(ev, &controls).await?,
                Some(c) = ctl_rx.recv() => self.forward(&controls, c),
                _ = beat.tick() => {
                    match self.ctx.store.renew(&self.id, &self.ctx.worker_id, self.fence, now_ms(), self.ctx.lease_ms()).await {
                        Ok(status) => {
                            // The page's own pause/resume may have taken effect while the status
                            // was read: then that read is stale, and acting on it would undo the
                            // page's command. Apply such events first and follow the stored
                            // status only when nothing happened meanwhile (the next beat will).
                            let mut stale = false;
                            while let Ok(ev) = events.try_recv() {
                                stale = true;
                                self.on_event_with(ev, &controls).await?;
                            }
                            if !stale {
                                // Follow the stored status even if a control message was missed.
                                self.status = status;
                                match status {
                                    Status::Paused => controls.send(Control::Pause),
                                    Status::Recording => controls.send(Control::Resume),
                                    Status::Canceled | Status::Finished if !stop_sent => { stop_sent = true; controls.send(Control::Stop); }
                                    _ => {}
                                }
                            }
                        }
                        Err(StoreError::LeaseLost) => {
                            warn!("lost the lease to another worker; stopping this recording");
                            lease_lost = true;
                            controls.send(Control::Stop);
                        }
                        Err(e) => warn!(error = %e, "heartbeat failed; retrying"),
                    }
                    let p = progress.borrow().clone();
                    live.update(&p);
                    let stats = self.stats(&p);
                    let _ = self.ctx.store.set_stats(&self.id, &self.ctx.worker_id, self.fence, &stats).await;
                }
                _ = disk_tick.tick(), if !cut.is_cancelled() => {
                    let encoding = {
                        let p = progress.borrow();
                        super::disk::Encoding { media_bytes: p.bytes_written, frames_sent: p.stats.frames_written, queued: p.encoder_queued, fps: spec.fps }
                    };
                    let verdict = disk.check(encoding, super::disk::profile_bytes(work_dir));
                    if disk_full.is_none()
                        && let Some((code, why)) = verdict.stop.or_else(|| self.over_quota(work_dir))
                    {
                        warn!(%code, "{why}");
                        disk_full = Some((code, why));
                        stop_sent = true;
                        controls.send(Control::Stop);
                    }
                    if verdict.cut {
                        warn!("the work disk cannot take the frames still waiting for the encoder; ending the recording with what is on disk");
                        disk_full.get_or_insert((ErrorCode::DiskFull, "the work disk filled up; the recording was ended there and what it recorded is delivered".into()));
                        stop_sent = true;
                        cut.cancel();
                    }
                }
                _ = self.ctx.drain.cancelled(), if !stop_sent && self.ctx.cfg.shutdown != ShutdownMode::Finish => {
                    // Shutting down: end the recording here (its segments complete); `handover`
                    // then gives the task to another worker, `stop` delivers what was recorded.
                    stop_sent = true;
                    handing_over = self.ctx.cfg.shutdown == ShutdownMode::Handover;
                    controls.send(Control::Stop);
                }
            }
        };
        drop(ctl_rx);
        if let Some(push) = &self.push {
            push.finish().await;
        }
        if let Some(snapshots) = snapshots {
            snapshots.finish(Duration::from_secs(30)).await;
        }
        // The browser is gone: its profile is of no use, and the result needs the room.
        super::disk::remove_browser_profiles(work_dir);
        if let Some(side) = side {
            // The last segments too, so a takeover elsewhere has everything and the transcode
            // stage has only the playlist left to write; what is left after 30 s is done by the
            // next stages.
            side.finish(Duration::from_secs(30)).await;
        }
        live.finish();
        if lease_lost {
            return Ok(());
        }
        if handing_over {
            // The stored status may have moved meanwhile (a Stop): then deliver as usual.
            if let Ok(status) = self.current().await {
                self.status = status;
            }
            match &outcome {
                Ok(Outcome::Recorded(media)) if self.status.is_live() => {
                    let stats = self.final_stats(&progress.borrow(), media);
                    count_ended(
                        &this_part(&progress.borrow(), media),
                        "handed_over",
                        &mut live.frames,
                    );
                    return self.hand_over(Some(stats)).await;
                }
                Ok(Outcome::CanceledBeforeStart) if self.status == Status::Normal => {
                    let _ = std::fs::remove_dir_all(work_dir);
                    return self.hand_over(None).await;
                }
                _ => {}
            }
        }

        match outcome {
            // Stopped before the task's recording began (its StartTime was never set): what
            // the engine captured meanwhile is no recording of the task.
            Ok(Outcome::Recorded(_))
                if self.ctx.store.get(&self.id).await.is_ok_and(|t| {
                    crate::task::prestart::canceled_before_start(&t) && self.takeover.is_none()
                }) =>
            {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "canceled")]);
                super::canceled::end(&self.ctx, &self.id, Some(self.fence)).await
            }
            Ok(Outcome::Recorded(mut media)) => {
                if cut.is_cancelled() {
                    // Its encoder was killed for the disk: what it wrote of its last segment is
                    // kept if it can be (the profile's room is free again for the copy).
                    if let Some(seconds) = keep_unfinished_segment(&self.ctx, work_dir).await {
                        media.recorded_seconds += seconds;
                    }
                    if !crate::media::segments::has_recorded_media(work_dir) {
                        let _ = std::fs::remove_dir_all(work_dir);
                        let (code, why) = disk_full
                            .unwrap_or((ErrorCode::DiskFull, "the work disk filled up".into()));
                        return self
                            .ctx
                            .fail_task(
                                &self.id,
                                self.status,
                                Some(self.fence),
                                code,
                                format!("{why}; nothing of it could be kept"),
                            )
                            .await;
                    }
                }
                let stats = self.final_stats(&progress.borrow(), &media);
                count_ended(
                    &this_part(&progress.borrow(), &media),
                    "recorded",
                    &mut live.frames,
                );
                info!(
                    seconds = media.recorded_seconds,
                    segments = media.segments.len(),
                    "recording finished"
                );
                // Ended for the disk: that is why, whatever failed after it. Otherwise a failure,
                // or else the start lost with a machine.
                let error = disk_full.or_else(|| media.error.clone()).or_else(|| {
                    stats
                        .lost_media
                        .clone()
                        .map(|why| (ErrorCode::RecordIncomplete, why))
                });
                self.send_to_transcode(stats, error).await
            }
            Ok(Outcome::CanceledBeforeStart) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "canceled")]);
                super::canceled::end(&self.ctx, &self.id, Some(self.fence)).await
            }
            Err(e) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "failed")]);
                // Ended for the disk before anything reached it: that is why.
                let (code, msg) = disk_full.unwrap_or_else(|| match e.code() {
                    ErrorCode::StartTimeout => {
                        (ErrorCode::StartTimeout, start_wait.timeout_message())
                    }
                    code => (code, e.to_string()),
                });
                if self.has_kept_media(work_dir) {
                    return self.deliver_kept(code, msg).await;
                }
                let _ = std::fs::remove_dir_all(work_dir);
                let status = self.current().await.unwrap_or(self.status);
                self.ctx
                    .fail_task(&self.id, status, Some(self.fence), code, msg)
                    .await
            }
        }
    }

    /// The watch on the work disk, which must keep room for this task's result.
    fn disk_watch(&self) -> super::disk::DiskWatch {
        let cfg = &self.ctx.cfg;
        let result_root = if cfg.storage.destination(&self.task.spec.output).is_some() {
            cfg.deliver_dir(&self.id)
        } else {
            cfg.output_dir.clone()
        };
        super::disk::DiskWatch::new(
            &cfg.work_root(),
            &result_root,
            cfg.min_free_mb,
            self.task.spec.muxer == crate::task::Muxer::Mp4,
        )
    }

    /// Why the recording must end to spare the disk, if its media reached the task's quota.
    fn over_quota(&self, work_dir: &std::path::Path) -> Option<(ErrorCode, String)> {
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
    async fn side_work(
        &mut self,
        work_dir: &std::path::Path,
    ) -> Result<Option<super::side_tasks::SideWork>, StoreError> {
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
        Ok(Some(super::side_tasks::SideWork::new(stop_tx, handle)))
    }

    /// The live upload of an MP4 result to its bucket; `None` for HLS, local delivery, a
    /// takeover (the recorded segments have more than one clock), or when the bucket cannot be
    /// used now (the later stages then send the file).
    async fn live_mp4(&self, work_dir: &std::path::Path) -> Option<super::live_mp4::LiveMp4> {
        if self.task.spec.muxer != crate::task::Muxer::Mp4 {
            return None;
        }
        let dest = self.ctx.cfg.storage.destination(&self.task.spec.output)?;
        let store = match super::upload::task_store(&self.ctx, &self.task, &dest).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "the bucket cannot be used now; the MP4 is uploaded after the recording");
                return None;
            }
        };
        if self.takeover.is_some() {
            super::live_mp4::discard(&store, work_dir).await;
            return None;
        }
        Some(
            super::live_mp4::LiveMp4::new(
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
            Some(dest) => match super::upload::task_store(&self.ctx, &self.task, &dest).await {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "the bucket cannot be used now; segments are uploaded after the recording");
                    return Ok(None);
                }
            },
        };
        Ok(Publisher::new(&self.ctx, &self.task, key, store))
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
        match ev.control {
            Control::Start => {
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
            // Commands from the API already moved the status; the page's own calls do it here.
            Control::Pause if Self::moves_status(ev.origin) && self.status == Status::Recording => {
                self.move_to(Status::Paused, vec![]).await?;
            }
            Control::Resume if Self::moves_status(ev.origin) && self.status == Status::Paused => {
                self.move_to(Status::Recording, vec![]).await?;
            }
            Control::Stop if ev.origin != Origin::Owner && self.status.is_live() => {
                info!(origin = ?ev.origin, "the recording ended itself (MaxDurationLimit, the page or a failure)");
                self.move_to(Status::Canceled, vec![(TimeField::Cancel, ev.at as i64)])
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Adds the counters of this worker's part of a recording to the totals (the frames it has
/// not added while it ran).
fn count_ended(s: &TaskStats, outcome: &'static str, frames: &mut crate::ops::frames::FrameTotals) {
    frames.advance(crate::ops::frames::FrameCounts {
        captured: s.frames_captured,
        written: s.frames_written,
        duplicated: s.frames_duplicated,
        dropped: s.frames_dropped,
    });
    metrics::add(&metrics::PAGE_CRASHES, &[], f64::from(s.page_crashes));
    metrics::add(&metrics::PAGE_HANGS, &[], f64::from(s.page_hangs));
    metrics::add(
        &metrics::BROWSER_RESTARTS,
        &[],
        f64::from(s.browser_restarts),
    );
    metrics::add(
        &metrics::ENCODER_RESTARTS,
        &[],
        f64::from(s.encoder_restarts),
    );
    metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", outcome)]);
}

/// One running recording's figures in the process's aggregate metrics (no metric carries a
/// task id; per-task figures are in Describe); removed when it ends.
struct LiveMetrics {
    live: Option<crate::ops::live::LiveRecording>,
    last: Option<(tokio::time::Instant, u64)>,
    /// What this recording added to the frame counters so far (they move as it runs).
    frames: crate::ops::frames::FrameTotals,
}

impl LiveMetrics {
    fn new() -> Self {
        LiveMetrics {
            live: Some(crate::ops::live::LiveRecording::start()),
            last: None,
            frames: crate::ops::frames::FrameTotals::default(),
        }
    }

    fn update(&mut self, p: &crate::recording::Progress) {
        let now = tokio::time::Instant::now();
        let captured = p.stats.frames_captured;
        let capture_fps = self.last.and_then(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64();
            (secs > 0.0).then(|| captured.saturating_sub(before) as f64 / secs)
        });
        self.last = Some((now, captured));
        self.frames.advance(crate::ops::frames::FrameCounts {
            captured,
            written: p.stats.frames_written,
            duplicated: p.stats.frames_duplicated,
            dropped: p.stats.frames_skipped + p.stats.frames_late,
        });
        if let Some(live) = &self.live {
            live.update(crate::ops::live::Figures {
                capture_fps,
                frames_duplicated: p.stats.frames_duplicated,
                frames_dropped: p.stats.frames_skipped + p.stats.frames_late,
            });
        }
    }

    fn finish(&mut self) {
        self.live = None;
    }
}
