//! The API's error: a stable [`ErrorCode`] plus a message meant for the caller, rendered as the
//! contract's error body `{"ErrorCode", "ErrorMessage", "RequestID"}` with the HTTP status of the
//! code and an `X-Request-ID` header.
//!
//! Messages of client errors (4xx) say exactly what to fix, naming the field path
//! (`Data.Width must be ...`). Messages of system errors (5xx) are generic: the detail of what broke
//! inside pagecast (Redis addresses, file paths, credentials embedded in URLs) is logged, never
//! sent.

use std::fmt;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorCode, Fault, HasErrorCode};

/// The header that carries the request ID on every response.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest rendering of a client-supplied value quoted back in an error message.
const MAX_ECHO_CHARS: usize = 64;

/// An error answered by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The stable code (decides the HTTP status).
    pub(crate) code: ErrorCode,
    /// What the caller is told. Never contains secrets; for system errors, never internals.
    pub(crate) message: String,
}

impl ApiError {
    /// An error with this code and message, sent as is.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `InvalidParam`: `"{field} {problem}"`, e.g. `invalid("Data.Width", "must be an integer")`.
    pub(crate) fn invalid(field: &str, problem: impl fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidParam, format!("{field} {problem}"))
    }

    /// `MissingParam`: `"{field} is required"`.
    pub(crate) fn missing(field: &str) -> Self {
        Self::new(ErrorCode::MissingParam, format!("{field} is required"))
    }

    /// `UnsupportedAction` for the given `Action` value.
    pub(crate) fn unsupported_action(action: &str) -> Self {
        Self::new(
            ErrorCode::UnsupportedAction,
            format!(
                "Action {} is not supported (expected one of Start, Pause, Resume, Refresh, Stop, Cancel, Describe)",
                echo_str(action)
            ),
        )
    }

    /// `MalformedRequest`: the body is not JSON, or not an object.
    pub(crate) fn malformed(problem: impl fmt::Display) -> Self {
        Self::new(ErrorCode::MalformedRequest, problem.to_string())
    }

    /// `Unauthorized`: missing or wrong API token (the message does not say which).
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "a valid API token is required (Authorization: Bearer <token>)",
        )
    }

    /// `TaskNotFound` for this TaskID.
    pub(crate) fn task_not_found(task_id: &str) -> Self {
        Self::new(
            ErrorCode::TaskNotFound,
            format!("task {} does not exist", echo_str(task_id)),
        )
    }

    /// `InvalidState`: `action` is not allowed while the task is in `status`.
    pub(crate) fn invalid_state(action: &str, status: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidState,
            format!("{action} is not allowed while the task is {status}"),
        )
    }

    /// `PayloadTooLarge`: the body exceeds `limit_bytes`.
    pub(crate) fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit_bytes} bytes"),
        )
    }

    /// `UnsupportedMediaType`: the body is not declared as JSON.
    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be sent with Content-Type: application/json",
        )
    }

    /// `OriginNotAllowed`: a browser request from a site that is not allowed.
    pub(crate) fn origin_not_allowed() -> Self {
        Self::new(
            ErrorCode::OriginNotAllowed,
            "requests from this Origin are not allowed (the server's PAGECAST_CORS_ORIGINS)",
        )
    }

    /// `RequestTimeout`: the body did not arrive within `seconds`.
    pub(crate) fn request_timeout(seconds: u64) -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            format!("the request body did not arrive within {seconds} s"),
        )
    }

    /// `MethodNotAllowed` for this method and path.
    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not served at {}", echo_str(path)),
        )
    }

    #[cfg(test)]
    /// `ServiceUnavailable`. `detail` is logged, not sent.
    pub(crate) fn unavailable(detail: impl fmt::Display) -> Self {
        tracing::error!(code = "ServiceUnavailable", %detail, "dependency unavailable");
        Self::new(
            ErrorCode::ServiceUnavailable,
            generic_message(ErrorCode::ServiceUnavailable),
        )
    }

    /// `InternalError`. `detail` is logged, not sent.
    pub(crate) fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(code = "InternalError", %detail, "internal error");
        Self::new(
            ErrorCode::InternalError,
            generic_message(ErrorCode::InternalError),
        )
    }

    /// From any error that knows its code. Client errors keep their message (it tells the caller
    /// what to fix); system errors are logged in full and answered with a generic message.
    pub(crate) fn from_coded<E: HasErrorCode + fmt::Display + ?Sized>(err: &E) -> Self {
        let code = err.code();
        match code.fault() {
            Fault::Client if code.http_status() < 500 => Self::new(code, err.to_string()),
            _ => {
                tracing::error!(code = code.as_str(), error = %err, "request failed");
                Self::new(code, generic_message(code))
            }
        }
    }

    /// The HTTP status of the code.
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The contract's error body.
    pub(crate) fn body(&self, request_id: &str) -> serde_json::Value {
        serde_json::json!({
            "ErrorCode": self.code.as_str(),
            "ErrorMessage": self.message,
            "RequestID": request_id,
        })
    }

    /// The complete response: status of the code, JSON body, `X-Request-ID` header.
    pub(crate) fn into_response_with(self, request_id: &str) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(
                request_id,
                code = self.code.as_str(),
                "answered with a server error"
            );
        }
        let mut response = (self.status(), axum::Json(self.body(request_id))).into_response();
        // Layers outside the handler (metrics, the web-record compatibility mode) read it.
        response.extensions_mut().insert(self.clone());
        if let Ok(value) = HeaderValue::from_str(request_id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        // axum::Json sets it already; make it explicit for clients that look.
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl HasErrorCode for ApiError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

/// The message sent for a system error, whatever its detail.
fn generic_message(code: ErrorCode) -> String {
    match code {
        ErrorCode::ServiceUnavailable => {
            "a service pagecast depends on is unavailable; retry later".to_owned()
        }
        ErrorCode::InternalError => {
            "internal error; the request ID identifies it in the logs".to_owned()
        }
        other => format!("{other}; the request ID identifies it in the logs"),
    }
}

/// A client-supplied JSON value, rendered for an error message and shortened if long.
pub(crate) fn echo(value: &serde_json::Value) -> String {
    shorten(value.to_string())
}

/// A client-supplied string, quoted for an error message and shortened if long.
pub(crate) fn echo_str(value: &str) -> String {
    shorten(serde_json::Value::from(value).to_string())
}

fn shorten(rendered: String) -> String {
    if rendered.chars().count() <= MAX_ECHO_CHARS {
        return rendered;
    }
    let mut short: String = rendered.chars().take(MAX_ECHO_CHARS).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom(ErrorCode, &'static str);
    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
    }
    impl HasErrorCode for Boom {
        fn code(&self) -> ErrorCode {
            self.0
        }
    }

    #[test]
    fn constructors_name_the_field() {
        let e = ApiError::invalid("Data.Width", "must be an integer");
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert_eq!(e.message, "Data.Width must be an integer");
        let e = ApiError::missing("Data.RecordURL");
        assert_eq!(e.code, ErrorCode::MissingParam);
        assert_eq!(e.message, "Data.RecordURL is required");
        assert_eq!(ApiError::task_not_found("x").code, ErrorCode::TaskNotFound);
        assert_eq!(ApiError::unauthorized().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::payload_too_large(10).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::invalid_state("Pause", "finished").status(),
            StatusCode::CONFLICT
        );
        assert!(
            ApiError::unsupported_action("Explode")
                .message
                .contains("\"Explode\"")
        );
    }

    #[test]
    fn system_errors_hide_their_detail() {
        let e = ApiError::from_coded(&Boom(
            ErrorCode::ServiceUnavailable,
            "redis://:hunter2@10.0.0.3:6379 refused",
        ));
        assert_eq!(e.code, ErrorCode::ServiceUnavailable);
        assert!(!e.message.contains("hunter2"));
        assert!(!e.message.contains("10.0.0.3"));
        let e = ApiError::internal("/var/lib/pagecast/secret path");
        assert!(!e.message.contains("/var/lib"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let e = ApiError::unavailable("redis down at 10.1.1.1");
        assert!(!e.message.contains("10.1.1.1"));
    }

    #[test]
    fn client_errors_keep_their_message() {
        let e = ApiError::from_coded(&Boom(ErrorCode::TaskNotFound, "task abc does not exist"));
        assert_eq!(e.code, ErrorCode::TaskNotFound);
        assert_eq!(e.message, "task abc does not exist");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn every_code_maps_to_its_status() {
        for &code in ErrorCode::ALL {
            let e = ApiError::new(code, "m");
            assert_eq!(e.status().as_u16(), code.http_status(), "{code}");
        }
    }

    #[test]
    fn response_has_status_body_and_request_id_header() {
        let response = ApiError::missing("Data.TaskID").into_response_with("req-1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[REQUEST_ID_HEADER], "req-1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = ApiError::missing("Data.TaskID").body("req-1");
        assert_eq!(
            body,
            serde_json::json!({
                "ErrorCode": "MissingParam",
                "ErrorMessage": "Data.TaskID is required",
                "RequestID": "req-1",
            })
        );
    }

    #[test]
    fn a_request_id_that_is_no_header_value_does_not_panic() {
        let response = ApiError::internal("x").into_response_with("bad\nid");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(REQUEST_ID_HEADER).is_none());
    }

    #[test]
    fn echoes_are_quoted_and_short() {
        assert_eq!(echo_str("abc"), "\"abc\"");
        assert_eq!(echo(&serde_json::json!([1, 2])), "[1,2]");
        let long = "x".repeat(1000);
        let e = echo_str(&long);
        assert!(e.chars().count() <= MAX_ECHO_CHARS + 1);
        assert!(e.ends_with('…'));
    }
}
