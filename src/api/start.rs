//! Validation of the Start action's `Data` into a [`StartSpec`] (what the worker needs) and the
//! task's [`TaskSecrets`] (kept apart, never echoed).
//!
//! Rules beyond the contract's table, all documented in `api-spec/openapi.yaml`:
//! - Field names are case-sensitive; unknown fields are ignored (clients of the source product
//!   send `Output.Vod` and others; they are accepted and ignored).
//! - `null` and, for optional string fields, `""` count as absent (the source product treats
//!   falsy values as unset).
//! - Integers may be written as JSON numbers with a zero fraction (`1280.0`); strings are never
//!   taken for numbers or booleans.
//! - Width/Height in 1..15 are rejected: Chromium's window cannot be that small.
//! - `Output.Video.*` and `Data.Video.*` are both accepted; if both set a field, they must agree.
//! - `AuthUrl` is kept only together with `EncryptKey`.
//! - `TargetDir`/`TargetName` are relative object names: no leading `/`, no `.`/`..`/empty
//!   segments, no backslashes or control characters; one trailing `/` of `TargetDir` is dropped.
//! - Error messages quote client values shortened, and never quote `EncryptKey`.

use serde_json::{Map, Value};

use super::error::{ApiError, echo};
use crate::error::ErrorCode;
use crate::recording::CaptureBackend;
use crate::recording::{
    DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_DIMENSION, MAX_FPS, dimension, frame_rate, page_url,
};
use crate::task::{Muxer, OutputTarget, StartSpec, StorageType, TaskSecrets};

/// Default `MaxDurationLimit` in seconds (6 hours).
pub const DEFAULT_MAX_DURATION_SECS: u32 = 21_600;
/// Largest `MaxDurationLimit` in seconds (10 hours).
pub const MAX_MAX_DURATION_SECS: u32 = 36_000;
/// Default `StartTimeout` in seconds.
pub const DEFAULT_START_TIMEOUT_SECS: u32 = 300;
/// Largest `StartTimeout` in seconds (one day).
pub const MAX_START_TIMEOUT_SECS: u32 = 86_400;
/// Length of `EncryptKey` in hexadecimal characters (an AES-128 key).
pub const ENCRYPT_KEY_HEX_LEN: usize = 32;

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
    "Output.Video",
    "Output.Video.Muxer",
    "Output.Video.EncryptKey",
    "Output.Video.AuthUrl",
    "Output.Video.GenerateKey",
    "Video",
    "Video.Muxer",
    "Video.EncryptKey",
    "Video.AuthUrl",
    "Video.GenerateKey",
    "Fps",
    "StartTimeout",
    "UserContext",
    "Audio",
    "Capture",
];

/// Fields of the source product that are accepted and ignored (documented as such in the spec).
pub const IGNORED_START_FIELDS: &[&str] = &["Output.Vod"];

/// Size limits of Start's string fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimits {
    /// Longest URL (RecordURL, CallbackURL, AuthUrl, Domain, Endpoint), in characters.
    pub max_url_len: usize,
    /// Longest other string (Bucket, Region, TargetDir, TargetName), in characters.
    pub max_string_len: usize,
    /// Longest `UserContext`, in characters.
    pub max_context_len: usize,
}

impl Default for StartLimits {
    fn default() -> Self {
        Self {
            max_url_len: 2048,
            max_string_len: 1024,
            max_context_len: 4096,
        }
    }
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
        " (0 means the default, 21600)",
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
    let output = match &output_obj {
        None => OutputTarget::default(),
        Some(out) => p.output_target(out)?,
    };

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
                let parent = key_path
                    .trim_end_matches("EncryptKey")
                    .trim_end_matches("GenerateKey");
                return Err(ApiError::invalid(
                    &format!("{parent}AuthUrl"),
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
        None => frame_rate(0),
        Some(v) => frame_rate(v as u32),
    }
    .map_err(|msg| ApiError::invalid(&data.field("Fps"), msg))?;
    let start_timeout_secs = match data.int(
        "StartTimeout",
        0,
        MAX_START_TIMEOUT_SECS as u64,
        " (0 means the default, 300)",
    )? {
        None | Some(0) => DEFAULT_START_TIMEOUT_SECS,
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
    };
    Ok((
        spec,
        TaskSecrets {
            encrypt_key,
            key_generated: generate.is_some(),
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

/// A JSON object being read, with its path for messages (`Data.Output.Cos`).
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// The path of a field of this object.
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The value of a field; `null` counts as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn object(&self, name: &str) -> Result<Option<Obj<'a>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                path: self.field(name),
            })),
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be an object, got {}", echo(other)),
            )),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be a boolean (true or false), got {}", echo(other)),
            )),
        }
    }

    /// An integer in `min..=max`; `note` is appended to the range in the message.
    fn int(&self, name: &str, min: u64, max: u64, note: &str) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let n = match value {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| {
                    // 1280.0 is the same JSON number as 1280.
                    n.as_f64()
                        .filter(|f| {
                            f.is_finite() && f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64
                        })
                        .map(|f| f as u64)
                })
                .filter(|v| (min..=max).contains(v)),
            _ => None,
        };
        match n {
            Some(v) => Ok(Some(v)),
            None => Err(ApiError::invalid(
                &self.field(name),
                format!(
                    "must be an integer between {min} and {max}{note}, got {}",
                    echo(value)
                ),
            )),
        }
    }

    /// A string of at most `max_chars` characters; `""` counts as absent.
    fn string(&self, name: &str, max_chars: usize) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let len = s.chars().count();
                if len > max_chars {
                    return Err(ApiError::invalid(
                        &self.field(name),
                        format!("must be at most {max_chars} characters long (got {len})"),
                    ));
                }
                Ok(Some(s))
            }
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be a string, got {}", echo(other)),
            )),
        }
    }
}

