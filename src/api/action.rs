//! The Action endpoint (`POST /`, and `POST /record` as web-record's gateway path): the body
//! is read (within the size and time limits), its `Action` parsed into an [`Action`] and
//! dispatched. Authentication, the content type and the body limit were checked by the layers
//! before (see [`super::routes`]).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use super::error::ApiError;
use super::layers::ActionName;
use super::routes::ApiState;
use super::start::parse_start;
use crate::command::Command;
use crate::task::store::StoreError;
use crate::task::{ActionEffect, Status, action_effect};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a recording task.
    Start,
    /// Read a task.
    Describe,
    /// Stop adding content.
    Pause,
    /// Continue after a pause.
    Resume,
    /// Reload the page.
    Refresh,
    /// End the recording and deliver it.
    Stop,
    /// web-record's name for Stop.
    Cancel,
}

impl Action {
    /// Every action, in the order error messages list them.
    pub const ALL: [Action; 7] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Refresh,
        Action::Stop,
        Action::Cancel,
        Action::Describe,
    ];

    /// The wire name (case-sensitive), e.g. `"Start"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "Start",
            Action::Describe => "Describe",
            Action::Pause => "Pause",
            Action::Resume => "Resume",
            Action::Refresh => "Refresh",
            Action::Stop => "Stop",
            Action::Cancel => "Cancel",
        }
    }

    /// The action named `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The control this action applies to a task (`None` for Start and Describe).
    pub(crate) fn control(self) -> Option<Command> {
        match self {
            Action::Pause => Some(Command::Pause),
            Action::Resume => Some(Command::Resume),
            Action::Refresh => Some(Command::Refresh),
            Action::Stop | Action::Cancel => Some(Command::Stop),
            Action::Start | Action::Describe => None,
        }
    }
}

/// `POST /`: one Action.
pub(crate) async fn handle(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = super::guard::request_id_of(&headers);
    let span = info_span!("request", request_id = %request_id);
    async move {
        let mut named = None;
        let result = run(&state, body, &request_id, &mut named).await;
        let mut response = match result {
            Ok(mut body) => {
                body["RequestID"] = Value::String(request_id.clone());
                axum::Json(body).into_response()
            }
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
        };
        if let Some(action) = named {
            response
                .extensions_mut()
                .insert(ActionName(Action::as_str(action)));
        }
        response
    }
    .instrument(span)
    .await
}

/// Reads the whole body, within the time limit (the size limit is the body-limit layer's).
async fn read_body(body: Body, limit: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(limit, axum::body::to_bytes(body, usize::MAX)).await {
        Err(_) => Err(ApiError::request_timeout(limit.as_secs())),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let e = e.into_inner();
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::payload_too_large(usize::MAX));
                }
                source = s.source();
            }
            Err(ApiError::malformed(
                "the request body could not be read to its end",
            ))
        }
    }
}

async fn run(
    state: &ApiState,
    body: Body,
    request_id: &str,
    named: &mut Option<Action>,
) -> Result<Value, ApiError> {
    let bytes = read_body(body, state.http.body_read_timeout)
        .await
        .map_err(|e| match e.code {
            crate::error::ErrorCode::PayloadTooLarge => {
                ApiError::payload_too_large(state.http.max_body_bytes)
            }
            _ => e,
        })?;
    let request: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = &request else {
        return Err(ApiError::malformed(
            "the body must be a JSON object with Action and Data",
        ));
    };
    let name = match obj.get("Action") {
        Some(Value::String(a)) => a.as_str(),
        None | Some(Value::Null) if obj.contains_key("RecordAction") => {
            return Err(ApiError::new(
                crate::error::ErrorCode::MissingParam,
                "Action is required: RecordAction and RecordData (web-record's internal Tencent \
                 Cloud API envelope) are not offered; send Action and Data",
            ));
        }
        None | Some(Value::Null) => return Err(ApiError::missing("Action")),
        Some(other) => {
            return Err(ApiError::invalid(
                "Action",
                format!("must be a string, got {}", super::error::echo(other)),
            ));
        }
    };
    let action = Action::parse(name).ok_or_else(|| ApiError::unsupported_action(name))?;
    *named = Some(action);
    let data = obj.get("Data").cloned().unwrap_or(Value::Null);
    info!(action = action.as_str(), "request");
    match (action, action.control()) {
        (_, Some(control)) => control_task(state, &data, action, control).await,
        (Action::Start, None) => start(state, &data).await,
        (_, None) => {
            let id = task_id(&data)?;
            let task = state.store.get(&id).await.map_err(store_error)?;
            let snapshots = match task.spec.output.snapshots {
                Some(_) => Some(state.store.snapshots(&id).await.map_err(store_error)?),
                None => None,
            };
            Ok(crate::task::wire::render(
                &task,
                request_id,
                snapshots.as_deref(),
                Some(&state.signer),
                crate::clock::now_s(),
            ))
        }
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
    super::start::check_live_egress(&secrets.live_urls, &state.url_policy).await?;
    if let Some(cb) = spec
        .output
        .snapshots
        .as_ref()
        .and_then(|s| s.callback_url.as_ref())
    {
        crate::url_guard::check_url(cb, &state.url_policy)
            .await
            .map_err(|why| ApiError::invalid("Data.Output.Snapshots.CallbackURL", why))?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::clock::now_s();
    state
        .store
        .create(&id, &spec, &secrets, now, state.max_queued)
        .await
        .map_err(store_error)?;
    info!(task_id = %id, url = %crate::redact::url(&spec.record_url), "task created");
    Ok(json!({ "TaskID": id }))
}

async fn control_task(
    state: &ApiState,
    data: &Value,
    named: Action,
    action: Command,
) -> Result<Value, ApiError> {
    let id = task_id(data)?;
    // Optimistic concurrency: read, decide, compare-and-set; a lost race re-reads and decides again.
    for _ in 0..8 {
        let task = state.store.get(&id).await.map_err(store_error)?;
        match action_effect(action, task.status) {
            ActionEffect::AlreadyDone => return Ok(json!({ "TaskID": id })),
            ActionEffect::NotAllowed => {
                return Err(ApiError::invalid_state(named.as_str(), task.status));
            }
            ActionEffect::BeforeStart => {
                let paused = action == Command::Pause;
                match state.store.remember_pause(&id, paused).await {
                    Ok(()) => return Ok(json!({ "TaskID": id })),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_error(e)),
                }
            }
            ActionEffect::Signal => {
                state.store.signal(&id, action).await.map_err(store_error)?;
                info!(task_id = %id, action = named.as_str(), "signalled");
                return Ok(json!({ "TaskID": id }));
            }
            ActionEffect::Move(to) => {
                let now = crate::clock::now_s();
                let t = crate::task::moves::control(task.status, to, action, now);
                match state.store.transition(&id, t).await {
                    Ok(()) => {
                        info!(task_id = %id, action = named.as_str(), from = %task.status, to = %to, "task moved");
                        if task.status == Status::Normal
                            && to == Status::Canceled
                            && let Err(e) =
                                crate::task::prestart::end_if_unclaimed(&state.store, &id, now)
                                    .await
                        {
                            // The Stop took effect; a worker ends the task when it takes it up.
                            warn!(task_id = %id, error = %e, "ending the canceled task failed");
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_case_sensitively_and_cancel_is_stop() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("start"), None);
        assert_eq!(Action::parse("Explode"), None);
        assert_eq!(Action::Cancel.control(), Some(Command::Stop));
        assert_eq!(Action::Stop.control(), Some(Command::Stop));
        assert_eq!(Action::Start.control(), None);
        assert_eq!(Action::Describe.control(), None);
    }
}
