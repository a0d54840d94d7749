//! The recording engine: one page, captured to constant-rate H.264 segments.
//!
//! [`Recording::start`] launches a browser, loads the page and begins capturing; the returned
//! handle takes pause/resume/refresh/stop commands (the same ones the page can give itself through
//! `window.pauseRecord()` etc.), reports progress, and on [`Recording::wait`] yields the recorded
//! segments for `media::finalize`.

mod capture;
mod grab;
mod i420;
mod memory;
mod options;
mod paint_phase;
mod profile;
pub mod timeline;

pub use capture::CaptureBackend;

pub use options::{
    CaptureSettings, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_JPEG_QUALITY, DEFAULT_WIDTH,
    MAX_DIMENSION, MAX_FPS, RecordOptions, dimension, frame_rate, page_url,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::audio::timeline::samples_for_slot;
use crate::audio::{AudioCapture, AudioError};
use crate::browser::egress::EgressProxy;
use crate::browser::{
    BrowserError, BrowserSession, HookReply, PageHook, PageHookCall, ScreencastSettings,
    VirtualDisplay,
};
use crate::error::{ErrorCode, HasErrorCode};
use crate::media::MediaError;
use crate::media::encoder::{FrameFormat, SegmentEncoder, SlotMedia};
use crate::media::pacer::{Frame, FramePacer, PacerStats};
use crate::media::segments::{bytes_written, next_segment_number};

/// Errors that end a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The browser failed or the page could not be loaded.
    #[error(transparent)]
    Browser(#[from] BrowserError),
    /// Capture or encoding failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The page's sound could not be captured.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// A ManualStart page never called `window.startRecord()`.
    #[error("the page did not call window.startRecord() within {0} s")]
    StartTimeout(u64),
    /// The page never produced a frame.
    #[error("the page produced no frame to record")]
    NoFrames,
    /// The work directory could not be prepared.
    #[error("work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl HasErrorCode for RecordError {
    fn code(&self) -> ErrorCode {
        match self {
            RecordError::Browser(e) => e.code(),
            RecordError::Media(e) => e.code(),
            RecordError::Audio(e) => e.code(),
            RecordError::StartTimeout(_) => ErrorCode::StartTimeout,
            RecordError::NoFrames | RecordError::WorkDir { .. } => ErrorCode::RecordFailed,
        }
    }
}

/// A command for a running recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Begin recording (ManualStart tasks; the page's `startRecord()` does the same).
    Start,
    /// Stop adding content; the browser keeps running.
    Pause,
    /// Continue right after the content before the pause.
    Resume,
    /// Reload the page; recording continues.
    Refresh,
    /// End the recording.
    Stop,
}

impl From<PageHook> for Control {
    fn from(h: PageHook) -> Self {
        match h {
            PageHook::Start => Control::Start,
            PageHook::Pause => Control::Pause,
            PageHook::Resume => Control::Resume,
            PageHook::Refresh => Control::Refresh,
            PageHook::Stop => Control::Stop,
        }
    }
}

/// Who gave a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Origin {
    /// The page, through `window.*Record()`.
    Page,
    /// The owner of the [`Recording`] handle (CLI, API).
    Owner,
    /// The recording's own limit (duration).
    Limit,
    /// The owner, for a Pause or Resume given before recording began: applied as it begins
    /// (or at once, if it began meanwhile).
    BeforeStart,
}

/// Something that happened to the recording, in order.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RecordingEvent {
    /// The command that took effect.
    pub control: Control,
    /// Who gave it.
    pub origin: Origin,
    /// Wall-clock time it took effect (seconds since the epoch).
    pub at: f64,
}

impl serde::Serialize for Control {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Control::Start => "start",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Refresh => "refresh",
            Control::Stop => "stop",
        })
    }
}

/// Where a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingState {
    /// Waiting for the page to call `window.startRecord()`.
    #[default]
    WaitingForStart,
    /// Capturing.
    Recording,
    /// Paused.
    Paused,
    /// Stop requested; writing the last frames.
    Stopping,
    /// Done.
    Finished,
}

/// A snapshot of a recording's progress.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// State.
    pub state: RecordingState,
    /// Recorded time, pauses excluded, in seconds.
    pub recorded_seconds: f64,
    /// Frame counters.
    pub stats: PacerStats,
    /// Bytes of encoded video written so far.
    pub bytes_written: u64,
    /// Frames waiting for the encoder (it is behind by that many).
    pub encoder_queued: u64,
    /// Number of pauses.
    pub pauses: u32,
    /// Number of page reloads.
    pub refreshes: u32,
    /// Times the page's renderer crashed and the page was reopened.
    pub page_crashes: u32,
    /// Times the page hung (main thread unresponsive) and was reopened.
    pub page_hangs: u32,
    /// Times the whole browser died and a new one took over the page.
    pub browser_restarts: u32,
    /// Times the encoder died and was restarted.
    pub encoder_restarts: u32,
    /// Recorded seconds lost to encoder deaths (the unfinished segment of each).
    pub lost_seconds: f64,
}

