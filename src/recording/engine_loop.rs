//! The recording's event loop: frames, page controls, owner commands, crashes, hangs, memory
//! and the clock come in; each becomes an [`Input`] for the [`Supervisor`], and its [`Step`]s
//! become actions on the browser, the frame pacer and the encoder. No decision is taken here.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::encoder::ResilientEncoder;
use super::engine::{
    AbortOnDrop, CrashEvents, Engine, HookEvents, sane_time, wall_now, watch_for_hangs,
};
use super::supervisor::{Answer, Input, Rules, Step, Supervisor, Tail};
use super::{Origin, Outcome, RecordError, RecordedMedia, RecordingState, memory, timeline};
use crate::browser::{HookReply, PageHookCall};
use crate::command::Command;
use crate::error::{ErrorCode, HasErrorCode};
use crate::media::MediaError;
use crate::media::pacer::{Frame, FramePacer};
use crate::media::segments::bytes_written;

impl Engine {
    /// Carries out `step` (all but [`Step::RelaunchBrowser`] and [`Step::Finish`], which the
    /// loop does itself); `reply` is where a page control's call is answered.
    fn apply(
        &mut self,
        step: &Step,
        pacer: &mut FramePacer,
        mark_timeline: &mut bool,
        reply: Option<HookReply>,
    ) {
        match *step {
            Step::Answer(Answer::Done) => self.session.answer_hook(reply, Ok(())),
            Step::Answer(Answer::Refused(code, ref why)) => {
                self.session.answer_hook(reply, Err((code, why.clone())))
            }
            Step::Answer(Answer::ThenReload) => self.session.answer_then_reload(reply),
            Step::ReopenPage => self.reopen(),
            Step::CrashRenderer => self.session.crash_renderer(),
            Step::Pause { at, origin } => {
                pacer.pause(at);
                self.emit(Command::Pause, origin, at);
                self.set_state(RecordingState::Paused);
                info!(?origin, "paused");
            }
            Step::Resume { at, origin } => {
                pacer.resume(at);
                if let Some(g) = &self.grabber {
                    // Slot instants moved on by the pause; grabs follow them.
                    g.align(pacer.instant_of(0.0));
                }
                *mark_timeline = true;
                self.emit(Command::Resume, origin, at);
                self.set_state(RecordingState::Recording);
                info!(?origin, "resumed");
            }
            Step::Refreshed { at, origin } => {
                self.emit(Command::Refresh, origin, at);
                info!(?origin, "page reload requested");
            }
            Step::BeginStop { at, origin } => {
                // Freeze the timeline at the stop point; frames still in flight may fill its
                // last slots.
                pacer.pause(at);
                self.emit(Command::Stop, origin, at);
                self.set_state(RecordingState::Stopping);
                info!(?origin, "stopping");
            }
            Step::RelaunchBrowser(_) | Step::Finish { .. } => {}
        }
    }

