//! The running parts of a recording (browser, frame source, sound, display) and what the loop
//! does with them: relaunch the browser, reopen the page, answer the page's controls, wait for
//! `window.startRecord()`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::handle::screencast_settings;
use super::supervisor::{Gate, StartGate};
use super::{
    CaptureBackend, Origin, Outcome, Progress, RecordError, RecordOptions, RecordingEvent,
    RecordingState, capture, grab, profile,
};
use crate::audio::AudioCapture;
use crate::audio::timeline::samples_for_slot;
use crate::browser::{BrowserSession, HookReply, PageHookCall, ScreencastSettings, VirtualDisplay};
use crate::command::Command;
use crate::egress::EgressProxy;
use crate::media::encoder::SlotMedia;
use crate::media::pacer::Frame;

/// The page's control calls, as the browser reports them.
pub(super) type HookEvents = chromiumoxide::listeners::EventStream<
    chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled,
>;
/// The page's renderer crashes, as the browser reports them.
pub(super) type CrashEvents = chromiumoxide::listeners::EventStream<
    chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed,
>;

pub(super) struct Engine {
    pub(super) opts: RecordOptions,
    pub(super) session: BrowserSession,
    /// Where frame sources deliver (kept to start a new one with a new browser).
    pub(super) frame_tx: mpsc::Sender<Frame>,
    /// `screencast`: the task forwarding the current browser's frames.
    pub(super) forwarder: Option<AbortOnDrop>,
    /// `x11`: the display reader.
    pub(super) grabber: Option<grab::DisplayGrabber>,
    /// `x11`: the display the browser paints into (closed after the browser).
    pub(super) display: Option<VirtualDisplay>,
    /// The page's sound (dropped after the browser: the sink goes last).
    pub(super) audio: Option<AudioCapture>,
    /// The browser's way out to the network, for as long as there is a browser.
    pub(super) _egress: Option<EgressProxy>,
    pub(super) progress: watch::Sender<Progress>,
    pub(super) events: mpsc::UnboundedSender<RecordingEvent>,
    /// The current browser's profile; after `session`, so it goes after the browser.
    pub(super) profile: profile::ProfileDir,
    /// See [`Recording::cut_handle`].
    pub(super) cut: CancellationToken,
}

impl Engine {
    pub(super) fn emit(&mut self, control: Command, origin: Origin, at: f64) {
        let ev = RecordingEvent {
            control,
            origin,
            at,
        };
        let _ = self.events.send(ev);
    }

    /// Starts a new browser (fresh profile) after the previous one died, loads the page, starts
    /// its frame source, and returns its event streams; the dead browser's leftovers are killed
    /// and reaped.
    pub(super) async fn relaunch(
        &mut self,
        n: u32,
    ) -> Result<(HookEvents, CrashEvents), RecordError> {
        let profile = profile::ProfileDir::create(&self.opts.work_dir, Some(n))?;
        let session = BrowserSession::open(&self.opts.browser, profile.path()).await?;
        let dead = std::mem::replace(&mut self.session, session);
        dead.close().await;
        // The dead browser's profile goes with it.
        drop(std::mem::replace(&mut self.profile, profile));
        let hooks = self.session.install_hooks().await?;
        self.session
            .navigate(&self.opts.url, self.opts.navigation_timeout)
            .await?;
        let crashes = self.session.crash_events().await?;
        if let Some(settings) = self.screencast_settings() {
            let stream = self.session.start_screencast(settings).await?;
            self.forwarder = Some(AbortOnDrop(capture::forward_screencast(
                self.session.page(),
                stream,
                self.frame_tx.clone(),
            )));
        }
        Ok((hooks, crashes))
    }

    /// The screencast's settings, when frames come from one.
    pub(super) fn screencast_settings(&self) -> Option<ScreencastSettings> {
        (self.opts.capture.backend == CaptureBackend::Screencast)
            .then(|| screencast_settings(&self.opts))
    }

    /// Reopens the page after its renderer crashed or hung. The display is not read meanwhile
    /// (it would show Chromium's crash page); the video repeats the last picture instead.
    pub(super) fn reopen(&self) {
        if let Some(g) = &self.grabber {
            g.hold(true);
        }
        let reopened = self
            .session
            .recover(&self.opts.url, self.screencast_settings());
        if let Some(g) = &self.grabber {
            let release = g.release_handle();
            tokio::spawn(async move {
                let _ = reopened.await;
                release();
            });
        }
    }