/// What a finished recording produced.
#[derive(Debug, Clone)]
pub struct RecordedMedia {
    /// The segments, in order.
    pub segments: Vec<PathBuf>,
    /// Recorded time in seconds (= output frames / fps).
    pub recorded_seconds: f64,
    /// Output frame rate.
    pub fps: u32,
    /// Frame counters.
    pub stats: PacerStats,
    /// Everything that happened, in order.
    pub events: Vec<RecordingEvent>,
    /// Why it ended.
    pub stopped_by: Origin,
    /// Set when the recording ended because of a failure; what was recorded is still delivered.
    pub error: Option<(ErrorCode, String)>,
    /// Times the page's renderer crashed and the page was reopened.
    pub page_crashes: u32,
    /// Times the page hung and was reopened.
    pub page_hangs: u32,
    /// Times the whole browser died and a new one took over the page.
    pub browser_restarts: u32,
    /// Times the encoder died and was restarted.
    pub encoder_restarts: u32,
    /// Recorded seconds lost to encoder deaths.
    pub lost_seconds: f64,
}

/// How a recording ended.
#[derive(Debug)]
pub enum Outcome {
    /// Something was recorded.
    Recorded(RecordedMedia),
    /// Stopped before recording began (ManualStart page that never started): nothing to deliver.
    CanceledBeforeStart,
}

/// A running recording.
pub struct Recording {
    controls: mpsc::UnboundedSender<(Control, Origin)>,
    progress: watch::Receiver<Progress>,
    events: Option<mpsc::UnboundedReceiver<RecordingEvent>>,
    task: tokio::task::JoinHandle<Result<Outcome, RecordError>>,
    cut: CancellationToken,
}

/// Renderer crashes a recording survives; one more ends it with `PageCrashed`.
const MAX_PAGE_CRASHES: u32 = 3;
/// Hangs a recording survives; one more ends it with `PageCrashed`.
const MAX_PAGE_HANGS: u32 = 3;
/// Browser deaths a recording survives; one more ends it with `BrowserFailed`.
const MAX_BROWSER_RESTARTS: u32 = 3;
/// Encoder deaths a recording survives; one more ends it with `RecordFailed`.
const MAX_ENCODER_RESTARTS: u32 = 5;
/// Memory the encoder's replay backlog may hold when frames are raw (`x11` capture).
const RAW_BACKLOG_BYTES: usize = 48 << 20;

fn screencast_settings(opts: &RecordOptions) -> ScreencastSettings {
    ScreencastSettings {
        jpeg_quality: opts.capture.jpeg_quality,
        every_nth_frame: opts.capture.every_nth_frame,
        max_width: opts.width,
        max_height: opts.height,
    }
}

/// The live encoder, restarted if ffmpeg dies. The frames sent since the current instance's last
/// completed segment are kept (shared buffers, a few MB of JPEG) and replayed into the new
/// instance, which starts with the next segment number: the segment ffmpeg was writing when it
/// died is simply written again, so nothing is lost. Raw frames are 4 bytes a pixel, so only the
/// newest [`RAW_BACKLOG_BYTES`] of them are kept; older ones are replaced by a repeat of the
/// first kept frame (the video keeps its length; the loss is reported).
struct ResilientEncoder {
    opts: RecordOptions,
    fps: u32,
    current: Option<SegmentEncoder>,
    /// First segment number of the current instance.
    first_segment: u64,
    /// Frames sent to the current instance.
    sent: u64,
    /// Frames (with their samples) sent to the current instance that are not in a completed
    /// segment yet.
    backlog: std::collections::VecDeque<SlotMedia>,
    restarts: u32,
    lost_seconds: f64,
    failed: Option<(ErrorCode, String)>,
}

impl ResilientEncoder {
    fn start(opts: &RecordOptions, fps: u32) -> Result<Self, RecordError> {
        let first_segment = next_segment_number(&opts.work_dir);
        let current = SegmentEncoder::start(
            &opts.encoder,
            opts.width,
            opts.height,
            fps,
            &opts.work_dir,
            first_segment,
        )?;
        Ok(Self {
            opts: opts.clone(),
            fps,
            current: Some(current),
            first_segment,
            sent: 0,
            backlog: std::collections::VecDeque::new(),
            restarts: 0,
            lost_seconds: 0.0,
            failed: None,
        })
    }

    /// Frames the current instance has not taken yet.
    fn queued(&self) -> u64 {
        self.current.as_ref().map_or(0, |e| e.queued() as u64)
    }

    /// Why the encoder gave up, once it has.
    fn failure(&self) -> Option<(ErrorCode, String)> {
        self.failed.clone()
    }

    fn frames_per_segment(&self) -> u64 {
        u64::from(self.fps * self.opts.encoder.segment_seconds.max(1))
    }

