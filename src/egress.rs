//! Chromium's way out to the network: a forward proxy on loopback, one per recording, that
//! resolves every host a page asks for and refuses loopback, private, link-local (cloud
//! metadata) and other non-public addresses unless the operator allows private networks.
//!
//! Checking the page's URL before loading it is not enough: a public page can redirect, embed an
//! `<iframe>` of `http://169.254.169.254/`, or fetch from the internal network, and whatever it
//! shows ends up in the video. Behind this proxy every request the browser makes (documents,
//! subresources, WebSockets; `https` through `CONNECT`) is checked, and the connection goes to the
//! exact address that was checked, so a name that resolves differently the second time cannot
//! slip through. The machine itself is guarded too: the service's own API and metrics ports are
//! refused on every address of the machine whatever the policy, so a page can neither start
//! tasks nor read metrics, and the machine's public addresses count as private ones. Plain-HTTP requests are sent with `Connection: close`, so each proxy connection
//! carries one request and every request is checked. WebRTC's UDP media does not use proxies
//! and is not covered.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::log_limit::{Admit, LogLimiter};
use crate::url_guard::UrlPolicy;
use std::sync::Arc;
use tracing::Instrument;

/// Longest request head accepted from the browser.
const MAX_HEAD: usize = 64 * 1024;
/// How long resolving and connecting to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Refusals logged per period: a page asking again and again in a loop must not flood the log.
const REFUSALS_PER_HOST: u32 = 3;
const REFUSALS_IN_ALL: u32 = 10;
const REFUSAL_PERIOD: Duration = Duration::from_secs(10);

/// A running egress proxy; stops accepting (and ends its connections) when dropped.
pub(crate) struct EgressProxy {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl EgressProxy {
    /// Starts a proxy on a free loopback port enforcing `policy`.
    pub(crate) async fn start(policy: UrlPolicy) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let refusals = Arc::new(LogLimiter::new(
            REFUSAL_PERIOD,
            REFUSALS_PER_HOST,
            REFUSALS_IN_ALL,
        ));
        // Its log lines belong to the recording that started it (and so carry its TaskID).
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = token.cancelled() => {
                            let left_out = refusals.take_suppressed();
                            if left_out > 0 {
                                warn!(suppressed = left_out, "{left_out} more of the page's requests were refused (not logged one by one)");
                            }
                            return;
                        }
                    };
                    let Ok((client, _)) = accepted else {
                        continue;
                    };
                    let (token, policy, refusals) =
                        (token.clone(), policy.clone(), refusals.clone());
                    tokio::spawn(
                        async move {
                            tokio::select! {
                                r = serve(client, policy, &refusals) => {
                                    if let Err(e) = r {
                                        debug!(error = %e, "egress connection ended");
                                    }
                                }
                                _ = token.cancelled() => {}
                            }
                        }
                        .in_current_span(),
                    );
                }
            }
            .instrument(span),
        );
        Ok(Self { addr, stop })
    }

    /// Where it listens (loopback).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Chromium flags that send all of the browser's traffic through this proxy (loopback
    /// included: Chromium bypasses proxies for it unless told not to).
    pub(crate) fn chromium_flags(&self) -> Vec<String> {
        vec![
            format!("--proxy-server=http://{}", self.addr),
            "--proxy-bypass-list=<-loopback>".into(),
        ]
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the browser asked for.
#[derive(Debug, PartialEq)]
struct Request {
    /// `CONNECT` (a tunnel) or a plain HTTP request in absolute form.
    tunnel: bool,
    host: String,
    port: u16,
    /// For plain HTTP: the head to send to the origin (origin-form request line,
    /// `Connection: close`, no proxy headers).
    origin_head: Vec<u8>,
}

/// Parses a proxy request head (without the blank line's bytes that follow it).
fn parse_head(head: &str) -> Result<Request, String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line".into());
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target).ok_or("malformed CONNECT target")?;
        return Ok(Request {
            tunnel: true,
            host,
            port,
            origin_head: Vec::new(),
        });
    }
    let url = url::Url::parse(target).map_err(|_| "not an absolute URL".to_string())?;
    if url.scheme() != "http" {
        return Err(format!("the {} scheme is not proxied", url.scheme()));
    }
    let host = url.host_str().ok_or("no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        if [
            "connection",
            "proxy-connection",
            "keep-alive",
            "proxy-authorization",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(Request {
        tunnel: false,
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        origin_head: out.into_bytes(),
    })
}

