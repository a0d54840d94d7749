//! Validation of the Start action's `Data` into a [`StartSpec`] (what the worker needs) and the
//! task's [`TaskSecrets`] (kept apart, never echoed).
//!
//! Rules beyond the contract's table, all documented in `api-spec/openapi.yaml`:
//! - Field names are case-sensitive; unknown fields are ignored. `Output.Vod` (the source
//!   product's VOD delivery) is refused with `UnsupportedOutput` rather than ignored: the client
//!   would otherwise wait for a video that never reaches VOD.
//! - `null` and, for optional string fields, `""` count as absent (the source product treats
//!   falsy values as unset).
//! - Read leniently, as the source product's code does: integers may be JSON numbers with a
//!   zero fraction (`1280.0`) or strings holding one (`"3600"`); booleans may be `1`/`0` or
//!   `"true"`/`"false"`. Anything else (`"abc"`, `"1"` for a boolean, `[]`) is refused.
//! - Width/Height in 1..15 are rejected: Chromium's window cannot be that small.
//! - `Output.Video.*` and `Data.Video.*` are both accepted; if both set a field, they must agree.
//! - `AuthUrl` is kept only together with `EncryptKey`.
//! - `TargetDir`/`TargetName` are relative object names: no `.`/`..`/empty segments, no
//!   backslashes or control characters; one leading `/` of `TargetDir` is dropped (as the source
//!   product does), and one trailing `/`.
//! - Error messages quote client values shortened, and never quote `EncryptKey`.

use std::path::Path;

use serde_json::Value;

use super::error::{ApiError, echo};
use crate::config::WorkerConfig;
use crate::error::ErrorCode;
use crate::recording::CaptureBackend;
use crate::recording::{
    DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_DIMENSION, MAX_FPS, SNAPSHOT_ONLY_FPS, dimension,
    frame_rate, page_url,
};
use crate::storage::StorageConfig;
use crate::task::{Muxer, OutputTarget, StartSpec, StorageType, TaskSecrets};

mod live;
mod output;
mod reader;
mod snapshots;
#[cfg(test)]
mod tests;
mod video;

pub(crate) use live::check_live_egress;
use reader::Obj;
use video::VideoFields;

/// Default `MaxDurationLimit` in seconds (10 hours, as in the source product's code).
pub const DEFAULT_MAX_DURATION_SECS: u32 = 36_000;
/// Largest `MaxDurationLimit` in seconds (10 hours).
pub const MAX_MAX_DURATION_SECS: u32 = 36_000;
/// Default `StartTimeout` in seconds: 0, no deadline of its own (a ManualStart page may take
/// until `MaxDurationLimit`, as in the source product).
pub const DEFAULT_START_TIMEOUT_SECS: u32 = 0;
/// Largest `StartTimeout` in seconds (one day).
pub const MAX_START_TIMEOUT_SECS: u32 = 86_400;
/// Length of an AES-128 key (the first bytes of `EncryptKey`).
pub(crate) const ENCRYPT_KEY_BYTES: usize = 16;
/// Length of `EncryptKeyHex` and `EncryptIv` in hexadecimal characters (16 bytes).
pub(crate) const ENCRYPT_KEY_HEX_LEN: usize = 32;

/// Every field path (relative to `Data`) that [`parse_start`] reads. The API spec must document
/// each one (checked by `tests/openapi_spec.rs`).
pub const START_FIELDS: &[&str] = &[
    "RecordURL",
    "ManualStart",
    "Width",
    "Height",
    "CallbackURL",
    "MaxDurationLimit",
    "StorageType",
    "Output",
    "Output.Cos",
    "Output.Cos.Bucket",
    "Output.Cos.Region",
    "Output.Cos.TargetDir",
    "Output.Cos.TargetName",
    "Output.Cos.Domain",
    "Output.S3",
    "Output.S3.Bucket",
    "Output.S3.Region",
    "Output.S3.Endpoint",
    "Output.S3.TargetDir",
    "Output.S3.TargetName",
    "Output.S3.Domain",
    "Output.Vod",
    "Output.Live",
    "Output.Snapshots",
    "Output.Snapshots.Interval",
    "Output.Snapshots.Format",
    "Output.Snapshots.Width",
    "Output.Snapshots.CallbackURL",
    "Output.Video",
    "Output.Video.Muxer",
    "Output.Video.EncryptKey",
    "Output.Video.EncryptKeyHex",
    "Output.Video.EncryptIv",
    "Output.Video.AuthUrl",
    "Output.Video.GenerateKey",
    "Video",
    "Video.Muxer",
    "Video.EncryptKey",
    "Video.EncryptKeyHex",
    "Video.EncryptIv",
    "Video.AuthUrl",
    "Video.GenerateKey",
    "Fps",
    "StartTimeout",
    "UserContext",
    "Audio",
    "Capture",
    "Headers",
    "Headers.UserAgent",
];

