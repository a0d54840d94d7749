//! Where results go: S3-compatible object storage (AWS, MinIO, Tencent COS, Alibaba OSS,
//! Cloudflare R2, ...) when configured, else the local output directory that `serve` publishes.
//!
//! - [`StorageConfig`]: the server's storage settings (flags and `PAGECAST_S3_*` variables);
//! - [`Destination`]: one task's resolved target (server settings overridden by `Output.Cos` /
//!   `Output.S3`), with the rules for result URLs ([`Destination::object_url`]);
//! - [`s3::ObjectStore`]: uploads (single PUT or multipart with bounded memory), checks, presigning;
//! - [`credentials`]: the standard AWS credentials chain and the process's shared S3 clients.

pub mod credentials;
pub(crate) mod policy;
pub mod s3;
mod target;

use std::time::Duration;

use clap::Args;

use crate::error::{ErrorCode, HasErrorCode};
pub use target::{LiveSpec, OutputTarget, SnapshotFormat, SnapshotSpec};

/// Object storage settings of the server. With no bucket configured (and none given per task),
/// results are delivered to the local output directory.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// S3 endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`
    /// (default: AWS's endpoint for the region).
    #[arg(long, env = "PAGECAST_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "PAGECAST_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Bucket for results; setting it turns on object storage delivery.
    #[arg(long, env = "PAGECAST_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`);
    /// most self-hosted servers need it.
    #[arg(long, env = "PAGECAST_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Base URL of result files in Describe (e.g. a CDN in front of the bucket); a task's
    /// `Domain` takes precedence. Default: the object's storage URL.
    #[arg(long, env = "PAGECAST_S3_PUBLIC_URL")]
    pub s3_public_url: Option<String>,
    /// When above 0, result URLs are presigned GET URLs valid for this many seconds (at most
    /// 604800), for buckets that are not publicly readable.
    #[arg(long, env = "PAGECAST_S3_PRESIGN_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub s3_presign_seconds: u64,
    /// Files larger than this many MiB are uploaded in parts of this size (at least 5).
    #[arg(long, env = "PAGECAST_S3_PART_SIZE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(5..=1024))]
    pub s3_part_size_mib: u64,
    /// Parts of one file uploaded at once; memory per upload is at most this times the part size.
    #[arg(long, env = "PAGECAST_S3_UPLOAD_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub s3_upload_concurrency: u64,
    /// Attempts per storage request (throttling, 5xx and connection errors are retried with
    /// exponential backoff).
    #[arg(long, env = "PAGECAST_S3_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub s3_max_attempts: u32,
    /// Seconds a storage outage is waited out at upload time before the task fails with
    /// UploadFailed (its files are kept on the worker).
    #[arg(long, env = "PAGECAST_UPLOAD_RETRY_SECONDS", default_value_t = 3600)]
    pub upload_retry_seconds: u64,
    /// Endpoint URLs a task may name in `Output.S3.Endpoint` besides PAGECAST_S3_ENDPOINT,
    /// comma-separated (default: none). Every request is signed with the server's credentials:
    /// list only endpoints those credentials are meant for.
    #[arg(long, env = "PAGECAST_S3_ALLOWED_ENDPOINTS", value_delimiter = ',')]
    pub s3_allowed_endpoints: Vec<String>,
    /// Buckets a task may name in `Output.Cos.Bucket` / `Output.S3.Bucket` besides
    /// PAGECAST_S3_BUCKET, comma-separated (default: none).
    #[arg(long, env = "PAGECAST_S3_ALLOWED_BUCKETS", value_delimiter = ',')]
    pub s3_allowed_buckets: Vec<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_bucket: None,
            s3_path_style: false,
            s3_public_url: None,
            s3_presign_seconds: 0,
            s3_part_size_mib: 8,
            s3_upload_concurrency: 4,
            s3_max_attempts: 4,
            upload_retry_seconds: 3600,
            s3_allowed_endpoints: Vec::new(),
            s3_allowed_buckets: Vec::new(),
        }
    }
}

impl StorageConfig {
    /// Whether object storage is configured for every task.
    pub fn enabled(&self) -> bool {
        self.s3_bucket.is_some()
    }

