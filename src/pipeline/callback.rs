//! The callback stage: POST the task's Describe JSON to its CallbackURL. Deliveries live in a
//! durable outbox in Redis and are retried with exponential backoff and jitter until the
//! receiver answers 2xx or the retry period is spent; the outcome lands in the result and in
//! Describe's `Callback`.

use std::time::Duration;

use tracing::{info, warn};

use super::WorkerContext;
use crate::clock::{now_ms, now_s};
use crate::error::ErrorCode;
use crate::metrics;
use crate::task::Status;
use crate::task::moves;
use crate::task::store::StoreError;
use crate::task::{CallbackDelivery, CallbackState};

/// The header carrying the callback's signature.
pub(crate) const SIGNATURE_HEADER: &str = "X-Pagecast-Signature";

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`. Receivers compute the same over the
/// raw request body and compare in constant time.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Identifies a delivery across retries, so a receiver can drop duplicates.
pub(crate) const EVENT_ID_HEADER: &str = "X-Pagecast-Event-Id";

/// The wait before attempt `attempts + 1`: `base · 2^(attempts-1)` capped at `max`, scaled by a
/// random factor in [0.5, 1) so that receivers recovering from an outage are not hit by every
/// retry at once.
pub(crate) fn backoff(attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    exp.min(max).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Runs one callback job: one delivery attempt. A failed attempt goes back to the outbox in
/// Redis with its next due time (so it survives restarts and holds no worker meanwhile) until
/// the retry period or the attempt limit is spent; then the task finishes with CallbackFailed.
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
    let now = now_ms();
    let mut delivery = task.callback.clone().unwrap_or_else(|| CallbackDelivery {
        first_attempt_ms: now,
        event_id: uuid::Uuid::new_v4().to_string(),
        ..CallbackDelivery::default()
    });
    // The receiver sees the task as Describe shows it now, in status `callback`, as the source
    // product posts it, with the time it finishes (the same FinishTime Describe shows after).
    let finish_time = now_s();
    task.status = Status::Callback;
    task.finish_time = Some(finish_time);
    // Checked at Start; checked again now, since a name may resolve differently today.
    if let Err(why) = crate::url_guard::check_url(&url, &ctx.cfg.url_policy()).await {
        delivery.last_error = Some(format!("the CallbackURL {why}"));
        return give_up(ctx, id, fence, task, delivery, finish_time).await;
    }
    delivery.attempts += 1;
    delivery.next_attempt_ms = None;
    // Stored before it is sent: if this worker dies while the receiver has the request, the
    // worker that takes the delivery over sends the same event id (and counts this attempt).
    ctx.store
        .set_callback(id, &ctx.worker_id, fence, &delivery)
        .await?;
    let mut stats = task.stats.clone().unwrap_or_default();
    stats.callback_attempts = delivery.attempts;
    task.stats = Some(stats);
    task.callback = Some(CallbackDelivery {
        state: CallbackState::Delivered,
        ..delivery.clone()
    });
    // `Output.Snapshots`: the pictures, as Describe lists them.
    let snapshots = match task.spec.output.snapshots {
        Some(_) => match ctx.store.snapshots(id).await {
            Ok(list) => Some(list),
            Err(e) => {
                warn!(error = %e, "the snapshots could not be read for the callback");
                None
            }
        },
        None => None,
    };
    let mut json = crate::task::wire::render(
        &task,
        &uuid::Uuid::new_v4().to_string(),
        snapshots.as_deref(),
        ctx.url_signer.as_ref(),
        now_s(),
    );
    // A key pagecast generated is handed to the receiver, and only to it (never in Describe).
    let generated_key = match ctx.store.secrets(id).await {
        Ok(s) if s.key_generated => s.encrypt_key,
        _ => None,
    };
    if let (Some(key), Some(obj)) = (generated_key.as_ref(), json.as_object_mut()) {
        // As hex: `EncryptKey` means a string whose first 16 bytes are the key.
        obj.insert(
            "EncryptKeyHex".into(),
            serde_json::Value::from(key.as_str()),
        );
    }
    let body = serde_json::to_vec(&json).unwrap_or_default();
    let http = match client(
        &url,
        ctx.cfg.url_policy(),
        ctx.cfg.callback_attempt_timeout(),
    ) {
        Ok(c) => c,
        Err(e) => {
            delivery.last_error = Some(format!("no HTTP client: {}", error_chain(&e)));
            return give_up(ctx, id, fence, task, delivery, finish_time).await;
        }
    };
    let mut request = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, &delivery.event_id);
    if let Some(secret) = &ctx.cfg.callback_secret {
        request = request.header(
            SIGNATURE_HEADER,
            signature(secret.expose().as_bytes(), &body),
        );
    }
    metrics::inc(&metrics::CALLBACK_ATTEMPTS, &[]);
    let error = match request.body(body).send().await {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!(
            "the receiver answered HTTP {}",
            resp.status().as_u16()
        )),
        Err(e) => Some(format!(
            "the request failed: {}",
            crate::redact::text(&error_chain(&e))
        )),
    };
    let Some(error) = error else {
        info!(attempts = delivery.attempts, "callback delivered");
        delivery.state = CallbackState::Delivered;
        let t = moves::callback_done(
            finish_time,
            task.result.clone(),
            task.stats.clone(),
            delivery,
        )
        .with_lease(ctx.worker_id.clone(), fence);
        ctx.store.transition(id, t).await?;
        if generated_key.is_some() {
            ctx.store.drop_secrets(id).await?;
        }
        return Ok(());
    };
    warn!(attempt = delivery.attempts, %error, "callback not delivered");
    metrics::inc(&metrics::CALLBACK_FAILURES, &[]);
    delivery.last_error = Some(error);
    let cfg = &ctx.cfg;
    let wait = backoff(
        delivery.attempts,
        Duration::from_millis(cfg.callback_backoff_ms.max(1)),
        Duration::from_secs(cfg.callback_max_backoff_seconds.max(1)),
        fastrand::f64(),
    );
    let due = now_ms() + wait.as_millis() as i64;
    let budget_end = delivery.first_attempt_ms + (cfg.callback_retry_seconds as i64) * 1000;
    let attempts_left = cfg.callback_attempts == 0 || delivery.attempts < cfg.callback_attempts;
    if !attempts_left || due > budget_end {
        return give_up(ctx, id, fence, task, delivery, finish_time).await;
    }
    delivery.state = CallbackState::Pending;
    delivery.next_attempt_ms = Some(due);
    ctx.store
        .defer_callback(
            id,
            &ctx.worker_id,
            fence,
            &delivery,
            task.stats.as_ref(),
            due,
        )
        .await
}

/// The retry budget is spent (or the URL is refused): the task finishes with CallbackFailed and
/// keeps its files.
async fn give_up(
    ctx: &WorkerContext,
    id: &str,
    fence: u64,
    task: crate::task::TaskRecord,
    mut delivery: CallbackDelivery,
    finish_time: i64,
) -> Result<(), StoreError> {
    delivery.state = CallbackState::Failed;
    delivery.next_attempt_ms = None;
    let why = delivery.last_error.clone().unwrap_or_default();
    warn!(attempts = delivery.attempts, error = %why, "callback given up");
    let mut result = task.result.clone().unwrap_or_default();
    result
        .error_code
        .get_or_insert_with(|| ErrorCode::CallbackFailed.as_str().to_string());
    result.error_message.get_or_insert_with(|| {
        format!(
            "callback to the CallbackURL failed after {} attempts: {why}",
            delivery.attempts
        )
    });
    let t = moves::callback_done(finish_time, Some(result), task.stats.clone(), delivery)
        .with_lease(ctx.worker_id.clone(), fence);
    ctx.store.transition(id, t).await?;
    // Undeliverable: a generated key must not outlive the task's delivery.
    ctx.store.drop_secrets(id).await
}

/// The HTTP client for one delivery to `url`: it connects only to addresses `policy` allows,
/// resolved once by its own resolver (no second lookup after the check), follows no redirect
/// (a redirect's target would skip the check) and goes through no proxy (the connection must
/// go to the checked address).
pub(crate) fn client(
    url: &str,
    policy: crate::url_guard::UrlPolicy,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let port = url::Url::parse(url)
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(80);
    crate::tls::http_client_builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(crate::url_guard::GuardedResolver::new(policy, port))
        .build()
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(600);
        assert_eq!(super::backoff(1, base, max, 1.0), Duration::from_secs(2));
        assert_eq!(super::backoff(2, base, max, 1.0), Duration::from_secs(4));
        assert_eq!(super::backoff(5, base, max, 1.0), Duration::from_secs(32));
        assert_eq!(super::backoff(30, base, max, 1.0), max);
        assert_eq!(super::backoff(1, base, max, 0.0), Duration::from_secs(1));
        assert_eq!(super::backoff(u32::MAX, base, max, 0.5), max.mul_f64(0.75));
    }

    /// The delivery client connects only to addresses the policy allows, checked by its own
    /// resolver: `localhost` resolves to loopback, refused unless loopback is named.
    #[tokio::test]
    async fn the_client_connects_only_to_addresses_the_policy_allows() {
        use crate::url_guard::{PrivateAllowList, UrlPolicy};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://localhost:{port}/ok");
        let post = |policy: UrlPolicy| {
            let url = url.clone();
            async move {
                super::client(&url, policy, Duration::from_secs(5))
                    .unwrap()
                    .post(&url)
                    .body("{}")
                    .send()
                    .await
            }
        };
        let err = post(UrlPolicy::default()).await.unwrap_err();
        let chain = super::error_chain(&err);
        assert!(
            chain.contains("localhost resolves to")
                && chain.contains("PAGECAST_ALLOW_PRIVATE_URLS"),
            "{chain}"
        );
        // Private networks allowed: loopback, this machine's own, still is not...
        let err = post(UrlPolicy {
            allow_private: true,
            ..UrlPolicy::default()
        })
        .await
        .unwrap_err();
        assert!(
            super::error_chain(&err).contains("an address of this machine"),
            "{err}"
        );
        // ...until named.
        let resp = post(UrlPolicy {
            allow_private: true,
            allowed_private: PrivateAllowList::parse("127.0.0.0/8,::1").unwrap(),
            ..UrlPolicy::default()
        })
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        // Only the allowed one of localhost's addresses is used.
        let resp = post(UrlPolicy {
            allowed_private: PrivateAllowList::parse("127.0.0.1").unwrap(),
            ..UrlPolicy::default()
        })
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        // The service's own port stays refused even then.
        let err = post(UrlPolicy {
            allow_private: true,
            service_ports: Some(vec![port].into()),
            ..UrlPolicy::default()
        })
        .await
        .unwrap_err();
        assert!(super::error_chain(&err).contains("own listener"), "{err}");
    }

    #[test]
    fn signature_matches_the_hmac_sha256_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