    pub(super) async fn record(
        &mut self,
        frames: &mut mpsc::Receiver<Frame>,
        hooks: &mut HookEvents,
        crashes: &mut CrashEvents,
        controls: &mut mpsc::UnboundedReceiver<(Command, Origin)>,
    ) -> Result<Outcome, RecordError> {
        let opts = self.opts.clone();
        let fps = opts.fps;
        let latency = opts.capture.latency.as_secs_f64();
        let mut preroll = None;
        // A Pause given before recording began (and not resumed): it begins paused.
        let mut start_paused = opts.start_paused;

        let (origin, start_origin, start_reply) = if opts.manual_start {
            self.set_state(RecordingState::WaitingForStart);
            info!("waiting for the page to call window.startRecord()");
            match self
                .wait_for_start(frames, hooks, controls, &mut preroll, &mut start_paused)
                .await?
            {
                // The display shows a change only once Chromium presents it: what the page drew
                // when it called startRecord() is on screen two animation frames later, and
                // the recording opens there (screencast frames come only from paints, so they
                // need no wait).
                Some((_, origin, reply)) if self.grabber.is_some() => {
                    self.session.wait_for_paint(Duration::from_secs(1)).await;
                    (wall_now(), origin, reply)
                }
                Some(start) => start,
                None => {
                    info!("stopped before recording began");
                    return Ok(Outcome::CanceledBeforeStart);
                }
            }
        } else {
            (wall_now(), Origin::Owner, None)
        };
        // ManualStart: the first frame painted after startRecord() should open the recording, so the
        // pre-start look is only used if the page shows nothing new for a second.
        let grace = if opts.manual_start { 1.0 } else { 0.0 };
        let mut pacer = FramePacer::new(fps, origin, latency, grace);
        if let Some(f) = preroll.take() {
            pacer.push(f);
        }
        if let Some(g) = &self.grabber {
            g.align(origin);
        }
        self.emit(Command::Start, start_origin, origin);
        self.set_state(RecordingState::Recording);
        info!(fps, "recording started");

        // Media an earlier worker completed for this task comes first in the output.
        let prior_media = crate::media::segments::completed_seconds(&opts.work_dir);
        let mut timeline = timeline::TimelineWriter::open(&opts.work_dir);
        let mut mark_timeline = true;
        let mut encoder = ResilientEncoder::start(&opts, fps)?;
        let (hang_tx, mut hang_rx) = mpsc::unbounded_channel::<()>();
        let watchdog = |page| {
            opts.capture.hang_timeout.map(|limit| {
                AbortOnDrop(tokio::spawn(watch_for_hangs(page, limit, hang_tx.clone())))
            })
        };
        let mut _watchdog = watchdog(self.session.page());
        // The memory cap: a watchdog on the browser's processes, and V8's or the kernel's
        // out-of-memory reports on a crash.
        let memory_limit = opts.browser.memory_limit_mb;
        let (memory_tx, mut memory_rx) = mpsc::unbounded_channel::<u64>();
        let memory_watch = |pid: Option<u32>| {
            pid.filter(|_| memory_limit > 0).map(|pid| {
                AbortOnDrop(tokio::spawn(memory::watch(
                    pid,
                    memory_limit << 20,
                    memory_tx.clone(),
                )))
            })
        };
        let mut _memory_watch = memory_watch(self.session.pid());
        let mut memory_failures = self.session.memory_failures();
        let mut browser_gone = false;
        // The hooks' event stream ends when the browser's DevTools connection does.
        let mut browser_connected = true;
        let mut sup = Supervisor::new(Rules {
            origin,
            wall_limit: super::options::wall_limit_from(opts.wall_limit, opts.ends_at, origin),
            limit_slots: opts
                .max_duration
                .map(|d| (d.as_secs_f64() * f64::from(fps)).round() as u64),
            latency,
            memory_limit_mib: memory_limit,
        });
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_progress = 0.0;
        let mut audio_lost = false;
        let cut = self.cut.clone();
        for step in sup.begin(start_paused) {
            if let Step::Pause { at, origin } = step {
                pacer.pause(at);
                self.emit(Command::Pause, origin, at);
                self.set_state(RecordingState::Paused);
                info!("recording began paused: a Pause was given before it began");
            }
        }
        self.session.answer_hook(start_reply, Ok(()));

        loop {
            let mut input = None;
            let mut reply = None;
            tokio::select! {
                Some(f) = frames.recv() => pacer.push(f),
                call = hooks.next(), if browser_connected => match call {
                    Some(call) => {
                        if let Some(hook) = PageHookCall::parse(&call.payload) {
                            debug!(?hook, "page hook");
                            reply = hook.id.map(|id| HookReply { context: call.execution_context_id, id });
                            let at = sane_time(hook.page_time, wall_now());
                            input = Some(Input::Command { command: hook.hook, origin: Origin::Page, at });
                        }
                    }
                    None => {
                        browser_connected = false;
                        browser_gone = true;
                    }
                },
                c = controls.recv() => {
                    // The owner is gone: as a Stop.
                    let (command, origin) = c.unwrap_or((Command::Stop, Origin::Owner));
                    input = Some(Input::Command { command, origin, at: wall_now() });
                }
                Some(()) = hang_rx.recv() => input = Some(Input::Hang),
                Some(used) = memory_rx.recv() => input = Some(Input::MemoryOver { used_mib: used >> 20 }),
                Some(_) = crashes.next() => {
                    // Asked only while it matters: a crash after the end reopens nothing.
                    let out_of_memory = sup.running() && memory::ran_out(&self.session, &mut memory_failures).await;
                    input = Some(Input::Crash { out_of_memory });
                }
                _ = cut.cancelled(), if sup.running() => input = Some(Input::Cut),
                _ = tick.tick() => {}
            }
            if let Some(input) = input {
                for step in sup.on(input, wall_now()) {
                    self.apply(&step, &mut pacer, &mut mark_timeline, reply);
                }
            }

            if std::mem::take(&mut browser_gone) {
                let out_of_memory =
                    sup.running() && memory::ran_out(&self.session, &mut memory_failures).await;
                let mut steps = sup.on(Input::BrowserGone { out_of_memory }, wall_now());
                // A new browser that cannot take the page is another death: the supervisor
                // asks for one more while the budget lasts.
                while let Some(n) = steps.iter().find_map(|s| match s {
                    Step::RelaunchBrowser(n) => Some(*n),
                    _ => None,
                }) {
                    // A new browser takes over the page; the video repeats the last frame
                    // meanwhile, so its length stays true.
                    if let Some(g) = &self.grabber {
                        g.hold(true);
                    }
                    let relaunched = match self.relaunch(n).await {
                        Ok((h, c)) => {
                            (*hooks, *crashes) = (h, c);
                            browser_connected = true;
                            _watchdog = watchdog(self.session.page());
                            _memory_watch = memory_watch(self.session.pid());
                            memory_failures = self.session.memory_failures();
                            if let Some(g) = &self.grabber {
                                g.hold(false);
                            }
                            info!(browser_restarts = n, "a new browser has the page again");
                            Ok(())
                        }
                        Err(e) => {
                            warn!(error = %e, "the browser could not be restarted");
                            Err((e.code(), e.to_string()))
                        }
                    };
                    steps = sup.on(Input::Relaunched(relaunched), wall_now());
                }
            }

            let now = wall_now();
            let duration_limit_at = opts
                .max_duration
                .map(|limit| pacer.instant_of(limit.as_secs_f64()));
            for step in sup.on(
                Input::Clock {
                    now,
                    duration_limit_at,
                },
                now,
            ) {
                self.apply(&step, &mut pacer, &mut mark_timeline, None);
            }

            // Every frame that has arrived, before slots are decided: the loop takes one event
            // a turn, and after a slow start (the encoder's launch, 0.5 s and more at 1080p)
            // the first slots were otherwise decided while their frames still sat in the
            // channel, and shown as the pre-roll picture and a repeat of it.
            while let Ok(f) = frames.try_recv() {
                pacer.push(f);
            }
            for slot in pacer.due(now) {
                if mark_timeline || slot.slot.is_multiple_of(u64::from(fps)) {
                    let recorded = slot.slot as f64 / f64::from(fps);
                    timeline.point(prior_media + recorded, pacer.instant_of(recorded));
                    mark_timeline = false;
                }
                if let Some(snaps) = &opts.snapshots {
                    let recorded = prior_media + slot.slot as f64 / f64::from(fps);
                    snaps.offer(
                        (recorded * 1000.0).round() as u64,
                        &slot.image.image(),
                        opts.encoder.input,
                    );
                }
                encoder.send(self.slot_media(slot)).await;
            }
            if let Some((code, why)) = encoder.failure().or_else(|| {
                self.grabber
                    .as_ref()
                    .and_then(|g| g.failure())
                    .map(|why| (ErrorCode::RecordFailed, why))
            }) {
                sup.on(Input::MediaFailed { now, code, why }, now);
            }

            let ready = Input::Ready {
                now,
                cut: cut.is_cancelled(),
            };
            if let Some(Step::Finish { at, origin, tail }) = sup.on(ready, now).into_iter().next() {
                let tail = match tail {
                    Tail::Nothing => Vec::new(),
                    Tail::SlotCount(l) => pacer.finish_at_slot_count(l),
                    Tail::UntilStop => pacer.finish(at),
                };
                for slot in tail {
                    encoder.send(self.slot_media(slot)).await;
                }
                return self
                    .finish(encoder, &pacer, &sup, origin, prior_media)
                    .await;
            }

            if now - last_progress >= 0.25 {
                last_progress = now;
                if !audio_lost
                    && let Some(a) = self.audio.as_mut()
                    && !a.is_running()
                {
                    // The rest of the recording keeps its sound track, silent from here on.
                    audio_lost = true;
                    warn!(sink = %a.sink_name(), "the audio capture stopped; the sound is silent from here on");
                }
                let bytes = bytes_written(&opts.work_dir);
                let recorded = pacer.recorded_at(now);
                let c = sup.counters();
                self.progress.send_modify(|p| {
                    p.recorded_seconds = recorded;
                    p.stats = pacer.stats();
                    p.bytes_written = bytes;
                    p.encoder_queued = encoder.queued();
                    p.pauses = c.pauses;
                    p.refreshes = c.refreshes;
                    p.page_crashes = c.page_crashes;
                    p.page_hangs = c.page_hangs;
                    p.browser_restarts = c.browser_restarts;
                    p.encoder_restarts = encoder.restarts;
                    p.lost_seconds = encoder.lost_seconds;
                });
            }
        }
    }