    /// The destination of a task's result: its `Output.Cos`/`Output.S3` fields over the server's
    /// settings. `None` when neither names a bucket (local delivery).
    pub fn destination(&self, target: &OutputTarget) -> Option<Destination> {
        let bucket = target.bucket.clone().or_else(|| self.s3_bucket.clone())?;
        let region = target
            .region
            .clone()
            .unwrap_or_else(|| self.s3_region.clone());
        let (endpoint, path_style) = match (&target.endpoint, &self.s3_endpoint) {
            (Some(e), _) => (Some(with_scheme(e)), self.s3_path_style),
            // A COS target naming its region on a server without an endpoint: Tencent COS's own
            // S3-compatible endpoint for that region, as the source product would use.
            (None, None) if target.cos && target.region.is_some() => {
                (Some(cos_endpoint(&region)), false)
            }
            (None, Some(e)) => (Some(with_scheme(e)), self.s3_path_style),
            (None, None) => (None, false),
        };
        let public_base = target
            .domain
            .as_deref()
            .map(domain_base)
            .or_else(|| self.s3_public_url.as_deref().map(with_scheme));
        Some(Destination {
            bucket,
            region,
            endpoint,
            path_style,
            public_base,
            presign: (self.s3_presign_seconds > 0)
                .then(|| Duration::from_secs(self.s3_presign_seconds)),
        })
    }

    /// Checks the allow-lists (what clap cannot): every endpoint an http(s) URL, every bucket a
    /// plain name. Blank entries are ignored (an empty list allows nothing more).
    pub(crate) fn validate(&self) -> Result<(), crate::error::ConfigError> {
        let invalid = |setting, why: String| crate::error::ConfigError { setting, why };
        for e in self
            .s3_allowed_endpoints
            .iter()
            .filter(|e| !e.trim().is_empty())
        {
            let url = url::Url::parse(e.trim()).ok();
            let ok = url.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                return Err(invalid(
                    "PAGECAST_S3_ALLOWED_ENDPOINTS",
                    format!(
                        "{e:?} must be an http:// or https:// URL with a host and no credentials or query"
                    ),
                ));
            }
        }
        for b in self
            .s3_allowed_buckets
            .iter()
            .map(|b| b.trim())
            .filter(|b| !b.is_empty())
        {
            if !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(invalid(
                    "PAGECAST_S3_ALLOWED_BUCKETS",
                    format!("{b:?} must contain only letters, digits, \".\", \"-\" and \"_\""),
                ));
            }
        }
        Ok(())
    }

    /// Where `target`'s result is stored, as one string naming the same place for every
    /// spelling of it: `s3 <endpoint> <bucket>` (`aws` for AWS's endpoints, whose bucket names
    /// are global); `None` for the local output directory.
    pub(crate) fn location_of(&self, target: &OutputTarget) -> Option<String> {
        let dest = self.destination(target)?;
        let endpoint = match &dest.endpoint {
            Some(e) => policy::normalized_endpoint(e).unwrap_or_else(|| e.clone()),
            None => "aws".to_string(),
        };
        Some(format!("s3 {endpoint} {}", dest.bucket))
    }

    /// Part size in bytes.
    pub(crate) fn part_size(&self) -> usize {
        (self.s3_part_size_mib.clamp(5, 1024) * 1024 * 1024) as usize
    }

    /// Upload tuning from these settings.
    pub(crate) fn upload_settings(&self) -> s3::UploadSettings {
        s3::UploadSettings {
            part_size: self.part_size(),
            concurrency: self.s3_upload_concurrency as usize,
            max_attempts: self.s3_max_attempts,
        }
    }
}

/// Tencent COS's S3-compatible endpoint of `region`.
fn cos_endpoint(region: &str) -> String {
    format!("https://cos.{region}.myqcloud.com")
}

/// The base of result URLs under a task's `Domain`: `http://` + Domain when it has no scheme
/// (as the source product builds them), the URL as given otherwise; no trailing `/`.
pub(crate) fn domain_base(domain: &str) -> String {
    let v = domain.trim().trim_end_matches('/');
    if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    }
}

/// The URL of a locally delivered result file `key`: under the task's `Domain` when it names one
/// (something in front of the output directory serves it), else where `serve` publishes it,
/// `<public URL>/files/<key>`.
pub(crate) fn local_file_url(public_url: &str, domain: Option<&str>, key: &str) -> String {
    match domain {
        Some(d) => format!("{}/{}", domain_base(d), encode_key(key)),
        None => format!(
            "{}/files/{}",
            public_url.trim_end_matches('/'),
            encode_key(key)
        ),
    }
}

/// `https://` in front of a bare host name; URLs are kept as they are, without a trailing `/`.
fn with_scheme(host_or_url: &str) -> String {
    let v = host_or_url.trim().trim_end_matches('/');
    if v.contains("://") {
        v.to_string()
    } else {
        format!("https://{v}")
    }
}

