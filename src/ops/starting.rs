//! What a process says before it has reached Redis: `/readyz` names what the last attempt to
//! connect found (credentials refused, a TLS failure, the wrong mode, a Redis too old, or no
//! answer), and the start-up log line says the same by kind, so an operator sees which setting
//! to fix instead of "not connected yet".

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{health, request_id, with_request_id};
use crate::error::ErrorCode;
use crate::task::store::StoreError;

/// The outcome of the last attempt to connect at start-up, shared by the connect loop (which
/// records each failure) and the starting `/readyz` (which shows it).
#[derive(Clone, Debug, Default)]
pub struct ConnectState(Arc<Mutex<Option<String>>>);

impl ConnectState {
    /// Records a failed attempt to connect.
    pub fn failed(&self, e: &StoreError) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(describe(e));
        }
    }

    /// What `/readyz` says of Redis now.
    pub(crate) fn detail(&self) -> String {
        let last = self.0.lock().ok().and_then(|l| l.clone());
        last.unwrap_or_else(|| "not connected yet".to_string()) + "; pagecast keeps trying"
    }
}

/// One line naming what a failed connection means: a misconfiguration by its kind
/// (`RedisAuth`, `RedisTls`, `RedisMode`, `RedisVersion`, …) with the fix and the setting it
/// concerns, or Redis not answering. Store errors never carry secrets.
pub(crate) fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Misconfigured { problem, detail } => format!("{problem}: {detail}"),
        StoreError::Unavailable(why) => format!("not reachable: {why}"),
        other => other.to_string(),
    }
}

/// The start-up log line's message for a failed connection, worded by its kind.
pub fn log_message(e: &StoreError) -> &'static str {
    match e {
        StoreError::Misconfigured { .. } => {
            "Redis refuses pagecast's configuration; fix the setting named, retrying meanwhile"
        }
        _ => "Redis is not reachable yet; retrying",
    }
}

/// Readiness before Redis was ever reached: 503, with what the last attempt found.
pub(crate) async fn starting_readyz(
    State(state): State<ConnectState>,
    headers: HeaderMap,
) -> Response {
    let rid = request_id(&headers);
    let detail = state.detail();
    let message = format!("not ready: redis: {detail}");
    let checks = [health::Check::new("redis", false, detail)];
    let code = ErrorCode::ServiceUnavailable;
    let resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "ErrorCode": code.as_str(),
            "ErrorMessage": message,
            "Status": "unready",
            "Checks": checks,
            "RequestID": rid,
        })),
    )
        .into_response();
    with_request_id(resp, &rid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::store::Misconfig;

    #[test]
    fn a_misconfiguration_is_named_by_kind_with_its_setting() {
        let state = ConnectState::default();
        assert_eq!(state.detail(), "not connected yet; pagecast keeps trying");
        let auth = StoreError::misconfigured(
            Misconfig::Auth,
            "Redis refused the credentials: check the user and password in PAGECAST_REDIS_URL",
        );
        state.failed(&auth);
        let detail = state.detail();
        assert!(detail.starts_with("RedisAuth: "), "{detail}");
        assert!(detail.contains("PAGECAST_REDIS_URL"), "{detail}");
        assert!(detail.ends_with("pagecast keeps trying"), "{detail}");
        assert_eq!(
            log_message(&auth),
            "Redis refuses pagecast's configuration; fix the setting named, retrying meanwhile"
        );
        // The last attempt wins: a Redis that stops refusing and stops answering says so.
        let down = StoreError::Unavailable("cannot connect: connection refused".into());
        state.failed(&down);
        assert!(state.detail().starts_with("not reachable: cannot connect"));
        assert_eq!(log_message(&down), "Redis is not reachable yet; retrying");
    }

    #[test]
    fn each_kind_is_shown_by_its_name() {
        for (kind, name) in [
            (Misconfig::Tls, "RedisTls"),
            (Misconfig::Mode, "RedisMode"),
            (Misconfig::Version, "RedisVersion"),
            (Misconfig::Permission, "RedisPermission"),
        ] {
            let shown = describe(&StoreError::misconfigured(kind, "why"));
            assert_eq!(shown, format!("{name}: why"));
        }
    }
}
