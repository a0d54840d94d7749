//! `PAGECAST_ALLOWED_PRIVATE_NETWORKS`: the private networks and hosts an operator trusts, for
//! deployments that record pages inside their own network without opening all of it.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// One trusted network or host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A CIDR network (`10.0.0.0/8`, `fd00::/8`) or one address (`10.1.2.3`).
    Net(IpNet),
    /// Exactly this host name (`intranet.example`).
    Host(String),
    /// This domain's subdomains (`.corp.example` allows `a.corp.example`, not `corp.example`).
    Suffix(String),
}

/// The private networks and host names a recording, a callback and a recorded page may reach
/// besides the public internet. Empty by default. Link-local addresses are not opened by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateAllowList(Option<Arc<[Entry]>>);

impl PrivateAllowList {
    /// Nothing listed.
    pub(crate) const NONE: PrivateAllowList = PrivateAllowList(None);

    fn entries(&self) -> &[Entry] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl PrivateAllowList {
    /// Parses a comma-separated list of CIDR networks, addresses, host names and `.suffix`es.
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            entries.push(parse_entry(item)?);
        }
        Ok(Self((!entries.is_empty()).then(|| entries.into())))
    }

    /// Whether `ip` lies in a listed network. An IPv6 address that carries an IPv4 one counts
    /// as in a network if every IPv4 address it may stand for is.
    pub(crate) fn contains_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let in_nets = |ip: IpAddr| {
            self.entries()
                .iter()
                .any(|e| matches!(e, Entry::Net(net) if net.contains(&ip)))
        };
        if in_nets(ip) {
            return true;
        }
        match ip {
            IpAddr::V6(v6) => super::embedded_v4(v6)
                .is_some_and(|v4s| v4s.into_iter().all(|v4| in_nets(IpAddr::V4(v4)))),
            IpAddr::V4(_) => false,
        }
    }

    /// Whether the host name `host` (lower case, no trailing dot) is listed, exactly or under a
    /// listed `.suffix`.
    pub(crate) fn contains_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries().iter().any(|e| match e {
            Entry::Host(h) => *h == host,
            Entry::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
            Entry::Net(_) => false,
        })
    }
}

fn parse_entry(item: &str) -> Result<Entry, String> {
    if let Ok(net) = item.parse::<IpNet>() {
        return Ok(Entry::Net(net.trunc()));
    }
    if let Ok(ip) = item.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(Entry::Net(IpNet::from(ip)));
    }
    if item.contains('/') {
        return Err(format!(
            "{item:?} is not a network (address/prefix length, e.g. 10.0.0.0/8 or fd00::/8)"
        ));
    }
    let (suffix, name) = match item.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, item),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{item:?} is neither a network (10.0.0.0/8), an address, a host name \
             (intranet.example) nor a domain suffix (.corp.example)"
        ));
    }
    Ok(if suffix {
        Entry::Suffix(format!(".{name}"))
    } else {
        Entry::Host(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_addresses_hosts_and_suffixes() {
        let l = PrivateAllowList::parse(
            " 10.0.0.0/8, fd00::/8,192.168.1.7 , intranet.example, .Corp.Example., 172.16.5.9/16",
        )
        .unwrap();
        assert!(l.contains_ip(ip("10.200.3.4")));
        assert!(!l.contains_ip(ip("11.0.0.1")));
        assert!(l.contains_ip(ip("fd12::1")));
        assert!(!l.contains_ip(ip("fc00::1")));
        assert!(l.contains_ip(ip("192.168.1.7")));
        assert!(!l.contains_ip(ip("192.168.1.8")));
        // A network given with host bits set means its network.
        assert!(l.contains_ip(ip("172.16.200.1")));
        // IPv4 inside IPv6 is judged by the IPv4 address.
        assert!(l.contains_ip(ip("::ffff:10.1.1.1")));
        assert!(l.contains_ip(ip("2002:a01:101::")));
        assert!(!l.contains_ip(ip("::ffff:127.0.0.1")));
        assert!(l.contains_host("intranet.example"));
        assert!(l.contains_host("INTRANET.example."));
        assert!(!l.contains_host("www.intranet.example"));
        assert!(!l.contains_host("intranet.example.evil"));
        assert!(l.contains_host("wiki.corp.example"));
        assert!(l.contains_host("a.b.corp.example"));
        assert!(!l.contains_host("corp.example"));
        assert!(!l.contains_host("evilcorp.example"));
        assert!(!l.contains_ip(ip("8.8.8.8")));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "under_score.example",
            "-x.example",
            "a..b",
            ".",
            "http://intranet.example",
        ] {
            let err = PrivateAllowList::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(PrivateAllowList::parse("").unwrap().entries().is_empty());
        assert!(PrivateAllowList::parse(" , ").unwrap().entries().is_empty());
    }
}