/// One task's storage target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Bucket.
    pub(crate) bucket: String,
    /// Region (signing).
    pub(crate) region: String,
    /// Endpoint URL; `None` = AWS's endpoint for the region.
    pub(crate) endpoint: Option<String>,
    /// Path-style addressing.
    pub(crate) path_style: bool,
    /// Base URL of result URLs (task `Domain` or server public URL).
    pub(crate) public_base: Option<String>,
    /// Presign result URLs for this long.
    pub(crate) presign: Option<Duration>,
}

impl Destination {
    /// The plain (unsigned) URL of `key`: under the public base when one is set, else the
    /// object's address at the endpoint.
    pub(crate) fn object_url(&self, key: &str) -> String {
        let key = encode_key(key);
        if let Some(base) = &self.public_base {
            return format!("{base}/{key}");
        }
        match &self.endpoint {
            Some(endpoint) if self.path_style => format!("{endpoint}/{}/{key}", self.bucket),
            Some(endpoint) => match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}/{key}", self.bucket),
                None => format!("https://{}.{endpoint}/{key}", self.bucket),
            },
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{key}",
                self.bucket, self.region
            ),
        }
    }
}

/// Characters of a key segment that stay as they are in a URL (RFC 3986's unreserved ones).
const KEY_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes an object key for a URL, keeping `/` between segments.
pub(crate) fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| percent_encoding::utf8_percent_encode(seg, KEY_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Errors of object storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage settings cannot work (no credentials, malformed endpoint).
    #[error("object storage is misconfigured: {0}")]
    Config(String),
    /// A local file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The storage answered with an error or could not be reached.
    #[error("{operation} {key}: {message}")]
    Request {
        /// What was attempted (`upload`, `check`, ...).
        operation: &'static str,
        /// The object key.
        key: String,
        /// Why it failed.
        message: String,
        /// Whether trying again later may succeed (connection errors, timeouts, 5xx, throttling).
        retryable: bool,
    },
    /// The object in storage is not what was uploaded.
    #[error("{key} in storage has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The object key.
        key: String,
        /// Local size.
        expected: u64,
        /// Stored size.
        actual: u64,
    },
}

impl StorageError {
    /// Whether waiting and trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Request {
                retryable: true,
                ..
            }
        )
    }
}

impl HasErrorCode for StorageError {
    fn code(&self) -> ErrorCode {
        ErrorCode::UploadFailed
    }
}

