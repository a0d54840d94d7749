//! The key that signs result URLs: `PAGECAST_URL_SIGNING_KEY` (or its `_FILE`) when set;
//! otherwise one random key, made by the first process that asks and kept in Redis (`SET NX`),
//! so every process of the service (API servers, workers) signs and checks with the same key.
//! The settings live here rather than in `config.rs`, beside the only code that reads them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{ConfigError, invalid};
use crate::secret::{Secret, read_secret_file};

/// The Redis key (below the service's prefix) holding the generated signing key.
pub(crate) const REDIS_KEY: &str = "url-signing-key";

/// The shared key from Redis, creating it if no process has yet. The error names what failed,
/// never the key (nor the Redis password).
pub async fn shared_key(store: &crate::task::store::TaskStore) -> Result<Vec<u8>, String> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| format!("no randomness: {e}"))?;
    // Only the first process's key is stored; every process then reads that one.
    let stored = store
        .shared_value(REDIS_KEY, &hex::encode(fresh))
        .await
        .map_err(|e| format!("reading the URL signing key from Redis: {e}"))?;
    match stored {
        Some(k) if k.len() >= 32 => Ok(k.into_bytes()),
        _ => Err(format!(
            "the key {}{REDIS_KEY} in Redis is missing or too short",
            store.prefix()
        )),
    }
}

/// Shortest accepted `PAGECAST_URL_SIGNING_KEY`.
pub(crate) const MIN_URL_SIGNING_KEY_LEN: usize = 16;

/// Signed result URLs (shared by `serve` and `worker`: workers sign, API servers check).
#[derive(Debug, Clone, Args)]
pub struct UrlSigningConfig {
    /// Key that signs result URLs (`/files/...`), at least 16 characters; every process of the
    /// service needs the same. Default: a random key kept in Redis, which every process shares.
    /// Never logged.
    #[arg(long, env = "PAGECAST_URL_SIGNING_KEY", hide_env_values = true)]
    pub(crate) url_signing_key: Option<Secret>,
    /// A file holding the URL signing key (instead of PAGECAST_URL_SIGNING_KEY).
    #[arg(
        long,
        env = "PAGECAST_URL_SIGNING_KEY_FILE",
        conflicts_with = "url_signing_key"
    )]
    pub(crate) url_signing_key_file: Option<PathBuf>,
    /// Seconds a result URL stays valid after Describe or the callback gave it out.
    #[arg(long, env = "PAGECAST_URL_EXPIRY", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub(crate) url_expiry: u64,
}

impl UrlSigningConfig {
    /// The configured key (`None`: use the one shared through Redis), read and checked.
    pub fn configured_key(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let (setting, key) = match (&self.url_signing_key, &self.url_signing_key_file) {
            (Some(k), _) => ("PAGECAST_URL_SIGNING_KEY", k.expose().trim().to_string()),
            (None, Some(path)) => (
                "PAGECAST_URL_SIGNING_KEY_FILE",
                read_secret_file(path, "PAGECAST_URL_SIGNING_KEY_FILE")
                    .map_err(|why| invalid("PAGECAST_URL_SIGNING_KEY_FILE", why))?,
            ),
            (None, None) => return Ok(None),
        };
        if key.len() < MIN_URL_SIGNING_KEY_LEN {
            return Err(invalid(
                setting,
                format!(
                    "is shorter than {MIN_URL_SIGNING_KEY_LEN} characters; use a long random \
                     string (e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        Ok(Some(key.into_bytes()))
    }

    /// How long a result URL is valid.
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(self.url_expiry)
    }
}