    /// Drops backlog frames that the current instance has written into completed segments, and
    /// returns how many frames sent since then the backlog no longer has.
    fn prune(&mut self) -> u64 {
        let list = self
            .opts
            .work_dir
            .join(crate::media::segments::segment_list_name(
                self.first_segment,
            ));
        let done = std::fs::read_to_string(list)
            .map(|l| crate::media::segments::parse_segment_list(&l).len() as u64)
            .unwrap_or(0);
        let safe = (done * self.frames_per_segment()).min(self.sent);
        let backlog_start = self.sent - self.backlog.len() as u64;
        for _ in backlog_start..safe {
            self.backlog.pop_front();
        }
        (self.sent - self.backlog.len() as u64).saturating_sub(safe)
    }

    /// How many frames the backlog keeps.
    fn backlog_limit(&self) -> usize {
        match self.opts.encoder.input {
            FrameFormat::Jpeg => usize::MAX,
            FrameFormat::Bgrx | FrameFormat::I420 => {
                let frame = self
                    .opts
                    .encoder
                    .input
                    .picture_bytes(self.opts.width, self.opts.height);
                (RAW_BACKLOG_BYTES / frame.max(1)).max(4)
            }
        }
    }

    async fn send(&mut self, slot: SlotMedia) {
        if let Some(live) = &self.opts.live {
            live.offer(&slot, self.opts.encoder.input);
        }
        let Some(enc) = self.current.as_ref() else {
            return;
        };
        if enc.send(slot.clone()).await.is_ok() {
            self.sent += 1;
            self.backlog.push_back(slot);
            if self.backlog.len() > self.backlog_limit() {
                self.backlog.pop_front();
            }
            if self.sent.is_multiple_of(self.frames_per_segment()) {
                let _ = self.prune();
            }
            return;
        }
        let tail = enc.tail();
        let missing = self.prune();
        let mut replay: Vec<SlotMedia> = Vec::new();
        if missing > 0 {
            let first = self.backlog.front().unwrap_or(&slot).clone();
            replay.extend(std::iter::repeat_n(first, missing as usize));
            self.lost_seconds += missing as f64 / f64::from(self.fps);
        }
        replay.extend(self.backlog.drain(..));
        replay.push(slot);
        self.current = None; // dropping kills and reaps what is left of it
        if disk_full(&tail) {
            // A new encoder would die the same way, writing more into the full disk: the
            // recording ends with the segments completed so far.
            warn!(ffmpeg = %tail, "the encoder ran out of disk space; ending the recording");
            self.lost_seconds += replay.len() as f64 / f64::from(self.fps);
            self.failed = Some((
                ErrorCode::DiskFull,
                "the work disk filled up; the recording was ended there and what it recorded \
                 is delivered"
                    .into(),
            ));
            return;
        }
        self.restarts += 1;
        warn!(restarts = self.restarts, replayed = replay.len(), ffmpeg = %tail, "the encoder died; restarting it");
        if self.restarts > MAX_ENCODER_RESTARTS {
            self.lost_seconds += replay.len() as f64 / f64::from(self.fps);
            self.failed = Some((
                ErrorCode::RecordFailed,
                format!(
                    "the encoder (ffmpeg) died {} times; last: {tail}",
                    self.restarts
                ),
            ));
            return;
        }
        self.first_segment = next_segment_number(&self.opts.work_dir);
        self.sent = 0;
        match SegmentEncoder::start(
            &self.opts.encoder,
            self.opts.width,
            self.opts.height,
            self.fps,
            &self.opts.work_dir,
            self.first_segment,
        ) {
            Ok(enc) => {
                self.current = Some(enc);
                // Replay; should the new instance die too, the next send restarts again.
                for (i, frame) in replay.iter().enumerate() {
                    let Some(enc) = self.current.as_ref() else {
                        break;
                    };
                    if enc.send(frame.clone()).await.is_err() {
                        self.lost_seconds += (replay.len() - i) as f64 / f64::from(self.fps);
                        break;
                    }
                    self.sent += 1;
                    self.backlog.push_back(frame.clone());
                }
            }
            Err(e) => {
                self.lost_seconds += replay.len() as f64 / f64::from(self.fps);
                self.failed = Some((
                    ErrorCode::RecordFailed,
                    format!("the encoder could not be restarted: {e}"),
                ));
            }
        }
    }

    /// Finishes the current instance and returns every completed segment, in order.
    async fn finish(mut self) -> Result<Vec<std::path::PathBuf>, RecordError> {
        if let Some(enc) = self.current.as_ref()
            && enc.held_back() > 0
        {
            warn!(
                held_back = enc.held_back(),
                "the encoder fell behind; new pictures were shown as repeats to bound memory"
            );
        }
        if let Some(enc) = self.current.take()
            && let Err(e) = enc.finish(Duration::from_secs(60)).await
        {
            // Whatever segments are complete are still delivered.
            warn!(error = %e, "the encoder did not finish cleanly");
        }
        Ok(crate::media::segments::completed_segments(
            &self.opts.work_dir,
        )?)
    }
}

/// Whether an encoder's last words say it could not write for lack of space (ENOSPC).
fn disk_full(ffmpeg_tail: &str) -> bool {
    ffmpeg_tail.contains("No space left on device")
}

fn wall_now() -> f64 {
    crate::clock::wall_now()
}

