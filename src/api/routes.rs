//! The HTTP surface: `POST /` and `POST /record` (the Action endpoint), `GET /files/...` (local
//! results, signed URLs), and the operations endpoints of [`crate::ops`] (`/healthz`, `/readyz`,
//! `/metrics`), with the layers of [`super::layers`] around all of them.
//!
//! ```text
//!  request id → web-record compat → metrics → error envelope → Origin check → CORS
//!    ├─ POST /, /record: token → Content-Type: application/json → body limit → Action
//!    ├─ GET|HEAD /files/s/<expiry>/<sig>/<path>: signature → the file
//!    ├─ GET /metrics: token (when tokens are configured)
//!    └─ GET /healthz, /readyz
//! ```
//! Before Redis is reachable, `serve` answers with [`starting_app`]: the same surface, where
//! everything that needs Redis is 503.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

use super::error::ApiError;
use super::guard::{JsonBody, Tokens};
use super::layers::{HttpPolicy, surface};
use super::start::StartLimits;
use crate::delivery::signed_url::UrlSigner;
use crate::task::store::TaskStore;

/// Shared state of the API.
#[derive(Clone)]
pub struct ApiState {
    /// The task store.
    pub store: TaskStore,
    /// Accepted bearer tokens; empty = no authentication.
    pub tokens: Tokens,
    /// Start answers 429 beyond this many queued tasks.
    pub max_queued: u64,
    /// Limits of Start's strings.
    pub limits: StartLimits,
    /// Where local results live (served under /files/).
    pub output_dir: PathBuf,
    /// Which RecordURL/CallbackURL destinations are allowed.
    pub url_policy: crate::url_guard::UrlPolicy,
    /// What `/readyz` checks.
    pub readiness: crate::ops::health::Readiness,
    /// Signs and checks result URLs.
    pub signer: UrlSigner,
    /// Origins, compatibility mode, body limits.
    pub http: HttpPolicy,
}

/// The router; tests call it in-process.
pub fn app(state: ApiState) -> Router {
    let (probes, metrics) = crate::ops::routers(crate::ops::OpsState {
        readiness: state.readiness.clone(),
        service_metrics: true,
    });
    let tokens = state.tokens.clone();
    let policy = state.http.clone();
    let action = post(super::action::handle).with_state(state.clone());
    let files = get(super::files::serve).with_state(state);
    assemble(action, files, probes, metrics, &tokens, &policy)
}

/// What `serve` answers until Redis is reachable: `/healthz` 200, `/readyz` 503, the Action
/// endpoint and `/files` 503 `ServiceUnavailable` (after the same checks as later), `/metrics`
/// the process's own.
pub fn starting_app(
    tokens: &Tokens,
    policy: &HttpPolicy,
    connect: crate::ops::starting::ConnectState,
) -> Router {
    let (probes, metrics) = crate::ops::starting_routers(connect);
    let action = post(unavailable);
    let files = get(unavailable);
    assemble(action, files, probes, metrics, tokens, policy)
}

fn assemble(
    action: MethodRouter,
    files: MethodRouter,
    probes: Router,
    metrics: Router,
    tokens: &Tokens,
    policy: &HttpPolicy,
) -> Router {
    // Layers run outside in: the last added runs first.
    let action = action
        .route_layer(RequestBodyLimitLayer::new(policy.max_body_bytes))
        .route_layer(ValidateRequestHeaderLayer::custom(JsonBody))
        .route_layer(ValidateRequestHeaderLayer::custom(tokens.clone()));
    let metrics = metrics.route_layer(ValidateRequestHeaderLayer::custom(tokens.clone()));
    let router = Router::new()
        .route("/", action.clone())
        .route("/record", action)
        .route("/files/{*path}", files)
        .merge(probes)
        .merge(metrics)
        .fallback(not_found);
    surface(router, policy)
}

async fn unavailable(req: Request) -> Response {
    let rid = super::guard::request_id_of(req.headers());
    ApiError::new(
        crate::error::ErrorCode::ServiceUnavailable,
        "pagecast is starting and cannot reach Redis yet; retry later",
    )
    .into_response_with(&rid)
}

/// Any other path: the error envelope, like every other answer.
async fn not_found(req: Request) -> Response {
    let rid = super::guard::request_id_of(req.headers());
    ApiError::new(
        crate::error::ErrorCode::ResourceNotFound,
        format!(
            "there is no {} {}; the Actions are POSTed to /",
            req.method(),
            super::error::echo_str(req.uri().path())
        ),
    )
    .into_response_with(&rid)
}
