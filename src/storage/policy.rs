//! Which endpoints and buckets a task may name. pagecast signs every storage request with the
//! server's credentials, so a task-chosen endpoint would receive the server's access key id and
//! session token (and a signed request it could replay), and a task-chosen bucket would be
//! written with the server's rights. A task may therefore only name the server's own endpoint
//! and bucket, or those an operator listed in `PAGECAST_S3_ALLOWED_ENDPOINTS` /
//! `PAGECAST_S3_ALLOWED_BUCKETS`.

use super::OutputTarget;
use super::{StorageConfig, with_scheme};

/// Why a task's storage target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetRefused {
    /// `Output.S3.Endpoint` is neither the server's endpoint nor on the allow-list.
    #[error(
        "names an endpoint that is not allowed: only the server's own endpoint and those in \
         PAGECAST_S3_ALLOWED_ENDPOINTS may be used (the server's credentials sign every request)"
    )]
    Endpoint,
    /// `Output.Cos.Region` on a server without an endpoint leads to Tencent COS's endpoint of
    /// that region, which is not on the allow-list.
    #[error(
        "leads to the endpoint {0}, which is not allowed: without a configured \
         PAGECAST_S3_ENDPOINT a COS region is only used when its endpoint is in \
         PAGECAST_S3_ALLOWED_ENDPOINTS"
    )]
    CosRegion(String),
    /// The bucket is neither the server's bucket nor on the allow-list.
    #[error(
        "names a bucket that is not allowed: only the server's own bucket and those in \
         PAGECAST_S3_ALLOWED_BUCKETS may be used"
    )]
    Bucket,
}

impl TargetRefused {
    /// The Output field at fault (`Endpoint`, `Region` or `Bucket`).
    pub(crate) fn field(&self) -> &'static str {
        match self {
            TargetRefused::Endpoint => "Endpoint",
            TargetRefused::CosRegion(_) => "Region",
            TargetRefused::Bucket => "Bucket",
        }
    }
}

/// An endpoint in a form two spellings of the same place share: scheme, lower-case host,
/// explicit port, path without a trailing `/`. `None` for something that is not an http(s) URL.
pub(crate) fn normalized_endpoint(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(&with_scheme(endpoint)).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())?
        .to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!(
        "{}://{host}:{port}{}",
        url.scheme(),
        url.path().trim_end_matches('/')
    ))
}

impl StorageConfig {
    /// Whether a task may send its result where `target` says. Fields the task leaves unset
    /// fall back to the server's own settings and are always allowed.
    pub(crate) fn check_target(&self, target: &OutputTarget) -> Result<(), TargetRefused> {
        let allowed_endpoint = |endpoint: &str| {
            let Some(wanted) = normalized_endpoint(endpoint) else {
                return false;
            };
            self.s3_endpoint
                .iter()
                .chain(self.s3_allowed_endpoints.iter())
                .filter_map(|e| normalized_endpoint(e))
                .any(|e| e == wanted)
        };
        match (&target.endpoint, &self.s3_endpoint) {
            (Some(e), _) if !allowed_endpoint(e) => return Err(TargetRefused::Endpoint),
            (None, None) if target.cos => {
                if let Some(region) = &target.region {
                    let derived = super::cos_endpoint(region);
                    if !allowed_endpoint(&derived) {
                        return Err(TargetRefused::CosRegion(derived));
                    }
                }
            }
            _ => {}
        }
        if let Some(bucket) = &target.bucket {
            let known = self
                .s3_bucket
                .iter()
                .chain(self.s3_allowed_buckets.iter())
                .any(|b| b.trim() == bucket);
            if !known {
                return Err(TargetRefused::Bucket);
            }
        }
        Ok(())
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

    fn target(endpoint: Option<&str>, bucket: Option<&str>) -> OutputTarget {
        OutputTarget {
            endpoint: endpoint.map(str::to_string),
            bucket: bucket.map(str::to_string),
            ..OutputTarget::default()
        }
    }

    #[test]
    fn the_servers_own_endpoint_and_bucket_are_always_allowed() {
        let cfg = server();
        assert_eq!(cfg.check_target(&OutputTarget::default()), Ok(()));
        for same in [
            "http://127.0.0.1:9010",
            "http://127.0.0.1:9010/",
            "HTTP://127.0.0.1:9010",
        ] {
            assert_eq!(
                cfg.check_target(&target(Some(same), Some("results"))),
                Ok(()),
                "{same}"
            );
        }
    }

    #[test]
    fn other_endpoints_and_buckets_need_the_allow_list() {
        let mut cfg = server();
        for other in [
            "http://127.0.0.1:9011",
            "https://127.0.0.1:9010",
            "attacker.example",
            "http://127.0.0.1:9010/elsewhere",
        ] {
            assert_eq!(
                cfg.check_target(&target(Some(other), None)),
                Err(TargetRefused::Endpoint),
                "{other}"
            );
        }
        assert_eq!(
            cfg.check_target(&target(None, Some("other"))),
            Err(TargetRefused::Bucket)
        );
        cfg.s3_allowed_endpoints = vec!["http://127.0.0.1:9011/".into()];
        cfg.s3_allowed_buckets = vec!["other".into()];
        assert_eq!(
            cfg.check_target(&target(Some("http://127.0.0.1:9011"), Some("other"))),
            Ok(())
        );
        assert_eq!(
            cfg.check_target(&target(Some("http://127.0.0.1:9012"), Some("other"))),
            Err(TargetRefused::Endpoint)
        );
        assert_eq!(
            cfg.check_target(&target(Some("http://127.0.0.1:9011"), Some("third"))),
            Err(TargetRefused::Bucket)
        );
    }

    #[test]
    fn without_a_server_endpoint_a_cos_region_needs_its_endpoint_allowed() {
        let mut cfg = StorageConfig {
            s3_bucket: Some("rec-1250000000".into()),
            ..StorageConfig::default()
        };
        let cos = OutputTarget {
            bucket: Some("rec-1250000000".into()),
            region: Some("ap-guangzhou".into()),
            cos: true,
            ..OutputTarget::default()
        };
        let refused = cfg.check_target(&cos).unwrap_err();
        assert_eq!(
            refused,
            TargetRefused::CosRegion("https://cos.ap-guangzhou.myqcloud.com".into())
        );
        assert_eq!(refused.field(), "Region");
        cfg.s3_allowed_endpoints = vec!["https://cos.ap-guangzhou.myqcloud.com".into()];
        assert_eq!(cfg.check_target(&cos), Ok(()));
        // A region on a server with its own endpoint only changes the signing region.
        assert_eq!(
            server().check_target(&OutputTarget {
                region: Some("eu-west-1".into()),
                cos: true,
                ..OutputTarget::default()
            }),
            Ok(())
        );
    }

    #[test]
    fn endpoints_are_compared_in_one_form() {
        assert_eq!(
            normalized_endpoint("Minio.Local:9000/"),
            Some("https://minio.local:9000".into())
        );
        assert_eq!(
            normalized_endpoint("http://minio.local"),
            Some("http://minio.local:80".into())
        );
        assert_eq!(normalized_endpoint("ftp://x"), None);
    }
}