/// Accepts a timestamp from the browser or page only if it is close to our own clock (same
/// machine, so it should be); otherwise our clock is the safer choice.
fn sane_time(t: Option<f64>, now: f64) -> f64 {
    match t {
        Some(t) if (t - now).abs() < 5.0 => t.min(now),
        _ => now,
    }
}

impl Recording {
    /// Launches the browser, loads the page and starts capturing (or waiting for
    /// `window.startRecord()`). Fails if the browser cannot start or the page cannot load.
    pub async fn start(mut opts: RecordOptions) -> Result<Recording, RecordError> {
        // Declared before the browser, so dropped after it on every early return.
        profile::remove_stale(&opts.work_dir);
        let profile = profile::ProfileDir::create(&opts.work_dir, None)?;
        // The sound path comes first: its sink must exist before the browser opens its output,
        // and the monitor stream warms up while the browser starts.
        let audio = match &opts.audio {
            Some(settings) => Some(AudioCapture::start(settings).await?),
            None => None,
        };
        opts.encoder.audio = audio.is_some();
        // The x11 backend: a private display of exactly the video's size, a headful browser on
        // it, and raw frames for the encoder.
        let display = match opts.capture.backend {
            CaptureBackend::Screencast => None,
            CaptureBackend::X11 => {
                // Chromium's kiosk window on a display without a window manager is one pixel
                // narrower and shorter than the screen: a screen one pixel larger makes the
                // window exactly the video's size (checked by tests/x11.rs).
                let d = VirtualDisplay::start(&opts.browser.xvfb, opts.width + 1, opts.height + 1)
                    .await?;
                info!(display = %d.name(), "virtual display started");
                opts.browser.display = Some(d.name());
                // Only with the display's cookie may a client open it.
                opts.browser
                    .env
                    .push(("XAUTHORITY".into(), d.xauthority().display().to_string()));
                // Converted to I420 by the grab thread where the size allows (even sides).
                opts.encoder.input = if i420::fits(opts.width, opts.height) {
                    FrameFormat::I420
                } else {
                    FrameFormat::Bgrx
                };
                Some(d)
            }
        };
        match &audio {
            Some(a) => opts.browser.env.extend(a.browser_env()),
            // Without sound the browser plays into a fake device (its clocks still run).
            None => opts
                .browser
                .extra_args
                .push("--disable-audio-output".into()),
        }
        let egress = match opts.guard_egress {
            true => {
                let proxy = EgressProxy::start(opts.url_policy.clone())
                    .await
                    .map_err(|e| {
                        RecordError::Browser(BrowserError::Launch {
                            reason: format!("the egress proxy could not start: {e}"),
                            tail: String::new(),
                        })
                    })?;
                opts.browser.extra_args.extend(proxy.chromium_flags());
                Some(proxy)
            }
            false => None,
        };
        let (session, _) =
            tokio::join!(BrowserSession::open(&opts.browser, profile.path()), async {
                if let Some(a) = &audio {
                    a.wait_until_live(Duration::from_secs(3)).await;
                }
            });
        let session = session?;
        let hooks = session.install_hooks().await?;
        info!(url = %crate::redact::url(&opts.url), width = opts.width, height = opts.height, "loading page");
        let loaded = session.navigate(&opts.url, opts.navigation_timeout).await;
        // The requested URL was checked before; redirects may have led somewhere else. (The
        // egress proxy refuses such a redirect, and the page then fails with its 403: this
        // says why.)
        if !opts.url_policy.allows_all()
            && let Some(landed) = session.current_url().await
            && let Err(why) = crate::url_guard::check_url(&landed, &opts.url_policy).await
        {
            return Err(RecordError::Browser(BrowserError::Navigation {
                url: opts.url.clone(),
                reason: format!(
                    "it redirected to {}, which {why}",
                    crate::redact::url(&landed)
                ),
            }));
        }
        loaded?;
        // Frames the recorder has not taken yet: about a second's worth, then they are dropped.
        let (frame_tx, frames) = mpsc::channel::<Frame>(match opts.capture.backend {
            CaptureBackend::Screencast => opts.fps as usize * 2,
            CaptureBackend::X11 => 8,
        });
        let (forwarder, grabber) = match &display {
            None => {
                let stream = session.start_screencast(screencast_settings(&opts)).await?;
                let f = capture::forward_screencast(session.page(), stream, frame_tx.clone());
                (Some(AbortOnDrop(f)), None)
            }
            Some(d) => {
                // What the display shows is what is recorded: let the loaded page reach it.
                session.wait_for_paint(Duration::from_secs(2)).await;
                let g = grab::DisplayGrabber::start(
                    d,
                    opts.width,
                    opts.height,
                    opts.fps,
                    opts.encoder.input == FrameFormat::I420,
                    frame_tx.clone(),
                )
                .map_err(|reason| {
                    RecordError::Browser(BrowserError::Display {
                        reason,
                        tail: String::new(),
                    })
                })?;
                (None, Some(g))
            }
        };

        let (controls, control_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (event_tx, events) = mpsc::unbounded_channel();
        let engine = Engine {
            opts,
            session,
            frame_tx,
            forwarder,
            grabber,
            display,
            audio,
            _egress: egress,
            progress: progress_tx,
            events: event_tx,
            log: Vec::new(),
            profile,
            cut: CancellationToken::new(),
        };
        let cut = engine.cut.clone();
        let crashes = engine.session.crash_events().await?;
        // The caller's span (e.g. the task and its TaskID) stays on the engine's log lines.
        let task = tokio::spawn(tracing::Instrument::in_current_span(
            engine.run(frames, hooks, crashes, control_rx),
        ));
        Ok(Recording {
            controls,
            progress,
            events: Some(events),
            task,
            cut,
        })
    }

    /// Cancel it to end the recording at once with only the media already on disk: ffmpeg is
    /// killed and the frames still waiting for it are dropped (the disk cannot take more). The
    /// segment it was writing is left unfinished in the work directory for the caller to
    /// salvage or remove; the outcome lists the completed segments (maybe none) and their
    /// length. Unlike [`Control::Stop`], also cuts short a stop under way.
    pub fn cut_handle(&self) -> CancellationToken {
        self.cut.clone()
    }

    /// Sends a command. Commands that are already in effect change nothing.
    pub fn control(&self, c: Control) {
        let _ = self.controls.send((c, Origin::Owner));
    }

    /// A cloneable handle that sends commands to this recording.
    pub fn controls_handle(&self) -> Controls {
        Controls(self.controls.clone())
    }

    /// A receiver of progress snapshots.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// The stream of events (start, pauses, refreshes, stop) as they take effect. Once only.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<RecordingEvent>> {
        self.events.take()
    }

