//! Fills a Redis with stored tasks for the scrape benchmark (BENCHMARKS.md, "What a scrape
//! costs"): `--tasks` tasks through the real store (its scripts, so the counts are kept as in
//! production), in a mix of statuses: most finished (kept for the retention period), some
//! recording, paused, and waiting.
//!
//! ```sh
//! cargo run --release --example scrape_fill -- --redis redis://127.0.0.1:6392 --tasks 100000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Parser;
use pagecast::task::store::{Claim, TaskStore, TimeField, Transition};
use pagecast::task::{Muxer, OutputTarget, StartSpec, Status, StorageType, TaskSecrets};

#[derive(Parser)]
struct Args {
    /// The Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// The key prefix (PAGECAST_KEY_PREFIX of the service that will be scraped).
    #[arg(long, default_value = "pagecast:")]
    prefix: String,
    /// Tasks to store.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn spec(i: usize) -> StartSpec {
    StartSpec {
        record_url: format!("https://example.test/class/{i}"),
        manual_start: false,
        width: 1280,
        height: 720,
        fps: 30,
        max_duration_secs: 3600,
        callback_url: None,
        storage_type: StorageType::Local,
        muxer: Muxer::Mp4,
        auth_url: None,
        output: OutputTarget::default(),
        start_timeout_secs: 300,
        user_context: None,
        audio: true,
        capture: None,
        user_agent: None,
    }
}

/// Task `i`'s place in the mix: 70 % finished, 10 % recording, 5 % paused, 15 % waiting.
async fn store_one(store: &TaskStore, i: usize) -> Result<(), Box<dyn std::error::Error>> {
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create(
            &id,
            &spec(i),
            &TaskSecrets::default(),
            1_700_000_000,
            u64::MAX,
        )
        .await?;
    match i % 20 {
        0..14 => {
            store
                .transition(&id, Transition::new(Status::Normal, Status::Finished))
                .await?
        }
        14..17 => {
            let Claim::Acquired { fence, .. } = store
                .claim(&id, "bench", &[Status::Normal], 0, 3_600_000)
                .await?
            else {
                return Err("claim refused".into());
            };
            store
                .transition(
                    &id,
                    Transition::new(Status::Normal, Status::Recording)
                        .with_lease("bench", fence)
                        .with_time(TimeField::Start, 1_700_000_001),
                )
                .await?;
            if i % 20 == 16 {
                store
                    .transition(&id, Transition::new(Status::Recording, Status::Paused))
                    .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = TaskStore::connect(&args.redis, &args.prefix)
        .await?
        .with_retention(7 * 24 * 3600);
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (store, next, total) = (store.clone(), next.clone(), args.tasks);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                store_one(&store, i).await.map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r??;
    }
    let counts = store.status_counts().await?;
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    println!(
        "stored {} tasks in {:.1} s: {counts:?}",
        args.tasks,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
