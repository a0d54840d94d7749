//! The HTTP server loop: hyper's HTTP/1.1 connection with a header read timeout, a cap on the
//! open connections of one client address, graceful shutdown, and a router that can be swapped
//! while serving (`serve` answers at once, and takes the full API once Redis is reachable).
//!
//! Hand-written around hyper-util rather than `axum::serve`, which has no header timeout and no
//! per-client limit: without them, a few hundred half-sent requests hold connections (and
//! memory) for as long as their clients like.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits of the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time a client may take to send a request's headers (also the longest idle time
    /// of a kept-alive connection).
    pub(crate) header_read_timeout: Duration,
    /// Most open connections of one client address (IPv6: one /64 network).
    pub(crate) max_connections_per_client: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections_per_client: 64,
        }
    }
}

/// The router requests go to; [`AppHandle::set`] swaps it for the requests that follow.
#[derive(Clone)]
pub struct AppHandle(Arc<RwLock<Router>>);

impl AppHandle {
    /// A handle serving `router`.
    pub fn new(router: Router) -> Self {
        AppHandle(Arc::new(RwLock::new(router)))
    }

    /// Serves `router` from now on.
    pub fn set(&self, router: Router) {
        match self.0.write() {
            Ok(mut r) => *r = router,
            Err(poisoned) => *poisoned.into_inner() = router,
        }
    }

    fn current(&self) -> Router {
        match self.0.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The address whose connections are counted together: an IPv4 address, or the /64 network of
/// an IPv6 address (one client usually holds a whole /64).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per client.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCounter {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One open connection; counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counter: ConnectionCounter,
    key: IpAddr,
}

impl ConnectionCounter {
    /// At most `max` connections per client.
    pub(crate) fn new(max: usize) -> Self {
        ConnectionCounter {
            open: Arc::default(),
            max: max.max(1),
        }
    }

    /// A slot for a new connection of `ip`, or `None` when that client has `max` open.
    pub(crate) fn try_open(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    /// Connections of `ip`'s client open now.
    pub(crate) fn open_of(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// How long in-flight requests may take to finish once the server stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` resolves, then lets open requests finish (up to
/// 10 s).
pub async fn serve(
    listener: TcpListener,
    app: AppHandle,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let counter = ConnectionCounter::new(limits.max_connections_per_client);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Some(slot) = counter.try_open(peer.ip()) else {
            debug!(client = %peer.ip(), "connection refused: the client has too many open");
            crate::metrics::inc(&crate::metrics::CONNECTIONS_REFUSED, &[]);
            drop(stream);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = app.current();
            async move {
                Ok::<_, Infallible>(
                    router
                        .oneshot(req.map(Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "requests still open {} s after shutdown began; closing them",
            DRAIN.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_client() {
        let c = ConnectionCounter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.try_open(a).unwrap();
        let _s2 = c.try_open(a).unwrap();
        assert!(c.try_open(a).is_none());
        let _other = c.try_open(b).unwrap();
        assert_eq!(c.open_of(a), 2);
        drop(s1);
        assert_eq!(c.open_of(a), 1);
        assert!(c.try_open(a).is_some());
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let c = ConnectionCounter::new(1);
        let _s = c.try_open("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            c.try_open("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(c.try_open("2001:db8:1:3::1".parse().unwrap()).is_some());
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
