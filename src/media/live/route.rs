//! Where a push connects. A live target is a task endpoint like a callback: its host is
//! resolved and checked in pagecast before every connection attempt (the first and each
//! reconnect), with the same policy as RecordURL and callbacks, and ffmpeg is handed the
//! address that was checked, so a name that answers differently later (DNS rebinding) cannot
//! lead a push to loopback, cloud metadata or a private network.
//!
//! RTMPS needs the name itself: ffmpeg sends it as TLS SNI and checks the certificate against
//! it, and ffmpeg 5.1 sends no SNI to a numeric host even with `-verifyhost`. So an RTMPS push
//! to a name goes through the task's egress proxy (the one recorded pages use) with ffmpeg's
//! `-http_proxy`: ffmpeg asks it to `CONNECT name:port`, and the proxy resolves, checks and
//! connects to the checked address.

use std::net::SocketAddr;

use super::target::{LiveProtocol, parse_live_url};
use crate::url_guard::{UrlPolicy, resolve_checked};

/// What ffmpeg is told for one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    /// The output URL (the target's, with its host replaced by the checked address).
    pub(crate) url: String,
    /// `-http_proxy` for an RTMPS push to a name (the egress proxy's URL).
    pub(crate) http_proxy: Option<String>,
}

/// `raw` with its host replaced by `addr` (and the port made explicit); path and query are
/// kept byte for byte (a stream key must reach the server as the client wrote it).
pub(crate) fn url_at(raw: &str, addr: SocketAddr) -> Result<String, String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").ok_or("is not a URL")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let ip = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Ok(format!("{scheme}://{ip}:{}{}", addr.port(), &rest[end..]))
}

/// Whether pushes to `urls` under `policy` need an egress proxy (an RTMPS target named by a
/// host name, while the policy refuses something).
pub(crate) fn needs_proxy<'a>(urls: impl IntoIterator<Item = &'a str>, policy: &UrlPolicy) -> bool {
    !policy.allows_all()
        && urls.into_iter().any(
            |u| matches!(parse_live_url(u), Ok((LiveProtocol::Rtmps, host, _)) if is_name(&host)),
        )
}

/// The egress proxy that pushes to `urls` connect through (RTMPS to a name), started; `None`
/// when none needs it, or when it cannot start (those pushes then fail; the reason is logged).
pub(crate) async fn proxy_for<'a>(
    urls: impl IntoIterator<Item = &'a str>,
    policy: &UrlPolicy,
) -> Option<crate::egress::EgressProxy> {
    if !needs_proxy(urls, policy) {
        return None;
    }
    match crate::egress::EgressProxy::start(policy.clone()).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "no egress proxy for the RTMPS pushes; they fail");
            None
        }
    }
}

/// Whether a URL's host is a name (rtmp:// and srt:// URLs keep an IPv4 address as text).
fn is_name(host: &url::Host<String>) -> bool {
    matches!(host, url::Host::Domain(d) if d.parse::<std::net::IpAddr>().is_err())
}

/// Decides the next connection attempt to `raw`: resolves and checks its host now. `proxy` is
/// the egress proxy, for RTMPS to a name.
pub(crate) async fn route(
    raw: &str,
    policy: &UrlPolicy,
    proxy: Option<SocketAddr>,
) -> Result<Connect, String> {
    if policy.allows_all() {
        return Ok(Connect {
            url: raw.trim().to_owned(),
            http_proxy: None,
        });
    }
    let (protocol, host, port) = parse_live_url(raw).map_err(|e| e.to_string())?;
    let addr = resolve_checked(&host, port, policy)
        .await
        .map_err(|why| format!("the target is refused: {why}"))?;
    if protocol == LiveProtocol::Rtmps && is_name(&host) {
        // Checked above for a clear error; the proxy checks again and connects to what it
        // checked.
        let proxy = proxy.ok_or("no egress proxy runs for an RTMPS push")?;
        return Ok(Connect {
            url: raw.trim().to_owned(),
            http_proxy: Some(format!("http://{proxy}")),
        });
    }
    Ok(Connect {
        url: url_at(raw, addr)?,
        http_proxy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_replaced_by_the_checked_address() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            url_at("rtmp://live.example/app/k%20y{1}", a("93.184.216.34:1935")).unwrap(),
            "rtmp://93.184.216.34:1935/app/k%20y{1}"
        );
        assert_eq!(
            url_at(
                "srt://live.example:9000?streamid=#!::r=a&passphrase=x",
                a("[2606:2800::1]:9000")
            )
            .unwrap(),
            "srt://[2606:2800::1]:9000?streamid=#!::r=a&passphrase=x"
        );
        assert_eq!(
            url_at("rtmp://[::1]:1936/a/k", a("[::1]:1936")).unwrap(),
            "rtmp://[::1]:1936/a/k"
        );
    }

    #[test]
    fn only_rtmps_names_need_the_proxy() {
        let strict = UrlPolicy::default();
        assert!(needs_proxy(
            ["rtmp://a.example/a/k", "rtmps://b.example/a/k"],
            &strict
        ));
        assert!(!needs_proxy(
            ["rtmp://a.example/a/k", "rtmps://8.8.8.8/a/k"],
            &strict
        ));
        assert!(!needs_proxy(["rtmps://b.example/a/k"], &UrlPolicy::OPEN));
    }

    #[tokio::test]
    async fn each_attempt_gets_the_checked_address() {
        let strict = UrlPolicy::default();
        let c = route("rtmp://93.184.216.34/app/key", &strict, None)
            .await
            .unwrap();
        assert_eq!(c.url, "rtmp://93.184.216.34:1935/app/key");
        let err = route("rtmp://localhost:1935/app/key", &strict, None)
            .await
            .unwrap_err();
        assert!(err.contains("refused: localhost resolves to"), "{err}");
        // Open policy (the one-shot CLI): the URL as given.
        let c = route("rtmps://localhost/app/key", &UrlPolicy::OPEN, None)
            .await
            .unwrap();
        assert_eq!(
            (c.url.as_str(), c.http_proxy),
            ("rtmps://localhost/app/key", None)
        );
    }
}
