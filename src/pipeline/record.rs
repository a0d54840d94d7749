//! The record stage: take a queued task, run its recording, follow its controls, hand the
//! media on to transcode.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{WorkerContext, now_ms, now_s};
use crate::error::{ErrorCode, HasErrorCode};
use crate::recording::{Control, Origin, Outcome, RecordOptions, Recording, RecordingEvent};
use crate::task::store::{
    Claim, ControlMsg, Stage, StageJob, StageQueue, StoreError, TimeField, Transition,
};
use crate::task::{Status, TaskRecord, TaskResult, TaskStats};

/// Runs one record job from the queue.
pub async fn run(ctx: WorkerContext, queue: StageQueue, job: StageJob) {
    let id = job.task_id.clone();
    let claim = ctx
        .store
        .claim(
            &id,
            &ctx.worker_id,
            &[Status::Normal],
            now_ms(),
            ctx.lease_ms(),
        )
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
    let mut job = RecordJob {
        ctx: ctx.clone(),
        id: id.clone(),
        fence,
        status: Status::Normal,
        task,
    };
    if let Err(e) = job.record(&work_dir).await {
        warn!(error = %e, "record stage ended with a store error");
    }
}

struct RecordJob {
    ctx: WorkerContext,
    id: String,
    fence: u64,
    status: Status,
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
            manual_start: spec.manual_start,
            start_timeout: Duration::from_secs(u64::from(spec.start_timeout_secs)),
            navigation_timeout: Duration::from_secs(rec_cfg.navigation_timeout),
            browser: rec_cfg.browser(spec.width, spec.height),
            capture: rec_cfg.capture(),
            encoder: rec_cfg.encoder(),
            audio: spec.audio.then(|| rec_cfg.audio()),
            url_policy: self.ctx.cfg.url_policy(),
            work_dir: work_dir.to_path_buf(),
        };
        info!(url = %spec.record_url, "starting recording");

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
        let limit = Duration::from_secs(u64::from(spec.max_duration_secs));
        let mut stop_sent = false;
        let mut lease_lost = false;
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
                    let stats = stats_of(&p);
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
                _ = self.ctx.shutdown.cancelled(), if !stop_sent => {
                    // Shutting down: finish this recording and deliver what was recorded.
                    stop_sent = true;
                    controls.send(Control::Stop);
                }
            }
        };
        reader.abort();
        if lease_lost {
            return Ok(());
        }

        match outcome {
            Ok(Outcome::Recorded(media)) => {
                if self.status.is_live() {
                    self.move_to(Status::Canceled, vec![(TimeField::Cancel, now_s())])
                        .await?;
                }
                let p = progress.borrow().clone();
                let mut stats = stats_of(&p);
                stats.recorded_duration = (media.recorded_seconds * 1000.0).round() / 1000.0;
                stats.page_crashes = media.page_crashes;
                stats.encoder_restarts = media.encoder_restarts;
                stats.lost_seconds = media.lost_seconds;
                info!(
                    seconds = media.recorded_seconds,
                    segments = media.segments.len(),
                    "recording finished"
                );
                let mut t = Transition::new(self.status, Status::Transcode);
                t.lease = self.lease();
                t.times = vec![(TimeField::Stop, now_s())];
                t.stats = Some(stats);
                // A recording that ended on a failure is still delivered, with the error.
                if let Some((code, message)) = &media.error {
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
            Ok(Outcome::CanceledBeforeStart) => {
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
