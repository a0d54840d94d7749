//! SSRF guard: by default the service neither records nor calls back to loopback, private,
//! link-local (cloud metadata), multicast or otherwise reserved addresses, whether given as a
//! literal IP or as a host name that resolves to one. Operators running pages on their own
//! network open it all with `PAGECAST_ALLOW_PRIVATE_URLS=true`, or only the networks and hosts
//! they name with `PAGECAST_ALLOWED_PRIVATE_NETWORKS`. Link-local addresses, where cloud
//! providers answer with instance credentials, stay refused either way, unless
//! `PAGECAST_ALLOW_LINK_LOCAL_URLS=true` as well.

mod allow;
mod local;
mod resolver;

pub(crate) use allow::PrivateAllowList;
pub(crate) use local::is_own_address;
pub(crate) use resolver::{GuardedResolver, resolve_checked};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the guard allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Allow private, loopback and other reserved destinations (trusted networks, tests).
    pub allow_private: bool,
    /// Allow link-local destinations (169.254.0.0/16, fe80::/10) and the cloud metadata
    /// service's other addresses. Separate from `allow_private`: trusting one's own network
    /// should not hand a recorded page the machine's cloud credentials.
    pub allow_link_local: bool,
    /// With `allow_private` off: the private networks and host names that are allowed anyway.
    pub allowed_private: PrivateAllowList,
    /// The ports this service listens on (API, metrics): refused on every address of this
    /// machine, whatever else is allowed.
    pub service_ports: Option<Arc<[u16]>>,
    /// Allow this machine's own addresses (loopback, its interfaces' addresses) without
    /// `allowed_private` naming them. Only the one-shot CLI: a service refuses them even with
    /// `allow_private`.
    pub allow_own_addresses: bool,
}

impl UrlPolicy {
    /// Everything allowed: the one-shot CLI, where the operator records what they choose.
    pub const OPEN: UrlPolicy = UrlPolicy {
        allow_private: true,
        allow_link_local: true,
        allowed_private: PrivateAllowList::NONE,
        service_ports: None,
        allow_own_addresses: true,
    };

    /// Whether no address is refused (nothing to resolve or check).
    pub(crate) fn allows_all(&self) -> bool {
        self.allow_private
            && self.allow_link_local
            && self.allow_own_addresses
            && self.ports().is_empty()
    }

    fn ports(&self) -> &[u16] {
        self.service_ports.as_deref().unwrap_or_default()
    }

    /// Whether a connection to `addr`, an address of the host name `host` (`None` for a
    /// literal address), is allowed. On top of [`UrlPolicy::check_host_ip`], this machine is
    /// guarded: its service ports are refused on every one of its addresses, and its addresses
    /// (loopback, its interfaces', public ones included) are refused unless `allowed_private`
    /// names them, `allow_private` or not.
    pub(crate) fn check_addr(&self, host: Option<&str>, addr: SocketAddr) -> Result<(), String> {
        self.check_addr_on(host, addr, is_own_address)
    }

    fn check_addr_on(
        &self,
        host: Option<&str>,
        addr: SocketAddr,
        own: impl Fn(IpAddr) -> bool,
    ) -> Result<(), String> {
        let ip = addr.ip().to_canonical();
        if !self.allow_own_addresses || !self.ports().is_empty() {
            let own = own(ip) || embedded_v6_v4s(ip).iter().any(|v4| own(IpAddr::V4(*v4)));
            if own && self.ports().contains(&addr.port()) {
                return Err(format!(
                    "{ip} port {}, this service's own listener (API or metrics) on this \
                     machine; it is never reachable from a task",
                    addr.port()
                ));
            }
            // A page must not reach the other services of its machine (a local Redis, an
            // agent, a sidecar) through loopback or any address of the machine, in every mode:
            // only an operator naming them opens them.
            let named = self.allowed_private.contains_ip(ip)
                || host.is_some_and(|h| self.allowed_private.contains_host(h));
            if own && !self.allow_own_addresses && !named {
                return Err(format!(
                    "{ip}, an address of this machine (loopback or one of its interfaces); \
                     it is refused in every mode, PAGECAST_ALLOW_PRIVATE_URLS included, unless \
                     PAGECAST_ALLOWED_PRIVATE_NETWORKS names it (e.g. 127.0.0.0/8)"
                ));
            }
        }
        self.check_host_ip(host, ip)
    }