    /// A slot's frame with the sound played from its instant on, for exactly its duration.
    pub(super) fn slot_media(&self, slot: crate::media::pacer::SlotFrame) -> SlotMedia {
        if slot.slot.is_multiple_of(300) {
            tracing::trace!(target: "pagecast::timing", slot = slot.slot, instant = slot.instant, "slot");
        }
        let pcm = self
            .audio
            .as_ref()
            .map(|a| Arc::from(a.take(slot.instant, samples_for_slot(slot.slot, self.opts.fps))));
        SlotMedia {
            image: slot.image.image(),
            pcm,
        }
    }

    pub(super) fn set_state(&self, state: RecordingState) {
        self.progress.send_modify(|p| p.state = state);
    }

    pub(super) async fn run(
        mut self,
        mut frames: mpsc::Receiver<Frame>,
        mut hooks: HookEvents,
        mut crashes: CrashEvents,
        mut controls: mpsc::UnboundedReceiver<(Command, Origin)>,
    ) -> Result<Outcome, RecordError> {
        let result = self
            .record(&mut frames, &mut hooks, &mut crashes, &mut controls)
            .await;
        self.set_state(RecordingState::Finished);
        // Frame sources first (a grabber must not report the display's end as a failure), then
        // the browser, then its display.
        self.forwarder = None;
        self.grabber = None;
        self.session.close().await;
        if let Some(d) = self.display.take() {
            d.close().await;
        }
        result
    }

    /// Waits for the start (ManualStart), keeping the newest frame as the page's current look.
    /// Pause and Resume meanwhile decide whether it begins `paused` (see [`StartGate`]).
    pub(super) async fn wait_for_start(
        &mut self,
        frames: &mut mpsc::Receiver<Frame>,
        hooks: &mut HookEvents,
        controls: &mut mpsc::UnboundedReceiver<(Command, Origin)>,
        preroll: &mut Option<Frame>,
        paused: &mut bool,
    ) -> Result<Option<(f64, Origin, Option<HookReply>)>, RecordError> {
        let wait =
            super::options::start_wait_from(self.opts.start_timeout, self.opts.ends_at, wall_now());
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let mut gate = StartGate::new(*paused);
        loop {
            let (command, at, origin, reply) = tokio::select! {
                Some(f) = frames.recv() => { *preroll = Some(f); continue }
                Some(event) = hooks.next() => {
                    let Some(call) = PageHookCall::parse(&event.payload) else { continue };
                    let reply = call.id.map(|id| HookReply { context: event.execution_context_id, id });
                    (call.hook, sane_time(call.page_time, wall_now()), Origin::Page, reply)
                }
                c = controls.recv() => match c {
                    Some((c, _)) => (c, wall_now(), Origin::Owner, None),
                    // The owner is gone: as a Stop.
                    None => return Ok(None),
                },
                _ = &mut deadline => return Err(RecordError::StartTimeout(wait.as_secs())),
            };
            // startRecord()'s Promise settles once recording has begun; the others now.
            match gate.on(command) {
                Gate::Begin => return Ok(Some((at, origin, reply))),
                Gate::Cancel => {
                    self.session.answer_hook(reply, Ok(()));
                    return Ok(None);
                }
                Gate::Reload => self.session.answer_then_reload(reply),
                Gate::Wait => {
                    *paused = gate.paused;
                    self.session.answer_hook(reply, Ok(()));
                }
            }
        }
    }
}

/// Aborts a spawned task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks the page's main thread for a trivial answer every second; one that takes longer than
/// `limit` is a hang, reported on `hangs`. After a report it waits `limit` again before probing,
/// so the reopened page has time to load.
pub(super) async fn watch_for_hangs(
    page: Arc<chromiumoxide::Page>,
    limit: Duration,
    hangs: mpsc::UnboundedSender<()>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !BrowserSession::responds_within(&page, limit).await {
            if hangs.send(()).is_err() {
                return;
            }
            tokio::time::sleep(limit).await;
        }
    }
}
pub(super) fn wall_now() -> f64 {
    crate::clock::wall_now()
}

/// Accepts a timestamp from the browser or page only if it is close to our own clock (same
/// machine, so it should be); otherwise our clock is the safer choice.
pub(super) fn sane_time(t: Option<f64>, now: f64) -> f64 {
    match t {
        Some(t) if (t - now).abs() < 5.0 => t.min(now),
        _ => now,
    }
}