    /// Waits for the recording to end (by [`Control::Stop`], the page, or the duration limit).
    pub async fn wait(self) -> Result<Outcome, RecordError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RecordError::Media(MediaError::EncoderDied(format!(
                "recording task failed: {e}"
            )))),
        }
    }
}

/// Sends commands to a running recording; cheap to clone.
#[derive(Debug, Clone)]
pub struct Controls(mpsc::UnboundedSender<(Control, Origin)>);

impl Controls {
    /// Sends a command (ignored if the recording has ended).
    pub fn send(&self, c: Control) {
        let _ = self.0.send((c, Origin::Owner));
    }

    /// Sends a Pause or Resume that was given before recording began: while the recording
    /// waits to begin it decides whether it begins paused; once it has begun it takes effect at
    /// once. Its events carry [`Origin::BeforeStart`].
    pub fn send_before_start(&self, c: Control) {
        let _ = self.0.send((c, Origin::BeforeStart));
    }
}

struct Engine {
    opts: RecordOptions,
    session: BrowserSession,
    /// Where frame sources deliver (kept to start a new one with a new browser).
    frame_tx: mpsc::Sender<Frame>,
    /// `screencast`: the task forwarding the current browser's frames.
    forwarder: Option<AbortOnDrop>,
    /// `x11`: the display reader.
    grabber: Option<grab::DisplayGrabber>,
    /// `x11`: the display the browser paints into (closed after the browser).
    display: Option<VirtualDisplay>,
    /// The page's sound (dropped after the browser: the sink goes last).
    audio: Option<AudioCapture>,
    /// The browser's way out to the network, for as long as there is a browser.
    _egress: Option<EgressProxy>,
    progress: watch::Sender<Progress>,
    events: mpsc::UnboundedSender<RecordingEvent>,
    log: Vec<RecordingEvent>,
    /// The current browser's profile; after `session`, so it goes after the browser.
    profile: profile::ProfileDir,
    /// See [`Recording::cut_handle`].
    cut: CancellationToken,
}

impl Engine {
    fn emit(&mut self, control: Control, origin: Origin, at: f64) {
        let ev = RecordingEvent {
            control,
            origin,
            at,
        };
        self.log.push(ev);
        let _ = self.events.send(ev);
    }

