//! Load generator for the Describe benchmark (BENCHMARKS.md, "Describe latency").
//!
//! Creates `--tasks` tasks with Start, then sends Describe for them, round robin, at a fixed
//! rate (open loop: a request is sent every 1/rate s whether or not earlier ones have answered),
//! and prints the latency percentiles and the rate achieved.
//!
//! ```sh
//! cargo run --release --example describe_load -- --url http://127.0.0.1:8080/ --rate 1000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The API's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    url: String,
    /// An API token, if the server requires one.
    #[arg(long, env = "PAGECAST_BENCH_TOKEN")]
    token: Option<String>,
    /// Tasks to create and describe.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Describe requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The page the tasks would record.
    #[arg(long, default_value = "http://127.0.0.1:9/")]
    record_url: String,
}

async fn post(
    client: &reqwest::Client,
    args: &Args,
    body: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = client.post(&args.url).json(&body);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;

    let mut ids = Vec::with_capacity(args.tasks);
    for _ in 0..args.tasks {
        let (status, body) = post(
            &client,
            &args,
            json!({"Action": "Start", "Data": {"RecordURL": args.record_url, "ManualStart": true}}),
        )
        .await?;
        let id = body["TaskID"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("Start answered {status}: {body}"))?;
        ids.push(id.to_string());
    }
    println!("created {} tasks", ids.len());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(f64, bool)>();
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let begin = Instant::now();
    let mut sent = 0usize;
    while begin.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        let body = json!({"Action": "Describe", "Data": {"TaskID": ids[sent % ids.len()]}});
        let (client, tx) = (client.clone(), tx.clone());
        let (url, token) = (args.url.clone(), args.token.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let mut req = client.post(&url).json(&body);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let ok = match req.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = tx.send((t.elapsed().as_secs_f64() * 1000.0, ok));
        });
        sent += 1;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    drop(tx);
    let mut lat = Vec::with_capacity(sent);
    let mut failed = 0usize;
    while let Some((ms, ok)) = rx.recv().await {
        if ok {
            lat.push(ms);
        } else {
            failed += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    let (_, first) = post(
        &client,
        &args,
        json!({"Action": "Describe", "Data": {"TaskID": ids[0]}}),
    )
    .await?;
    println!("a described task's status at the end: {}", first["Status"]);
    println!(
        "describe: {} requests in {:.1} s ({:.0}/s), {} failed; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        sent,
        elapsed,
        sent as f64 / elapsed,
        failed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    Ok(())
}