/// One source of `Video` settings, with the path each value came from.
#[derive(Default)]
struct VideoFields {
    muxer: Option<(Muxer, String)>,
    encrypt_key: Option<(String, String)>,
    auth_url: Option<(String, String)>,
    generate_key: Option<(bool, String)>,
}

impl VideoFields {
    /// `Output.Video` (self) and `Data.Video` (other): either may set a field; both must agree.
    fn merge(self, other: VideoFields) -> Result<VideoFields, ApiError> {
        fn pick<T: PartialEq>(
            a: Option<(T, String)>,
            b: Option<(T, String)>,
        ) -> Result<Option<(T, String)>, ApiError> {
            match (a, b) {
                (Some((x, px)), Some((y, py))) if x != y => Err(ApiError::invalid(
                    &px,
                    format!("and {py} disagree; set only one of them"),
                )),
                (Some(x), _) => Ok(Some(x)),
                (None, y) => Ok(y),
            }
        }
        Ok(VideoFields {
            muxer: pick(self.muxer, other.muxer)?,
            encrypt_key: pick(self.encrypt_key, other.encrypt_key)?,
            auth_url: pick(self.auth_url, other.auth_url)?,
            generate_key: pick(self.generate_key, other.generate_key)?,
        })
    }
}

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

    fn output_target(&self, out: &Obj<'_>) -> Result<OutputTarget, ApiError> {
        let cos = out.object("Cos")?;
        let s3 = out.object("S3")?;
        let (target, is_s3) = match (cos, s3) {
            (None, None) => return Ok(OutputTarget::default()),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    &out.field("Cos"),
                    format!("and {} cannot both be set", out.field("S3")),
                ));
            }
            (Some(cos), None) => (cos, false),
            (None, Some(s3)) => (s3, true),
        };
        let l = self.limits;
        let bucket = target
            .string("Bucket", l.max_string_len)?
            .map(|b| storage_name(&target.field("Bucket"), b))
            .transpose()?;
        let region = target
            .string("Region", l.max_string_len)?
            .map(|r| storage_name(&target.field("Region"), r))
            .transpose()?;
        let endpoint = if is_s3 {
            target
                .string("Endpoint", l.max_url_len)?
                .map(|e| host_or_url(&target.field("Endpoint"), e))
                .transpose()?
        } else {
            None
        };
        let target_dir = target
            .string("TargetDir", l.max_string_len)?
            .map(|d| object_path(&target.field("TargetDir"), d, true))
            .transpose()?;
        let target_name = target
            .string("TargetName", l.max_string_len)?
            .map(|n| object_path(&target.field("TargetName"), n, false))
            .transpose()?;
        let domain = target
            .string("Domain", l.max_url_len)?
            .map(|d| host_or_url(&target.field("Domain"), d))
            .transpose()?;
        Ok(OutputTarget {
            bucket,
            region,
            endpoint,
            target_dir,
            target_name,
            domain,
            cos: !is_s3,
        })
    }

    fn video(&self, video: &Obj<'_>) -> Result<VideoFields, ApiError> {
        let muxer = match video.string("Muxer", self.limits.max_string_len)? {
            None => None,
            Some(raw) => {
                let muxer = match raw.trim().to_ascii_lowercase().as_str() {
                    "mp4" => Muxer::Mp4,
                    "hls" => Muxer::Hls,
                    _ => {
                        return Err(ApiError::invalid(
                            &video.field("Muxer"),
                            format!(
                                "must be \"mp4\" or \"hls\", got {}",
                                echo(&Value::from(raw))
                            ),
                        ));
                    }
                };
                Some((muxer, video.field("Muxer")))
            }
        };
        let encrypt_key = encrypt_key(video)?.map(|k| (k, video.field("EncryptKey")));
        let auth_url = match video.string("AuthUrl", self.limits.max_url_len)? {
            None => None,
            Some(raw) => Some((
                key_uri(&video.field("AuthUrl"), raw)?,
                video.field("AuthUrl"),
            )),
        };
        let generate_key = video
            .bool("GenerateKey")?
            .map(|g| (g, video.field("GenerateKey")));
        Ok(VideoFields {
            muxer,
            encrypt_key,
            auth_url,
            generate_key,
        })
    }
}

/// An absolute http(s) URL with a host, normalised.
fn http_url(path: &str, raw: &str) -> Result<String, ApiError> {
    page_url(raw)
        .map(|u| u.to_string())
        .map_err(|msg| ApiError::invalid(path, format!("must be an http or https URL: {msg}")))
}

/// The HLS key: 32 hex characters, stored lower-case. Its value is never quoted in a message.
fn encrypt_key(video: &Obj<'_>) -> Result<Option<String>, ApiError> {
    let path = video.field("EncryptKey");
    let bad = || {
        ApiError::invalid(
            &path,
            format!(
                "must be a string of {ENCRYPT_KEY_HEX_LEN} hexadecimal characters (an AES-128 key)"
            ),
        )
    };
    match video.get("EncryptKey") {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if s.len() == ENCRYPT_KEY_HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(s.to_ascii_lowercase()))
            } else {
                Err(bad())
            }
        }
        Some(_) => Err(bad()),
    }
}

