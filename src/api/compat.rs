//! `PAGECAST_COMPAT=web-record`: errors answered the way web-record's gateway answered them, for
//! clients written against it. Errors of the Action endpoint (`POST /`, `POST /record`) are sent
//! with HTTP 200 and the same JSON body (such clients throw on any other status and never read
//! `ErrorCode`), and with web-record's codes where pagecast's differ. Off by default: then every
//! error has its own HTTP status and pagecast's codes.

use axum::http::{StatusCode, header};
use axum::response::Response;

use super::error::ApiError;
use crate::error::ErrorCode;

/// How errors of the Action endpoint are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compat {
    /// pagecast's codes, each with its HTTP status.
    #[default]
    Off,
    /// web-record's: HTTP 200 with the error body, web-record's code names.
    #[value(name = "web-record")]
    WebRecord,
}

/// The code web-record uses for `code`: `InvalidParam` for missing parameters and unknown
/// tasks, `InvalidStatus` for actions in the wrong status; every other code is the same.
pub(crate) fn web_record_code(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::MissingParam | ErrorCode::TaskNotFound => ErrorCode::InvalidParam,
        ErrorCode::InvalidState => ErrorCode::InvalidStatus,
        other => other,
    }
}

/// Rewrites an error response of the Action endpoint for web-record clients (other responses
/// are returned as they are).
pub(crate) fn web_record_response(response: Response) -> Response {
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let request_id = parts
        .headers
        .get(super::error::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mapped = ApiError::new(web_record_code(error.code), error.message);
    let (mapped_parts, body) = mapped.into_response_with(&request_id).into_parts();
    // Only the status and the body change: the headers the inner layers set stay (CORS above
    // all, without which a browser-side client could not read the error).
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(mapped_parts.headers);
    parts.extensions.extend(mapped_parts.extensions);
    parts.status = StatusCode::OK;
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_web_record() {
        assert_eq!(
            web_record_code(ErrorCode::MissingParam),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            web_record_code(ErrorCode::TaskNotFound),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            web_record_code(ErrorCode::InvalidState),
            ErrorCode::InvalidStatus
        );
        for same in [
            ErrorCode::InvalidParam,
            ErrorCode::Unauthorized,
            ErrorCode::ServiceUnavailable,
            ErrorCode::UnsupportedAction,
        ] {
            assert_eq!(web_record_code(same), same);
        }
    }

    #[test]
    fn errors_become_200_with_the_same_body_shape() {
        let r = web_record_response(ApiError::task_not_found("abc").into_response_with("rid-1"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[super::super::error::REQUEST_ID_HEADER], "rid-1");
        let e = r.extensions().get::<ApiError>().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert!(e.message.contains("abc"));
        let ok = axum::response::IntoResponse::into_response("fine");
        assert_eq!(web_record_response(ok).status(), StatusCode::OK);
    }

    #[test]
    fn the_inner_layers_headers_stay() {
        let mut inner = ApiError::task_not_found("abc").into_response_with("rid-2");
        inner.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            axum::http::HeaderValue::from_static("https://app.example.org"),
        );
        let r = web_record_response(inner);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.org"
        );
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[super::super::error::REQUEST_ID_HEADER], "rid-2");
    }
}
