//! The key that signs result URLs: `PAGECAST_URL_SIGNING_KEY` (or its `_FILE`) when set;
//! otherwise one random key, made by the first process that asks and kept in Redis (`SET NX`),
//! so every process of the service (API servers, workers) signs and checks with the same key.

use std::time::Duration;

use redis::AsyncCommands;

/// The Redis key (below the service's prefix) holding the generated signing key.
pub const REDIS_KEY: &str = "url-signing-key";

/// How long one attempt to reach Redis may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared key from Redis, creating it if no process has yet. The error names what failed,
/// never the key (nor the Redis password).
pub async fn shared_key(redis_url: &str, prefix: &str) -> Result<Vec<u8>, String> {
    let attempt = async {
        let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let key = format!("{prefix}{REDIS_KEY}");
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| format!("no randomness: {e}"))?;
        // Only the first process's key is stored; every process then reads that one.
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(hex::encode(fresh))
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let stored: Option<String> = conn.get(&key).await.map_err(|e| e.to_string())?;
        match stored {
            Some(k) if k.len() >= 32 => Ok(k.into_bytes()),
            _ => Err(format!("the key {key} in Redis is missing or too short")),
        }
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r.map_err(|e| format!("reading the URL signing key from Redis: {e}")),
        Err(_) => Err("reading the URL signing key from Redis: no answer within 5 s".into()),
    }
}
