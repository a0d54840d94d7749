//! What operators look at: liveness (`/healthz`), readiness (`/readyz`), metrics (`/metrics`),
//! request ids and the environment checks of `pagecast doctor`.
//!
//! `serve` mounts [`router`] beside the Action API; `pagecast worker` serves it on its own
//! address (`PAGECAST_METRICS_LISTEN`) so workers can be probed and scraped too.

pub mod doctor;
pub(crate) mod frames;
pub mod health;
pub mod live;
pub mod starting;

/// The metrics registry: a leaf module of its own ([`crate::metrics`]), which every layer records
/// into; its old path is kept.
use crate::metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::ErrorCode;
use health::Readiness;

/// The request-id header: taken from the request when it carries a sensible one, else made up;
/// always echoed on the response.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of a request: the client's `X-Request-Id` when it is 1 to 128 visible ASCII
/// characters, else a new UUID.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(usable_request_id)
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// A client's request id, trimmed, when it is 1 to 128 visible ASCII characters.
pub(crate) fn usable_request_id(value: &str) -> Option<&str> {
    Some(value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
}

/// Sets `X-Request-Id` on a response.
pub(crate) fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// State of the operations endpoints.
#[derive(Clone, Debug)]
pub struct OpsState {
    /// What readiness checks.
    pub readiness: Readiness,
    /// Whether `/metrics` also reports the whole service's state from Redis (tasks by status,
    /// queue depths). The API process does; worker processes report only their own metrics, so
    /// the service-wide numbers are not counted once per worker.
    pub service_metrics: bool,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router(state: OpsState) -> Router {
    let (probes, metrics) = routers(state);
    probes.merge(metrics)
}

/// `/healthz` and `/readyz`; and `/metrics` apart (the API puts a token check on it).
pub(crate) fn routers(state: OpsState) -> (Router, Router) {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    let metrics = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(state);
    (probes, metrics)
}

/// [`routers`] of a process that cannot reach Redis yet: alive, not ready (saying what the last
/// attempt to connect found), and only its own metrics.
pub(crate) fn starting_routers(connect: starting::ConnectState) -> (Router, Router) {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(starting::starting_readyz))
        .with_state(connect);
    let metrics = Router::new().route("/metrics", get(process_metrics));
    (probes, metrics)
}

/// `/healthz` and `/readyz` and `/metrics` of a process that cannot reach Redis yet.
pub fn starting_router(connect: starting::ConnectState) -> Router {
    let (probes, metrics) = starting_routers(connect);
    probes.merge(metrics)
}

/// The process's own metrics only.
async fn process_metrics() -> Response {
    metrics_response()
}

/// Liveness: the process answers. Checks no dependency.
async fn healthz(headers: HeaderMap) -> Response {
    let rid = request_id(&headers);
    with_request_id(
        axum::Json(json!({ "Status": "ok", "RequestID": rid })).into_response(),
        &rid,
    )
}

/// Readiness: 200 with every check when all pass; 503 `ServiceUnavailable` naming the failed
/// ones otherwise.
async fn readyz(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    let rid = request_id(&headers);
    let checks = state.readiness.check().await;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let resp = if failed.is_empty() {
        axum::Json(json!({ "Status": "ready", "Checks": checks, "RequestID": rid })).into_response()
    } else {
        let code = ErrorCode::ServiceUnavailable;
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ErrorCode": code.as_str(),
                "ErrorMessage": format!("not ready: {}", failed.join("; ")),
                "Status": "unready",
                "Checks": checks,
                "RequestID": rid,
            })),
        )
            .into_response()
    };
    with_request_id(resp, &rid)
}

/// Prometheus text format.
async fn metrics_text(State(state): State<OpsState>) -> Response {
    if state.service_metrics {
        collect_service_metrics(&state.readiness.store).await;
    }
    if let Some((dir, _)) = &state.readiness.work_disk {
        collect_disk_metrics(dir);
    }
    metrics_response()
}

fn metrics_response() -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::registry().render(),
    )
        .into_response()
}

/// Sets the work disk's free bytes (a process that runs a worker).
fn collect_disk_metrics(dir: &std::path::Path) {
    match doctor::free_bytes(dir) {
        Some(free) => metrics::set(&metrics::WORK_DISK_FREE, &[], free as f64),
        None => metrics::registry().remove(&metrics::WORK_DISK_FREE, &[]),
    }
}

/// Sets the service-wide gauges from Redis. When Redis does not answer they keep their last
/// values (and the failure is logged), so a scrape during an outage still succeeds.
async fn collect_service_metrics(store: &crate::task::store::TaskStore) {
    let reg = metrics::registry();
    match store.status_counts().await {
        Ok(counts) => {
            // Every status appears, zero or not, so dashboards see a complete set.
            let series = crate::task::Status::ALL
                .iter()
                .map(|s| {
                    let n = counts.get(s.as_str()).copied().unwrap_or(0);
                    (vec![("status", s.as_str().to_string())], n as f64)
                })
                .collect();
            reg.replace(&metrics::TASKS, series);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: counting tasks failed"),
    }
    match store.queue_depths().await {
        Ok(depths) => reg.replace(
            &metrics::QUEUE_DEPTH,
            depths
                .into_iter()
                .map(|((stage, node), n)| (vec![("stage", stage), ("node", node)], n as f64))
                .collect(),
        ),
        Err(e) => tracing::warn!(error = %e, "metrics: reading queue depths failed"),
    }
    match store.pending_callbacks().await {
        Ok(n) => reg.set(&metrics::CALLBACK_OUTBOX, &[], n as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: reading the callback outbox failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_come_from_the_client_when_sensible() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        let long = "x".repeat(129);
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_eq!(request_id(&h).len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
