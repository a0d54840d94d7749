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
    /// File name without extension; default: the stop time in milliseconds.
    pub target_name: Option<String>,
    /// Host used in result URLs instead of the storage endpoint.
    pub domain: Option<String>,
    /// Given as `Output.Cos` (Tencent COS): without a configured endpoint, the region's COS
    /// endpoint is used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cos: bool,
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
    /// ManualStart deadline in seconds (extension `StartTimeout`, default 300).
    pub start_timeout_secs: u32,
    /// Opaque client data echoed in Describe and the callback (extension `UserContext`).
    pub user_context: Option<String>,
}

/// Secrets of a task, stored apart from the spec and never returned by Describe or logged.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskSecrets {
    /// HLS AES-128 key, 32 hex characters.
    pub encrypt_key: Option<String>,
}

impl std::fmt::Debug for TaskSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSecrets")
            .field(
                "encrypt_key",
                &self.encrypt_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One delivered file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Video {
    /// Object name (path relative to the output root).
    pub filename: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Where to fetch it.
    #[serde(rename = "FileURL")]
    pub file_url: String,
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
    /// Encoder restarts.
    #[serde(default)]
    pub encoder_restarts: u32,
    /// Recorded seconds lost to encoder deaths.
    #[serde(default)]
    pub lost_seconds: f64,
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
