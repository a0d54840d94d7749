//! `pagecast doctor` (checks the environment) and `pagecast healthcheck` (probes a running
//! process's `/healthz`, for container HEALTHCHECKs where curl may be absent).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pagecast::config::{StoreConfig, WorkerConfig};
use pagecast::error::ConfigError;
use pagecast::ops::doctor::{self, Level};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    store: StoreConfig,
    #[command(flatten)]
    worker: WorkerConfig,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.worker.tls_ca_file
        && let Err(why) = pagecast::tls::use_extra_roots(path)
    {
        println!("[FAIL] {:<10} PAGECAST_TLS_CA_FILE: {why}", "tls");
        return Ok(ExitCode::FAILURE);
    }
    let findings = doctor::run(&args.store, &args.worker).await;
    for f in &findings {
        let mark = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("[{mark}] {:<10} {}", f.name, f.detail);
        if !f.fix.is_empty() {
            println!("       {:<10} fix: {}", "", f.fix);
        }
    }
    if doctor::any_failed(&findings) {
        println!("\nSome required checks failed; a worker on this machine would not work.");
        Ok(ExitCode::FAILURE)
    } else {
        println!("\nAll required checks passed.");
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to probe (default: /healthz on PAGECAST_METRICS_LISTEN, a worker's address, and
    /// on PAGECAST_LISTEN, the API's; healthy when either answers).
    #[arg(long)]
    url: Option<String>,
    /// The API's listen address, probed when --url is not given.
    #[arg(long, env = "PAGECAST_LISTEN")]
    listen: Option<String>,
    /// A worker's health and metrics address, probed when --url is not given.
    #[arg(long, env = "PAGECAST_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// `/healthz` on a listen address; a wildcard address is probed on loopback.
fn healthz_url(addr: &str) -> String {
    let addr = addr
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    format!("http://{addr}/healthz")
}

/// Whether `addr` is a listen address a probe can use: `ip:port`, `[ipv6]:port` or
/// `host:port` with a numeric port (what `serve` and `worker` bind).
fn is_listen_address(addr: &str) -> bool {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// The URLs to probe; a malformed setting is a configuration error naming it, not "unhealthy":
/// a health check that can never pass is a mistake in the container's configuration.
fn probe_urls(args: &HealthcheckArgs) -> Result<Vec<String>, ConfigError> {
    if let Some(url) = &args.url {
        return match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(vec![url.clone()]),
            _ => Err(ConfigError {
                setting: "--url",
                why: format!("{url:?} is not an http:// or https:// URL"),
            }),
        };
    }
    let mut urls = Vec::new();
    for (value, setting) in [
        (
            &args.metrics_listen,
            "PAGECAST_METRICS_LISTEN (--metrics-listen)",
        ),
        (&args.listen, "PAGECAST_LISTEN (--listen)"),
    ] {
        let Some(addr) = value.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
            continue;
        };
        if !is_listen_address(addr) {
            return Err(ConfigError {
                setting,
                why: format!("{addr:?} is not a listen address (host:port, e.g. 127.0.0.1:8080)"),
            });
        }
        urls.push(healthz_url(addr));
    }
    if urls.is_empty() {
        urls.push(healthz_url("127.0.0.1:8080"));
    }
    Ok(urls)
}

pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let urls = match probe_urls(&args) {
        Ok(urls) => urls,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let client = pagecast::tls::http_client_builder()
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .build()?;
    let mut problems = Vec::new();
    for url in &urls {
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(ExitCode::SUCCESS),
            Ok(r) => problems.push(format!("{url} answered HTTP {}", r.status().as_u16())),
            Err(e) => problems.push(format!("{url}: {e}")),
        }
    }
    eprintln!("unhealthy: {}", problems.join("; "));
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, listen: Option<&str>, metrics: Option<&str>) -> HealthcheckArgs {
        HealthcheckArgs {
            url: url.map(String::from),
            listen: listen.map(String::from),
            metrics_listen: metrics.map(String::from),
            timeout: 5,
        }
    }

    #[test]
    fn listen_addresses_are_host_and_port() {
        for ok in [
            "127.0.0.1:8080",
            "0.0.0.0:9090",
            "[::]:8080",
            "localhost:8080",
            "api-0.svc:80",
        ] {
            assert!(is_listen_address(ok), "{ok}");
        }
        for bad in [
            "8080",
            "notanaddr",
            ":8080",
            "127.0.0.1:99999",
            "http://x:1",
            "a b:1",
        ] {
            assert!(!is_listen_address(bad), "{bad}");
        }
    }

    #[test]
    fn a_malformed_setting_is_named() {
        let e = probe_urls(&args(None, Some("notanaddr"), None)).unwrap_err();
        assert!(e.setting.starts_with("PAGECAST_LISTEN"), "{e}");
        let e = probe_urls(&args(None, Some("127.0.0.1:8080"), Some("9090"))).unwrap_err();
        assert!(e.setting.starts_with("PAGECAST_METRICS_LISTEN"), "{e}");
        let e = probe_urls(&args(Some("not a url"), None, None)).unwrap_err();
        assert_eq!(e.setting, "--url");
        assert_eq!(
            probe_urls(&args(None, Some("0.0.0.0:8080"), None)).unwrap(),
            vec!["http://127.0.0.1:8080/healthz".to_string()]
        );
        assert_eq!(
            probe_urls(&args(None, None, None)).unwrap(),
            vec!["http://127.0.0.1:8080/healthz".to_string()]
        );
    }
}