    #[cfg(test)]
    /// Whether a connection to `ip` is allowed; the error says why not and which setting
    /// would allow it.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        self.check_host_ip(None, ip)
    }

    /// Whether a connection to `ip`, an address of the host name `host` (`None` for a literal
    /// address), is allowed: a host listed in `allowed_private` may have private addresses.
    pub(crate) fn check_host_ip(&self, host: Option<&str>, ip: IpAddr) -> Result<(), String> {
        if is_public_ip(ip) {
            Ok(())
        } else if is_metadata_ip(ip) {
            if self.allow_link_local {
                Ok(())
            } else {
                Err(format!(
                    "{ip}, a link-local address (where cloud providers serve instance \
                     metadata and credentials); reaching it is disabled \
                     (PAGECAST_ALLOW_LINK_LOCAL_URLS)"
                ))
            }
        } else if self.allow_private
            || self.allowed_private.contains_ip(ip)
            || host.is_some_and(|h| self.allowed_private.contains_host(h))
        {
            Ok(())
        } else {
            Err(format!(
                "{ip}, a private or reserved address; reaching private networks is disabled \
                 (PAGECAST_ALLOW_PRIVATE_URLS, or PAGECAST_ALLOWED_PRIVATE_NETWORKS for \
                 chosen networks and hosts)"
            ))
        }
    }
}

/// Link-local addresses and the cloud metadata service's other well-known address
/// (`fd00:ec2::254`, inside the private IPv6 range). An IPv6 address that carries an IPv4 one
/// (see [`embedded_v4`]) is one if any IPv4 address it may stand for is link-local.
pub(crate) fn is_metadata_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4s) => v4s.iter().any(Ipv4Addr::is_link_local),
            None => {
                (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
            }
        },
    }
}

/// The IPv4 address(es) an IPv6 one leads to, for the forms that carry one: a translator or
/// tunnel relay takes a packet sent to such an address to the IPv4 address inside it, so it
/// must be judged by that address.
///
/// - IPv4-mapped `::ffff:a.b.c.d`;
/// - NAT64, the well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits;
/// - NAT64, the local-use prefix `64:ff9b:1::/48` (RFC 8215): a network may use any of RFC
///   6052's prefix lengths inside it (/48, /56, /64 or /96), which place the IPv4 address at
///   different bits, so every one of those readings is returned and all must pass;
/// - 6to4 `2002::/16` (RFC 3056): bits 16-47;
/// - Teredo `2001::/32` (RFC 4380): the client's address, the last 32 bits inverted.
pub(crate) fn embedded_v4(ip: Ipv6Addr) -> Option<Vec<Ipv4Addr>> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(vec![v4]);
    }
    let b = ip.octets();
    let v4 = |at: [usize; 4]| Ipv4Addr::new(b[at[0]], b[at[1]], b[at[2]], b[at[3]]);
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        return Some(vec![v4([12, 13, 14, 15])]);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // RFC 6052 section 2.2: bits 64-71 ("u") are skipped; per prefix length the IPv4
        // address starts right after the prefix.
        return Some(vec![
            v4([6, 7, 9, 10]),    // /48
            v4([7, 9, 10, 11]),   // /56
            v4([9, 10, 11, 12]),  // /64
            v4([12, 13, 14, 15]), // /96
        ]);
    }
    if s[0] == 0x2002 {
        return Some(vec![v4([2, 3, 4, 5])]);
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(vec![Ipv4Addr::from(
            u32::from_be_bytes([b[12], b[13], b[14], b[15]]) ^ 0xffff_ffff,
        )]);
    }
    None
}

/// The IPv4 addresses inside an IPv6 one (none for IPv4 or plain IPv6 addresses).
fn embedded_v6_v4s(ip: IpAddr) -> Vec<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).unwrap_or_default(),
        IpAddr::V4(_) => Vec::new(),
    }
}

/// Whether an address is on the public internet.
pub(crate) fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4s) = embedded_v4(ip) {
        return v4s.into_iter().all(is_public_v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6].iter().all(|x| *x == 0)) // IPv4-compatible and other ::/96 forms
}