/// The key URI written into the playlist's `#EXT-X-KEY:...,URI="..."`: an absolute http(s) URL or
/// a reference relative to the playlist. Nothing that could break out of the quoted attribute.
fn key_uri(path: &str, raw: &str) -> Result<String, ApiError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(path, "must not be blank"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(ApiError::invalid(
            path,
            "must be a URL without spaces, quotes or control characters",
        ));
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    path,
                    "must be an http or https URL with a host",
                ));
            }
            Ok(url.to_string())
        }
        Ok(url) => Err(ApiError::invalid(
            path,
            format!(
                "must be an http or https URL (or a relative one), not {}:",
                url.scheme()
            ),
        )),
        // A reference relative to the playlist, e.g. "key.bin" or "/keys/1".
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            if value.contains('\\') {
                return Err(ApiError::invalid(path, "must not contain backslashes"));
            }
            Ok(value.to_owned())
        }
        Err(e) => Err(ApiError::invalid(path, format!("is not a valid URL ({e})"))),
    }
}

/// A bucket or region name: letters, digits, `.`, `-`, `_`.
fn storage_name(path: &str, raw: &str) -> Result<String, ApiError> {
    let value = raw.trim();
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(ApiError::invalid(
            path,
            format!(
                "must contain only letters, digits, \".\", \"-\" and \"_\", got {}",
                echo(&Value::from(raw))
            ),
        ));
    }
    Ok(value.to_owned())
}

