//! Where a recording's frames come from. Both backends deliver [`Frame`]s (an image and the
//! instant it was on screen) into one channel that the recorder paces into slots:
//!
//! - `screencast`: headless Chromium sends a JPEG each time it paints (CDP `Page.screencastFrame`).
//!   Costly: Chromium encodes every frame and ships it base64 over the DevTools socket.
//! - `x11`: headful Chromium paints into a private virtual display, read at the slot rate by
//!   [`super::grab::DisplayGrabber`]. Cheaper and steadier; needs Xvfb.

use std::sync::Arc;

use base64::Engine as _;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::page::EventScreencastFrame;
use chromiumoxide::listeners::EventStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::browser::BrowserSession;
use crate::clock::wall_now;
use crate::media::pacer::Frame;

/// How frames are captured.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CaptureBackend {
    /// Headless Chromium's screencast (JPEG frames over DevTools).
    Screencast,
    /// Headful Chromium on a private Xvfb display, read directly: about half the CPU of
    /// screencast, with steadier frames (BENCHMARKS.md), so the default.
    #[default]
    X11,
}

impl CaptureBackend {
    /// The name used in configuration and the API.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CaptureBackend::Screencast => "screencast",
            CaptureBackend::X11 => "x11",
        }
    }

    /// Parses a name from the API (case-insensitive).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "screencast" => Some(CaptureBackend::Screencast),
            "x11" => Some(CaptureBackend::X11),
            _ => None,
        }
    }
}

impl std::fmt::Display for CaptureBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Forwards a page's screencast frames into `frames`, acknowledging each at once so Chromium
/// keeps painting whatever the recorder is doing. Frames the recorder has not made room for are
/// dropped (the pacer repeats the previous picture). Ends with the stream (the browser died).
pub(super) fn forward_screencast(
    page: Arc<Page>,
    mut stream: EventStream<EventScreencastFrame>,
    frames: mpsc::Sender<Frame>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            BrowserSession::ack_frame_on(&page, ev.session_id);
            let now = wall_now();
            let Some(frame) = to_frame(&ev, now) else {
                continue;
            };
            tracing::trace!(target: "pagecast::timing", painted = frame.painted_at, delay_ms = (now - frame.painted_at) * 1000.0, "frame");
            if let Err(mpsc::error::TrySendError::Closed(_)) = frames.try_send(frame) {
                return;
            }
        }
    })
}

/// The per-frame data we keep from a screencast event.
fn to_frame(ev: &EventScreencastFrame, now: f64) -> Option<Frame> {
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(ev.data.as_ref() as &str)
        .ok()?;
    let painted_at =
        super::engine::sane_time(ev.metadata.timestamp.as_ref().map(|t| *t.inner()), now);
    Some(Frame {
        painted_at,
        image: crate::media::delta::Held::whole(Arc::from(jpeg)),
    })
}
