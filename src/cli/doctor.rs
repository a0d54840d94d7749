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
    /// The URL to probe (default: /healthz on PAGECAST_LISTEN, or on PAGECAST_METRICS_LISTEN when
    /// only that is set, as in a worker container).
    #[arg(long)]
    url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = args.url.unwrap_or_else(|| {
        let addr = std::env::var("PAGECAST_LISTEN")
            .ok()
            .or_else(|| std::env::var("PAGECAST_METRICS_LISTEN").ok())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        // A wildcard listen address is probed on loopback.
        let addr = addr
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:");
        format!("http://{addr}/healthz")
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .build()?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(r) => {
            eprintln!("unhealthy: {url} answered HTTP {}", r.status().as_u16());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
