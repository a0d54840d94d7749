//! The recording engine: one page, captured to constant-rate H.264 segments.
//!
//! [`Recording::start`] launches a browser, loads the page and begins capturing; the returned
//! handle takes pause/resume/refresh/stop commands (the same ones the page can give itself through
//! `window.pauseRecord()` etc.), reports progress, and on [`Recording::wait`] yields the recorded
//! segments for `media::finalize`.
//!
//! The modules: `handle` starts a recording and is its owner's handle; `engine` holds the running
//! browser, frame source and sound, and its loop (`engine_loop`) turns their events into the
//! inputs of the pure `supervisor`, which decides; `encoder` restarts a dying ffmpeg.

mod backlog;
mod capture;
mod encoder;
mod engine;
mod engine_loop;
mod grab;
mod handle;
mod i420;
mod memory;
mod options;
mod paint_phase;
mod profile;
pub(crate) mod supervisor;
pub(crate) mod timeline;

pub(crate) use capture::CaptureBackend;
pub(crate) use handle::Controls;

pub use options::{
    CaptureSettings, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_JPEG_QUALITY, DEFAULT_WIDTH,
    MAX_DIMENSION, MAX_FPS, RecordOptions, SNAPSHOT_ONLY_FPS, dimension, frame_rate, page_url,
};

use crate::command::Command;
use std::path::PathBuf;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::audio::AudioError;
use crate::browser::BrowserError;
use crate::error::{ErrorCode, HasErrorCode};
use crate::media::MediaError;
use crate::media::pacer::PacerStats;

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

/// Who gave a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Origin {
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
pub(crate) struct RecordingEvent {
    /// The command that took effect.
    pub(crate) control: Command,
    /// Who gave it.
    pub(crate) origin: Origin,
    /// Wall-clock time it took effect (seconds since the epoch).
    pub(crate) at: f64,
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
    pub(crate) encoder_queued: u64,
    /// Number of pauses.
    pub(crate) pauses: u32,
    /// Number of page reloads.
    pub(crate) refreshes: u32,
    /// Times the page's renderer crashed and the page was reopened.
    pub(crate) page_crashes: u32,
    /// Times the page hung (main thread unresponsive) and was reopened.
    pub(crate) page_hangs: u32,
    /// Times the whole browser died and a new one took over the page.
    pub(crate) browser_restarts: u32,
    /// Times the encoder died and was restarted.
    pub(crate) encoder_restarts: u32,
    /// Recorded seconds lost to encoder deaths (the unfinished segment of each).
    pub(crate) lost_seconds: f64,
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
    controls: mpsc::UnboundedSender<(Command, Origin)>,
    progress: watch::Receiver<Progress>,
    events: Option<mpsc::UnboundedReceiver<RecordingEvent>>,
    task: tokio::task::JoinHandle<Result<Outcome, RecordError>>,
    cut: CancellationToken,
}
