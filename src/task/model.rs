//! The task record and its parts, as stored in Redis and rendered by Describe.

use serde::{Deserialize, Serialize};

use super::status::Status;

/// Where intermediate media is kept while recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// A work directory on the recording worker's machine (`cfs` is accepted as an alias).
    #[default]
    Local,
    /// Object storage (`cos` is accepted as an alias).
    S3,
}

/// The container of the deliverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Muxer {
    /// One MP4 file.
    #[default]
    Mp4,
    /// An HLS playlist and its segments.
    Hls,
}

/// Where the result goes (`Output.Cos` / `Output.S3`); unset fields fall back to server config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputTarget {
    /// Bucket name.
    pub bucket: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// S3 endpoint (Output.S3 only).
    pub endpoint: Option<String>,
    /// Directory (key prefix); default: the TaskID.
    pub target_dir: Option<String>,
    /// File name without extension; default: `playlist` for HLS, the stop time in milliseconds
    /// for MP4.
    pub target_name: Option<String>,
    /// Host used in result URLs instead of the storage endpoint.
    pub domain: Option<String>,
    /// Given as `Output.Cos` (Tencent COS): without a configured endpoint, the region's COS
    /// endpoint is used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cos: bool,
    /// The object storage the result goes to, as resolved at Start (`s3 <endpoint> <bucket>`);
    /// `None`: the local output directory. Keys the reservation of the result's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `Output.Live`: where the recording is pushed live while it records. The URLs here are
    /// redacted (for Describe); the full ones are in [`TaskSecrets::live_urls`], in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveSpec>,
    /// `Output.Snapshots`: pictures taken from the recording at an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotSpec>,
}

/// `Output.Snapshots` as the task keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    /// Recorded time between two pictures, milliseconds (the first is at 0).
    pub interval_ms: u64,
    /// `jpg` or `png`.
    pub format: SnapshotFormat,
    /// Width of the pictures (the height keeps the aspect); `None`: the recording's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// `Output.Snapshots.CallbackURL`: told of each picture as it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// The image format of snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotFormat {
    /// JPEG.
    Jpg,
    /// PNG.
    Png,
}

impl SnapshotFormat {
    /// The file extension (and the name in `Output.Snapshots.Format`).
    pub fn ext(self) -> &'static str {
        match self {
            SnapshotFormat::Jpg => "jpg",
            SnapshotFormat::Png => "png",
        }
    }
}

/// One stored snapshot, as `Result.Snapshots[]` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotEntry {
    /// The object's key below the output root (`<dir>/snapshots/<ms>.<ext>`).
    pub filename: String,
    /// Bytes.
    pub file_size: u64,
    /// Where to fetch it (local results: a signed URL, refreshed by Describe).
    #[serde(rename = "FileURL")]
    pub file_url: String,
    /// Recorded time of the picture, milliseconds since the recording's start (pauses excluded).
    pub time: u64,
}

/// One `Output.Live` target as the task keeps it (its full URL is a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSpec {
    /// The URL with its stream key and query values hidden.
    pub url: String,
    /// Video bit rate, kbit/s.
    pub video_kbps: u32,
    /// Audio bit rate, kbit/s.
    pub audio_kbps: u32,
}

/// A validated Start request: everything a worker needs, except secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSpec {
    /// The page (http or https).
    pub record_url: String,
    /// Wait for `window.startRecord()`.
    pub manual_start: bool,
    /// Viewport/video width (defaults applied).
    pub width: u32,
    /// Viewport/video height (defaults applied).
    pub height: u32,
    /// Output frame rate (extension `Fps`, default 30).
    pub fps: u32,
    /// Wall-clock limit from the start of recording, pauses included, in seconds.
    pub max_duration_secs: u32,
    /// Where the result is POSTed.
    pub callback_url: Option<String>,
    /// Where intermediate media is kept.
    pub storage_type: StorageType,
    /// MP4 or HLS.
    pub muxer: Muxer,
    /// Key URI written into the HLS playlist (with an encryption key).
    pub auth_url: Option<String>,
    /// Where the result goes.
    pub output: OutputTarget,
    /// ManualStart deadline in seconds after the page loaded (extension `StartTimeout`); 0: none,
    /// the page may take until `MaxDurationLimit` after Start (see [`super::prestart`]).
    pub start_timeout_secs: u32,
    /// Opaque client data echoed in Describe and the callback (extension `UserContext`).
    pub user_context: Option<String>,
    /// Record the page's sound (extension `Audio`, default true). Tasks stored before the field
    /// existed read as true.
    #[serde(default = "default_audio")]
    pub audio: bool,
    /// How frames are captured (extension `Capture`); `None`: the worker's configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::recording::CaptureBackend>,
    /// The page's user agent (`Headers.UserAgent`); `None`: Chromium's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

fn default_audio() -> bool {
    true
}

/// Secrets of a task, stored apart from the spec and never returned by Describe or logged.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskSecrets {
    /// HLS AES-128 key, 32 hex characters (from `EncryptKey`'s first 16 bytes or
    /// `EncryptKeyHex`).
    pub encrypt_key: Option<String>,
    /// One IV for every segment (`EncryptIv`), 32 hex characters; `None`: each segment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_iv: Option<String>,
    /// The key was generated by pagecast (extension `GenerateKey`): it is handed to the callback
    /// receiver, then dropped from the store.
    #[serde(default)]
    pub key_generated: bool,
    /// `Output.Live` URLs in full (stream keys, SRT passphrases), in the order of
    /// [`OutputTarget::live`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_urls: Vec<String>,
}