/// Fields of the source product that are accepted and ignored (documented as such in the spec).
pub const IGNORED_START_FIELDS: &[&str] = &[];

/// What Start accepts: the size limits of its strings, and where a task's result may go.
#[derive(Debug, Clone)]
pub struct StartLimits {
    /// Longest URL (RecordURL, CallbackURL, AuthUrl, Domain, Endpoint), in characters.
    pub max_url_len: usize,
    /// Longest other string (Bucket, Region, TargetDir, TargetName), in characters.
    pub(crate) max_string_len: usize,
    /// Longest `UserContext`, in characters.
    pub max_context_len: usize,
    /// The server's storage settings: the endpoints and buckets a task may name, and whether a
    /// result goes to object storage.
    pub storage: StorageConfig,
    /// Bytes of the output directory's absolute path (results of local delivery are below it).
    pub(crate) output_dir_bytes: usize,
    /// Bytes of the absolute path of a task's staging directory for object storage.
    pub(crate) staging_dir_bytes: usize,
}

impl Default for StartLimits {
    fn default() -> Self {
        Self {
            max_url_len: 2048,
            max_string_len: 1024,
            max_context_len: 4096,
            storage: StorageConfig::default(),
            output_dir_bytes: absolute_len(Path::new(DEFAULT_OUTPUT_DIR)),
            staging_dir_bytes: staging_len(&crate::workdir::default_root()),
        }
    }
}

impl StartLimits {
    /// The default string limits, with the storage settings and directories of the server's
    /// workers (this server's own settings: other workers are expected to share them).
    pub fn for_server(worker: &WorkerConfig) -> Self {
        Self {
            storage: worker.storage.clone(),
            output_dir_bytes: absolute_len(&worker.output_dir),
            staging_dir_bytes: staging_len(&worker.work_root()),
            ..Self::default()
        }
    }
}

/// `PAGECAST_OUTPUT_DIR`'s default.
const DEFAULT_OUTPUT_DIR: &str = "pagecast-output";

fn absolute_len(dir: &Path) -> usize {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .as_os_str()
        .len()
}

/// Bytes of a task's staging directory below `work_root` (`<work root>/<TaskID>.deliver`).
fn staging_len(work_root: &Path) -> usize {
    absolute_len(work_root) + "/".len() + 36 + ".deliver".len()
}

