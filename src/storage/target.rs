//! A task's own storage settings, as Start gave them: what [`super::StorageConfig`] resolves into
//! a [`super::Destination`]. Stored with the task (its serde form is part of the task record).

use serde::{Deserialize, Serialize};

pub use crate::media::snapshot::SnapshotFormat;

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
    /// redacted (for Describe); the full ones are in the task's secrets (`live_urls`), in this
    /// order.
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
    pub(crate) interval_ms: u64,
    /// `jpg` or `png`.
    pub(crate) format: SnapshotFormat,
    /// Width of the pictures (the height keeps the aspect); `None`: the recording's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) width: Option<u32>,
    /// `Output.Snapshots.CallbackURL`: told of each picture as it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) callback_url: Option<String>,
}

/// One `Output.Live` target as the task keeps it (its full URL is a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSpec {
    /// The URL with its stream key and query values hidden.
    pub(crate) url: String,
    /// Video bit rate, kbit/s, when the push encodes its own stream (`None`: it carries the
    /// recording's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) video_kbps: Option<u32>,
    /// Audio bit rate, kbit/s, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audio_kbps: Option<u32>,
}
