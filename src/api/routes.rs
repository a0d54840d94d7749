//! The HTTP surface: `POST /` (the Action endpoint), `GET /files/{path}` (local results),
//! and the operations endpoints of [`crate::ops`] (`/healthz`, `/readyz`, `/metrics`). Authentication and the body limit are checked before anything else.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use super::describe::describe_json;
use super::error::ApiError;
use super::start::{StartLimits, parse_start};
use crate::task::store::{ControlMsg, StoreError, TaskStore, TimeField, Transition};
use crate::task::{ActionEffect, ControlAction, Status, action_effect};

/// Shared state of the API.
#[derive(Clone)]
pub struct ApiState {
    /// The task store.
    pub store: TaskStore,
    /// Accepted bearer tokens; empty = no authentication.
    pub tokens: Arc<Vec<String>>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
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
}

/// The router; tests call it in-process.
pub fn app(state: ApiState) -> Router {
    let ops = crate::ops::router(crate::ops::OpsState {
        readiness: state.readiness.clone(),
        service_metrics: true,
    });
    Router::new()
        .route("/", post(action))
        .route("/files/{*path}", get(file))
        .fallback(not_found)
        .with_state(state)
        .merge(ops)
}

fn ok(request_id: &str, mut body: Value) -> Response {
    body["RequestID"] = Value::String(request_id.to_string());
    crate::ops::with_request_id(axum::Json(body).into_response(), request_id)
}

/// Compares without an early exit, so the time taken does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    if state.tokens.is_empty() {
        return true;
    }
    // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    // Check every token (no early exit) so timing does not tell which one is close.
    state.tokens.iter().fold(false, |found, t| {
        constant_time_eq(t.as_bytes(), given.as_bytes()) | found
    })
}

async fn action(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let request_id = crate::ops::request_id(&headers);
    let span = info_span!("request", request_id = %request_id);
    async move {
        let mut action = "unknown";
        let result = handle(&state, &headers, body, &request_id, &mut action).await;
        count_request(action, result.as_ref().err().map(|e| e.code));
        match result {
            Ok(body) => ok(&request_id, body),
            Err(e) => {
                // Messages may quote the request's URLs: logged redacted.
                let message = crate::redact::text(&e.message);
                if e.code.http_status() >= 500 {
                    warn!(code = %e.code, %message, "request failed");
                } else {
                    info!(code = %e.code, %message, "request rejected");
                }
                e.into_response_with(&request_id)
            }
        }
    }
    .instrument(span)
    .await
}

/// Counts a request in the metrics; `action` is `unknown` when the body named no known one.
fn count_request(action: &'static str, error: Option<crate::error::ErrorCode>) {
    use crate::ops::metrics;
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

/// The Action names, as `'static` metric labels.
const ACTIONS: [&str; 6] = ["Start", "Describe", "Pause", "Resume", "Refresh", "Stop"];

async fn handle(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    counted_as: &mut &'static str,
) -> Result<Value, ApiError> {
    if !authorized(state, headers) {
        return Err(ApiError::unauthorized());
    }
    let bytes: Bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::payload_too_large(state.max_body_bytes))?;
    let request: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = &request else {
        return Err(ApiError::malformed(
            "the body must be a JSON object with Action and Data",
        ));
    };
    let action = match obj.get("Action") {
        Some(Value::String(a)) => a.as_str(),
        None | Some(Value::Null) => return Err(ApiError::missing("Action")),
        Some(other) => {
            return Err(ApiError::invalid(
                "Action",
                format!("must be a string, got {}", super::error::echo(other)),
            ));
        }
    };
    if let Some(known) = ACTIONS.iter().find(|a| **a == action) {
        *counted_as = known;
    }
    let data = obj.get("Data").cloned().unwrap_or(Value::Null);
    info!(action, "request");
    match action {
        "Start" => start(state, &data).await,
        "Describe" => {
            let id = task_id(&data)?;
            let task = state.store.get(&id).await.map_err(store_error)?;
            Ok(describe_json(&task, request_id))
        }
        "Pause" => control(state, &data, ControlAction::Pause).await,
        "Resume" => control(state, &data, ControlAction::Resume).await,
        "Refresh" => control(state, &data, ControlAction::Refresh).await,
        "Stop" => control(state, &data, ControlAction::Stop).await,
        other => Err(ApiError::unsupported_action(other)),
    }
}

fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::NotFound(id) => ApiError::task_not_found(id),
        _ => ApiError::from_coded(&e),
    }
}

