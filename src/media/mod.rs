//! The media adapter: ffmpeg and ffprobe. Knows nothing about browsers or tasks.

pub(crate) mod delta;
pub mod encoder;
pub mod faststart;
pub mod finalize;
pub mod hls;
pub mod live;
pub(crate) mod pacer;
pub mod picture;
pub mod probe;
pub mod remux;
pub mod salvage;
pub mod segments;
pub mod snapshot;
mod ts_padding;

use crate::error::{ErrorCode, HasErrorCode};
use crate::process::ProcessError;

/// Errors of the media adapter.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// ffmpeg/ffprobe could not be run or failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The live encoder stopped accepting frames.
    #[error("the encoder (ffmpeg) stopped while recording{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    EncoderDied(String),
    /// Files could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Output that ffprobe or the playlist reader could not understand.
    #[error("unexpected media: {0}")]
    Unexpected(String),
}

impl MediaError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MediaError {
        let context = context.into();
        move |source| MediaError::Io { context, source }
    }
}

impl HasErrorCode for MediaError {
    fn code(&self) -> ErrorCode {
        ErrorCode::RecordFailed
    }
}
