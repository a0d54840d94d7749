//! What one recording needs to know, validated.

use std::path::PathBuf;
use std::time::Duration;

use crate::browser::BrowserSettings;
use crate::media::encoder::EncoderSettings;

/// Default viewport width (the contract's default).
pub const DEFAULT_WIDTH: u32 = 1280;
/// Default viewport height (the contract's default).
pub const DEFAULT_HEIGHT: u32 = 720;
/// Largest width or height the contract allows.
pub const MAX_DIMENSION: u32 = 2560;
/// Smallest width or height pagecast accepts (Chromium's window cannot be smaller).
pub(super) const MIN_DIMENSION: u32 = 16;
/// Default output frame rate.
pub const DEFAULT_FPS: u32 = 30;
/// Default frame rate of a snapshot-only task (`Muxer` `none`): pictures are taken at whole
/// seconds, which five frames a second hit exactly, at about three quarters of the cost of 30
/// (BENCHMARKS.md, "Snapshots").
pub const SNAPSHOT_ONLY_FPS: u32 = 5;
/// Highest output frame rate (Chromium paints at most 60 times a second).
pub const MAX_FPS: u32 = 60;
/// Default JPEG quality of screencast frames: at 80 the JPEG, not x264, was the largest loss of
/// picture quality, and 90 cost no measurable CPU (BENCHMARKS.md, "JPEG quality").
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// How frames are captured.
#[derive(Debug, Clone, Copy)]
pub struct CaptureSettings {
    /// JPEG quality of screencast frames ([`DEFAULT_JPEG_QUALITY`] by default).
    pub(crate) jpeg_quality: u8,
    /// Ask Chromium for every n-th painted frame.
    pub(crate) every_nth_frame: u32,
    /// How long a slot waits for late frames before it is decided. Page controls (pauseRecord,
    /// stopRecord) that reach pagecast later than this after the page called them cut the
    /// recording where it already is, so this also bounds how late a control may arrive on a
    /// loaded machine.
    pub(crate) latency: Duration,
    /// A page whose main thread does not answer for this long is hung: its renderer is
    /// restarted and the page reopened. `None` turns the watchdog off.
    pub(crate) hang_timeout: Option<Duration>,
    /// Where frames come from.
    pub(crate) backend: super::CaptureBackend,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            jpeg_quality: DEFAULT_JPEG_QUALITY,
            every_nth_frame: 1,
            latency: Duration::from_millis(500),
            hang_timeout: Some(Duration::from_secs(10)),
            backend: super::CaptureBackend::default(),
        }
    }
}

/// Everything one recording needs.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The page.
    pub url: String,
    /// Viewport and video width.
    pub width: u32,
    /// Viewport and video height.
    pub height: u32,
    /// Output frames per second.
    pub fps: u32,
    /// Stop after this much recorded time (pauses excluded).
    pub max_duration: Option<Duration>,
    /// Stop once this much wall-clock time has passed since recording began (pauses included).
    /// Measured on the recording's own clock, so a busy caller cannot make the file longer.
    pub wall_limit: Option<Duration>,
    /// Wait for the page to call `window.startRecord()`.
    pub manual_start: bool,
    /// How long a ManualStart page may take to call `window.startRecord()` once it has loaded.
    pub start_timeout: Duration,
    /// The instant (Unix seconds) the recording ends at, whatever it is doing: a ManualStart
    /// page still waiting fails with `StartTimeout` there, a recording stops there as at
    /// `wall_limit`. The service sets it for ManualStart tasks: MaxDurationLimit counted from
    /// Start, as web-record counted it. `None`: no such instant.
    pub ends_at: Option<f64>,
    /// Begin paused (a Pause was given before recording began); a Resume before it begins, or
    /// after, continues as usual.
    pub start_paused: bool,
    /// How long the page may take to load.
    pub navigation_timeout: Duration,
    /// Browser settings (binary, fonts, environment).
    pub browser: BrowserSettings,
    /// Capture settings.
    pub capture: CaptureSettings,
    /// Encoder settings.
    pub encoder: EncoderSettings,
    /// Record the page's sound through PulseAudio (None: no sound track).
    pub audio: Option<crate::audio::AudioSettings>,
    /// Which destinations the page may end up on after redirects.
    pub url_policy: crate::url_guard::UrlPolicy,
    /// Send all of the browser's traffic through an egress proxy that applies `url_policy` to
    /// every request (redirects, subresources, WebSockets), not only to `url`.
    pub guard_egress: bool,
    /// The recording's private work directory (segments, browser profile). The caller owns it.
    pub work_dir: PathBuf,
    /// Live pushes fed the same output frames as the encoder (`Output.Live`).
    pub live: Option<crate::media::live::LiveFeed>,
    /// Snapshots taken from the same output frames (`Output.Snapshots`).
    pub snapshots: Option<crate::media::snapshot::SnapshotFeed>,
}