/// The Content-Type of a result file, by extension.
pub(crate) fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "mp4" => "video/mp4",
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> StorageConfig {
        StorageConfig {
            s3_endpoint: Some("http://127.0.0.1:9010".into()),
            s3_bucket: Some("results".into()),
            s3_path_style: true,
            ..StorageConfig::default()
        }
    }

    #[test]
    fn no_bucket_means_local_delivery() {
        let cfg = StorageConfig::default();
        assert!(!cfg.enabled());
        assert_eq!(cfg.destination(&OutputTarget::default()), None);
    }

    #[test]
    fn server_settings_apply_when_the_task_sets_nothing() {
        let d = server().destination(&OutputTarget::default()).unwrap();
        assert_eq!(d.bucket, "results");
        assert_eq!(d.region, "us-east-1");
        assert_eq!(
            d.object_url("t1/170.mp4"),
            "http://127.0.0.1:9010/results/t1/170.mp4"
        );
    }

    #[test]
    fn task_fields_override_the_server() {
        let target = OutputTarget {
            bucket: Some("other".into()),
            region: Some("eu-west-1".into()),
            endpoint: Some("minio.internal:9000".into()),
            ..OutputTarget::default()
        };
        let d = server().destination(&target).unwrap();
        assert_eq!(d.bucket, "other");
        assert_eq!(d.region, "eu-west-1");
        assert_eq!(d.endpoint.as_deref(), Some("https://minio.internal:9000"));
    }

    #[test]
    fn domain_replaces_the_storage_host() {
        let target = OutputTarget {
            domain: Some("cdn.example.org".into()),
            ..OutputTarget::default()
        };
        let d = server().destination(&target).unwrap();
        assert_eq!(
            d.object_url("dir/a b.mp4"),
            "http://cdn.example.org/dir/a%20b.mp4",
            "a Domain without a scheme is served over http, as in the source product"
        );
        let target = OutputTarget {
            domain: Some("https://cdn.example.org".into()),
            ..OutputTarget::default()
        };
        let d = server().destination(&target).unwrap();
        assert_eq!(d.object_url("k.mp4"), "https://cdn.example.org/k.mp4");
        let target = OutputTarget {
            domain: Some("http://127.0.0.1:1/pub/".into()),
            ..OutputTarget::default()
        };
        let d = server().destination(&target).unwrap();
        assert_eq!(d.object_url("x.mp4"), "http://127.0.0.1:1/pub/x.mp4");
    }

    #[test]
    fn locations_name_a_place_once() {
        let cfg = server();
        assert_eq!(
            StorageConfig::default().location_of(&OutputTarget::default()),
            None
        );
        let here = cfg.location_of(&OutputTarget::default());
        assert_eq!(here.as_deref(), Some("s3 http://127.0.0.1:9010 results"));
        let same = OutputTarget {
            endpoint: Some("HTTP://127.0.0.1:9010/".into()),
            bucket: Some("results".into()),
            ..OutputTarget::default()
        };
        assert_eq!(cfg.location_of(&same), here);
        let aws = StorageConfig {
            s3_bucket: Some("b".into()),
            ..StorageConfig::default()
        };
        assert_eq!(
            aws.location_of(&OutputTarget::default()).as_deref(),
            Some("s3 aws b")
        );
    }

    #[test]
    fn local_results_use_the_domain_too() {
        assert_eq!(
            local_file_url("http://127.0.0.1:8080/", None, "t/a b.mp4"),
            "http://127.0.0.1:8080/files/t/a%20b.mp4"
        );
        assert_eq!(
            local_file_url("http://127.0.0.1:8080", Some("cdn.example.org"), "t/1.mp4"),
            "http://cdn.example.org/t/1.mp4"
        );
        assert_eq!(
            local_file_url("http://x", Some("https://cdn.example.org/rec/"), "t/1.mp4"),
            "https://cdn.example.org/rec/t/1.mp4"
        );
    }

    #[test]
    fn virtual_host_and_aws_default_urls() {
        let cfg = StorageConfig {
            s3_endpoint: Some("https://s3.example.net".into()),
            s3_bucket: Some("b".into()),
            ..StorageConfig::default()
        };
        let d = cfg.destination(&OutputTarget::default()).unwrap();
        assert_eq!(d.object_url("k.mp4"), "https://b.s3.example.net/k.mp4");
        let cfg = StorageConfig {
            s3_bucket: Some("b".into()),
            s3_region: "eu-west-1".into(),
            ..StorageConfig::default()
        };
        let d = cfg.destination(&OutputTarget::default()).unwrap();
        assert_eq!(
            d.object_url("k.mp4"),
            "https://b.s3.eu-west-1.amazonaws.com/k.mp4"
        );
    }

    #[test]
    fn a_cos_target_without_a_server_endpoint_uses_cos() {
        let target = OutputTarget {
            bucket: Some("rec-1250000000".into()),
            region: Some("ap-guangzhou".into()),
            cos: true,
            ..OutputTarget::default()
        };
        let d = StorageConfig::default().destination(&target).unwrap();
        assert_eq!(
            d.endpoint.as_deref(),
            Some("https://cos.ap-guangzhou.myqcloud.com")
        );
        assert_eq!(
            d.object_url("t/1.mp4"),
            "https://rec-1250000000.cos.ap-guangzhou.myqcloud.com/t/1.mp4"
        );
    }

    #[test]
    fn allow_lists_must_name_urls_and_buckets() {
        let mut cfg = server();
        cfg.s3_allowed_endpoints = vec!["http://a.example:9000".into(), " ".into()];
        cfg.s3_allowed_buckets = vec!["b-1".into(), String::new()];
        assert!(cfg.validate().is_ok());
        for bad in [
            "a.example",
            "ftp://a.example",
            "http://u:p@a.example",
            "http://a/?x=1",
        ] {
            cfg.s3_allowed_endpoints = vec![bad.into()];
            let e = cfg.validate().unwrap_err();
            assert_eq!(e.setting, "PAGECAST_S3_ALLOWED_ENDPOINTS", "{bad}");
        }
        cfg.s3_allowed_endpoints.clear();
        cfg.s3_allowed_buckets = vec!["a/b".into()];
        assert_eq!(
            cfg.validate().unwrap_err().setting,
            "PAGECAST_S3_ALLOWED_BUCKETS"
        );
    }

    #[test]
    fn keys_are_percent_encoded_per_segment() {
        assert_eq!(encode_key("a/b c/中.mp4"), "a/b%20c/%E4%B8%AD.mp4");
        assert_eq!(encode_key("x?y#z"), "x%3Fy%23z");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.mp4"), "video/mp4");
        assert_eq!(content_type("p.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("s0.ts"), "video/mp2t");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
