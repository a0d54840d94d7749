//! The audio adapter: the page's sound, captured from a PulseAudio null sink per recording and
//! placed on pagecast's wall clock. Knows nothing about browsers or encoding.

mod capture;
pub(crate) mod pulse;
pub(crate) mod timeline;

pub(crate) use capture::AudioCapture;
pub(crate) use pulse::AudioSettings;

use crate::error::{ErrorCode, HasErrorCode};
use crate::process::ProcessError;

/// Errors of the audio adapter.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// pulseaudio, pactl or parec is missing or failed.
    #[error("{0} (recording without sound: --no-audio or \"Audio\": false)")]
    Process(#[from] ProcessError),
    /// The PulseAudio server could not be started or reached.
    #[error("PulseAudio: {0}")]
    Server(String),
    /// The recording's sink could not be created.
    #[error("PulseAudio sink: {0}")]
    Sink(String),
}

impl HasErrorCode for AudioError {
    fn code(&self) -> ErrorCode {
        ErrorCode::AudioFailed
    }
}