/// Applies the contract's rule for a width or height: 0 means the default, otherwise
/// `MIN_DIMENSION..=MAX_DIMENSION`.
pub fn dimension(value: u32, default: u32, name: &str) -> Result<u32, String> {
    match value {
        0 => Ok(default),
        v if v > MAX_DIMENSION => Err(format!("{name} must be at most {MAX_DIMENSION} (got {v})")),
        v if v < MIN_DIMENSION => Err(format!(
            "{name} must be 0 (default) or at least {MIN_DIMENSION} (got {v})"
        )),
        v => Ok(v),
    }
}

/// Validates a frame rate.
pub fn frame_rate(value: u32) -> Result<u32, String> {
    match value {
        0 => Ok(DEFAULT_FPS),
        v if v > MAX_FPS => Err(format!("fps must be between 1 and {MAX_FPS} (got {v})")),
        v => Ok(v),
    }
}

/// Validates a page URL: absolute http(s) with a host.
pub fn page_url(raw: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err(format!("{raw:?} has no host")),
        other => Err(format!(
            "only http and https pages can be recorded, not {other}:"
        )),
    }
}

/// The wall-clock limit of a recording that began at `origin` (Unix seconds): `wall_limit`,
/// shortened to end by `ends_at` (never below zero).
pub(crate) fn wall_limit_from(
    wall_limit: Option<Duration>,
    ends_at: Option<f64>,
    origin: f64,
) -> Option<f64> {
    let until_end = ends_at.map(|at| (at - origin).max(0.0));
    match (wall_limit.map(|l| l.as_secs_f64()), until_end) {
        (Some(l), Some(e)) => Some(l.min(e)),
        (l, e) => l.or(e),
    }
}

/// How long a ManualStart page may still take to call `window.startRecord()`, once it has loaded
/// at `now` (Unix seconds): `start_timeout`, cut short by `ends_at`.
pub(crate) fn start_wait_from(start_timeout: Duration, ends_at: Option<f64>, now: f64) -> Duration {
    match ends_at {
        Some(at) => start_timeout.min(Duration::from_secs_f64((at - now).max(0.0))),
        None => start_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_follow_the_contract() {
        assert_eq!(dimension(0, 1280, "Width"), Ok(1280));
        assert_eq!(dimension(2560, 1280, "Width"), Ok(2560));
        assert_eq!(dimension(1279, 1280, "Width"), Ok(1279));
        assert!(
            dimension(2561, 1280, "Width")
                .unwrap_err()
                .contains("at most 2560")
        );
        assert!(dimension(3, 1280, "Height").is_err());
    }

    #[test]
    fn frame_rates() {
        assert_eq!(frame_rate(0), Ok(30));
        assert_eq!(frame_rate(25), Ok(25));
        assert!(frame_rate(61).is_err());
    }

    #[test]
    fn urls() {
        assert!(page_url("https://example.org/x?y=1").is_ok());
        assert!(page_url("http://127.0.0.1:8080/").is_ok());
        assert!(
            page_url("file:///etc/passwd")
                .unwrap_err()
                .contains("only http and https")
        );
        assert!(page_url("javascript:alert(1)").is_err());
        assert!(page_url("not a url").is_err());
        assert!(page_url("").is_err());
    }

    #[test]
    fn an_end_instant_shortens_the_wait_and_the_recording() {
        let minute = Duration::from_secs(60);
        // Without one: the limits as given.
        assert_eq!(wall_limit_from(Some(minute), None, 1_000.0), Some(60.0));
        assert_eq!(wall_limit_from(None, None, 1_000.0), None);
        assert_eq!(start_wait_from(minute, None, 1_000.0), minute);
        // A ManualStart page that began recording 8 s before the end records those 8 s.
        assert_eq!(
            wall_limit_from(Some(minute), Some(1_008.0), 1_000.0),
            Some(8.0)
        );
        assert_eq!(wall_limit_from(None, Some(1_008.0), 1_000.0), Some(8.0));
        // The shorter of the two wins; past the end, nothing is left.
        assert_eq!(
            wall_limit_from(Some(minute), Some(2_000.0), 1_000.0),
            Some(60.0)
        );
        assert_eq!(
            wall_limit_from(Some(minute), Some(990.0), 1_000.0),
            Some(0.0)
        );
        // The wait of a page loaded 3 s before the end, however long StartTimeout is.
        assert_eq!(
            start_wait_from(Duration::from_secs(86_400), Some(1_003.0), 1_000.0),
            Duration::from_secs(3)
        );
        assert_eq!(
            start_wait_from(Duration::from_secs(2), Some(1_003.0), 1_000.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            start_wait_from(minute, Some(900.0), 1_000.0),
            Duration::ZERO
        );
    }
}
