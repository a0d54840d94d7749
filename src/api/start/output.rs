//! `Output.Cos` / `Output.S3`: where the result goes and under which name.

use serde_json::Value;

use super::Parser;
use super::reader::Obj;
use crate::api::error::{ApiError, echo};
use crate::error::ErrorCode;
use crate::recording::page_url;
use crate::task::names::{NameProblem, Roots, check_lengths};
use crate::task::{Muxer, OutputTarget};

impl Parser<'_> {
    pub(super) fn output_target(&self, out: &Obj<'_>) -> Result<OutputTarget, ApiError> {
        // The source product uploaded to VOD when `Output.Vod` was set at all (even `{}`).
        if out
            .get("Vod")
            .is_some_and(|v| !matches!(v, Value::String(s) if s.is_empty()))
        {
            return Err(ApiError::new(
                ErrorCode::UnsupportedOutput,
                format!(
                    "{} is not supported: pagecast cannot upload to Tencent's VOD service; send \
                     the result to object storage with Output.Cos or Output.S3 instead",
                    out.field("Vod")
                ),
            ));
        }
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
        // One leading "/" is dropped, as the source product does ("/room1" is "room1").
        let target_dir = target
            .string("TargetDir", l.max_string_len)?
            .map(|d| d.strip_prefix('/').unwrap_or(d))
            .filter(|d| !d.is_empty())
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
        let output = OutputTarget {
            bucket,
            region,
            endpoint,
            target_dir,
            target_name,
            domain,
            cos: !is_s3,
            location: None,
            live: Vec::new(),
            snapshots: None,
        };
        // Before anything else is done with them: every request to storage is signed with the
        // server's credentials.
        l.storage.check_target(&output).map_err(|why| {
            ApiError::new(
                ErrorCode::StorageNotAllowed,
                format!("{} {why}", target.field(why.field())),
            )
        })?;
        Ok(output)
    }

    /// Checks that the result's files can be stored under the names `output` gives them, in
    /// bytes as written (with the extensions and suffixes pagecast adds): each path segment a
    /// file name, the whole local path, and for object storage every key.
    pub(super) fn check_names(&self, output: &OutputTarget, muxer: Muxer) -> Result<(), ApiError> {
        if output.target_dir.is_none() && output.target_name.is_none() {
            return Ok(());
        }
        let l = self.limits;
        let to_bucket = l.storage.destination(output).is_some();
        let roots = Roots {
            local_bytes: if to_bucket {
                l.staging_dir_bytes
            } else {
                l.output_dir_bytes
            },
            to_bucket,
        };
        // The default directory is the TaskID: 36 bytes like any TaskID.
        let dir = output
            .target_dir
            .as_deref()
            .unwrap_or("00000000-0000-0000-0000-000000000000");
        let name = output.target_name.as_deref();
        check_lengths(dir, name, muxer, roots).map_err(|problem| {
            let base = if output.cos {
                "Data.Output.Cos"
            } else {
                "Data.Output.S3"
            };
            let field = match (&problem, &output.target_dir, name) {
                (NameProblem::DirSegment { .. }, _, _) | (_, Some(_), None) => {
                    format!("{base}.TargetDir")
                }
                (NameProblem::Name { .. }, _, _) | (_, None, _) => format!("{base}.TargetName"),
                (_, Some(_), Some(_)) => format!("{base}.TargetDir with TargetName"),
            };
            ApiError::invalid(&field, problem)
        })
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
    use super::super::tests::*;
    use super::super::{StartLimits, parse_start};
    use crate::error::ErrorCode;
    use crate::task::OutputTarget;
    use serde_json::json;

    #[test]
    fn names_must_fit_file_systems_and_object_keys_in_bytes() {
        let name = |n: String, muxer: &str| {
            parse(with(
                json!({"Output": {"Cos": {"TargetName": n}, "Video": {"Muxer": muxer}}}),
            ))
        };
        assert!(name("a".repeat(251), "mp4").is_ok());
        assert!(name("a".repeat(237), "hls").is_ok());
        assert!(name(format!("{}ab", "录".repeat(83)), "mp4").is_ok());
        for (n, muxer, max) in [
            ("a".repeat(300), "mp4", 251),
            ("录".repeat(100), "mp4", 251),
            ("a".repeat(252), "mp4", 251),
            ("a".repeat(238), "hls", 237),
        ] {
            let e = name(n, muxer).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParam);
            assert!(
                e.message.starts_with(&format!(
                    "Data.Output.Cos.TargetName must be at most {max} bytes"
                )),
                "{e}"
            );
        }
        let dir = |d: String| parse(with(json!({"Output": {"S3": {"TargetDir": d}}})));
        assert!(dir(format!("a/{}", "b".repeat(255))).is_ok());
        let e = dir(format!("a/{}", "b".repeat(256))).unwrap_err();
        assert!(
            e.message
                .starts_with("Data.Output.S3.TargetDir has a path segment of 256 bytes"),
            "{e}"
        );
        // Object keys: at most 1024 bytes, counted with the segment names of HLS.
        let mut limits = test_limits();
        limits.storage.s3_bucket = Some("results".into());
        let deep = |n: usize| vec!["d".repeat(250); n].join("/");
        let hls = |d: String, n: &str| {
            parse_start(
                &with(
                    json!({"Output": {"S3": {"TargetDir": d, "TargetName": n}, "Video": {"Muxer": "hls"}}}),
                ),
                &limits,
            )
        };
        // 1003 + 1 + 10 + "_NNNNNN.ts" = 1024.
        assert!(hls(deep(4), "0123456789").is_ok());
        let e = hls(deep(4), "0123456789a").unwrap_err();
        assert!(
            e.message
                .starts_with("Data.Output.S3.TargetDir with TargetName is too long: the result's object keys would have up to 1025 bytes"),
            "{e}"
        );
        // Without a bucket the key limit does not apply, the local path's does.
        assert!(
            parse(with(
                json!({"Output": {"S3": {"TargetDir": deep(4), "TargetName": "0123456789a"}}})
            ))
            .is_ok()
        );
        let mut far = test_limits();
        far.output_dir_bytes = 4000;
        let e = parse_start(
            &with(json!({"Output": {"Cos": {"TargetDir": "d".repeat(90)}}})),
            &far,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("Data.Output.Cos.TargetDir is too long: the result's local path"),
            "{e}"
        );
    }

    #[test]
    fn endpoints_and_buckets_off_the_allow_list_are_refused() {
        let refused = |data: serde_json::Value, field: &str| {
            let e = err(with(data));
            assert_eq!(e.code, ErrorCode::StorageNotAllowed, "{e}");
            assert!(e.message.starts_with(&format!("{field} ")), "{field}: {e}");
        };
        refused(
            json!({"Output": {"S3": {"Endpoint": "https://attacker.example"}}}),
            "Data.Output.S3.Endpoint",
        );
        refused(
            json!({"Output": {"S3": {"Endpoint": "http://minio.local:9001"}}}),
            "Data.Output.S3.Endpoint",
        );
        refused(
            json!({"Output": {"Cos": {"Bucket": "someone-elses"}}}),
            "Data.Output.Cos.Bucket",
        );
        refused(
            json!({"Output": {"Cos": {"Region": "eu-frankfurt"}}}),
            "Data.Output.Cos.Region",
        );
        // A server that lists nothing: only its own bucket.
        let mut own = StartLimits::default();
        own.storage.s3_bucket = Some("results".into());
        let p = |data| parse_start(&with(data), &own);
        assert!(p(json!({"Output": {"S3": {"Bucket": "results"}}})).is_ok());
        let e = p(json!({"Output": {"S3": {"Bucket": "other"}}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::StorageNotAllowed);
        let e = p(json!({"Output": {"S3": {"Endpoint": "http://127.0.0.1:1"}}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::StorageNotAllowed);
    }

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
                location: Some(
                    "s3 https://cos.ap-shanghai.myqcloud.com:443 records-1250000000".into()
                ),
                live: Vec::new(),
                snapshots: None,
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
    fn unknown_fields_are_ignored() {
        let s = spec(with(
            json!({"SomethingNew": [1, 2, 3], "Output": {"Vob": 1}}),
        ));
        assert_eq!(s.output, OutputTarget::default());
        let s = spec(with(
            json!({"Output": {"Cos": {"Bucket": "b", "Colour": "red"}, "Vod": null}}),
        ));
        assert_eq!(s.output.bucket.as_deref(), Some("b"));
    }

    #[test]
    fn output_vod_is_refused_not_ignored() {
        for vod in [
            json!({"MediaInfo": {"MediaName": "x"}, "SubAppId": "1"}),
            json!({}),
            json!(7),
        ] {
            let e = err(with(
                json!({"Output": {"Vod": vod, "Cos": {"Bucket": "b"}}}),
            ));
            assert_eq!(e.code, ErrorCode::UnsupportedOutput, "{e}");
            assert!(e.message.starts_with("Data.Output.Vod "), "{e}");
            assert!(e.message.contains("Output.Cos"), "{e}");
        }
        // Absent, null or "": no VOD asked for.
        assert!(parse(with(json!({"Output": {"Vod": ""}}))).is_ok());
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
        // One leading "/" is dropped, as the source product does; "/" alone is the default.
        assert_eq!(dir("/abs"), Some("abs".into()));
        assert_eq!(dir("/room1/2024/"), Some("room1/2024".into()));
        assert_eq!(dir("/"), None);
        for bad in [
            "../x", "a/../b", "a/..", "..", "//abs", "/../x", "a//b", "./a", "a\\b", "a\u{0}b",
            "a\nb",
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
}
