//! `GET`/`HEAD /files/s/<expiry>/<signature>/<path>`: local results, streamed from the output
//! directory by `tower_http::services::ServeFile` (Range → 206, `Last-Modified` and
//! `If-Modified-Since` → 304), with an `ETag` (which ServeFile does not make) and the
//! Content-Type of each result file type.
//!
//! Only signed, unexpired paths are served ([`crate::delivery::signed_url`]); anything else is 403
//! `InvalidSignature`, a missing file 404 `ResourceNotFound`. The path is checked segment by
//! segment before it touches the disk, so it cannot leave the output directory.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::ApiError;
use super::routes::ApiState;
use crate::error::ErrorCode;

/// The handler.
pub(crate) async fn serve(State(state): State<ApiState>, req: Request) -> Response {
    let rid = super::guard::request_id_of(req.headers());
    let checked = state.signer.verify(req.uri().path(), crate::clock::now_s());
    let signed = match checked {
        Ok(p) => p,
        Err(why) => {
            return ApiError::new(ErrorCode::InvalidSignature, why.to_string())
                .into_response_with(&rid);
        }
    };
    let full: PathBuf = signed
        .segments
        .iter()
        .fold(state.output_dir.clone(), |p, s| p.join(s));
    serve_file(&full, req, &rid).await
}

async fn serve_file(full: &Path, req: Request, rid: &str) -> Response {
    let meta = match tokio::fs::metadata(full).await {
        Ok(m) if m.is_file() => m,
        _ => return no_such_file(rid),
    };
    let etag = etag(&meta);
    let (mut parts, _) = req.into_parts();
    let headers = &mut parts.headers;
    if let Some(tag) = &etag {
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches_any(v, tag))
        {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            set_etag(r.headers_mut(), tag);
            return r;
        }
        // A Range with an If-Range that names another version of the file: the whole file.
        if headers
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with('"') && v.trim() != tag)
        {
            headers.remove(header::RANGE);
            headers.remove(header::IF_RANGE);
        }
    }
    // Preconditions pagecast does not evaluate are ignored (RFC 9110 §13.2.1).
    headers.remove(header::IF_MATCH);
    headers.remove(header::IF_UNMODIFIED_SINCE);
    let req = Request::from_parts(parts, Body::empty());
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut response = match ServeFile::new(full).oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => {
            return ApiError::internal(format!("serving a result file: {e}"))
                .into_response_with(rid);
        }
    };
    if response.status() == StatusCode::NOT_FOUND {
        return no_such_file(rid);
    }
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        if let Ok(v) = HeaderValue::from_str(content_type(&name)) {
            response.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        if let Some(tag) = &etag {
            set_etag(response.headers_mut(), tag);
        }
    }
    response
}

fn no_such_file(rid: &str) -> Response {
    ApiError::new(ErrorCode::ResourceNotFound, "no such file").into_response_with(rid)
}

fn set_etag(headers: &mut HeaderMap, tag: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, v);
    }
}

/// A strong validator from the file's size and modification time (results are written once,
/// and a rewrite changes both or at least the time).
fn etag(meta: &std::fs::Metadata) -> Option<String> {
    let modified = meta.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.len(),
        since.as_secs(),
        since.subsec_nanos()
    ))
}

/// Whether an `If-None-Match` value lists `tag` (or is `*`). Weak comparison, as the header
/// asks for.
fn matches_any(header_value: &str, tag: &str) -> bool {
    header_value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// The Content-Type of a result file, by extension.
pub(crate) fn content_type(name: &str) -> &'static str {
    match name
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => crate::storage::content_type(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_of_result_files() {
        assert_eq!(content_type("a/1700000000000.mp4"), "video/mp4");
        assert_eq!(
            content_type("a/index.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type("a/seg_000001.ts"), "video/mp2t");
        assert_eq!(content_type("a/cover.jpg"), "image/jpeg");
        assert_eq!(content_type("a/cover.JPEG"), "image/jpeg");
        assert_eq!(content_type("a/notes.bin"), "application/octet-stream");
    }

    #[test]
    fn if_none_match() {
        let tag = "\"10-5-0\"";
        assert!(matches_any("\"10-5-0\"", tag));
        assert!(matches_any("\"x\", W/\"10-5-0\"", tag));
        assert!(matches_any("*", tag));
        assert!(!matches_any("\"10-5-1\"", tag));
    }
}
