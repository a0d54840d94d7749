//! The record stage: take a queued task, run its recording, follow its controls, hand the
//! media on to transcode.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{WorkerContext, now_ms, now_s};
use crate::config::ShutdownMode;
use crate::error::{ErrorCode, HasErrorCode};
use crate::ops::metrics;
use crate::recording::{Control, Origin, Outcome, RecordOptions, Recording, RecordingEvent};
use crate::task::store::{
    Claim, ControlMsg, Stage, StageJob, StageQueue, StoreError, TimeField, Transition,
};
use crate::task::{Status, TaskRecord, TaskResult, TaskStats};

/// Runs one record job from the queue.
pub async fn run(ctx: WorkerContext, queue: StageQueue, job: StageJob) {
    let id = job.task_id.clone();
    // The node's own record queue holds tasks handed over by a worker of this node: they are
    // continued whatever their live status (or delivered, if they were stopped meanwhile).
    let expect: &[Status] = if queue.node.is_some() {
        &[
            Status::Normal,
            Status::Recording,
            Status::Paused,
            Status::Canceled,
        ]
    } else {
        &[Status::Normal]
    };
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
    // Each handover starts a new part; the parts are joined at transcode.
    let part = ctx.cfg.part_dirs(&id).len();
    let work_dir = ctx.cfg.part_dir(&id, part);
    let continuing = task.status != Status::Normal;
    if continuing {
        info!(status = %task.status, part, "continuing a task handed over by another worker");
    }
    let mut job = RecordJob {
        ctx: ctx.clone(),
        id: id.clone(),
        fence,
        status: task.status,
        continuing,
        task,
    };
    let outcome = if job.status == Status::Canceled {
        // Stopped while it waited for this worker: deliver the parts recorded before.
        let stats = job.task.stats.clone().unwrap_or_default();
        job.send_to_transcode(stats, None).await
    } else {
        job.record(&work_dir).await
    };
    if let Err(e) = outcome {
        warn!(error = %e, "record stage ended with a store error");
    }
}

struct RecordJob {
    ctx: WorkerContext,
    id: String,
    fence: u64,
    status: Status,
    /// The task was handed over by a worker that shut down: the page is reopened and recorded
    /// on, without waiting for ManualStart, and its stats add to the earlier parts'.
    continuing: bool,
    task: TaskRecord,
}

impl RecordJob {
    fn lease(&self) -> Option<(String, u64)> {
        Some((self.ctx.worker_id.clone(), self.fence))
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

    /// The stats of the earlier parts (handed over) plus this part's.
    fn total_stats(&self, now: TaskStats) -> TaskStats {
        match (&self.task.stats, self.continuing) {
            (Some(before), true) => add_stats(before, &now),
            _ => now,
        }
    }

    /// The recording is over: `canceled → transcode` on this node, with the final stats and
    /// the error it ended on, if any.
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
        // A recording that ended on a failure is still delivered, with the error.
        if let Some((code, message)) = &error {
            warn!(%code, %message, "recording ended early; delivering what was recorded");
            t.result = Some(TaskResult {
                error_code: Some(code.as_str().to_string()),
                error_message: Some(message.clone()),
                videos: Vec::new(),
            });
        }
        t.node = Some(self.ctx.node.clone());
        t.enqueue = Some(self.ctx.node_queue(Stage::Transcode));
        t.release_lease = true;
        self.ctx.store.transition(&self.id, t).await
    }