/// `host:port` (IPv6 in brackets) of a CONNECT target.
fn split_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host.trim_matches(['[', ']']);
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Why a destination is not connected to.
enum Unreachable {
    /// The policy refuses one of its addresses.
    Refused(String),
    /// It does not resolve (in time).
    Unresolved(String),
}

/// Resolves `host` and picks an address `policy` allows; every address the name has must be
/// allowed (a name with one private address among public ones is refused).
async fn resolve_allowed(
    host: &str,
    port: u16,
    policy: &UrlPolicy,
) -> Result<SocketAddr, Unreachable> {
    let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Unreachable::Unresolved(format!("resolving {host} timed out")))?
            .map_err(|e| Unreachable::Unresolved(format!("{host} does not resolve: {e}")))?
            .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| Unreachable::Unresolved(format!("{host} has no address")))?;
    for a in &addrs {
        policy
            .check_addr((!literal).then_some(host), *a)
            .map_err(|why| {
                Unreachable::Refused(if literal {
                    why
                } else {
                    format!("{host} resolves to {why}")
                })
            })?;
    }
    Ok(first)
}

async fn serve(
    mut client: TcpStream,
    policy: UrlPolicy,
    refusals: &LogLimiter,
) -> std::io::Result<()> {
    let (head, rest) = match read_head(&mut client).await? {
        Some(h) => h,
        None => return Ok(()),
    };
    let req = match parse_head(&head) {
        Ok(r) => r,
        Err(why) => return refuse(&mut client, 400, &why).await,
    };
    let addr = match resolve_allowed(&req.host, req.port, &policy).await {
        Ok(a) => a,
        Err(Unreachable::Refused(why)) => {
            match refusals.admit(&req.host) {
                Admit::Log { suppressed: 0 } => {
                    warn!(host = %req.host, "a page's request was refused: {why}");
                }
                Admit::Log { suppressed } => {
                    warn!(host = %req.host, suppressed, "a page's request was refused: {why} ({suppressed} more refusals before this one were not logged)");
                }
                Admit::Suppress => {}
            }
            return refuse(&mut client, 403, &why).await;
        }
        // Not a policy matter (Chromium's own update and sign-in hosts land here on a closed
        // network): the browser sees a failed connection, the log a debug line.
        Err(Unreachable::Unresolved(why)) => {
            debug!(host = %req.host, "egress: {why}");
            return refuse(&mut client, 502, &why).await;
        }
    };
    debug!(host = %req.host, port = req.port, %addr, tunnel = req.tunnel, "egress allowed");
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return refuse(&mut client, 502, &format!("{}: {e}", req.host)).await;
        }
        Err(_) => {
            return refuse(&mut client, 504, &format!("{} did not answer", req.host)).await;
        }
    };
    if req.tunnel {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        upstream.write_all(&req.origin_head).await?;
    }
    upstream.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Reads up to the end of the request head; returns the head and any bytes read after it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok(Some((String::from_utf8_lossy(&buf).into_owned(), rest)));
        }
        if buf.len() > MAX_HEAD {
            refuse(client, 431, "request head too large").await?;
            return Ok(None);
        }
    }
}

