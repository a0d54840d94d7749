//! Starting a recording, and the handle its owner keeps: commands in, progress and events out.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::engine::{AbortOnDrop, Engine};
use super::{
    CaptureBackend, Origin, Outcome, Progress, RecordError, RecordOptions, Recording,
    RecordingEvent, capture, grab, i420, profile,
};
use crate::audio::AudioCapture;
use crate::browser::{BrowserError, BrowserSession, ScreencastSettings, VirtualDisplay};
use crate::command::Command;
use crate::egress::EgressProxy;
use crate::media::MediaError;
use crate::media::encoder::FrameFormat;
use crate::media::pacer::Frame;

pub(super) fn screencast_settings(opts: &RecordOptions) -> ScreencastSettings {
    ScreencastSettings {
        jpeg_quality: opts.capture.jpeg_quality,
        every_nth_frame: opts.capture.every_nth_frame,
        max_width: opts.width,
        max_height: opts.height,
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
                let d = VirtualDisplay::start(
                    &opts.browser.display_servers,
                    opts.width + 1,
                    opts.height + 1,
                    opts.fps,
                )
                .await?;
                info!(display = %d.name(), server = d.server(), refresh_hz = ?d.refresh(), "virtual display started");
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
    /// length. Unlike [`Command::Stop`], also cuts short a stop under way.
    pub(crate) fn cut_handle(&self) -> CancellationToken {
        self.cut.clone()
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
    pub(crate) fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<RecordingEvent>> {
        self.events.take()
    }

    /// Waits for the recording to end (by [`Command::Stop`], the page, or the duration limit).
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
pub struct Controls(mpsc::UnboundedSender<(Command, Origin)>);

impl Controls {
    /// Sends a command (ignored if the recording has ended).
    pub fn send(&self, c: Command) {
        let _ = self.0.send((c, Origin::Owner));
    }

    /// Sends a Pause or Resume that was given before recording began: while the recording
    /// waits to begin it decides whether it begins paused; once it has begun it takes effect at
    /// once. Its events carry [`Origin::BeforeStart`].
    pub(crate) fn send_before_start(&self, c: Command) {
        let _ = self.0.send((c, Origin::BeforeStart));
    }
}
