//! The record stage: take a queued task, run its recording, follow its controls, hand the
//! media on to transcode.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::publish::{Publisher, task_key};
use super::{WorkerContext, now_ms, now_s};
use crate::config::ShutdownMode;
use crate::error::{ErrorCode, HasErrorCode};
use crate::ops::metrics;
use crate::recording::{Control, Origin, Outcome, RecordOptions, Recording, RecordingEvent};
use crate::task::store::{
    Claim, ControlMsg, Stage, StageJob, StageQueue, StoreError, TimeField, Transition,
};
use crate::task::{Status, TaskRecord, TaskResult, TaskStats};

/// How many times a task's recording is handed to another worker after its worker stopped.
const MAX_RESTARTS: u32 = 5;

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
    let work_dir = ctx.cfg.work_root().join(&id);
    let mirror = super::mirror::store_for(&ctx, &task);
    if task.status != Status::Normal
        && let Some(store) = &mirror
        && !crate::media::encoder::has_recorded_media(&work_dir)
    {
        // Taken over from another machine: its media comes from the bucket.
        if let Err(e) = super::mirror::fetch(store, &id, &work_dir).await {
            warn!(error = %e, "could not fetch the intermediate media; continuing without it");
        }
    }
    if task.status != Status::Normal {
        keep_unfinished_segment(&ctx, &work_dir).await;
    }
    let takeover = (task.status != Status::Normal).then(|| Takeover::inspect(&task, &work_dir));
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

/// Keeps what a stopped worker's encoder wrote of the segment it had not finished (see
/// `media/salvage.rs`); logged either way, never fatal.
pub(super) async fn keep_unfinished_segment(ctx: &WorkerContext, work_dir: &std::path::Path) {
    match crate::media::salvage::salvage_unfinished(
        work_dir,
        &ctx.cfg.recorder.ffmpeg,
        &ctx.cfg.recorder.ffprobe,
    )
    .await
    {
        Ok(Some(r)) => info!(
            segment = %r.name,
            seconds = r.seconds(),
            "kept the segment the stopped worker had not finished"
        ),
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, "could not keep the segment the stopped worker had not finished")
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
}

/// What a takeover continues from: the media the stopped worker completed in this node's work
/// directory (segments are numbered on, so the new recording appends to them) and its figures.
struct Takeover {
    /// The earlier attempts' stats, with `recorded_duration` = the media actually kept.
    base: TaskStats,
    /// Unix seconds: end of the last media kept.
    kept_until: f64,
    /// Seconds of media the stopped worker recorded but never completed (its segment in
    /// progress), counted as missing when the task was paused at the time.
    unfinished: f64,
    /// Whether the task was paused when its worker stopped (the page's life meanwhile is not
    /// part of the video, so it is not missing).
    was_paused: bool,
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Takeover {
    fn inspect(task: &TaskRecord, work_dir: &std::path::Path) -> Self {
        let mut base = task.stats.clone().unwrap_or_default();
        base.recorded_duration = crate::media::encoder::completed_seconds(work_dir);
        let started = task
            .start_time
            .map(|s| s as f64)
            .unwrap_or_else(|| now_s() as f64);
        let kept = base.recorded_duration;
        let points = crate::recording::timeline::read(work_dir);
        let timeline = crate::recording::timeline::wall_at(&points, kept).map(|until| {
            let written = points.last().map_or(kept, |p| p.0);
            (until, (written - kept).max(0.0))
        });
        let (kept_until, unfinished) =
            match (timeline, crate::media::encoder::media_times(work_dir)) {
                (Some(t), _) => t,
                // No timeline: the segment list's modification time (late by the encoder's latency).
                (None, Some((completed, last_write))) => {
                    let (c, w) = (unix_secs(completed), unix_secs(last_write));
                    (c, (w - c).max(0.0))
                }
                // The media was on another machine: nothing of it is here.
                (None, None) => (started, 0.0),
            };
        Self {
            base,
            kept_until,
            unfinished,
            was_paused: task.status == Status::Paused,
        }
    }

    /// The gap closed by a recording that resumed at unix time `resumed_at`.
    fn gap(&self, resumed_at: f64) -> crate::task::RecordingGap {
        let seconds = if self.was_paused {
            self.unfinished
        } else {
            (resumed_at - self.kept_until).max(0.0)
        };
        crate::task::RecordingGap {
            time: self.kept_until,
            seconds,
        }
    }
}

impl RecordJob {
    fn lease(&self) -> Option<(String, u64)> {
        Some((self.ctx.worker_id.clone(), self.fence))
    }

    /// After a takeover, whether the stopped worker's media is here to be delivered even if
    /// continuing failed.
    fn has_kept_media(&self, work_dir: &std::path::Path) -> bool {
        self.takeover.is_some() && crate::media::encoder::has_recorded_media(work_dir)
    }