    /// Shutting down in `handover` mode: give the task back for another worker to continue. A
    /// task that has started recording goes to this node's record queue (its earlier parts are
    /// in this node's work directory); one that has not goes back to the shared queue.
    async fn hand_over(&mut self, stats: Option<TaskStats>) -> Result<(), StoreError> {
        let queue = if self.status == Status::Normal {
            StageQueue {
                stage: Stage::Record,
                node: None,
            }
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
                now_ms() + (self.ctx.cfg.handover_timeout as i64) * 1000,
            )
            .await
        {
            Ok(()) | Err(StoreError::LeaseLost) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn record(&mut self, work_dir: &std::path::Path) -> Result<(), StoreError> {
        let spec = self.task.spec.clone();
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
            // MaxDurationLimit counts wall-clock time, pauses included: enforced below.
            max_duration: None,
            manual_start: spec.manual_start && !self.continuing,
            start_timeout: Duration::from_secs(u64::from(spec.start_timeout_secs)),
            navigation_timeout: Duration::from_secs(rec_cfg.navigation_timeout),
            browser: rec_cfg.browser(spec.width, spec.height),
            capture: rec_cfg.capture(),
            encoder: rec_cfg.encoder(),
            url_policy: self.ctx.cfg.url_policy(),
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
            Err(e) if self.continuing => {
                // Earlier parts exist: deliver them, with the reason this one failed.
                let _ = std::fs::remove_dir_all(work_dir);
                let stats = self.task.stats.clone().unwrap_or_default();
                return self
                    .send_to_transcode(stats, Some((e.code(), e.to_string())))
                    .await;
            }
            Err(e) => {
                let (code, msg) = (e.code(), e.to_string());
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
        let mut started_at: Option<tokio::time::Instant> = None;
        let mut limit = Duration::from_secs(u64::from(spec.max_duration_secs));
        if self.continuing
            && let Some(start) = self.task.start_time
        {
            // MaxDurationLimit counts from the task's start, on whichever worker.
            limit = limit.saturating_sub(Duration::from_secs((now_s() - start).max(0) as u64));
        }
        let mut stop_sent = false;
        let mut lease_lost = false;
        let mut handing_over = false;
        let mut live = LiveMetrics::new(&self.id);
        let outcome = loop {
            let deadline = started_at.map(|s| s + limit);
            tokio::select! {
                out = &mut done => break out,
                Some(ev) = events.recv() => self.on_event(ev, &mut started_at).await?,
                Some(msg) = ctl_rx.recv() => {
                    let c = match msg { ControlMsg::Pause => Control::Pause, ControlMsg::Resume => Control::Resume, ControlMsg::Refresh => Control::Refresh, ControlMsg::Stop => Control::Stop };
                    controls.send(c);
                }
                _ = beat.tick() => {
                    match self.ctx.store.renew(&self.id, &self.ctx.worker_id, self.fence, now_ms(), self.ctx.lease_ms()).await {
                        Ok(status) => {
                            // Follow the stored status even if a control message was missed.
                            self.status = status;
                            match status {
                                Status::Paused => controls.send(Control::Pause),
                                Status::Recording => controls.send(Control::Resume),
                                Status::Canceled | Status::Finished if !stop_sent => { stop_sent = true; controls.send(Control::Stop); }
                                _ => {}
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
                    let stats = self.total_stats(stats_of(&p));
                    let _ = self.ctx.store.set_stats(&self.id, &self.ctx.worker_id, self.fence, &stats).await;
                }
                _ = sleep_until(deadline), if deadline.is_some() && !stop_sent => {
                    info!(seconds = limit.as_secs(), "MaxDurationLimit reached");
                    stop_sent = true;
                    if self.status.is_live() {
                        self.move_to(Status::Canceled, vec![(TimeField::Cancel, now_s())]).await?;
                    }
                    controls.send(Control::Stop);
                }
                _ = self.ctx.drain.cancelled(), if !stop_sent && self.ctx.cfg.shutdown != ShutdownMode::Finish => {
                    // Shutting down: end the recording here; `handover` then gives the task to
                    // another worker, `stop` delivers what was recorded.
                    stop_sent = true;
                    handing_over = self.ctx.cfg.shutdown == ShutdownMode::Handover;
                    controls.send(Control::Stop);
                }
            }
        };
        reader.abort();
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
                    let p = progress.borrow().clone();
                    let mut stats = stats_of(&p);
                    stats.recorded_duration = (media.recorded_seconds * 1000.0).round() / 1000.0;
                    stats.page_crashes = media.page_crashes;
                    stats.encoder_restarts = media.encoder_restarts;
                    stats.lost_seconds = media.lost_seconds;
                    count_ended(
                        &stats,
                        media.page_crashes,
                        media.encoder_restarts,
                        "handed_over",
                    );
                    let stats = self.total_stats(stats);
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
                let p = progress.borrow().clone();
                let mut stats = stats_of(&p);
                stats.recorded_duration = (media.recorded_seconds * 1000.0).round() / 1000.0;
                stats.page_crashes = media.page_crashes;
                stats.encoder_restarts = media.encoder_restarts;
                stats.lost_seconds = media.lost_seconds;
                count_ended(
                    &stats,
                    media.page_crashes,
                    media.encoder_restarts,
                    "recorded",
                );
                info!(
                    seconds = media.recorded_seconds,
                    segments = media.segments.len(),
                    "recording finished"
                );
                let stats = self.total_stats(stats);
                self.send_to_transcode(stats, media.error.clone()).await
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
            Err(e) if self.continuing => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "failed")]);
                let _ = std::fs::remove_dir_all(work_dir);
                let stats = self.task.stats.clone().unwrap_or_default();
                self.send_to_transcode(stats, Some((e.code(), e.to_string())))
                    .await
            }
            Err(e) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "failed")]);
                let (code, msg) = (e.code(), e.to_string());
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

