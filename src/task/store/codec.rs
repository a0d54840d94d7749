//! Encoding and decoding what the store keeps, and reading script replies.

use super::*;

pub(super) fn lease_checked_reply(
    what: &str,
    id: &str,
    reply: &[String],
) -> Result<(), StoreError> {
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(()),
        Some("leaselost") => Err(StoreError::LeaseLost),
        Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
        _ => Err(unexpected(what, reply)),
    }
}

pub(super) fn unexpected(what: &str, reply: &[String]) -> StoreError {
    StoreError::Corrupt(format!(
        "unexpected reply of the {what} script: {:?}",
        reply.first()
    ))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

pub(super) fn parse_status(s: Option<&String>) -> Result<Status, StoreError> {
    s.and_then(|s| Status::parse(s))
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

/// `[k1, v1, k2, v2, ...]` → map.
pub(super) fn pairs(flat: &[String]) -> HashMap<String, String> {
    flat.chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

/// Builds a record from the task hash fields.
pub(super) fn decode_record(
    id: &str,
    mut f: HashMap<String, String>,
) -> Result<TaskRecord, StoreError> {
    let corrupt = |field: &str, e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("task {id}: field {field}: {e}"))
    };
    let status = f
        .get("status")
        .ok_or_else(|| corrupt("status", &"missing"))?;
    let status = Status::parse(status)
        .ok_or_else(|| corrupt("status", &format!("unknown status {status:?}")))?;
    let int = |f: &HashMap<String, String>, name: &str| -> Result<Option<i64>, StoreError> {
        match f.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| corrupt(name, &e)),
        }
    };
    let create_time = int(&f, "create_time")?.ok_or_else(|| corrupt("create_time", &"missing"))?;
    let start_time = int(&f, "start_time")?;
    let cancel_time = int(&f, "cancel_time")?;
    let stop_time = int(&f, "stop_time")?;
    let stop_time_ms = int(&f, "stop_ms")?;
    let finish_time = int(&f, "finish_time")?;
    let fence = int(&f, "fence")?.unwrap_or(0);
    let fence = u64::try_from(fence).map_err(|e| corrupt("fence", &e))?;
    let restarts = int(&f, "restarts")?.unwrap_or(0);
    let restarts = u32::try_from(restarts).map_err(|e| corrupt("restarts", &e))?;
    let spec = f.get("spec").ok_or_else(|| corrupt("spec", &"missing"))?;
    let spec: StartSpec = serde_json::from_str(spec).map_err(|e| corrupt("spec", &e))?;
    let result = match f.get("result").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(serde_json::from_str::<TaskResult>(v).map_err(|e| corrupt("result", &e))?),
    };
    let stats = match f.get("stats").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(serde_json::from_str::<TaskStats>(v).map_err(|e| corrupt("stats", &e))?),
    };
    let callback = match f.get("callback").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            Some(serde_json::from_str::<CallbackDelivery>(v).map_err(|e| corrupt("callback", &e))?)
        }
    };
    let owner = f.remove("owner").filter(|v| !v.is_empty());
    let node = f.remove("node").filter(|v| !v.is_empty());
    Ok(TaskRecord {
        id: id.to_owned(),
        status,
        create_time,
        start_time,
        cancel_time,
        stop_time,
        stop_time_ms,
        finish_time,
        spec,
        result,
        stats,
        owner,
        fence,
        node,
        restarts,
        callback,
    })
}

/// The result as it is kept and shown: its message through [`crate::redact::message`] (every
/// message a task keeps is written here, so none keeps what must not be shown).
pub(super) fn shown_result(r: &TaskResult) -> TaskResult {
    let mut r = r.clone();
    r.error_message = r.error_message.as_deref().map(crate::redact::message);
    r
}

/// The callback delivery as it is kept and shown (see [`shown_result`]).
pub(super) fn shown_delivery(d: &CallbackDelivery) -> CallbackDelivery {
    let mut d = d.clone();
    d.last_error = d.last_error.as_deref().map(crate::redact::message);
    d
}

/// Now, in Unix milliseconds.
pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `secs` in milliseconds: `now_ms` when that is within second `secs`, else the second's start.
pub(super) fn stop_millis(secs: i64, now_ms: i64) -> i64 {
    if now_ms.div_euclid(1000) == secs {
        now_ms
    } else {
        secs.saturating_mul(1000)
    }
}