    /// Starts a new browser (fresh profile) after the previous one died, loads the page, starts
    /// its frame source, and returns its event streams; the dead browser's leftovers are killed
    /// and reaped.
    async fn relaunch(
        &mut self,
        n: u32,
    ) -> Result<
        (
            chromiumoxide::listeners::EventStream<
                chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled,
            >,
            chromiumoxide::listeners::EventStream<
                chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed,
            >,
        ),
        RecordError,
    > {
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
    fn screencast_settings(&self) -> Option<ScreencastSettings> {
        (self.opts.capture.backend == CaptureBackend::Screencast)
            .then(|| screencast_settings(&self.opts))
    }

    /// Reopens the page after its renderer crashed or hung. The display is not read meanwhile
    /// (it would show Chromium's crash page); the video repeats the last picture instead.
    fn reopen(&self) {
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
    fn slot_media(&self, slot: crate::media::pacer::SlotFrame) -> SlotMedia {
        let pcm = self
            .audio
            .as_ref()
            .map(|a| Arc::from(a.take(slot.instant, samples_for_slot(slot.slot, self.opts.fps))));
        SlotMedia {
            image: slot.image,
            pcm,
        }
    }

    fn set_state(&self, state: RecordingState) {
        self.progress.send_modify(|p| p.state = state);
    }

    async fn run(
        mut self,
        mut frames: mpsc::Receiver<Frame>,
        mut hooks: chromiumoxide::listeners::EventStream<
            chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled,
        >,
        mut crashes: chromiumoxide::listeners::EventStream<
            chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed,
        >,
        mut controls: mpsc::UnboundedReceiver<(Control, Origin)>,
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
    /// Pause and Resume meanwhile decide whether it begins `paused`.
    async fn wait_for_start(
        &mut self,
        frames: &mut mpsc::Receiver<Frame>,
        hooks: &mut chromiumoxide::listeners::EventStream<
            chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled,
        >,
        controls: &mut mpsc::UnboundedReceiver<(Control, Origin)>,
        preroll: &mut Option<Frame>,
        paused: &mut bool,
    ) -> Result<Option<(f64, Origin, Option<HookReply>)>, RecordError> {
        let deadline = tokio::time::sleep(self.opts.start_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                Some(f) = frames.recv() => { *preroll = Some(f); }
                Some(event) = hooks.next() => {
                    let Some(call) = PageHookCall::parse(&event.payload) else { continue };
                    let reply = call.id.map(|id| HookReply { context: event.execution_context_id, id });
                    let now = wall_now();
                    // startRecord()'s Promise settles once recording has begun; the others now.
                    match call.hook {
                        PageHook::Start => return Ok(Some((sane_time(call.page_time, now), Origin::Page, reply))),
                        PageHook::Stop => { self.session.answer_hook(reply, Ok(())); return Ok(None) }
                        PageHook::Refresh => self.session.answer_then_reload(reply),
                        PageHook::Pause | PageHook::Resume => {
                            *paused = call.hook == PageHook::Pause;
                            self.session.answer_hook(reply, Ok(()));
                        }
                    }
                }
                c = controls.recv() => match c.map(|(c, _)| c) {
                    Some(Control::Start) => return Ok(Some((wall_now(), Origin::Owner, None))),
                    Some(Control::Stop) | None => return Ok(None),
                    Some(Control::Refresh) => self.session.reload(),
                    Some(Control::Pause) => *paused = true,
                    Some(Control::Resume) => *paused = false,
                },
                _ = &mut deadline => return Err(RecordError::StartTimeout(self.opts.start_timeout.as_secs())),
            }
        }
    }

    async fn record(
        &mut self,
        frames: &mut mpsc::Receiver<Frame>,
        hooks: &mut chromiumoxide::listeners::EventStream<
            chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled,
        >,
        crashes: &mut chromiumoxide::listeners::EventStream<
            chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed,
        >,
        controls: &mut mpsc::UnboundedReceiver<(Control, Origin)>,
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
        self.emit(Control::Start, start_origin, origin);
        self.set_state(RecordingState::Recording);
        info!(fps, "recording started");

        // Media an earlier worker completed for this task comes first in the output.
        let prior_media = crate::media::segments::completed_seconds(&opts.work_dir);
        let mut timeline = timeline::TimelineWriter::open(&opts.work_dir);
        let mut mark_timeline = true;
        let mut encoder = ResilientEncoder::start(&opts, fps)?;
        let mut page_crashes = 0u32;
        let (mut page_hangs, mut hang_pending) = (0u32, false);
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
        let mut browser_restarts = 0u32;
        let mut browser_gone = false;
        // The hooks' event stream ends when the browser's DevTools connection does.
        let mut browser_connected = true;
        let mut failure: Option<(ErrorCode, String)> = None;
        let limit_slots = opts
            .max_duration
            .map(|d| (d.as_secs_f64() * f64::from(fps)).round() as u64);
        let mut stop: Option<(f64, Origin)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_progress = 0.0;
        let (mut pauses, mut refreshes) = (0u32, 0u32);
        let mut audio_lost = false;
        let cut = self.cut.clone();
        if start_paused {
            pacer.pause(origin);
            pauses += 1;
            self.emit(Control::Pause, Origin::BeforeStart, origin);
            self.set_state(RecordingState::Paused);
            info!("recording began paused: a Pause was given before it began");
        }
        self.session.answer_hook(start_reply, Ok(()));

        loop {
            let mut command: Option<(Control, Origin, f64, Option<HookReply>)> = None;
            tokio::select! {
                Some(f) = frames.recv() => pacer.push(f),
                call = hooks.next(), if browser_connected => match call {
                    Some(call) => {
                        if let Some(hook) = PageHookCall::parse(&call.payload) {
                            debug!(?hook, "page hook");
                            let reply = hook.id.map(|id| HookReply { context: call.execution_context_id, id });
                            command = Some((hook.hook.into(), Origin::Page, sane_time(hook.page_time, wall_now()), reply));
                        }
                    }
                    None => {
                        browser_connected = false;
                        browser_gone = true;
                    }
                },
                c = controls.recv() => {
                    let (c, origin) = c.unwrap_or((Control::Stop, Origin::Owner));
                    command = Some((c, origin, wall_now(), None));
                }
                Some(()) = hang_rx.recv() => {
                    page_hangs += 1;
                    if page_hangs > MAX_PAGE_HANGS {
                        warn!(page_hangs, "the page keeps hanging; ending the recording");
                        failure.get_or_insert((ErrorCode::PageCrashed, format!("the page stopped responding {page_hangs} times")));
                        if stop.is_none() { stop = Some((wall_now(), Origin::Limit)); }
                    } else if hang_pending {
                        // Restarting the renderer did not report back: open the page again anyway.
                        warn!(page_hangs, "the page is still unresponsive; reopening it");
                        self.reopen();
                    } else {
                        warn!(page_hangs, "the page's main thread stopped responding; restarting its renderer");
                        hang_pending = true;
                        self.session.crash_renderer();
                    }
                }
                Some(used) = memory_rx.recv() => {
                    if stop.is_none() {
                        warn!(used_mib = used >> 20, limit_mib = memory_limit, "the page uses more memory than a recording may; ending the recording");
                        failure.get_or_insert((ErrorCode::PageOutOfMemory, memory::message(Some(used >> 20), memory_limit)));
                        stop = Some((wall_now(), Origin::Limit));
                        // Free the memory at once: the page's renderer goes (and is not reopened).
                        self.session.crash_renderer();
                    }
                }
                Some(_) = crashes.next() => {
                    if stop.is_some() {
                        // Ended already (out of memory, say): nothing to reopen.
                        continue;
                    }
                    if memory::ran_out(&self.session, &mut memory_failures).await {
                        warn!("the page ran out of memory; ending the recording");
                        failure.get_or_insert((ErrorCode::PageOutOfMemory, memory::message(None, memory_limit)));
                        stop = Some((wall_now(), Origin::Limit));
                        continue;
                    }
                    if hang_pending {
                        // The crash we caused to end a hang: reopen, count it as the hang it was.
                        hang_pending = false;
                        info!(page_hangs, "the hung page's renderer restarted; reopening the page");
                        self.reopen();
                        continue;
                    }
                    page_crashes += 1;
                    if page_crashes > MAX_PAGE_CRASHES {
                        warn!(page_crashes, "the page keeps crashing; ending the recording");
                        failure.get_or_insert((ErrorCode::PageCrashed, format!("the page crashed {page_crashes} times")));
                        if stop.is_none() { stop = Some((wall_now(), Origin::Limit)); }
                    } else {
                        // Content from before the crash stays; the pacer repeats the last frame
                        // until the reopened page paints again.
                        warn!(page_crashes, "the page crashed; reopening it");
                        self.reopen();
                    }
                }
                _ = cut.cancelled(), if stop.is_none() => {
                    warn!("the disk cannot take more: ending the recording with what is on disk");
                    stop = Some((wall_now(), Origin::Limit));
                }
                _ = tick.tick() => {}
            }

            if browser_gone
                && stop.is_none()
                && memory::ran_out(&self.session, &mut memory_failures).await
            {
                // Killed for its memory (a cgroup's cap): a new browser would be too.
                browser_gone = false;
                warn!("the browser ran out of memory; ending the recording");
                failure.get_or_insert((
                    ErrorCode::PageOutOfMemory,
                    memory::message(None, memory_limit),
                ));
                stop = Some((wall_now(), Origin::Limit));
            }
            if std::mem::take(&mut browser_gone) && stop.is_none() {
                // The browser died (killed, out of memory): a new one takes over the page. The
                // video repeats the last frame meanwhile, so its length stays true.
                browser_restarts += 1;
                if browser_restarts > MAX_BROWSER_RESTARTS {
                    warn!(
                        browser_restarts,
                        "the browser keeps dying; ending the recording"
                    );
                    failure.get_or_insert((
                        ErrorCode::BrowserFailed,
                        format!("the browser died {browser_restarts} times"),
                    ));
                    stop = Some((wall_now(), Origin::Limit));
                } else {
                    warn!(browser_restarts, "the browser died; starting a new one");
                    if let Some(g) = &self.grabber {
                        g.hold(true);
                    }
                    match self.relaunch(browser_restarts).await {
                        Ok((h, c)) => {
                            (*hooks, *crashes) = (h, c);
                            browser_connected = true;
                            _watchdog = watchdog(self.session.page());
                            _memory_watch = memory_watch(self.session.pid());
                            memory_failures = self.session.memory_failures();
                            hang_pending = false;
                            if let Some(g) = &self.grabber {
                                g.hold(false);
                            }
                            info!(browser_restarts, "a new browser has the page again");
                        }
                        Err(e) => {
                            warn!(error = %e, "the browser could not be restarted");
                            failure.get_or_insert((e.code(), e.to_string()));
                            stop = Some((wall_now(), Origin::Limit));
                        }
                    }
                }
            }

            // A page control's Promise settles once its action has taken effect (or was in effect
            // already); while the recording ends, nothing more can.
            if let Some((_, _, _, reply)) = command
                && stop.is_some()
            {
                let why = "the recording is ending".to_string();
                self.session
                    .answer_hook(reply, Err((ErrorCode::InvalidState, why)));
            }
            if let Some((control, origin, at, reply)) = command
                && stop.is_none()
            {
                match control {
                    Control::Start => {}
                    Control::Pause if !pacer.is_paused() => {
                        pacer.pause(at);
                        pauses += 1;
                        self.emit(Control::Pause, origin, at);
                        self.set_state(RecordingState::Paused);
                        info!(?origin, "paused");
                    }
                    Control::Resume if pacer.is_paused() => {
                        pacer.resume(at);
                        if let Some(g) = &self.grabber {
                            // Slot instants moved on by the pause; grabs follow them.
                            g.align(pacer.instant_of(0.0));
                        }
                        mark_timeline = true;
                        self.emit(Control::Resume, origin, at);
                        self.set_state(RecordingState::Recording);
                        info!(?origin, "resumed");
                    }
                    Control::Pause | Control::Resume => {}
                    Control::Refresh => {
                        self.session.answer_then_reload(reply);
                        refreshes += 1;
                        self.emit(Control::Refresh, origin, at);
                        info!(?origin, "page reload requested");
                    }
                    Control::Stop => {
                        stop = Some((at, origin));
                    }
                }
                if control != Control::Refresh {
                    self.session.answer_hook(reply, Ok(()));
                }
            }

            let now = wall_now();
            // The duration limit ends the recording at exactly `limit * fps` frames: the timeline is
            // frozen at the limit's instant, so no slot at or beyond it is ever decided.
            if stop.is_none()
                && let Some(limit) = opts.max_duration
            {
                let at = pacer.instant_of(limit.as_secs_f64());
                if now >= at {
                    stop = Some((at, Origin::Limit));
                }
            }
            if stop.is_none()
                && let Some(limit) = opts.wall_limit
            {
                let at = origin + limit.as_secs_f64();
                if now >= at {
                    stop = Some((at, Origin::Limit));
                }
            }
            if let Some((at, origin)) = stop
                && self.progress.borrow().state != RecordingState::Stopping
            {
                // Freeze the timeline at the stop point; frames still in flight may fill its last slots.
                pacer.pause(at);
                self.emit(Control::Stop, origin, at);
                self.set_state(RecordingState::Stopping);
                info!(?origin, "stopping");
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
                        &slot.image,
                        opts.encoder.input,
                    );
                }
                encoder.send(self.slot_media(slot)).await;
            }
            if let Some(why) = encoder.failure().or_else(|| {
                self.grabber
                    .as_ref()
                    .and_then(|g| g.failure())
                    .map(|why| (ErrorCode::RecordFailed, why))
            }) && stop.is_none()
            {
                failure.get_or_insert(why);
                stop = Some((now, Origin::Limit));
            }

            if let Some((at, origin)) = stop
                && (now >= at + latency || cut.is_cancelled())
            {
                if !cut.is_cancelled() {
                    let tail = match limit_slots {
                        // Exactly the duration limit's length, unless a failure ended it early.
                        Some(l) if origin == Origin::Limit && failure.is_none() => {
                            pacer.finish_at_slot_count(l)
                        }
                        _ => pacer.finish(at),
                    };
                    for slot in tail {
                        encoder.send(self.slot_media(slot)).await;
                    }
                }
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
                // Cut short, the unfinished segment may still be kept (see `Recording::cut_handle`).
                if !cut_short && (written == 0 || segments.is_empty()) {
                    return Err(match failure {
                        Some((_, why)) => RecordError::Media(MediaError::EncoderDied(why)),
                        None => RecordError::NoFrames,
                    });
                }
                let stats = pacer.stats();
                let recorded_seconds = written as f64 / f64::from(fps);
                self.progress.send_modify(|p| {
                    p.recorded_seconds = recorded_seconds;
                    p.stats = stats;
                    p.bytes_written = bytes_written(&opts.work_dir);
                });
                let grabs_dropped = self.grabber.as_ref().map(|g| g.dropped());
                info!(
                    recorded_seconds,
                    frames = written,
                    ?grabs_dropped,
                    "recording finished"
                );
                return Ok(Outcome::Recorded(RecordedMedia {
                    segments,
                    recorded_seconds,
                    fps,
                    stats,
                    events: self.log.clone(),
                    stopped_by: origin,
                    error: failure,
                    page_crashes,
                    page_hangs,
                    browser_restarts,
                    encoder_restarts,
                    lost_seconds,
                }));
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
                self.progress.send_modify(|p| {
                    p.recorded_seconds = recorded;
                    p.stats = pacer.stats();
                    p.bytes_written = bytes;
                    p.encoder_queued = encoder.queued();
                    p.pauses = pauses;
                    p.refreshes = refreshes;
                    p.page_crashes = page_crashes;
                    p.page_hangs = page_hangs;
                    p.browser_restarts = browser_restarts;
                    p.encoder_restarts = encoder.restarts;
                    p.lost_seconds = encoder.lost_seconds;
                });
            }
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks the page's main thread for a trivial answer every second; one that takes longer than
/// `limit` is a hang, reported on `hangs`. After a report it waits `limit` again before probing,
/// so the reopened page has time to load.
async fn watch_for_hangs(
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
