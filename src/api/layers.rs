//! The layers every answer of the HTTP surface goes through, outermost first:
//!
//! 1. request id (`tower_http::request_id`): a usable `X-Request-ID` of the client is kept,
//!    anything else replaced by a new UUID; the response carries it;
//! 2. the web-record compatibility mode ([`super::compat`], Action endpoint only);
//! 3. metrics: each Action request counted by action and outcome;
//! 4. the error envelope: an error answered by a layer or by axum itself (413 from the body
//!    limit, 405, 404...) gets the contract's error body like every other;
//! 5. the `Origin` check and CORS (`tower_http::cors`).
//!
//! Route-specific layers (token, JSON content type, body limit) are added in
//! [`super::routes`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::validate_request::ValidateRequestHeaderLayer;

use super::compat::Compat;
use super::error::{ApiError, REQUEST_ID_HEADER};
use super::guard::{AllowedOrigin, CorsOrigins, request_id_of};
use crate::error::ErrorCode;

/// The settings the layers apply.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Origins browsers may call from (`PAGECAST_CORS_ORIGINS`).
    pub cors: CorsOrigins,
    /// How Action errors are answered (`PAGECAST_COMPAT`).
    pub compat: Compat,
    /// Largest request body (`PAGECAST_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Longest wait for a request body (`PAGECAST_BODY_READ_TIMEOUT`).
    pub(crate) body_read_timeout: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            cors: CorsOrigins::None,
            compat: Compat::Off,
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The name of the Action a response answered, set by the handler (for metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActionName(pub &'static str);

/// Whether a request is one of the Action endpoint (`POST /`, `POST /record`).
pub(crate) fn is_action_request(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/" | "/record")
}

/// Wraps `router` in every layer of the surface.
pub(crate) fn surface(router: Router, policy: &HttpPolicy) -> Router {
    let policy = Arc::new(policy.clone());
    router.layer(
        ServiceBuilder::new()
            .map_request(drop_unusable_request_id)
            .layer(SetRequestIdLayer::new(
                axum::http::HeaderName::from_static(REQUEST_ID_HEADER),
                NewRequestId,
            ))
            .layer(PropagateRequestIdLayer::new(
                axum::http::HeaderName::from_static(REQUEST_ID_HEADER),
            ))
            .layer(from_fn_with_state(policy.compat, web_record_compat))
            .layer(axum::middleware::from_fn(count_actions))
            .layer(from_fn_with_state(policy.clone(), envelope))
            .layer(ValidateRequestHeaderLayer::custom(AllowedOrigin(Arc::new(
                policy.cors.clone(),
            ))))
            .layer(cors(&policy.cors)),
    )
}

/// A new request id when the client sent none (or none usable).
#[derive(Debug, Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Keeps the client's `X-Request-ID` only when it is usable (1 to 128 visible ASCII
/// characters); otherwise the request-id layer makes one up.
fn drop_unusable_request_id(mut req: Request) -> Request {
    let usable = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::ops::usable_request_id)
        .and_then(|v| HeaderValue::from_str(v).ok());
    match usable {
        Some(v) => {
            req.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        None => {
            req.headers_mut().remove(REQUEST_ID_HEADER);
        }
    }
    req
}

async fn web_record_compat(State(compat): State<Compat>, req: Request, next: Next) -> Response {
    let action = is_action_request(req.method(), req.uri().path());
    let response = next.run(req).await;
    if action && compat == Compat::WebRecord {
        super::compat::web_record_response(response)
    } else {
        response
    }
}

async fn count_actions(req: Request, next: Next) -> Response {
    let action = is_action_request(req.method(), req.uri().path());
    let began = std::time::Instant::now();
    let response = next.run(req).await;
    if action {
        let name = response
            .extensions()
            .get::<ActionName>()
            .map_or("unknown", |a| a.0);
        let code = response.extensions().get::<ApiError>().map(|e| e.code);
        count_request(name, code);
        crate::metrics::observe(
            &crate::metrics::API_REQUEST_SECONDS,
            &[("action", name)],
            began.elapsed().as_secs_f64(),
        );
    }
    response
}

/// Counts a request in the metrics; `action` is `unknown` when the body named no known one.
fn count_request(action: &'static str, error: Option<ErrorCode>) {
    use crate::metrics;
    let code = error.map_or("OK", |c| c.as_str());
    metrics::inc(
        &metrics::API_REQUESTS,
        &[("action", action), ("code", code)],
    );
    if action == "Start" {
        match error {
            None => metrics::inc(&metrics::STARTS_ACCEPTED, &[]),
            Some(c) => metrics::inc(&metrics::STARTS_REJECTED, &[("code", c.as_str())]),
        }
    }
}

/// Gives errors that did not come from pagecast's own code (a layer's 413, axum's 405 or 404)
/// the contract's error body. Answers that have a JSON body already (`/readyz`'s 503) are left
/// as they are.
async fn envelope(State(policy): State<Arc<HttpPolicy>>, req: Request, next: Next) -> Response {
    let rid = request_id_of(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let has_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.extensions().get::<ApiError>().is_some() || status.as_u16() < 400 || has_body {
        return response;
    }
    let error = match status.as_u16() {
        413 => ApiError::payload_too_large(policy.max_body_bytes),
        405 => ApiError::method_not_allowed(method.as_str(), &path),
        404 => ApiError::new(
            ErrorCode::ResourceNotFound,
            format!("there is no {method} {}", super::error::echo_str(&path)),
        ),
        s if s >= 500 => ApiError::internal(format!("{method} {path} answered HTTP {s}")),
        408 => ApiError::request_timeout(policy.body_read_timeout.as_secs()),
        416 => ApiError::new(
            ErrorCode::RangeNotSatisfiable,
            "the requested range lies outside the file",
        ),
        s => ApiError::new(
            ErrorCode::MalformedRequest,
            format!("the request could not be served (HTTP {s})"),
        ),
    };
    let mut out = error.into_response_with(&rid);
    // Headers that belong to the status: where a method is allowed, the file's size.
    for name in [header::ALLOW, header::CONTENT_RANGE] {
        if let Some(v) = response.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The request headers a browser-side client may send (lower case, as preflights name them):
/// pagecast's own, and those web-record's request helper adds for its API gateway (`x-date`,
/// `content-md5`; its `Authorization: hmac ...` is ignored without API tokens), so such a
/// client passes its preflight unchanged. `Accept` is listed for values outside the CORS
/// safelist.
const ALLOWED_REQUEST_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "range",
    REQUEST_ID_HEADER,
    "accept",
    "x-date",
    "content-md5",
];

/// CORS for the allowed origins: preflights are answered, responses carry
/// `Access-Control-Allow-Origin`.
fn cors(origins: &CorsOrigins) -> CorsLayer {
    let allow = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
        CorsOrigins::None => AllowOrigin::list([]),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
        .allow_headers(ALLOWED_REQUEST_HEADERS.map(axum::http::HeaderName::from_static))
        .expose_headers([
            axum::http::HeaderName::from_static(REQUEST_ID_HEADER),
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_requests() {
        assert!(is_action_request(&Method::POST, "/"));
        assert!(!is_action_request(&Method::GET, "/"));
        assert!(!is_action_request(&Method::POST, "/files/x"));
        assert!(is_action_request(&Method::POST, "/record"));
        assert!(!is_action_request(&Method::POST, "/record/"));
    }

    #[test]
    fn allowed_request_headers_are_valid_lower_case_names() {
        for name in ALLOWED_REQUEST_HEADERS {
            let parsed = axum::http::HeaderName::from_static(name);
            assert_eq!(parsed.as_str(), name);
        }
    }
}
