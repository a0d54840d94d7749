//! Where result files are published (`PAGECAST_PUBLIC_URL`), when it is not set: a URL that
//! clients can really reach, or a named configuration error, never a wildcard or loopback
//! address that only works on the server itself.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why no public URL can be derived.
pub(crate) const NEEDS_SETTING: &str = "must be set: results are kept in PAGECAST_OUTPUT_DIR and \
     served under /files/, and clients need the address they reach this service at (e.g. \
     https://rec.example.org); or configure object storage (PAGECAST_S3_BUCKET)";

/// The base URL `serve` advertises for its `/files/`: the setting, else the listen address
/// when clients can use it (a loopback address, for a service used on this machine, or a
/// specific address). A wildcard address (`0.0.0.0`, `[::]`) names no reachable host: with
/// local delivery that is an error, with object storage the URL is never used.
pub(crate) fn for_serve(
    configured: Option<&str>,
    listen: SocketAddr,
    local_delivery: bool,
) -> Result<Option<String>, &'static str> {
    if let Some(url) = configured {
        return Ok(Some(url.trim_end_matches('/').to_string()));
    }
    if listen.ip().is_unspecified() {
        return if local_delivery {
            Err(NEEDS_SETTING)
        } else {
            Ok(None)
        };
    }
    Ok(Some(format!("http://{listen}")))
}

/// The base URL a separate `worker` puts in its results' FileURLs: the setting, else the one an
/// API server published through Redis. Without either, local delivery cannot name its files.
pub(crate) fn for_worker(
    configured: Option<&str>,
    published: Option<&str>,
    local_delivery: bool,
) -> Result<Option<String>, &'static str> {
    match (configured, published) {
        (Some(url), _) | (None, Some(url)) => Ok(Some(url.trim_end_matches('/').to_string())),
        (None, None) if local_delivery => Err(NEEDS_SETTING),
        (None, None) => Ok(None),
    }
}

/// The base URL an API server published through Redis, read until one is there or `wait` has
/// passed (a worker started before `serve`, as containers started together are, must not exit
/// for it), retried like the URL-signing key; `None` when none came.
pub(crate) async fn published(
    store: &pagecast::task::store::TaskStore,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut said = false;
    loop {
        match store.published_public_url().await {
            Ok(Some(url)) => {
                if said {
                    info!(url = %url, "an API server published the results' base URL");
                }
                return Some(url);
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not read the published base URL of results"),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        if !said {
            warn!(
                wait_seconds = wait.as_secs(),
                "no API server has published the results' base URL in Redis yet \
                 (PAGECAST_PUBLIC_URL is not set): waiting for one to start"
            );
            said = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.min(deadline - now)) => {}
            _ = shutdown.cancelled() => return None,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn serve_never_advertises_a_wildcard_address() {
        assert_eq!(
            for_serve(None, addr("0.0.0.0:8080"), true),
            Err(NEEDS_SETTING)
        );
        assert_eq!(for_serve(None, addr("[::]:8080"), true), Err(NEEDS_SETTING));
        // With object storage the files URL is never used.
        assert_eq!(for_serve(None, addr("0.0.0.0:8080"), false), Ok(None));
    }

    #[test]
    fn serve_uses_a_usable_listen_address_or_the_setting() {
        assert_eq!(
            for_serve(None, addr("127.0.0.1:8080"), true),
            Ok(Some("http://127.0.0.1:8080".into()))
        );
        assert_eq!(
            for_serve(None, addr("10.0.0.5:8080"), true),
            Ok(Some("http://10.0.0.5:8080".into()))
        );
        assert_eq!(
            for_serve(Some("https://rec.example/"), addr("0.0.0.0:8080"), true),
            Ok(Some("https://rec.example".into()))
        );
    }

    #[test]
    fn a_worker_takes_the_setting_or_what_an_api_server_published() {
        assert_eq!(
            for_worker(Some("https://a.example"), Some("https://b.example"), true),
            Ok(Some("https://a.example".into()))
        );
        assert_eq!(
            for_worker(None, Some("https://b.example"), true),
            Ok(Some("https://b.example".into()))
        );
        assert_eq!(for_worker(None, None, true), Err(NEEDS_SETTING));
        assert_eq!(for_worker(None, None, false), Ok(None));
    }
}