impl std::fmt::Debug for TaskSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSecrets")
            .field(
                "encrypt_key",
                &self.encrypt_key.as_ref().map(|_| "<redacted>"),
            )
            .field("encrypt_iv", &self.encrypt_iv)
            .field("key_generated", &self.key_generated)
            .field(
                "live_urls",
                &self
                    .live_urls
                    .iter()
                    .map(|u| crate::media::live::target::redacted_url(u))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One file of the result a client fetches: the MP4, or the HLS playlist (its segments lie
/// beside it and are not listed). Describe shows `Filename` as the base name and the whole
/// object name as the extension `Key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Video {
    /// Object name: the path below the output root (`<TargetDir>/<name>.<ext>`).
    pub filename: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Where to fetch it.
    #[serde(rename = "FileURL")]
    pub file_url: String,
    /// Seconds of media in it (ffprobe for an MP4, the playlist's segment durations for HLS);
    /// `None` for results stored before it was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_duration: Option<f64>,
    /// HLS: how many segments the playlist names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_count: Option<u64>,
}

/// The outcome of a task: files, or the error that ended it (a failed task may still have files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TaskResult {
    /// Stable error code when some stage failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Delivered files.
    #[serde(default)]
    pub videos: Vec<Video>,
}

/// pagecast's extra figures about a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStats {
    /// Recorded time excluding pauses, seconds.
    pub recorded_duration: f64,
    /// Frames received from the browser.
    pub frames_captured: u64,
    /// Output frames.
    pub frames_written: u64,
    /// Output frames that repeat the previous one.
    pub frames_duplicated: u64,
    /// Frames never shown (faster than fps, or late).
    pub frames_dropped: u64,
    /// Number of pauses.
    pub pauses: u32,
    /// Number of page reloads.
    pub refreshes: u32,
    /// Callback delivery attempts.
    pub callback_attempts: u32,
    /// Renderer crashes survived.
    #[serde(default)]
    pub page_crashes: u32,
    /// Page hangs survived (main thread unresponsive; the page was reopened).
    #[serde(default)]
    pub page_hangs: u32,
    /// Times the whole browser died and a new one took over the page.
    #[serde(default)]
    pub browser_restarts: u32,
    /// Encoder restarts.
    #[serde(default)]
    pub encoder_restarts: u32,
    /// Recorded seconds lost to encoder deaths.
    #[serde(default)]
    pub lost_seconds: f64,
    /// Stretches missing from the video because the worker recording it stopped (killed,
    /// machine lost) and another one took the task over.
    #[serde(default)]
    pub gaps: Vec<RecordingGap>,
    /// Times the recording was handed to another worker at a graceful shutdown (these are not
    /// counted in `Restarts`, and have no limit).
    #[serde(default)]
    pub handovers: u32,
    /// Why part of the recording cannot be in the result (its earlier media was on a machine
    /// that was lost); the task then ends with `RecordIncomplete`. Internal: not in Describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_media: Option<String>,
    /// Live push targets and their state (`Stats.Live`); empty without `Output.Live`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<crate::media::live::LiveTargetStats>,
}

/// A stretch of the page's life that is not in the video: the worker recording the task
/// stopped, and another one took over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RecordingGap {
    /// Unix time (seconds, millisecond precision) of the end of the last media kept.
    pub time: f64,
    /// Seconds of the page's (unpaused) life that are missing from the video.
    pub seconds: f64,
}

/// Where a task's callback delivery stands (shown by Describe as `Callback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CallbackDelivery {
    /// `pending` (not delivered yet, more attempts to come), `delivered` or `failed` (the retry
    /// budget is spent).
    pub state: CallbackState,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix milliseconds of the first attempt (the retry budget counts from it).
    #[serde(default)]
    pub first_attempt_ms: i64,
    /// Unix milliseconds of the next attempt, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// Identifies this delivery across retries (`X-Pagecast-Event-Id`), for deduplication.
    #[serde(default, rename = "EventID")]
    pub event_id: String,
}

/// Callback delivery states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// More attempts to come.
    #[default]
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// The retry budget is spent.
    Failed,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The TaskID (a UUID).
    pub id: String,
    /// Contract status.
    pub status: Status,
    /// Unix seconds.
    pub create_time: i64,
    /// When recording began.
    pub start_time: Option<i64>,
    /// When Stop was requested (or the limit hit).
    pub cancel_time: Option<i64>,
    /// When recording actually ended.
    pub stop_time: Option<i64>,
    /// The same instant in Unix milliseconds (its seconds are `stop_time`): the name of an MP4
    /// without `TargetName`.
    pub stop_time_ms: Option<i64>,
    /// When the task reached `finished`.
    pub finish_time: Option<i64>,
    /// The request.
    pub spec: StartSpec,
    /// The outcome, once known.
    pub result: Option<TaskResult>,
    /// Capture statistics, once known.
    pub stats: Option<TaskStats>,
    /// The worker holding the task's lease, if any.
    pub owner: Option<String>,
    /// Fencing token of the current lease (increments on every claim).
    pub fence: u64,
    /// The node whose work directory holds the task's local media.
    pub node: Option<String>,
    /// Number of times a worker took the task over after another stopped.
    pub restarts: u32,
    /// Callback delivery, once attempted.
    pub callback: Option<CallbackDelivery>,
}
