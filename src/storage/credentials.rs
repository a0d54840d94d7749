//! Storage credentials and the process's S3 clients.
//!
//! Credentials come from the standard AWS provider chain (`aws-config`), in its order: the
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) variables, the shared
//! credentials and config files (`AWS_PROFILE`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` +
//! `AWS_ROLE_ARN`: EKS IRSA), the ECS / EKS Pod Identity container endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI`, with its authorization token), and
//! the instance metadata service (IMDSv2). Temporary credentials are cached and fetched again
//! shortly before they expire (the SDK's lazy identity cache: 5 to 10 s ahead).
//!
//! One [`S3Clients`] serves the whole process ([`shared`]): one credentials provider, one
//! credentials cache and one HTTP connection pool, whatever the number of tasks and
//! destinations. A destination (region, endpoint, addressing, attempts) gets its client once
//! and keeps it. Keys never appear in logs or errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{IdentityCache, Region, SharedHttpClient, SharedIdentityCache};

use super::Destination;
use crate::secret::Secret;

/// An access key pair (for callers that hold keys themselves, e.g. tests).
#[derive(Debug, Clone)]
pub struct StorageCredentials {
    /// Access key id (not secret, but not logged either).
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
}

/// What a destination's client is built for: clients are shared per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    region: String,
    endpoint: Option<String>,
    path_style: bool,
    max_attempts: u32,
}

/// Where the credentials come from.
enum Source {
    /// The standard provider chain, built on first use (it reads files and the environment).
    Chain(tokio::sync::OnceCell<SharedCredentialsProvider>),
    /// Fixed keys.
    Fixed(SharedCredentialsProvider),
}

struct Inner {
    source: Source,
    /// One cache for every client: temporary credentials are fetched once, not per client.
    cache: SharedIdentityCache,
    /// One connection pool (and TLS configuration) for every client.
    http: SharedHttpClient,
    clients: Mutex<HashMap<ClientKey, Client>>,
}

/// The S3 clients of a process: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct S3Clients {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Clients")
    }
}

/// The process's clients, with credentials from the standard provider chain.
pub(crate) fn shared() -> S3Clients {
    static SHARED: OnceLock<S3Clients> = OnceLock::new();
    SHARED.get_or_init(S3Clients::from_chain).clone()
}

impl S3Clients {
    fn with_source(source: Source) -> Self {
        S3Clients {
            inner: Arc::new(Inner {
                source,
                cache: IdentityCache::lazy().build(),
                http: crate::tls::s3_http_client(),
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Clients whose credentials come from the standard AWS provider chain.
    pub(crate) fn from_chain() -> Self {
        Self::with_source(Source::Chain(tokio::sync::OnceCell::new()))
    }

    /// Clients that sign with fixed keys.
    pub fn with_keys(creds: &StorageCredentials) -> Self {
        Self::with_source(Source::Fixed(SharedCredentialsProvider::new(
            Credentials::new(
                creds.access_key_id.expose(),
                creds.secret_access_key.expose(),
                creds.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "pagecast",
            ),
        )))
    }

    async fn provider(&self) -> SharedCredentialsProvider {
        match &self.inner.source {
            Source::Fixed(p) => p.clone(),
            Source::Chain(cell) => cell
                .get_or_init(|| async {
                    // Web identity calls STS in a region: AWS_REGION (IRSA sets it), else
                    // us-east-1. Not the metadata service's: off AWS that lookup only times out.
                    let region = RegionProviderChain::first_try(
                        aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
                    )
                    .or_else("us-east-1");
                    let conf = ProviderConfig::default().with_http_client(self.inner.http.clone());
                    let chain = DefaultCredentialsChain::builder()
                        .region(region)
                        .configure(conf)
                        .build()
                        .await;
                    SharedCredentialsProvider::new(chain)
                })
                .await
                .clone(),
        }
    }

    /// The client for `dest` (made on first use, then shared).
    pub(crate) async fn client(&self, dest: &Destination, max_attempts: u32) -> Client {
        let key = ClientKey {
            region: dest.region.clone(),
            endpoint: dest.endpoint.clone(),
            path_style: dest.path_style,
            max_attempts: max_attempts.max(1),
        };
        if let Some(c) = self.lock().get(&key) {
            return c.clone();
        }
        let provider = self.provider().await;
        // Built from scratch rather than from an `SdkConfig`: no AWS_ENDPOINT_URL or retry
        // variable changes where results go or how often a request is tried.
        let mut conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(key.region.clone()))
            .credentials_provider(provider)
            .identity_cache(self.inner.cache.clone())
            .http_client(self.inner.http.clone())
            .force_path_style(key.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(key.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        if let Some(endpoint) = &key.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let client = Client::from_conf(conf.build());
        self.lock().entry(key).or_insert(client).clone()
    }

    #[cfg(test)]
    /// Clients made so far (one per distinct destination setting).
    pub(crate) fn client_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Client>> {
        // A panic while holding the map leaves it consistent (inserts are single calls).
        self.inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a failure to get credentials reads, and whether trying later may help: none configured
/// anywhere is the operator's to fix; a credentials endpoint that timed out or failed may
/// answer later.
pub(crate) fn credentials_failure(e: &(dyn std::error::Error + 'static)) -> Option<(String, bool)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => (
                    "no storage credentials found: set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), web identity \
                     (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), a container credentials \
                     endpoint, or run where the instance metadata service gives a role"
                        .to_string(),
                    false,
                ),
                CredentialsError::InvalidConfiguration(_) => (
                    format!(
                        "the storage credentials are misconfigured: {}",
                        chain_text(err)
                    ),
                    false,
                ),
                _ => (
                    format!("getting storage credentials failed: {}", chain_text(err)),
                    true,
                ),
            });
        }
        cur = err.source();
    }
    None
}

/// An error with its causes.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(region: &str, endpoint: Option<&str>) -> Destination {
        Destination {
            bucket: "b".into(),
            region: region.into(),
            endpoint: endpoint.map(str::to_string),
            path_style: true,
            public_base: None,
            presign: None,
        }
    }

    #[tokio::test]
    async fn a_destination_setting_gets_one_client() {
        let clients = S3Clients::with_keys(&StorageCredentials {
            access_key_id: "AK".to_string().into(),
            secret_access_key: "SK".to_string().into(),
            session_token: None,
        });
        let a = dest("us-east-1", Some("http://127.0.0.1:1"));
        clients.client(&a, 4).await;
        clients.client(&a, 4).await;
        clients.client(&a.clone(), 4).await;
        assert_eq!(clients.client_count(), 1);
        clients
            .client(&dest("eu-west-1", Some("http://127.0.0.1:1")), 4)
            .await;
        clients.client(&a, 1).await;
        assert_eq!(clients.client_count(), 3);
        assert!(!format!("{clients:?}").contains("SK"));
    }

    #[test]
    fn credential_failures_are_classified() {
        let none = CredentialsError::not_loaded("nothing in the environment");
        let (msg, retry) = credentials_failure(&none).unwrap();
        assert!(msg.contains("AWS_ACCESS_KEY_ID") && !retry, "{msg}");
        let timeout = CredentialsError::provider_timed_out(Duration::from_secs(5));
        assert!(credentials_failure(&timeout).unwrap().1);
        let other = std::io::Error::other("x");
        assert!(credentials_failure(&other).is_none());
    }
}
