//! The one clock recordings are stamped with: wall-clock seconds since the epoch, the clock
//! Chromium stamps screencast frames with. Video slots and audio samples are both placed on it.
//! The task's times (CreateTime, StopTime, leases...) are whole seconds or milliseconds of it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in seconds since the epoch.
pub(crate) fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Unix seconds now.
pub(crate) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