/// Validates Start's `Data` (a JSON object) into the task's spec and secrets.
pub fn parse_start(
    data: &Value,
    limits: &StartLimits,
) -> Result<(StartSpec, TaskSecrets), ApiError> {
    let data = match data {
        Value::Null => return Err(ApiError::missing("Data")),
        Value::Object(map) => Obj {
            map,
            path: "Data".to_owned(),
        },
        other => {
            return Err(ApiError::invalid(
                "Data",
                format!("must be an object, got {}", echo(other)),
            ));
        }
    };
    let p = Parser { limits };

    let record_url = p.record_url(&data)?;
    let manual_start = data.bool("ManualStart")?.unwrap_or(false);
    let width = p.dimension(&data, "Width", DEFAULT_WIDTH)?;
    let height = p.dimension(&data, "Height", DEFAULT_HEIGHT)?;
    let callback_url = match data.string("CallbackURL", limits.max_url_len)? {
        None => None,
        Some(raw) => Some(http_url(&data.field("CallbackURL"), raw)?),
    };
    let max_duration_secs = match data.int(
        "MaxDurationLimit",
        0,
        MAX_MAX_DURATION_SECS as u64,
        " (0 means the default, 36000)",
    )? {
        None | Some(0) => DEFAULT_MAX_DURATION_SECS,
        Some(v) => v as u32,
    };
    let storage_type = match data.string("StorageType", limits.max_string_len)? {
        None => StorageType::default(),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "local" | "cfs" => StorageType::Local,
            "s3" | "cos" => StorageType::S3,
            _ => {
                return Err(ApiError::invalid(
                    &data.field("StorageType"),
                    format!(
                        "must be one of \"local\", \"cfs\", \"s3\", \"cos\", got {}",
                        echo(&Value::from(raw))
                    ),
                ));
            }
        },
    };

    let output_obj = data.object("Output")?;
    let mut output = match &output_obj {
        None => OutputTarget::default(),
        Some(out) => p.output_target(out)?,
    };
    output.location = limits.storage.location_of(&output);
    let live_urls = match &output_obj {
        Some(out) => {
            let (targets, urls) = p.live(out)?;
            output.live = targets;
            urls
        }
        None => Vec::new(),
    };
    if let Some(out) = &output_obj {
        output.snapshots = p.snapshots(out)?;
    }

    let from_output = match &output_obj {
        Some(out) => match out.object("Video")? {
            Some(v) => p.video(&v)?,
            None => VideoFields::default(),
        },
        None => VideoFields::default(),
    };
    let from_data = match data.object("Video")? {
        Some(v) => p.video(&v)?,
        None => VideoFields::default(),
    };
    let video = from_output.merge(from_data)?;
    let muxer = video.muxer.as_ref().map(|(m, _)| *m).unwrap_or_default();
    if muxer == Muxer::None && output.snapshots.is_none() {
        return Err(ApiError::new(
            ErrorCode::MissingParam,
            "Data.Output.Snapshots is required with Muxer \"none\" (a task that records no \
             video file must take snapshots)",
        ));
    }
    p.check_names(&output, muxer)?;
    let generate = match &video.generate_key {
        Some((true, path)) => Some(path.clone()),
        _ => None,
    };
    if let (Some(path), Some((_, key_path))) = (&generate, &video.encrypt_key) {
        return Err(ApiError::invalid(
            path,
            format!("and {key_path} cannot both be set"),
        ));
    }
    let key_source = match (&video.encrypt_key, &generate) {
        (Some((_, path)), _) => Some(path.clone()),
        (None, Some(path)) => Some(path.clone()),
        (None, None) => None,
    };
    let (encrypt_key, auth_url) = match key_source {
        None => (None, None),
        Some(key_path) => {
            if muxer != Muxer::Hls {
                return Err(ApiError::invalid(
                    &key_path,
                    "requires Muxer \"hls\" (only HLS segments are encrypted)",
                ));
            }
            let Some((auth_url, _)) = video.auth_url else {
                let parent = key_path.rsplit_once('.').map_or("", |(p, _)| p);
                return Err(ApiError::invalid(
                    &format!("{parent}.AuthUrl"),
                    format!(
                        "is required with {key_path} (it is the key URI players fetch the key from)"
                    ),
                ));
            };
            let key = match video.encrypt_key {
                Some((key, _)) => key,
                None => {
                    if callback_url.is_none() {
                        return Err(ApiError::invalid(
                            &key_path,
                            "requires a CallbackURL (a generated key is handed only to the \
                             callback receiver)",
                        ));
                    }
                    generated_key()?
                }
            };
            (Some(key), Some(auth_url))
        }
    };

    let fps = match data.int("Fps", 0, MAX_FPS as u64, " (0 means the default, 30)")? {
        // A snapshot-only task keeps pictures at whole seconds: fewer frames do.
        None if muxer == Muxer::None => Ok(SNAPSHOT_ONLY_FPS),
        None => frame_rate(0),
        Some(v) => frame_rate(v as u32),
    }
    .map_err(|msg| ApiError::invalid(&data.field("Fps"), msg))?;
    let start_timeout_secs = match data.int(
        "StartTimeout",
        0,
        MAX_START_TIMEOUT_SECS as u64,
        " (0 means none: the page may take until MaxDurationLimit)",
    )? {
        None => DEFAULT_START_TIMEOUT_SECS,
        Some(v) => v as u32,
    };
    let user_context = data
        .string("UserContext", limits.max_context_len)?
        .map(str::to_owned);
    let audio = data.bool("Audio")?.unwrap_or(true);
    let capture = match data.string("Capture", limits.max_string_len)? {
        None => None,
        Some("") => None,
        Some(raw) => Some(CaptureBackend::parse(raw).ok_or_else(|| {
            ApiError::invalid(
                &data.field("Capture"),
                format!(
                    "must be \"screencast\" or \"x11\", got {}",
                    echo(&Value::from(raw))
                ),
            )
        })?),
    };

    let spec = StartSpec {
        record_url,
        manual_start,
        width,
        height,
        fps,
        max_duration_secs,
        callback_url,
        storage_type,
        muxer,
        auth_url,
        output,
        start_timeout_secs,
        user_context,
        audio,
        capture,
        user_agent: p.user_agent(&data)?,
    };
    Ok((
        spec,
        TaskSecrets {
            // The IV matters only with a key (like AuthUrl).
            encrypt_iv: encrypt_key.as_ref().and(video.encrypt_iv.map(|(iv, _)| iv)),
            encrypt_key,
            key_generated: generate.is_some(),
            live_urls,
        },
    ))
}

