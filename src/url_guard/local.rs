//! This machine's own addresses: loopback, the unspecified address (which reaches this machine
//! when connected to) and every address of its network interfaces. A recorded page must not
//! reach the services of the machine it runs on through any of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether connecting to `ip` reaches this machine.
pub(crate) fn is_own_address(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified() || interface_addresses().contains(&ip)
}

/// The addresses of this machine's network interfaces, read fresh (interfaces come and go).
/// Hand-written over getifaddrs(3): libc has it, and no well-kept crate is in the tree yet.
pub(crate) fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a linked list and stores its head in `list`; it is freed
    // below with freeifaddrs, exactly once, and not used after.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, alive until freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose sa_family says which
            // sockaddr_* it really is; each is read only as the type its family names.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_the_interfaces_are_own_addresses() {
        let addrs = interface_addresses();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        for ip in &addrs {
            assert!(is_own_address(*ip), "{ip}");
        }
        for own in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_own_address(own.parse().unwrap()), "{own}");
        }
        assert!(!is_own_address("198.51.100.7".parse().unwrap()));
    }
}