fn task_id(data: &Value) -> Result<String, ApiError> {
    match data {
        Value::Object(m) => match m.get("TaskID") {
            Some(Value::String(s)) => uuid::Uuid::parse_str(s.trim())
                .map(|u| u.to_string())
                .map_err(|_| {
                    ApiError::invalid(
                        "Data.TaskID",
                        format!(
                            "must be a TaskID returned by Start, got {}",
                            super::error::echo_str(s)
                        ),
                    )
                }),
            None | Some(Value::Null) => Err(ApiError::missing("Data.TaskID")),
            Some(other) => Err(ApiError::invalid(
                "Data.TaskID",
                format!("must be a string, got {}", super::error::echo(other)),
            )),
        },
        Value::Null => Err(ApiError::missing("Data")),
        other => Err(ApiError::invalid(
            "Data",
            format!("must be an object, got {}", super::error::echo(other)),
        )),
    }
}

async fn start(state: &ApiState, data: &Value) -> Result<Value, ApiError> {
    let (spec, secrets) = parse_start(data, &state.limits)?;
    crate::url_guard::check_url(&spec.record_url, &state.url_policy)
        .await
        .map_err(|why| ApiError::invalid("Data.RecordURL", why))?;
    if let Some(cb) = &spec.callback_url {
        crate::url_guard::check_url(cb, &state.url_policy)
            .await
            .map_err(|why| ApiError::invalid("Data.CallbackURL", why))?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::pipeline::now_s();
    state
        .store
        .create(&id, &spec, &secrets, now, state.max_queued)
        .await
        .map_err(store_error)?;
    info!(task_id = %id, url = %crate::redact::url(&spec.record_url), "task created");
    Ok(json!({ "TaskID": id }))
}

async fn control(state: &ApiState, data: &Value, action: ControlAction) -> Result<Value, ApiError> {
    let id = task_id(data)?;
    // Optimistic concurrency: read, decide, compare-and-set; a lost race re-reads and decides again.
    for _ in 0..8 {
        let task = state.store.get(&id).await.map_err(store_error)?;
        let msg = match action {
            ControlAction::Pause => ControlMsg::Pause,
            ControlAction::Resume => ControlMsg::Resume,
            ControlAction::Refresh => ControlMsg::Refresh,
            ControlAction::Stop => ControlMsg::Stop,
        };
        match action_effect(action, task.status) {
            ActionEffect::AlreadyDone => return Ok(json!({ "TaskID": id })),
            ActionEffect::NotAllowed => {
                return Err(ApiError::invalid_state(action.as_str(), task.status));
            }
            ActionEffect::Signal => {
                state.store.signal(&id, msg).await.map_err(store_error)?;
                info!(task_id = %id, action = action.as_str(), "signalled");
                return Ok(json!({ "TaskID": id }));
            }
            ActionEffect::Move(to) => {
                let now = crate::pipeline::now_s();
                let mut t = Transition::new(task.status, to);
                t.control = Some(msg);
                if action == ControlAction::Stop {
                    t.times.push((TimeField::Cancel, now));
                }
                if to == Status::Finished {
                    t.times.push((TimeField::Finish, now));
                }
                match state.store.transition(&id, t).await {
                    Ok(()) => {
                        info!(task_id = %id, action = action.as_str(), from = %task.status, to = %to, "task moved");
                        return Ok(json!({ "TaskID": id }));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
    }
    Err(ApiError::new(
        crate::error::ErrorCode::ServiceUnavailable,
        "the task is changing too fast; try again",
    ))
}

/// Any other path or method: the error envelope, like every other answer.
async fn not_found(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    ApiError::new(
        crate::error::ErrorCode::ResourceNotFound,
        format!(
            "there is no {method} {}; the Actions are POSTed to /",
            uri.path()
        ),
    )
    .into_response_with(&crate::ops::request_id(&headers))
}

fn no_such_file(rid: &str) -> Response {
    ApiError::new(crate::error::ErrorCode::ResourceNotFound, "no such file").into_response_with(rid)
}

/// Serves a local result file. Paths are confined to the output directory.
async fn file(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let rid = crate::ops::request_id(&headers);
    let Ok(UrlPath(path)) = path else {
        return no_such_file(&rid);
    };
    let safe = !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
    if !safe {
        return no_such_file(&rid);
    }
    let full = state.output_dir.join(&path);
    match tokio::fs::read(&full).await {
        Ok(bytes) => {
            let ctype = match full.extension().and_then(|e| e.to_str()) {
                Some("mp4") => "video/mp4",
                Some("m3u8") => "application/vnd.apple.mpegurl",
                Some("ts") => "video/mp2t",
                _ => "application/octet-stream",
            };
            let mut resp = ([(header::CONTENT_TYPE, ctype)], bytes).into_response();
            if let Ok(v) = HeaderValue::from_str(&rid) {
                resp.headers_mut().insert("x-request-id", v);
            }
            resp
        }
        Err(_) => no_such_file(&rid),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokem"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