/// `Domain` / `Endpoint`: a host name (with optional port) or an http(s) URL without credentials,
/// query or fragment. Stored trimmed, without a trailing `/`.
fn host_or_url(path: &str, raw: &str) -> Result<String, ApiError> {
    let value = raw.trim();
    let what = "must be a host name (e.g. cdn.example.com) or an http or https URL";
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(ApiError::invalid(
            path,
            format!("{what}, got {}", echo(&Value::from(raw))),
        ));
    }
    let url = if value.contains("://") {
        page_url(value).map_err(|msg| ApiError::invalid(path, format!("{what}: {msg}")))?
    } else {
        if value.contains(['/', '?', '#', '@']) {
            return Err(ApiError::invalid(
                path,
                format!("{what}, got {}", echo(&Value::from(raw))),
            ));
        }
        url::Url::parse(&format!("http://{value}"))
            .ok()
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| {
                ApiError::invalid(path, format!("{what}, got {}", echo(&Value::from(raw))))
            })?
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(path, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid(
            path,
            "must not contain a query or fragment",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// `TargetDir` (`allow_dirs`: `/`-separated segments) or `TargetName` (one segment): a relative
/// object name that cannot escape the output root.
fn object_path(path: &str, raw: &str, allow_dirs: bool) -> Result<String, ApiError> {
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            path,
            "must not contain control characters",
        ));
    }
    if raw.contains('\\') {
        return Err(ApiError::invalid(path, "must not contain backslashes"));
    }
    if !allow_dirs && raw.contains('/') {
        return Err(ApiError::invalid(path, "must be a file name without \"/\""));
    }
    if raw.starts_with('/') {
        return Err(ApiError::invalid(
            path,
            "must be a relative path (no leading \"/\"); it is placed under the output root",
        ));
    }
    let value = if allow_dirs {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    for segment in value.split('/') {
        match segment {
            "" => {
                return Err(ApiError::invalid(
                    path,
                    "must not contain empty path segments (\"//\")",
                ));
            }
            "." | ".." => {
                return Err(ApiError::invalid(
                    path,
                    "must not contain \".\" or \"..\" path segments",
                ));
            }
            _ => {}
        }
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(data: Value) -> Result<(StartSpec, TaskSecrets), ApiError> {
        parse_start(&data, &StartLimits::default())
    }

    fn ok(data: Value) -> (StartSpec, TaskSecrets) {
        parse(data.clone()).unwrap_or_else(|e| panic!("{data} rejected: {e}"))
    }

    fn spec(data: Value) -> StartSpec {
        ok(data).0
    }

    fn err(data: Value) -> ApiError {
        match parse(data.clone()) {
            Ok((spec, _)) => panic!("{data} accepted: {spec:?}"),
            Err(e) => e,
        }
    }

    fn invalid(data: Value, field: &str) -> String {
        let e = err(data);
        assert_eq!(e.code, ErrorCode::InvalidParam, "{e}");
        assert!(e.message.starts_with(field), "{field}: {}", e.message);
        e.message
    }

    /// A valid request with `extra` merged in.
    fn with(extra: Value) -> Value {
        let mut data = json!({"RecordURL": "https://example.org/page"});
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        data
    }

    // ---- RecordURL ----

    #[test]
    fn minimal_request_gets_every_default() {
        let (spec, secrets) = ok(json!({"RecordURL": "https://example.org/page"}));
        assert_eq!(
            spec,
            StartSpec {
                record_url: "https://example.org/page".into(),
                manual_start: false,
                width: 1280,
                height: 720,
                fps: 30,
                max_duration_secs: 21_600,
                callback_url: None,
                storage_type: StorageType::Local,
                muxer: Muxer::Mp4,
                auth_url: None,
                output: OutputTarget::default(),
                start_timeout_secs: 300,
                user_context: None,
                audio: true,
                capture: None,
            }
        );
        assert_eq!(secrets, TaskSecrets::default());
    }

    #[test]
    fn record_url_is_required() {
        for data in [
            json!({}),
            json!({"RecordURL": null}),
            json!({"RecordURL": ""}),
        ] {
            let e = err(data);
            assert_eq!(e.code, ErrorCode::MissingParam);
            assert_eq!(e.message, "Data.RecordURL is required");
        }
    }

    #[test]
    fn record_url_name_is_case_sensitive_and_the_message_says_so() {
        let e = err(json!({"recordUrl": "https://example.org/"}));
        assert_eq!(e.code, ErrorCode::MissingParam);
        assert!(e.message.contains("case-sensitive"), "{}", e.message);
        assert!(e.message.contains("\"recordUrl\""), "{}", e.message);
    }

    #[test]
    fn record_url_must_be_http_or_https() {
        assert_eq!(
            spec(json!({"RecordURL": "http://127.0.0.1:8080/x"})).record_url,
            "http://127.0.0.1:8080/x"
        );
        assert!(
            invalid(json!({"RecordURL": "file:///etc/passwd"}), "Data.RecordURL").contains("http")
        );
        invalid(
            json!({"RecordURL": "javascript:alert(1)"}),
            "Data.RecordURL",
        );
        invalid(json!({"RecordURL": "not a url"}), "Data.RecordURL");
        invalid(json!({"RecordURL": "https://"}), "Data.RecordURL");
    }

    #[test]
    fn record_url_is_trimmed_and_normalised() {
        assert_eq!(
            spec(json!({"RecordURL": "  https://Example.org  "})).record_url,
            "https://example.org/"
        );
    }

    #[test]
    fn record_url_must_be_a_string() {
        let m = invalid(json!({"RecordURL": 42}), "Data.RecordURL");
        assert!(m.contains("must be a string, got 42"), "{m}");
    }

    #[test]
    fn record_url_length_is_limited() {
        let limits = StartLimits::default();
        let long = format!("https://example.org/{}", "a".repeat(limits.max_url_len));
        assert!(invalid(json!({"RecordURL": long}), "Data.RecordURL").contains("at most 2048"));
        let fits = format!(
            "https://example.org/{}",
            "a".repeat(limits.max_url_len - 20)
        );
        assert_eq!(spec(json!({"RecordURL": fits})).record_url.len(), 2048);
        // Expansion by percent-encoding counts too.
        let cjk = format!("https://example.org/{}", "中".repeat(1000));
        assert!(invalid(json!({"RecordURL": cjk}), "Data.RecordURL").contains("percent-encoded"));
    }

    #[test]
    fn data_must_be_an_object() {
        let e = err(Value::Null);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::MissingParam, "Data is required")
        );
        invalid(json!([1, 2]), "Data must be an object");
        invalid(json!("https://example.org"), "Data must be an object");
    }

    // ---- Audio ----

    #[test]
    fn audio_defaults_to_on() {
        assert!(spec(with(json!({}))).audio);
        assert!(spec(with(json!({"Audio": null}))).audio);
        assert!(spec(with(json!({"Audio": true}))).audio);
        assert!(!spec(with(json!({"Audio": false}))).audio);
        invalid(with(json!({"Audio": "false"})), "Data.Audio");
        invalid(with(json!({"Audio": 0})), "Data.Audio");
    }

    #[test]
    fn capture_is_the_workers_default_unless_chosen() {
        assert_eq!(spec(with(json!({}))).capture, None);
        assert_eq!(spec(with(json!({"Capture": null}))).capture, None);
        assert_eq!(spec(with(json!({"Capture": ""}))).capture, None);
        assert_eq!(
            spec(with(json!({"Capture": "X11"}))).capture,
            Some(CaptureBackend::X11)
        );
        assert_eq!(
            spec(with(json!({"Capture": "screencast"}))).capture,
            Some(CaptureBackend::Screencast)
        );
        invalid(with(json!({"Capture": "vnc"})), "Data.Capture");
        invalid(with(json!({"Capture": 1})), "Data.Capture");
    }

    #[test]
    fn tasks_stored_before_audio_existed_record_sound() {
        let mut stored = serde_json::to_value(spec(with(json!({"Audio": false})))).unwrap();
        stored.as_object_mut().unwrap().remove("audio");
        let back: StartSpec = serde_json::from_value(stored).unwrap();
        assert!(back.audio);
    }

    // ---- ManualStart ----

    #[test]
    fn manual_start() {
        assert!(spec(with(json!({"ManualStart": true}))).manual_start);
        assert!(!spec(with(json!({"ManualStart": false}))).manual_start);
        assert!(!spec(with(json!({"ManualStart": null}))).manual_start);
        let m = invalid(with(json!({"ManualStart": "true"})), "Data.ManualStart");
        assert!(m.contains("boolean"), "{m}");
        invalid(with(json!({"ManualStart": 1})), "Data.ManualStart");
    }

    // ---- Width / Height ----

    #[test]
    fn dimensions_zero_means_default() {
        let s = spec(with(json!({"Width": 0, "Height": 0})));
        assert_eq!((s.width, s.height), (1280, 720));
    }

    #[test]
    fn dimensions_in_range() {
        let s = spec(with(json!({"Width": 2560, "Height": 1440})));
        assert_eq!((s.width, s.height), (2560, 1440));
        let s = spec(with(json!({"Width": 16, "Height": 16})));
        assert_eq!((s.width, s.height), (16, 16));
        let s = spec(with(json!({"Width": 1920.0})));
        assert_eq!(s.width, 1920);
    }

    #[test]
    fn dimensions_out_of_range() {
        invalid(with(json!({"Width": 2561})), "Data.Width");
        invalid(with(json!({"Height": 3000})), "Data.Height");
        invalid(with(json!({"Width": -1})), "Data.Width");
        invalid(with(json!({"Height": 1e20})), "Data.Height");
        invalid(with(json!({"Width": 640.5})), "Data.Width");
    }

    #[test]
    fn dimensions_below_chromium_minimum_are_rejected() {
        let m = invalid(with(json!({"Width": 3})), "Data.Width");
        assert!(m.contains("at least 16"), "{m}");
        invalid(with(json!({"Height": 15})), "Data.Height");
    }

    #[test]
    fn dimensions_wrong_type_message_names_the_field_and_value() {
        let m = invalid(with(json!({"Width": "abc"})), "Data.Width");
        assert_eq!(
            m,
            "Data.Width must be an integer between 0 and 2560 (0 means the default, 1280), got \"abc\""
        );
        invalid(with(json!({"Height": "720"})), "Data.Height");
        invalid(with(json!({"Height": true})), "Data.Height");
    }

    // ---- CallbackURL ----

    #[test]
    fn callback_url() {
        assert_eq!(
            spec(with(
                json!({"CallbackURL": "https://hooks.example.org/cb?x=1"})
            ))
            .callback_url
            .as_deref(),
            Some("https://hooks.example.org/cb?x=1")
        );
        assert_eq!(spec(with(json!({"CallbackURL": ""}))).callback_url, None);
        assert_eq!(spec(with(json!({"CallbackURL": null}))).callback_url, None);
        invalid(
            with(json!({"CallbackURL": "ftp://example.org/"})),
            "Data.CallbackURL",
        );
        invalid(
            with(json!({"CallbackURL": "hooks.example.org"})),
            "Data.CallbackURL",
        );
        invalid(
            with(json!({"CallbackURL": {"url": "https://x"}})),
            "Data.CallbackURL",
        );
        let long = format!("https://example.org/{}", "a".repeat(3000));
        invalid(with(json!({"CallbackURL": long})), "Data.CallbackURL");
    }

    // ---- MaxDurationLimit ----

    #[test]
    fn max_duration_limit() {
        assert_eq!(
            spec(with(json!({"MaxDurationLimit": 0}))).max_duration_secs,
            21_600
        );
        assert_eq!(
            spec(with(json!({"MaxDurationLimit": 60}))).max_duration_secs,
            60
        );
        assert_eq!(
            spec(with(json!({"MaxDurationLimit": 36000}))).max_duration_secs,
            36_000
        );
        invalid(
            with(json!({"MaxDurationLimit": 36001})),
            "Data.MaxDurationLimit",
        );
        invalid(
            with(json!({"MaxDurationLimit": -5})),
            "Data.MaxDurationLimit",
        );
        invalid(
            with(json!({"MaxDurationLimit": "60"})),
            "Data.MaxDurationLimit",
        );
    }

    // ---- StorageType ----

    #[test]
    fn storage_type_and_aliases() {
        for (raw, want) in [
            ("local", StorageType::Local),
            ("cfs", StorageType::Local),
            ("CFS", StorageType::Local),
            ("s3", StorageType::S3),
            ("cos", StorageType::S3),
            ("COS", StorageType::S3),
            ("S3", StorageType::S3),
        ] {
            assert_eq!(
                spec(with(json!({"StorageType": raw}))).storage_type,
                want,
                "{raw}"
            );
        }
        assert_eq!(
            spec(with(json!({"StorageType": ""}))).storage_type,
            StorageType::Local
        );
        invalid(with(json!({"StorageType": "vod"})), "Data.StorageType");
        invalid(with(json!({"StorageType": 1})), "Data.StorageType");
    }

    // ---- Output ----

    #[test]
    fn output_cos() {
        let s = spec(with(json!({"Output": {"Cos": {
            "Bucket": "records-1250000000",
            "Region": "ap-shanghai",
            "TargetDir": "class/2024/",
            "TargetName": "lesson-1",
            "Domain": "cdn.example.org",
        }}})));
        assert_eq!(
            s.output,
            OutputTarget {
                bucket: Some("records-1250000000".into()),
                region: Some("ap-shanghai".into()),
                endpoint: None,
                target_dir: Some("class/2024".into()),
                target_name: Some("lesson-1".into()),
                domain: Some("cdn.example.org".into()),
                cos: true,
            }
        );
    }

    #[test]
    fn output_s3_with_endpoint() {
        let s = spec(with(json!({"Output": {"S3": {
            "Bucket": "rec",
            "Endpoint": "http://minio.local:9000",
            "Domain": "https://cdn.example.org/",
        }}})));
        assert_eq!(
            s.output.endpoint.as_deref(),
            Some("http://minio.local:9000")
        );
        assert_eq!(s.output.domain.as_deref(), Some("https://cdn.example.org"));
        assert_eq!(s.output.bucket.as_deref(), Some("rec"));
    }

    #[test]
    fn endpoint_is_read_from_s3_only() {
        let s = spec(with(
            json!({"Output": {"Cos": {"Endpoint": "http://minio.local:9000"}}}),
        ));
        assert_eq!(s.output.endpoint, None);
    }

    #[test]
    fn output_cos_and_s3_together_are_rejected() {
        let m = invalid(
            with(json!({"Output": {"Cos": {}, "S3": {}}})),
            "Data.Output.Cos",
        );
        assert!(m.contains("Data.Output.S3"), "{m}");
    }

    #[test]
    fn output_vod_and_unknown_fields_are_ignored() {
        let s = spec(with(json!({
            "Output": {"Vod": {"MediaInfo": {"MediaName": "x"}, "SubAppId": "1"}},
            "SomethingNew": [1, 2, 3],
        })));
        assert_eq!(s.output, OutputTarget::default());
        let s = spec(with(
            json!({"Output": {"Cos": {"Bucket": "b", "Colour": "red"}, "Vod": 7}}),
        ));
        assert_eq!(s.output.bucket.as_deref(), Some("b"));
    }

    #[test]
    fn output_wrong_types() {
        invalid(
            with(json!({"Output": "cos"})),
            "Data.Output must be an object",
        );
        invalid(
            with(json!({"Output": {"Cos": []}})),
            "Data.Output.Cos must be an object",
        );
        invalid(
            with(json!({"Output": {"S3": {"Bucket": 5}}})),
            "Data.Output.S3.Bucket must be a string",
        );
    }

    #[test]
    fn bucket_and_region_names() {
        invalid(
            with(json!({"Output": {"Cos": {"Bucket": "a b"}}})),
            "Data.Output.Cos.Bucket",
        );
        invalid(
            with(json!({"Output": {"Cos": {"Bucket": "a/b"}}})),
            "Data.Output.Cos.Bucket",
        );
        invalid(
            with(json!({"Output": {"Cos": {"Region": "ap\nx"}}})),
            "Data.Output.Cos.Region",
        );
        let long = "b".repeat(1025);
        invalid(
            with(json!({"Output": {"Cos": {"Bucket": long}}})),
            "Data.Output.Cos.Bucket",
        );
        assert_eq!(
            spec(with(json!({"Output": {"Cos": {"Bucket": ""}}})))
                .output
                .bucket,
            None
        );
    }

    #[test]
    fn target_dir_rules() {
        let dir = |d: &str| {
            spec(with(json!({"Output": {"Cos": {"TargetDir": d}}})))
                .output
                .target_dir
        };
        assert_eq!(dir("a"), Some("a".into()));
        assert_eq!(dir("a/b/c"), Some("a/b/c".into()));
        assert_eq!(dir("a/b/"), Some("a/b".into()));
        assert_eq!(dir("录制/2024"), Some("录制/2024".into()));
        assert_eq!(dir("..a/b..c"), Some("..a/b..c".into()));
        for bad in [
            "../x", "a/../b", "a/..", "..", "/abs", "/", "a//b", "./a", "a\\b", "a\u{0}b", "a\nb",
        ] {
            invalid(
                with(json!({"Output": {"Cos": {"TargetDir": bad}}})),
                "Data.Output.Cos.TargetDir",
            );
        }
    }

    #[test]
    fn target_name_rules() {
        let name = |n: &str| {
            spec(with(json!({"Output": {"S3": {"TargetName": n}}})))
                .output
                .target_name
        };
        assert_eq!(name("lesson-1"), Some("lesson-1".into()));
        assert_eq!(name("1700000000000"), Some("1700000000000".into()));
        for bad in ["a/b", "a/", "..", ".", "a\\b", "a\tb", "/a"] {
            invalid(
                with(json!({"Output": {"S3": {"TargetName": bad}}})),
                "Data.Output.S3.TargetName",
            );
        }
    }

    #[test]
    fn domain_rules() {
        let domain = |d: &str| {
            spec(with(json!({"Output": {"Cos": {"Domain": d}}})))
                .output
                .domain
        };
        assert_eq!(domain("cdn.example.org"), Some("cdn.example.org".into()));
        assert_eq!(
            domain("cdn.example.org:8443"),
            Some("cdn.example.org:8443".into())
        );
        assert_eq!(
            domain("https://cdn.example.org"),
            Some("https://cdn.example.org".into())
        );
        assert_eq!(
            domain("https://cdn.example.org/media/"),
            Some("https://cdn.example.org/media".into())
        );
        for bad in [
            "ftp://cdn.example.org",
            "cdn.example.org/path",
            "user:pw@cdn.example.org",
            "https://user:pw@cdn.example.org",
            "https://cdn.example.org/?q=1",
            "cdn example.org",
            "https://",
        ] {
            invalid(
                with(json!({"Output": {"Cos": {"Domain": bad}}})),
                "Data.Output.Cos.Domain",
            );
        }
    }

    // ---- Video ----

    #[test]
    fn muxer_from_output_video_or_data_video() {
        assert_eq!(
            spec(with(json!({"Output": {"Video": {"Muxer": "hls"}}}))).muxer,
            Muxer::Hls
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": "HLS"}}))).muxer,
            Muxer::Hls
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": "Mp4"}}))).muxer,
            Muxer::Mp4
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": ""}}))).muxer,
            Muxer::Mp4
        );
        assert_eq!(spec(with(json!({"Video": {}}))).muxer, Muxer::Mp4);
        assert_eq!(
            spec(with(
                json!({"Output": {"Video": {"Muxer": "hls"}}, "Video": {"Muxer": "HLS"}})
            ))
            .muxer,
            Muxer::Hls
        );
    }

    #[test]
    fn muxer_invalid_or_conflicting() {
        invalid(
            with(json!({"Video": {"Muxer": "webm"}})),
            "Data.Video.Muxer",
        );
        invalid(
            with(json!({"Output": {"Video": {"Muxer": 1}}})),
            "Data.Output.Video.Muxer",
        );
        invalid(
            with(json!({"Video": "hls"})),
            "Data.Video must be an object",
        );
        let m = invalid(
            with(json!({"Output": {"Video": {"Muxer": "hls"}}, "Video": {"Muxer": "mp4"}})),
            "Data.Output.Video.Muxer",
        );
        assert!(m.contains("Data.Video.Muxer"), "{m}");
    }

    const KEY: &str = "00112233445566778899AaBbCcDdEeFf";

    #[test]
    fn encrypt_key_goes_to_secrets_with_auth_url_in_spec() {
        let (spec, secrets) = ok(with(json!({"Output": {"Video": {
            "Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "https://keys.example.org/k/1",
        }}})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        assert_eq!(
            spec.auth_url.as_deref(),
            Some("https://keys.example.org/k/1")
        );
        // Data.Video works too, and the two places may be mixed.
        let (spec, secrets) = ok(with(json!({
            "Output": {"Video": {"Muxer": "hls"}},
            "Video": {"EncryptKey": KEY, "AuthUrl": "key.bin"},
        })));
        assert!(secrets.encrypt_key.is_some());
        assert_eq!(spec.auth_url.as_deref(), Some("key.bin"));
        // The spec carries no trace of the key.
        assert!(
            !serde_json::to_string(&spec)
                .unwrap()
                .to_ascii_lowercase()
                .contains("00112233")
        );
    }

    #[test]
    fn encrypt_key_requires_hls() {
        let m = invalid(
            with(
                json!({"Output": {"Video": {"EncryptKey": KEY, "AuthUrl": "https://k.example.org/"}}}),
            ),
            "Data.Output.Video.EncryptKey",
        );
        assert!(m.contains("hls"), "{m}");
        invalid(
            with(json!({"Video": {"Muxer": "mp4", "EncryptKey": KEY, "AuthUrl": "k"}})),
            "Data.Video.EncryptKey",
        );
    }

    #[test]
    fn generate_key_makes_a_fresh_key_for_hls_with_a_callback() {
        let data = || {
            with(json!({
                "CallbackURL": "https://hooks.example.org/cb",
                "Output": {"Video": {"Muxer": "hls", "GenerateKey": true, "AuthUrl": "https://k.example.org/1"}},
            }))
        };
        let (spec, secrets) = parse(data()).unwrap();
        let key = secrets.encrypt_key.clone().unwrap();
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(secrets.key_generated);
        assert_eq!(spec.auth_url.as_deref(), Some("https://k.example.org/1"));
        let (_, again) = parse(data()).unwrap();
        assert_ne!(again.encrypt_key, secrets.encrypt_key, "a new key per task");
        assert!(!format!("{secrets:?}").contains(&key), "redacted in Debug");
        // false or absent: no key.
        let (_, none) = parse(with(
            json!({"Output": {"Video": {"Muxer": "hls", "GenerateKey": false}}}),
        ))
        .unwrap();
        assert!(none.encrypt_key.is_none() && !none.key_generated);
    }

    #[test]
    fn generate_key_rules() {
        let hls = |video: Value, callback: bool| {
            let mut d = with(json!({ "Output": { "Video": video } }));
            if callback {
                d["CallbackURL"] = json!("https://hooks.example.org/cb");
            }
            d
        };
        let m = invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": true, "AuthUrl": "k"}),
                false,
            ),
            "Data.Output.Video.GenerateKey",
        );
        assert!(m.contains("CallbackURL"), "{m}");
        invalid(
            hls(json!({"Muxer": "hls", "GenerateKey": true}), true),
            "Data.Output.Video.AuthUrl",
        );
        invalid(
            hls(json!({"GenerateKey": true, "AuthUrl": "k"}), true),
            "Data.Output.Video.GenerateKey",
        );
        let m = invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": true, "EncryptKey": KEY, "AuthUrl": "k"}),
                true,
            ),
            "Data.Output.Video.GenerateKey",
        );
        assert!(m.contains("EncryptKey"), "{m}");
        invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": "yes", "AuthUrl": "k"}),
                true,
            ),
            "Data.Output.Video.GenerateKey",
        );
    }

    #[test]
    fn encrypt_key_requires_auth_url() {
        let m = invalid(
            with(json!({"Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY}}})),
            "Data.Output.Video.AuthUrl",
        );
        assert!(m.contains("EncryptKey"), "{m}");
        invalid(
            with(json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": ""}})),
            "Data.Video.AuthUrl",
        );
    }

    #[test]
    fn encrypt_key_format_and_never_echoed() {
        for bad in [
            json!("0011"),
            json!(format!("{KEY}00")),
            json!("zz112233445566778899aabbccddeeff"),
            json!(12345),
        ] {
            let e = err(with(
                json!({"Video": {"Muxer": "hls", "EncryptKey": bad.clone(), "AuthUrl": "k"}}),
            ));
            assert_eq!(e.code, ErrorCode::InvalidParam);
            assert!(
                e.message.starts_with("Data.Video.EncryptKey"),
                "{}",
                e.message
            );
            let raw = bad
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| bad.to_string());
            assert!(!e.message.contains(&raw), "key echoed: {}", e.message);
        }
        // Conflicting keys: neither is quoted.
        let e = err(with(json!({
            "Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "k"}},
            "Video": {"EncryptKey": "ffffffffffffffffffffffffffffffff"},
        })));
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert!(
            !e.message.to_ascii_lowercase().contains("ffff"),
            "{}",
            e.message
        );
        assert!(
            !e.message.to_ascii_lowercase().contains("0011"),
            "{}",
            e.message
        );
    }

    #[test]
    fn auth_url_rules() {
        let auth = |a: &str| {
            ok(with(
                json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": a}}),
            ))
            .0
            .auth_url
        };
        assert_eq!(
            auth("https://k.example.org/key?t=1"),
            Some("https://k.example.org/key?t=1".into())
        );
        assert_eq!(auth("/keys/1"), Some("/keys/1".into()));
        for bad in [
            "javascript:alert(1)",
            "file:///etc/key",
            "k\"ey",
            "a b",
            "k\nx",
            "https://",
            "a\\b",
        ] {
            invalid(
                with(json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": bad}})),
                "Data.Video.AuthUrl",
            );
        }
    }

    #[test]
    fn auth_url_without_key_is_ignored() {
        let s = spec(with(
            json!({"Video": {"Muxer": "hls", "AuthUrl": "https://k.example.org/"}}),
        ));
        assert_eq!(s.auth_url, None);
    }

    // ---- extensions ----

    #[test]
    fn fps() {
        assert_eq!(spec(with(json!({"Fps": 25}))).fps, 25);
        assert_eq!(spec(with(json!({"Fps": 60}))).fps, 60);
        assert_eq!(spec(with(json!({"Fps": 1}))).fps, 1);
        assert_eq!(spec(with(json!({"Fps": 0}))).fps, 30);
        invalid(with(json!({"Fps": 61})), "Data.Fps");
        invalid(with(json!({"Fps": 29.97})), "Data.Fps");
        invalid(with(json!({"Fps": "30"})), "Data.Fps");
    }

    #[test]
    fn start_timeout() {
        assert_eq!(spec(with(json!({"StartTimeout": 5}))).start_timeout_secs, 5);
        assert_eq!(
            spec(with(json!({"StartTimeout": 86400}))).start_timeout_secs,
            86_400
        );
        assert_eq!(
            spec(with(json!({"StartTimeout": 0}))).start_timeout_secs,
            300
        );
        invalid(with(json!({"StartTimeout": 86401})), "Data.StartTimeout");
        invalid(with(json!({"StartTimeout": [300]})), "Data.StartTimeout");
    }

    #[test]
    fn user_context() {
        assert_eq!(
            spec(with(json!({"UserContext": "{\"lesson\":7}"})))
                .user_context
                .as_deref(),
            Some("{\"lesson\":7}")
        );
        assert_eq!(spec(with(json!({"UserContext": ""}))).user_context, None);
        let fits = "字".repeat(4096);
        assert_eq!(
            spec(with(json!({"UserContext": fits.clone()}))).user_context,
            Some(fits)
        );
        invalid(
            with(json!({"UserContext": "x".repeat(4097)})),
            "Data.UserContext",
        );
        invalid(
            with(json!({"UserContext": {"lesson": 7}})),
            "Data.UserContext must be a string",
        );
    }

    #[test]
    fn limits_are_configurable() {
        let limits = StartLimits {
            max_url_len: 40,
            max_string_len: 4,
            max_context_len: 2,
        };
        let p = |d: Value| parse_start(&d, &limits);
        assert!(p(json!({"RecordURL": "https://example.org/"})).is_ok());
        assert!(p(json!({"RecordURL": "https://example.org/a-rather-long-path-here"})).is_err());
        assert!(p(json!({"RecordURL": "https://example.org/", "UserContext": "abc"})).is_err());
        assert!(
            p(json!({"RecordURL": "https://example.org/", "Output": {"Cos": {"Bucket": "abcde"}}}))
                .is_err()
        );
    }

    #[test]
    fn a_full_source_product_request_is_accepted() {
        let (spec, secrets) = ok(json!({
            "RecordURL": "https://class.example.org/room/1?role=recorder",
            "ManualStart": true,
            "Width": 1920,
            "Height": 1080,
            "CallbackURL": "https://api.example.org/record/callback",
            "MaxDurationLimit": 7200,
            "StorageType": "cos",
            "Output": {
                "Cos": {"Bucket": "rec-1250000000", "Region": "ap-guangzhou", "TargetDir": "room1", "TargetName": "final"},
                "Vod": {"MediaInfo": {"MediaName": "room1", "ClassId": 3}},
                "Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "https://api.example.org/key"},
            },
        }));
        assert!(spec.manual_start);
        assert_eq!(
            (spec.width, spec.height, spec.max_duration_secs),
            (1920, 1080, 7200)
        );
        assert_eq!(spec.storage_type, StorageType::S3);
        assert_eq!(spec.muxer, Muxer::Hls);
        assert_eq!(spec.output.region.as_deref(), Some("ap-guangzhou"));
        assert!(secrets.encrypt_key.is_some());
    }

    /// Every listed field is really read: a wrong type at its path is reported under its path.
    #[test]
    fn every_listed_field_is_parsed() {
        for path in START_FIELDS {
            let mut data = json!({"RecordURL": "https://example.org/"});
            let mut node = &mut data;
            let parts: Vec<&str> = path.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                node = node
                    .as_object_mut()
                    .unwrap()
                    .entry(part.to_string())
                    .or_insert_with(|| json!({}));
            }
            node[parts[parts.len() - 1]] = json!([1]);
            let e = err(data);
            assert_eq!(e.code, ErrorCode::InvalidParam, "{path}: {e}");
            assert!(
                e.message.starts_with(&format!("Data.{path} ")),
                "{path}: {}",
                e.message
            );
        }
    }
}
