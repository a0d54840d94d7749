//! The callback stage: POST the task's Describe JSON to its CallbackURL, retrying with backoff
//! until the receiver answers 2xx or the attempts are spent; the outcome lands in the result.

use std::time::Duration;

use tracing::{info, warn};

use super::{WorkerContext, now_ms, now_s};
use crate::api::describe::describe_json;
use crate::error::ErrorCode;
use crate::task::Status;
use crate::task::store::{StoreError, TimeField, Transition};

/// The header carrying the callback's signature.
pub const SIGNATURE_HEADER: &str = "X-Pagecast-Signature";

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`. Receivers compute the same over the
/// raw request body and compare in constant time.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs one callback job.
pub async fn run(ctx: WorkerContext, id: String) -> Result<(), StoreError> {
    let (ctx, id) = (&ctx, id.as_str());
    let Some((fence, mut task)) = ctx.claim_stage(id, Status::Callback).await? else {
        return Ok(());
    };
    let Some(url) = task.spec.callback_url.clone() else {
        return ctx
            .finish_or_callback(id, Status::Callback, Some(fence), task.result.clone())
            .await;
    };
    // The receiver sees the final state: finished, with the finish time.
    let finish_time = now_s();
    task.status = Status::Finished;
    task.finish_time = Some(finish_time);
    // Checked at Start; checked again now, since a name may resolve differently today.
    if let Err(why) = crate::url_guard::check_url(&url, ctx.cfg.url_policy()).await {
        let mut result = task.result.clone().unwrap_or_default();
        result
            .error_code
            .get_or_insert_with(|| ErrorCode::CallbackFailed.as_str().to_string());
        result
            .error_message
            .get_or_insert_with(|| format!("the CallbackURL {why}"));
        let mut t = Transition::new(Status::Callback, Status::Finished);
        t.lease = Some((ctx.worker_id.clone(), fence));
        t.times = vec![(TimeField::Finish, finish_time)];
        t.result = Some(result);
        t.release_lease = true;
        return ctx.store.transition(id, t).await;
    }
    let attempts = ctx.cfg.callback_attempts.max(1);
    let mut last_error = String::new();
    let mut delivered = false;
    let mut made = 0;
    for attempt in 1..=attempts {
        made = attempt;
        let mut stats = task.stats.clone().unwrap_or_default();
        stats.callback_attempts = attempt;
        task.stats = Some(stats);
        let body = serde_json::to_vec(&describe_json(&task, &uuid::Uuid::new_v4().to_string()))
            .unwrap_or_default();
        let mut request = ctx
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &ctx.cfg.callback_secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), &body),
            );
        }
        match request.body(body).send().await {
            Ok(resp) if resp.status().is_success() => {
                delivered = true;
                break;
            }
            Ok(resp) => {
                last_error = format!("the receiver answered HTTP {}", resp.status().as_u16())
            }
            Err(e) => last_error = format!("the request failed: {e}"),
        }
        warn!(attempt, error = %last_error, "callback not delivered");
        if attempt < attempts {
            let wait = Duration::from_millis(500u64 << (attempt - 1).min(6));
            let _ = ctx
                .store
                .renew(
                    id,
                    &ctx.worker_id,
                    fence,
                    now_ms(),
                    ctx.lease_ms() + wait.as_millis() as i64,
                )
                .await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.shutdown.cancelled() => break,
            }
        }
    }
    let mut result = task.result.clone().unwrap_or_default();
    if delivered {
        info!(attempts = made, "callback delivered");
    } else {
        result
            .error_code
            .get_or_insert_with(|| ErrorCode::CallbackFailed.as_str().to_string());
        result.error_message.get_or_insert_with(|| {
            format!("callback to the CallbackURL failed after {made} attempts: {last_error}")
        });
    }
    let mut t = Transition::new(Status::Callback, Status::Finished);
    t.lease = Some((ctx.worker_id.clone(), fence));
    t.times = vec![(TimeField::Finish, finish_time)];
    t.result = Some(result);
    t.stats = task.stats.clone();
    t.release_lease = true;
    ctx.store.transition(id, t).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_the_hmac_sha256_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