    /// Finishes the encoder (or, cut short, keeps what is on disk) and says what was recorded.
    async fn finish(
        &mut self,
        encoder: ResilientEncoder,
        pacer: &FramePacer,
        sup: &Supervisor,
        origin: Origin,
        prior_media: f64,
    ) -> Result<Outcome, RecordError> {
        let opts = &self.opts;
        let fps = opts.fps;
        let cut = self.cut.clone();
        let mut written = pacer.slots_written();
        let (encoder_restarts, lost_seconds) = (encoder.restarts, encoder.lost_seconds);
        let mut cut_short = false;
        let segments = tokio::select! {
            biased;
            // Dropping the encoder (with its finish under way) kills ffmpeg.
            // The segment it had not finished stays for the caller to salvage or remove.
            _ = cut.cancelled() => {
                cut_short = true;
                let kept = crate::media::segments::completed_segments(&opts.work_dir)?;
                let seconds = crate::media::segments::completed_seconds(&opts.work_dir) - prior_media;
                written = written.min((seconds.max(0.0) * f64::from(fps)).round() as u64);
                kept
            }
            r = encoder.finish() => r?,
        };
        let failure = sup.failure().cloned();
        // Cut short, the unfinished segment may still be kept (see `Recording::cut_handle`).
        if !cut_short && (written == 0 || segments.is_empty()) {
            return Err(match failure {
                Some((_, why)) => RecordError::Media(MediaError::EncoderDied(why)),
                None => RecordError::NoFrames,
            });
        }
        let stats = pacer.stats();
        let recorded_seconds = written as f64 / f64::from(fps);
        let bytes = bytes_written(&opts.work_dir);
        self.progress.send_modify(|p| {
            p.recorded_seconds = recorded_seconds;
            p.stats = stats;
            p.bytes_written = bytes;
        });
        let grabs_dropped = self.grabber.as_ref().map(|g| g.dropped());
        info!(
            recorded_seconds,
            frames = written,
            ?grabs_dropped,
            stopped_by = ?origin,
            "recording finished"
        );
        let c = sup.counters();
        Ok(Outcome::Recorded(RecordedMedia {
            segments,
            recorded_seconds,
            fps,
            stats,
            error: failure,
            page_crashes: c.page_crashes,
            page_hangs: c.page_hangs,
            browser_restarts: c.browser_restarts,
            encoder_restarts,
            lost_seconds,
        }))
    }
}