    /// Mirrors what happened in the recording into the task's status.
    async fn on_event(
        &mut self,
        ev: RecordingEvent,
        started_at: &mut Option<tokio::time::Instant>,
    ) -> Result<(), StoreError> {
        match ev.control {
            Control::Start if self.continuing => {
                // The task is already recording (or paused): only the clock starts here.
                *started_at = Some(tokio::time::Instant::now());
            }
            Control::Start => {
                *started_at = Some(tokio::time::Instant::now());
                if !self
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
                self.move_to(Status::Canceled, vec![(TimeField::Cancel, ev.at as i64)])
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Adds the counters of a recording that ended on this worker to the totals.
fn count_ended(s: &TaskStats, page_crashes: u32, encoder_restarts: u32, outcome: &'static str) {
    metrics::add(&metrics::FRAMES_CAPTURED, &[], s.frames_captured as f64);
    metrics::add(&metrics::FRAMES_WRITTEN, &[], s.frames_written as f64);
    metrics::add(&metrics::FRAMES_DUPLICATED, &[], s.frames_duplicated as f64);
    metrics::add(&metrics::FRAMES_DROPPED, &[], s.frames_dropped as f64);
    metrics::add(&metrics::PAGE_CRASHES, &[], f64::from(page_crashes));
    metrics::add(&metrics::ENCODER_RESTARTS, &[], f64::from(encoder_restarts));
    metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", outcome)]);
}

/// The per-recording gauges of one running recording; removed when it ends.
struct LiveMetrics {
    task_id: String,
    last: Option<(tokio::time::Instant, u64)>,
}

impl LiveMetrics {
    fn new(task_id: &str) -> Self {
        LiveMetrics {
            task_id: task_id.to_string(),
            last: None,
        }
    }

    fn update(&mut self, p: &crate::recording::Progress) {
        let l = [("task_id", self.task_id.as_str())];
        let now = tokio::time::Instant::now();
        let captured = p.stats.frames_captured;
        if let Some((at, before)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let fps = captured.saturating_sub(before) as f64 / secs;
                metrics::set(&metrics::CAPTURE_FPS, &l, (fps * 10.0).round() / 10.0);
            }
        }
        self.last = Some((now, captured));
        metrics::set(
            &metrics::RECORDING_DUPLICATED,
            &l,
            p.stats.frames_duplicated as f64,
        );
        metrics::set(
            &metrics::RECORDING_DROPPED,
            &l,
            (p.stats.frames_skipped + p.stats.frames_late) as f64,
        );
    }

    fn finish(&self) {
        let l = [("task_id", self.task_id.as_str())];
        let reg = metrics::registry();
        reg.remove(&metrics::CAPTURE_FPS, &l);
        reg.remove(&metrics::RECORDING_DUPLICATED, &l);
        reg.remove(&metrics::RECORDING_DROPPED, &l);
    }
}

impl Drop for LiveMetrics {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `a + b` for the counters of two parts of one recording.
fn add_stats(a: &TaskStats, b: &TaskStats) -> TaskStats {
    TaskStats {
        recorded_duration: ((a.recorded_duration + b.recorded_duration) * 1000.0).round() / 1000.0,
        frames_captured: a.frames_captured + b.frames_captured,
        frames_written: a.frames_written + b.frames_written,
        frames_duplicated: a.frames_duplicated + b.frames_duplicated,
        frames_dropped: a.frames_dropped + b.frames_dropped,
        pauses: a.pauses + b.pauses,
        refreshes: a.refreshes + b.refreshes,
        callback_attempts: a.callback_attempts + b.callback_attempts,
        page_crashes: a.page_crashes + b.page_crashes,
        encoder_restarts: a.encoder_restarts + b.encoder_restarts,
        lost_seconds: a.lost_seconds + b.lost_seconds,
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
        encoder_restarts: p.encoder_restarts,
        lost_seconds: p.lost_seconds,
    }
}
