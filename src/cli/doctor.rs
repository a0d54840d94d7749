//! `pagecast doctor` (checks the environment) and `pagecast healthcheck` (probes a running
//! process's `/healthz`, for container HEALTHCHECKs where curl may be absent).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pagecast::config::{StoreConfig, WorkerConfig};
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

pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let urls: Vec<String> = match args.url {
        Some(url) => vec![url],
        None => {
            let mut urls: Vec<String> = [&args.metrics_listen, &args.listen]
                .into_iter()
                .flatten()
                .filter(|a| !a.trim().is_empty())
                .map(|a| healthz_url(a.trim()))
                .collect();
            if urls.is_empty() {
                urls.push(healthz_url("127.0.0.1:8080"));
            }
            urls
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