/// Answers with `code` and says why in the body and in the status line's reason phrase, which
/// is what Chromium reports of a failed page load (so the task's error names the cause).
async fn refuse(client: &mut TcpStream, code: u16, why: &str) -> std::io::Result<()> {
    let body = format!("pagecast refused this request: {why}\n");
    let reason: String = format!("pagecast: {why}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_requests_go_to_the_origin_in_origin_form_with_connection_close() {
        let r = parse_head(
            "GET http://example.org:8080/a/b?x=1 HTTP/1.1\r\nHost: example.org:8080\r\n\
             Proxy-Connection: keep-alive\r\nAccept: */*",
        )
        .unwrap();
        assert!(!r.tunnel);
        assert_eq!((r.host.as_str(), r.port), ("example.org", 8080));
        assert_eq!(
            String::from_utf8(r.origin_head).unwrap(),
            "GET /a/b?x=1 HTTP/1.1\r\nHost: example.org:8080\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn tunnels_and_malformed_heads() {
        let r = parse_head("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443").unwrap();
        assert!(r.tunnel);
        assert_eq!((r.host.as_str(), r.port), ("example.org", 443));
        let r = parse_head("CONNECT [::1]:443 HTTP/1.1").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 443));
        let r = parse_head("GET http://[::1]/ HTTP/1.1").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 80));
        assert!(parse_head("CONNECT example.org HTTP/1.1").is_err());
        assert!(parse_head("GET /relative HTTP/1.1").is_err());
        assert!(parse_head("GET ftp://example.org/ HTTP/1.1").is_err());
        assert!(parse_head("nonsense").is_err());
    }

    #[tokio::test]
    async fn private_destinations_are_refused_and_allowed_ones_reached() {
        // An origin on loopback that answers one request.
        let origin = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let origin_addr = origin.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = origin.accept().await {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = if head.starts_with("GET /hello HTTP/1.1\r\n")
                    && head.contains("Connection: close")
                {
                    "hello"
                } else {
                    "unexpected"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        async fn ask(proxy: SocketAddr, head: String) -> String {
            let mut s = TcpStream::connect(proxy).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
        let get = format!("GET http://{origin_addr}/hello HTTP/1.1\r\nHost: {origin_addr}\r\n\r\n");

        let strict = EgressProxy::start(UrlPolicy::default()).await.unwrap();
        let answer = ask(strict.addr, get.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 403 pagecast: "), "{answer}");
        assert!(answer.contains("127.0.0.1"), "{answer}");
        let answer = ask(
            strict.addr,
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n".to_string(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403 pagecast: "), "{answer}");
        let answer = ask(strict.addr, "CONNECT localhost:443 HTTP/1.1\r\n\r\n".into()).await;
        assert!(answer.starts_with("HTTP/1.1 403 pagecast: "), "{answer}");

        // Private networks allowed: loopback is refused unless named...
        let private = EgressProxy::start(UrlPolicy {
            allow_private: true,
            ..UrlPolicy::default()
        })
        .await
        .unwrap();
        let answer = ask(private.addr, get.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 403 pagecast: "), "{answer}");
        assert!(answer.contains("an address of this machine"), "{answer}");
        // ...and reached when named; the metadata service still is not.
        let open = EgressProxy::start(UrlPolicy {
            allow_private: true,
            allowed_private: crate::url_guard::PrivateAllowList::parse("127.0.0.0/8").unwrap(),
            ..UrlPolicy::default()
        })
        .await
        .unwrap();
        let answer = ask(
            open.addr,
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n".to_string(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403 pagecast: "), "{answer}");
        assert!(
            answer.contains("PAGECAST_ALLOW_LINK_LOCAL_URLS"),
            "{answer}"
        );
        let answer = ask(open.addr, get).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        // A tunnel carries whatever the browser sends, here a plain request.
        let mut s = TcpStream::connect(open.addr).await.unwrap();
        s.write_all(format!("CONNECT {origin_addr} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut established = [0u8; 39];
        s.read_exact(&mut established).await.unwrap();
        assert_eq!(&established, b"HTTP/1.1 200 Connection established\r\n\r\n");
        s.write_all(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.ends_with("hello"), "{out}");
    }
}
