//! The record job's loop: the recording runs; control messages, heartbeats, the disk and a
//! shutdown come in and become inputs of the [`JobSupervisor`]; when the recording ends, the
//! task is delivered, failed, handed over or left to the worker that took it.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::live_metrics::{LiveMetrics, count_ended};
use super::supervisor::{AfterRecording, Ended, JobInput, JobStep, JobSupervisor};
use super::{RecordJob, keep_unfinished_segment};
use crate::clock::{now_ms, now_s};
use crate::error::{ErrorCode, HasErrorCode};
use crate::metrics;
use crate::pipeline::takeover::{crash_budget_spent, this_part};
use crate::recording::{Outcome, RecordOptions, Recording};
use crate::task::Status;
use crate::task::prestart::StartWait;
use crate::task::store::StoreError;

impl RecordJob {
    pub(super) async fn record(&mut self, work_dir: &std::path::Path) -> Result<(), StoreError> {
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
        self.push = crate::pipeline::live_push::feed_for(&self.ctx, &self.task).await;
        let snapshots = crate::pipeline::snapshots::start(&self.ctx, &self.task, work_dir).await;
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
            // MaxDurationLimit of a ManualStart task counts from Start, through the wait and
            // the recording (as in web-record); a takeover keeps that instant.
            ends_at: spec.manual_start.then(|| start_wait.end_instant(now_s())),
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
        let _stop_on_drop = crate::pipeline::side_tasks::StopOnDrop(controls.clone());
        // API commands arrive on the task's control stream; read it on the side (until this
        // job ends, however it ends).
        let mut ctl_rx = crate::pipeline::side_tasks::ControlReader::spawn(
            self.ctx.store.clone(),
            self.id.clone(),
        );

        let mut beat = tokio::time::interval(heartbeat_every);
        let mut sup = JobSupervisor::new();
        // The work disk is watched closely: a fast recording fills a small disk in seconds.
        let mut disk = self.disk_watch();
        let mut disk_tick = tokio::time::interval(crate::pipeline::disk::CHECK_EVERY);
        let mut live = LiveMetrics::new();
        // On the side, as the media is made: StorageType s3 copies it to the bucket, and an HLS
        // result's segments are published.
        let side = self.side_work(work_dir).await?;
        // What was given while the page loaded (the control stream is read from now on).
        let stopped = self.catch_up(&controls).await;
        sup.on(JobInput::CaughtUp { stopped });
        let shutdown = self.ctx.cfg.shutdown;
        let outcome = loop {
            let steps = tokio::select! {
                out = &mut done => break out,
                Some(ev) = events.recv() => { self.on_event_with(ev, &controls).await?; continue }
                Some(command) = ctl_rx.recv() => sup.on(JobInput::Command { command, status: self.status }),
                _ = beat.tick() => {
                    let steps = match self.ctx.store.renew(&self.id, &self.ctx.worker_id, self.fence, now_ms(), self.ctx.lease_ms()).await {
                        Ok(status) => {
                            // The page's own pause/resume may have taken effect while the status
                            // was read: such events are applied first, and the read is stale.
                            let mut stale = false;
                            while let Ok(ev) = events.try_recv() {
                                stale = true;
                                self.on_event_with(ev, &controls).await?;
                            }
                            if !stale {
                                self.status = status;
                            }
                            sup.on(JobInput::Renewed { status, stale })
                        }
                        Err(StoreError::LeaseLost) => {
                            warn!("lost the lease to another worker; stopping this recording");
                            sup.on(JobInput::LeaseLost)
                        }
                        Err(e) => {
                            warn!(error = %e, "heartbeat failed; retrying");
                            Vec::new()
                        }
                    };
                    let p = progress.borrow().clone();
                    live.update(&p);
                    let stats = self.stats(&p);
                    let _ = self.ctx.store.set_stats(&self.id, &self.ctx.worker_id, self.fence, &stats).await;
                    steps
                }
                _ = disk_tick.tick(), if !cut.is_cancelled() => {
                    let encoding = {
                        let p = progress.borrow();
                        crate::pipeline::disk::Encoding { media_bytes: p.bytes_written, frames_sent: p.stats.frames_written, queued: p.encoder_queued, fps: spec.fps }
                    };
                    let verdict = disk.check(encoding, crate::pipeline::disk::profile_bytes(work_dir));
                    // The quota is measured only while no disk stop was decided.
                    let stop = if sup.watches_disk() {
                        verdict.stop.or_else(|| self.over_quota(work_dir))
                    } else {
                        None
                    };
                    sup.on(JobInput::Disk { stop, cut: verdict.cut })
                }
                _ = self.ctx.drain.cancelled(), if sup.drains(shutdown) => sup.on(JobInput::Drain(shutdown)),
            };
            for step in steps {
                match step {
                    JobStep::Send(c) => controls.send(c),
                    JobStep::SendBeforeStart(c) => controls.send_before_start(c),
                    JobStep::Cut => cut.cancel(),
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
        crate::pipeline::disk::remove_browser_profiles(work_dir);
        if let Some(side) = side {
            // The last segments too, so a takeover elsewhere has everything and the transcode
            // stage has only the playlist left to write; what is left after 30 s is done by the
            // next stages.
            side.finish(Duration::from_secs(30)).await;
        }
        live.finish();
        if sup.handing_over()
            && !sup.lease_lost()
            && let Ok(status) = self.current().await
        {
            // The stored status may have moved meanwhile (a Stop): then deliver as usual.
            self.status = status;
        }
        let ended = match &outcome {
            Ok(Outcome::Recorded(_)) => Ended::Recorded,
            Ok(Outcome::CanceledBeforeStart) => Ended::CanceledBeforeStart,
            Err(_) => Ended::Failed,
        };
        match (sup.after(ended, self.status), &outcome) {
            (AfterRecording::Abandon, _) => return Ok(()),
            (AfterRecording::HandOver { started: true }, Ok(Outcome::Recorded(media))) => {
                let stats = self.final_stats(&progress.borrow(), media);
                count_ended(
                    &this_part(&progress.borrow(), media),
                    "handed_over",
                    &mut live.frames,
                );
                return self.hand_over(Some(stats)).await;
            }
            (AfterRecording::HandOver { started: false }, _) => {
                let _ = std::fs::remove_dir_all(work_dir);
                return self.hand_over(None).await;
            }
            _ => {}
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
                crate::pipeline::canceled::end(&self.ctx, &self.id, Some(self.fence)).await
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
                        let (code, why) = sup.nothing_kept();
                        return self
                            .ctx
                            .fail_task(&self.id, self.status, Some(self.fence), code, why)
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
                let error = sup.delivery_error(media.error.clone(), stats.lost_media.clone());
                self.send_to_transcode(stats, error).await
            }
            Ok(Outcome::CanceledBeforeStart) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "canceled")]);
                crate::pipeline::canceled::end(&self.ctx, &self.id, Some(self.fence)).await
            }
            Err(e) => {
                metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", "failed")]);
                // Ended for the disk before anything reached it: that is why.
                let (code, msg) = sup.failure(e.code(), e.to_string(), || {
                    start_wait.timeout_message(now_s())
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
}
