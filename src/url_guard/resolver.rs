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

/// The address a connection to a task-chosen endpoint goes to, chosen from what its name
/// resolved to (`host` is `None` for an address given literally): every address must be
/// allowed, as at Start (a name with one refused address among allowed ones is refused as a
/// whole), and the first is used. Pure: the caller resolves, this decides.
pub(crate) fn pick_address(
    host: Option<&str>,
    resolved: &[SocketAddr],
    policy: &UrlPolicy,
) -> Result<SocketAddr, String> {
    let first = *resolved.first().ok_or_else(|| match host {
        Some(h) => format!("{h} has no address"),
        None => "no address".to_owned(),
    })?;
    for addr in resolved {
        policy.check_addr(host, *addr).map_err(|why| match host {
            Some(h) => format!("{h} resolves to {why}"),
            None => why,
        })?;
    }
    Ok(first)
}

/// Resolves `host` (a name, or an address given literally) now and picks the address to connect
/// to with [`pick_address`].
pub(crate) async fn resolve_checked(
    host: &url::Host<String>,
    port: u16,
    policy: &UrlPolicy,
) -> Result<SocketAddr, String> {
    let name = match host {
        // Non-special schemes (rtmp, srt) keep an IPv4 host as text.
        url::Host::Domain(d) if d.parse::<std::net::IpAddr>().is_ok() => {
            let ip: std::net::IpAddr = d.parse().map_err(|_| "not an address")?;
            return pick_address(None, &[SocketAddr::new(ip, port)], policy);
        }
        url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => {
            return pick_address(None, &[SocketAddr::new((*ip).into(), port)], policy);
        }
        url::Host::Ipv6(ip) => {
            return pick_address(None, &[SocketAddr::new((*ip).into(), port)], policy);
        }
    };
    let found: Vec<SocketAddr> =
        tokio::time::timeout(LOOKUP_LIMIT, tokio::net::lookup_host((name.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {name} timed out"))?
            .map_err(|e| format!("{name} does not resolve: {e}"))?
            .collect();
    pick_address(Some(&name), &found, policy)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_guard::PrivateAllowList;

    fn socks(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// The decision made before each live push attempt: what a name resolves to *now* decides,
    /// and the address handed on is one of those checked.
    #[test]
    fn the_checked_address_is_the_one_connected_to() {
        let strict = UrlPolicy::default();
        let public = socks(&["93.184.216.34:1935", "[2606:2800:220:1::1]:1935"]);
        assert_eq!(
            pick_address(Some("live.example"), &public, &strict),
            Ok(public[0])
        );
        // Rebound to loopback, metadata or a private network: refused, naming the address.
        for rebound in ["127.0.0.1:1935", "169.254.169.254:1935", "10.0.0.5:1935"] {
            let err = pick_address(Some("live.example"), &socks(&[rebound]), &strict).unwrap_err();
            assert!(err.starts_with("live.example resolves to"), "{err}");
            assert!(err.contains(rebound.split(':').next().unwrap()), "{err}");
        }
        // One refused address among public ones refuses the name.
        let mixed = socks(&["93.184.216.34:1935", "127.0.0.1:1935"]);
        assert!(pick_address(Some("live.example"), &mixed, &strict).is_err());
        assert!(pick_address(Some("live.example"), &[], &strict).is_err());
        // A named private network or host opens exactly that.
        let named = UrlPolicy {
            allowed_private: PrivateAllowList::parse("10.0.0.0/8,intranet.example").unwrap(),
            ..UrlPolicy::default()
        };
        let ten = socks(&["10.0.0.5:1935"]);
        assert_eq!(pick_address(Some("live.example"), &ten, &named), Ok(ten[0]));
        let lo = socks(&["127.0.0.1:1935"]);
        assert!(pick_address(Some("live.example"), &lo, &named).is_err());
        let pr = socks(&["192.168.1.9:1935"]);
        assert!(pick_address(None, &pr, &named).is_err());
        assert_eq!(
            pick_address(Some("intranet.example"), &pr, &named),
            Ok(pr[0])
        );
        // The service's own listener: never, in any mode.
        let own = UrlPolicy {
            service_ports: Some(vec![8080].into()),
            ..UrlPolicy::OPEN
        };
        assert!(pick_address(None, &socks(&["127.0.0.1:8080"]), &own).is_err());
    }

    #[tokio::test]
    async fn literal_addresses_are_checked_without_a_lookup() {
        let strict = UrlPolicy::default();
        let v4 = url::Host::Ipv4("127.0.0.1".parse().unwrap());
        assert!(resolve_checked(&v4, 1935, &strict).await.is_err());
        // How rtmp:// and srt:// URLs carry an IPv4 host.
        let text = url::Host::Domain("127.0.0.1".to_owned());
        let err = resolve_checked(&text, 1935, &strict).await.unwrap_err();
        assert!(
            err.starts_with("127.0.0.1, an address of this machine"),
            "{err}"
        );
        let v6 = url::Host::Ipv6("2606:2800:220:1::1".parse().unwrap());
        assert_eq!(
            resolve_checked(&v6, 443, &strict).await,
            Ok("[2606:2800:220:1::1]:443".parse().unwrap())
        );
        let name = url::Host::Domain("localhost".to_owned());
        let err = resolve_checked(&name, 1935, &strict).await.unwrap_err();
        assert!(err.starts_with("localhost resolves to"), "{err}");
    }
}