/// A fresh AES-128 key from the operating system's random source, as 32 hex characters.
fn generated_key() -> Result<String, ApiError> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("no random source for the key: {e}"),
        )
    })?;
    Ok(hex::encode(key))
}

/// Reads the fields of Start's `Data` under the configured limits.
struct Parser<'l> {
    limits: &'l StartLimits,
}

impl Parser<'_> {
    fn record_url(&self, data: &Obj<'_>) -> Result<String, ApiError> {
        let path = data.field("RecordURL");
        let Some(raw) = data.string("RecordURL", self.limits.max_url_len)? else {
            // Field names are case-sensitive; say so when the client wrote another spelling.
            if let Some(other) = data
                .map
                .keys()
                .find(|k| k.as_str() != "RecordURL" && k.eq_ignore_ascii_case("RecordURL"))
            {
                return Err(ApiError::new(
                    ErrorCode::MissingParam,
                    format!(
                        "{path} is required (field names are case-sensitive; got {})",
                        echo(&Value::from(other.as_str()))
                    ),
                ));
            }
            return Err(ApiError::missing(&path));
        };
        let url = http_url(&path, raw)?;
        if url.chars().count() > self.limits.max_url_len {
            return Err(ApiError::invalid(
                &path,
                format!(
                    "must be at most {} characters long once percent-encoded (got {})",
                    self.limits.max_url_len,
                    url.len()
                ),
            ));
        }
        Ok(url)
    }

    /// `Headers.UserAgent`: printable ASCII, as an HTTP header value must be.
    fn user_agent(&self, data: &Obj<'_>) -> Result<Option<String>, ApiError> {
        let Some(headers) = data.object("Headers")? else {
            return Ok(None);
        };
        let Some(ua) = headers.string("UserAgent", self.limits.max_string_len)? else {
            return Ok(None);
        };
        if !ua.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ApiError::invalid(
                &headers.field("UserAgent"),
                "must be printable ASCII (it is sent as the User-Agent header)",
            ));
        }
        Ok(Some(ua.trim().to_owned()).filter(|ua| !ua.is_empty()))
    }

    fn dimension(&self, data: &Obj<'_>, name: &str, default: u32) -> Result<u32, ApiError> {
        let path = data.field(name);
        let value = data
            .int(
                name,
                0,
                MAX_DIMENSION as u64,
                &format!(" (0 means the default, {default})"),
            )?
            .unwrap_or(0);
        dimension(value as u32, default, &path)
            .map_err(|msg| ApiError::new(ErrorCode::InvalidParam, msg))
    }
}

/// An absolute http(s) URL with a host, normalised.
fn http_url(path: &str, raw: &str) -> Result<String, ApiError> {
    page_url(raw)
        .map(|u| u.to_string())
        .map_err(|msg| ApiError::invalid(path, format!("must be an http or https URL: {msg}")))
}