/// Checks that `url` (http or https) leads only to addresses `policy` allows. Host names are
/// resolved; every address they resolve to must be allowed. A name that does not resolve passes
/// (the page or callback then fails on its own, and the address actually connected to is
/// checked again: the egress proxy's and the callback client's resolvers filter too).
pub(crate) async fn check_url(raw: &str, policy: &UrlPolicy) -> Result<(), String> {
    if policy.allows_all() {
        return Ok(());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            return verdict(None, SocketAddr::new(ip.into(), port), policy);
        }
        Some(url::Host::Ipv6(ip)) => {
            return verdict(None, SocketAddr::new(ip.into(), port), policy);
        }
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        None => return Err("has no host".into()),
    };
    if host == "localhost" || host.ends_with(".localhost") {
        // Loopback by definition (RFC 6761), whatever a resolver says.
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            verdict(Some(&host), SocketAddr::new(ip, port), policy)?;
        }
        return Ok(());
    }
    let lookup = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await;
    match lookup {
        Ok(Ok(addrs)) => {
            for addr in addrs {
                verdict(Some(&host), addr, policy)?;
            }
            Ok(())
        }
        // Not resolvable (now): nothing private to reach through it.
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

fn verdict(host: Option<&str>, addr: SocketAddr, policy: &UrlPolicy) -> Result<(), String> {
    policy.check_addr(host, addr).map_err(|why| match host {
        Some(h) => format!("points at {h}, which resolves to {why}"),
        None => format!("points at {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::local::interface_addresses;
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(
                !is_public_ip(private.parse().unwrap()),
                "{private} must not count as public"
            );
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public_ip(public.parse().unwrap()), "{public} is public");
        }
    }

    /// IPv6 forms that carry an IPv4 address are judged by that address.
    #[test]
    fn tunnel_and_translation_addresses_are_judged_by_the_ipv4_inside() {
        let public = |s: &str| is_public_ip(s.parse().unwrap());
        let metadata = |s: &str| is_metadata_ip(s.parse().unwrap());
        // 6to4: 2002:AABB:CCDD::/48 is the IPv4 address AA.BB.CC.DD.
        assert!(!public("2002:7f00:1::"), "6to4 of 127.0.0.1");
        assert!(!public("2002:a00:1::1"), "6to4 of 10.0.0.1");
        assert!(metadata("2002:a9fe:a9fe::"), "6to4 of 169.254.169.254");
        assert!(public("2002:808:808::1"), "6to4 of 8.8.8.8");
        // NAT64, the well-known prefix.
        assert!(!public("64:ff9b::7f00:1"));
        assert!(metadata("64:ff9b::a9fe:a9fe"));
        assert!(public("64:ff9b::808:808"));
        // NAT64, the local-use prefix, with the IPv4 address where a /96 puts it...
        assert!(!public("64:ff9b:1::7f00:1"));
        assert!(!public("64:ff9b:1::a00:1"));
        assert!(metadata("64:ff9b:1::a9fe:a9fe"));
        // ...and where a /48 puts it (bits 48-63 and 72-87): 10.0.0.1 with public-looking
        // trailing bits is still 10.0.0.1 to a translator using a /48.
        assert!(!public("64:ff9b:1:a00:0:108:808:808"));
        assert!(metadata("64:ff9b:1:a9fe:a9:fe00::"));
        // Teredo: the client's address is the last 32 bits, inverted.
        assert!(
            !public("2001:0:4136:e378:8000:63bf:80ff:fffe"),
            "Teredo of 127.0.0.1"
        );
        assert!(
            !public("2001:0:4136:e378:8000:63bf:f5ff:fffe"),
            "Teredo of 10.0.0.1"
        );
        assert!(
            metadata("2001:0:4136:e378:8000:63bf:5601:5601"),
            "Teredo of 169.254.169.254"
        );
        assert!(
            public("2001:0:4136:e378:8000:63bf:f7f7:f7f7"),
            "Teredo of 8.8.8.8"
        );
        // And the guard refuses them as it refuses the IPv4 address.
        let deny = UrlPolicy::default();
        assert!(deny.check_ip("2002:7f00:1::".parse().unwrap()).is_err());
        assert!(
            deny.check_ip("2001:0:4136:e378:8000:63bf:80ff:fffe".parse().unwrap())
                .is_err()
        );
        let private = UrlPolicy {
            allow_private: true,
            ..UrlPolicy::default()
        };
        let err = private
            .check_ip("2002:a9fe:a9fe::".parse().unwrap())
            .unwrap_err();
        assert!(err.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"), "{err}");
    }

    #[tokio::test]
    async fn urls_to_private_places_are_refused() {
        let deny = UrlPolicy::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://localhost:3000/",
            "http://app.localhost/",
            "http://10.0.0.5/",
            "http://2130706433/", // 127.0.0.1 as one decimal number
        ] {
            let err = check_url(url, &deny).await.unwrap_err();
            assert!(err.contains("PAGECAST_ALLOW_PRIVATE_URLS"), "{url}: {err}");
        }
        assert!(check_url("http://8.8.8.8/", &deny).await.is_ok());
        let private = UrlPolicy {
            allow_private: true,
            ..UrlPolicy::default()
        };
        assert!(check_url("http://10.200.0.5/", &private).await.is_ok());
        // This machine's own addresses stay refused with private networks allowed...
        for url in [
            "http://127.0.0.1/",
            "http://127.0.0.2:6379/",
            "http://localhost:3000/",
            "http://[::1]/",
            "http://0.0.0.0:6379/",
            "http://[::ffff:127.0.0.1]/",
            "http://[2002:7f00:1::]/", // 6to4 of 127.0.0.1
        ] {
            let err = check_url(url, &private).await.unwrap_err();
            assert!(err.contains("an address of this machine"), "{url}: {err}");
            assert!(
                err.contains("PAGECAST_ALLOWED_PRIVATE_NETWORKS"),
                "{url}: {err}"
            );
        }
        for ip in local::interface_addresses() {
            let err = private
                .check_addr(None, SocketAddr::new(ip, 80))
                .unwrap_err();
            assert!(err.contains("an address of this machine"), "{ip}: {err}");
        }
        // ...unless named: exactly what is named.
        let named_loopback = UrlPolicy {
            allow_private: true,
            allowed_private: PrivateAllowList::parse("127.0.0.1,::1").unwrap(),
            ..UrlPolicy::default()
        };
        assert!(
            check_url("http://127.0.0.1/", &named_loopback)
                .await
                .is_ok()
        );
        assert!(
            check_url("http://localhost:3000/", &named_loopback)
                .await
                .is_ok()
        );
        assert!(
            check_url("http://127.0.0.2/", &named_loopback)
                .await
                .is_err()
        );
        assert!(check_url("http://0.0.0.0/", &named_loopback).await.is_err());
        // The one-shot CLI reaches everything.
        assert!(
            check_url("http://127.0.0.1/", &UrlPolicy::OPEN)
                .await
                .is_ok()
        );
        // Trusting the private network does not open the cloud metadata service.
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            let err = check_url(url, &private).await.unwrap_err();
            assert!(
                err.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"),
                "{url}: {err}"
            );
        }
        assert!(
            check_url("http://169.254.169.254/", &UrlPolicy::OPEN)
                .await
                .is_ok()
        );
    }

    /// PAGECAST_ALLOWED_PRIVATE_NETWORKS opens the named networks and hosts only, never
    /// link-local addresses.
    #[tokio::test]
    async fn named_private_networks_and_hosts_are_allowed_and_nothing_else() {
        let named = UrlPolicy {
            allowed_private: PrivateAllowList::parse(
                "10.0.0.0/8,fd00::/8,127.0.0.0/8,::1,.localhost,169.254.0.0/16",
            )
            .unwrap(),
            ..UrlPolicy::default()
        };
        for ok in [
            "http://10.1.2.3/",
            "http://[fd00::5]:8080/",
            "http://127.0.0.1:9000/",
            "http://[::ffff:10.9.9.9]/",
            "http://app.localhost/",
            "http://localhost/",
            "https://8.8.8.8/",
        ] {
            assert!(check_url(ok, &named).await.is_ok(), "{ok}");
        }
        for refused in [
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://[fc00::1]/",
        ] {
            let err = check_url(refused, &named).await.unwrap_err();
            assert!(
                err.contains("PAGECAST_ALLOWED_PRIVATE_NETWORKS"),
                "{refused}: {err}"
            );
        }
        // Naming a link-local network does not open the metadata service.
        let err = check_url("http://169.254.169.254/", &named)
            .await
            .unwrap_err();
        assert!(err.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"), "{err}");
        // 127.0.0.0/8 alone does not cover localhost's ::1.
        let v4_only = UrlPolicy {
            allowed_private: PrivateAllowList::parse("127.0.0.0/8").unwrap(),
            ..UrlPolicy::default()
        };
        assert!(check_url("http://localhost/", &v4_only).await.is_err());
        // A host name allowed by name may have private addresses, not link-local ones.
        let by_name = UrlPolicy {
            allowed_private: PrivateAllowList::parse("intranet.example").unwrap(),
            ..UrlPolicy::default()
        };
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(
            by_name
                .check_host_ip(Some("intranet.example"), v4("10.0.0.7"))
                .is_ok()
        );
        assert!(
            by_name
                .check_host_ip(Some("other.example"), v4("10.0.0.7"))
                .is_err()
        );
        assert!(by_name.check_host_ip(None, v4("10.0.0.7")).is_err());
        assert!(
            by_name
                .check_host_ip(Some("intranet.example"), v4("169.254.169.254"))
                .is_err()
        );
    }

    /// The service's own ports are refused on every address of this machine, in every mode;
    /// this machine's public addresses count as private.
    #[tokio::test]
    async fn the_service_itself_is_never_a_destination() {
        let sock = |s: &str| s.parse::<SocketAddr>().unwrap();
        for base in [
            UrlPolicy::default(),
            UrlPolicy {
                allow_private: true,
                allow_link_local: true,
                ..UrlPolicy::default()
            },
            UrlPolicy {
                allowed_private: PrivateAllowList::parse("127.0.0.0/8,::1,0.0.0.0/0,::/0").unwrap(),
                ..UrlPolicy::default()
            },
        ] {
            let policy = UrlPolicy {
                service_ports: Some(vec![8080, 9090].into()),
                ..base
            };
            assert!(!policy.allows_all());
            let own = interface_addresses();
            let mut targets: Vec<String> = own
                .iter()
                .map(|ip| SocketAddr::new(*ip, 8080).to_string())
                .collect();
            targets.extend(
                [
                    "127.0.0.1:8080",
                    "127.1.2.3:9090",
                    "0.0.0.0:8080",
                    "[::1]:8080",
                    "[::]:9090",
                    "[::ffff:127.0.0.1]:8080",
                ]
                .map(String::from),
            );
            for target in targets {
                let err = policy.check_addr(None, sock(&target)).unwrap_err();
                assert!(err.contains("own listener"), "{target}: {err}");
            }
            let err = check_url("http://localhost:8080/", &policy)
                .await
                .unwrap_err();
            assert!(err.contains("own listener"), "{err}");
            // Another port of this machine is allowed only where loopback is named.
            assert_eq!(
                policy.check_addr(None, sock("127.0.0.1:8081")).is_ok(),
                policy
                    .allowed_private
                    .contains_ip("127.0.0.1".parse().unwrap())
            );
            // Elsewhere, the ports mean nothing.
            assert!(policy.check_addr(None, sock("8.8.8.8:8080")).is_ok());
        }
        // A public address of this machine (here pretended: 8.8.4.4) counts as private.
        let own = |ip: IpAddr| ip == "8.8.4.4".parse::<IpAddr>().unwrap();
        let strict = UrlPolicy::default();
        let err = strict
            .check_addr_on(None, sock("8.8.4.4:443"), own)
            .unwrap_err();
        assert!(err.contains("an address of this machine"), "{err}");
        assert!(strict.check_addr_on(None, sock("8.8.8.8:443"), own).is_ok());
        // Private networks allowed: the machine's own addresses stay refused.
        let open = UrlPolicy {
            allow_private: true,
            ..UrlPolicy::default()
        };
        let err = open
            .check_addr_on(None, sock("8.8.4.4:443"), own)
            .unwrap_err();
        assert!(err.contains("an address of this machine"), "{err}");
        let named = UrlPolicy {
            allowed_private: PrivateAllowList::parse("8.8.4.0/24").unwrap(),
            ..UrlPolicy::default()
        };
        assert!(named.check_addr_on(None, sock("8.8.4.4:443"), own).is_ok());
    }
}