    /// Ends a taken-over task whose continuation failed: what was recorded before is delivered,
    /// with the error.
    async fn deliver_kept(&mut self, code: ErrorCode, message: String) -> Result<(), StoreError> {
        warn!(%code, %message, "continuing the recording failed; delivering what was kept");
        self.status = self.ctx.store.get(&self.id).await.map(|t| t.status)?;
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
        self.ctx.store.transition(&self.id, t).await
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
        metrics::inc(&metrics::HANDOVERS, &[]);
        match self
            .ctx
            .store
            .hand_over(
                &self.id,
                &self.ctx.worker_id,
                self.fence,
                stats.as_ref(),
                &queue,
                self.ctx.handover_deadline_ms(),
            )
            .await
        {
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
        let now = stats_of(p);
        let Some(t) = &self.takeover else {
            return now;
        };
        let b = &t.base;
        TaskStats {
            recorded_duration: ((b.recorded_duration + p.recorded_seconds) * 1000.0).round()
                / 1000.0,
            frames_captured: b.frames_captured + now.frames_captured,
            frames_written: b.frames_written + now.frames_written,
            frames_duplicated: b.frames_duplicated + now.frames_duplicated,
            frames_dropped: b.frames_dropped + now.frames_dropped,
            pauses: b.pauses + now.pauses,
            refreshes: b.refreshes + now.refreshes,
            callback_attempts: 0,
            page_crashes: b.page_crashes + now.page_crashes,
            page_hangs: b.page_hangs + now.page_hangs,
            browser_restarts: b.browser_restarts + now.browser_restarts,
            encoder_restarts: b.encoder_restarts + now.encoder_restarts,
            lost_seconds: b.lost_seconds + now.lost_seconds,
            gaps: b.gaps.clone(),
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
        match self.ctx.store.transition(&self.id, t).await {
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
        if self.task.restarts > MAX_RESTARTS {
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
            start_timeout: Duration::from_secs(u64::from(spec.start_timeout_secs)),
            navigation_timeout: Duration::from_secs(rec_cfg.navigation_timeout),
            browser: rec_cfg.browser(spec.width, spec.height),
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
        };
        info!(url = %crate::url_guard::loggable_url(&spec.record_url), "starting recording");

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
        let mut done = std::pin::pin!(recording.wait());

        // API commands arrive on the task's control stream; read it on the side.
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
        let reader = {
            let store = self.ctx.store.clone();
            let id = self.id.clone();
            tokio::spawn(async move {
                let mut after = "$".to_string();
                loop {
                    match store.read_controls(&id, &after, 1_000).await {
                        Ok(msgs) => {
                            for (entry, msg) in msgs {
                                after = entry;
                                if ctl_tx.send(msg).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            })
        };

        let mut beat = tokio::time::interval(heartbeat_every);
        let mut stop_sent = false;
        let mut lease_lost = false;
        let mut handing_over = false;
        let mut disk_full: Option<String> = None;
        let mut live = LiveMetrics::new();
        // On the side, as the media is made: StorageType s3 copies it to the bucket, and an HLS
        // result's segments are published.
        let side = self.side_work(work_dir).await?;
        let outcome = loop {
            tokio::select! {
                out = &mut done => break out,
                Some(ev) = events.recv() => self.on_event(ev).await?,
                Some(msg) = ctl_rx.recv() => {
                    let c = match msg { ControlMsg::Pause => Control::Pause, ControlMsg::Resume => Control::Resume, ControlMsg::Refresh => Control::Refresh, ControlMsg::Stop => Control::Stop };
                    controls.send(c);
                }
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
                                self.on_event(ev).await?;
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
                    if disk_full.is_none()
                        && let Some(why) = self.out_of_disk(work_dir)
                    {
                        warn!("{why}");
                        disk_full = Some(why);
                        stop_sent = true;
                        controls.send(Control::Stop);
                    }
                    let p = progress.borrow().clone();
                    live.update(&p);
                    let stats = self.stats(&p);
                    let _ = self.ctx.store.set_stats(&self.id, &self.ctx.worker_id, self.fence, &stats).await;
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
        reader.abort();
        if let Some((stop, mut handle)) = side {
            // The last segments too, so a takeover elsewhere has everything and the transcode
            // stage has only the playlist left to write.
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(30), &mut handle)
                .await
                .is_err()
            {
                // What is left is done by the next stages.
                handle.abort();
            }
        }
        live.finish();
        if lease_lost {
            return Ok(());
        }
        if handing_over {
            // The stored status may have moved meanwhile (a Stop): then deliver as usual.
            if let Ok(t) = self.ctx.store.get(&self.id).await {
                self.status = t.status;
            }
            match &outcome {
                Ok(Outcome::Recorded(media)) if self.status.is_live() => {
                    let stats = self.final_stats(&progress.borrow(), media);
                    count_ended(&this_part(&progress.borrow(), media), "handed_over");
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
            Ok(Outcome::Recorded(media)) => {
                let stats = self.final_stats(&progress.borrow(), &media);
                count_ended(&this_part(&progress.borrow(), &media), "recorded");
                info!(
                    seconds = media.recorded_seconds,
                    segments = media.segments.len(),
                    "recording finished"
                );
                let error = media
                    .error
                    .clone()
                    .or(disk_full.map(|why| (ErrorCode::RecordFailed, why)));
                self.send_to_transcode(stats, error).await
            }
            Ok(Outcome::CanceledBeforeStart) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "canceled")]);
                let _ = std::fs::remove_dir_all(work_dir);
                if self.status == Status::Normal {
                    let mut t = Transition::new(Status::Normal, Status::Finished);
                    t.lease = self.lease();
                    t.times = vec![(TimeField::Cancel, now_s()), (TimeField::Finish, now_s())];
                    t.release_lease = true;
                    match self.ctx.store.transition(&self.id, t).await {
                        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                } else {
                    self.ctx
                        .store
                        .release(&self.id, &self.ctx.worker_id, self.fence)
                        .await
                }
            }
            Err(e) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "failed")]);
                let (code, msg) = (e.code(), e.to_string());
                if self.has_kept_media(work_dir) {
                    return self.deliver_kept(code, msg).await;
                }
                let _ = std::fs::remove_dir_all(work_dir);
                let status = self
                    .ctx
                    .store
                    .get(&self.id)
                    .await
                    .map(|t| t.status)
                    .unwrap_or(self.status);
                self.ctx
                    .fail_task(&self.id, status, Some(self.fence), code, msg)
                    .await
            }
        }
    }

    /// Why the recording must end to spare the disk, if it must: the work disk almost full, or
    /// the task's media reaching its quota.
    fn out_of_disk(&self, work_dir: &std::path::Path) -> Option<String> {
        if let Some(free) = self.ctx.free_disk_mb()
            && free < self.ctx.cfg.min_free_mb / 2
        {
            return Some(format!(
                "the work disk is almost full ({free} MiB free); the recording was ended before \
                 it filled up"
            ));
        }
        let quota = self.ctx.cfg.task_disk_mb;
        let used = crate::media::encoder::bytes_written(work_dir) >> 20;
        (quota > 0 && used >= quota).then(|| {
            format!(
                "the recording's media reached the task disk quota ({used} MiB of \
                 PAGECAST_TASK_DISK_MB={quota}); it was ended there"
            )
        })
    }

    /// Starts the side work of a recording (copying the work directory to the bucket, publishing
    /// HLS segments) every two seconds; it does a last round and ends when told to stop.
    async fn side_work(
        &mut self,
        work_dir: &std::path::Path,
    ) -> Result<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
        StoreError,
    > {
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
        Ok(Some((stop_tx, handle)))
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
            Control::Pause if ev.origin == Origin::Page && self.status == Status::Recording => {
                self.move_to(Status::Paused, vec![]).await?;
            }
            Control::Resume if ev.origin == Origin::Page && self.status == Status::Paused => {
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

fn stats_of(p: &crate::recording::Progress) -> TaskStats {
    let s = &p.stats;
    TaskStats {
        recorded_duration: (p.recorded_seconds * 1000.0).round() / 1000.0,
        frames_captured: s.frames_captured,
        frames_written: s.frames_written,
        frames_duplicated: s.frames_duplicated,
        frames_dropped: s.frames_skipped + s.frames_late,
        pauses: p.pauses,
        refreshes: p.refreshes,
        callback_attempts: 0,
        page_crashes: p.page_crashes,
        page_hangs: p.page_hangs,
        browser_restarts: p.browser_restarts,
        encoder_restarts: p.encoder_restarts,
        lost_seconds: p.lost_seconds,
        gaps: Vec::new(),
    }
}

/// This worker's part of a recording that ended (without earlier workers' parts).
fn this_part(p: &crate::recording::Progress, media: &crate::recording::RecordedMedia) -> TaskStats {
    stats_of(&ended_progress(p, media))
}

/// The last progress report of a recording, completed with the figures it ended with.
fn ended_progress(
    p: &crate::recording::Progress,
    media: &crate::recording::RecordedMedia,
) -> crate::recording::Progress {
    let mut p = p.clone();
    p.recorded_seconds = media.recorded_seconds;
    p.page_crashes = media.page_crashes;
    p.page_hangs = media.page_hangs;
    p.browser_restarts = media.browser_restarts;
    p.encoder_restarts = media.encoder_restarts;
    p.lost_seconds = media.lost_seconds;
    p
}

/// Adds the counters of this worker's part of a recording to the totals.
fn count_ended(s: &TaskStats, outcome: &'static str) {
    metrics::add(&metrics::FRAMES_CAPTURED, &[], s.frames_captured as f64);
    metrics::add(&metrics::FRAMES_WRITTEN, &[], s.frames_written as f64);
    metrics::add(&metrics::FRAMES_DUPLICATED, &[], s.frames_duplicated as f64);
    metrics::add(&metrics::FRAMES_DROPPED, &[], s.frames_dropped as f64);
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
}

impl LiveMetrics {
    fn new() -> Self {
        LiveMetrics {
            live: Some(crate::ops::live::LiveRecording::start()),
            last: None,
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
