//! A DNS resolver for HTTP clients that connect to hosts a task chose (callbacks): it resolves
//! the name, keeps only the addresses the policy allows and hands exactly those to the client,
//! so the connection goes to an address that was checked, never to a second lookup's answer.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::UrlPolicy;

/// How long resolving may take.
const LOOKUP_LIMIT: Duration = Duration::from_secs(10);

/// Resolves through the system resolver and filters every address through a [`UrlPolicy`].
/// One per destination port: the policy's rules about this machine's own listeners need it.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    policy: UrlPolicy,
    port: u16,
}

impl GuardedResolver {
    /// A resolver for connections to `port` under `policy`.
    pub(crate) fn new(policy: UrlPolicy, port: u16) -> Self {
        Self { policy, port }
    }
}

/// The addresses of `host` that `policy` allows for a connection to `port`; an error naming the
/// refusal when there is none.
pub(crate) async fn allowed_addresses(
    host: &str,
    port: u16,
    policy: &UrlPolicy,
) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> =
        tokio::time::timeout(LOOKUP_LIMIT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect();
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match policy.check_addr(Some(host), *a) {
            Ok(()) => true,
            Err(why) => {
                refused.get_or_insert(why);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (false, _) => Ok(allowed),
        (true, Some(why)) => Err(format!("{host} resolves to {why}")),
        (true, None) => Err(format!("{host} has no address")),
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, port, host) = (self.policy.clone(), self.port, name.as_str().to_string());
        Box::pin(async move {
            let addrs = allowed_addresses(&host, port, &policy).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
