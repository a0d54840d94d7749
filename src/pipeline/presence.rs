//! This worker's word that it is alive and which tasks it works on (see the task store's
//! `presence`): its beat, every quarter of `PAGECAST_LIVENESS_MS`, renews its liveness (until
//! now + that period) and the list of its tasks (with a time to live of two lease periods). A
//! worker that stops beating has its tasks taken over at once (`orphans`); the list also lets
//! the diagnose loop tell a task whose worker is gone from one whose worker only could not
//! renew its lease for a moment (Redis was away). Each job that holds a lease is counted while
//! it runs ([`ActiveTasks::hold`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::WorkerContext;

/// The tasks this worker's jobs hold a lease on, right now.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActiveTasks(Arc<Mutex<HashMap<String, usize>>>);

impl ActiveTasks {
    /// Counts task `id` as worked on until the returned guard is dropped.
    pub(crate) fn hold(&self, id: &str) -> ActiveTask {
        *self.lock().entry(id.to_string()).or_default() += 1;
        ActiveTask {
            tasks: self.clone(),
            id: id.to_string(),
        }
    }

    /// The tasks, sorted.
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A task counted in [`ActiveTasks`] while this lives.
pub(crate) struct ActiveTask {
    tasks: ActiveTasks,
    id: String,
}

impl Drop for ActiveTask {
    fn drop(&mut self) {
        let mut map = self.tasks.lock();
        if let Some(n) = map.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.id);
            }
        }
    }
}

/// How long an announcement lives: two lease periods.
pub(crate) fn ttl_ms(lease_ms: i64) -> u64 {
    (lease_ms.max(1000) as u64).saturating_mul(2)
}

/// How often a worker beats: a quarter of its liveness period (at least every 100 ms), so a
/// beat or two may be late before it counts as stopped.
pub(crate) fn beat_every(liveness_ms: u64) -> Duration {
    Duration::from_millis((liveness_ms / 4).max(100))
}

/// Announces this worker, and beats, until shutdown; then withdraws both.
pub(crate) async fn run(ctx: WorkerContext) {
    let liveness = ctx.cfg.liveness_ms;
    let mut tick = tokio::time::interval(beat_every(liveness));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Told once per outage: a beat fails every quarter of the liveness period meanwhile.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => break,
        }
        let ids = ctx.active.ids();
        // Counted from before the call, so the beat never promises more than the period.
        let alive_until = super::now_ms().saturating_add(liveness as i64);
        match ctx
            .store
            .beat_worker(&ctx.worker_id, &ids, ttl_ms(ctx.lease_ms()), alive_until)
            .await
        {
            Ok(()) if std::mem::replace(&mut failing, false) => {
                info!("this worker's beat reaches the task store again")
            }
            Ok(()) => {}
            Err(e) if !std::mem::replace(&mut failing, true) => {
                warn!(error = %e, "this worker's beat failed; retrying")
            }
            Err(e) => debug!(error = %e, "this worker's beat failed again"),
        }
    }
    let _ = ctx.store.forget_worker(&ctx.worker_id).await;
}

/// Whether `worker` announced itself lately as working on task `id` (an error reading it counts
/// as yes: a task is not taken from a worker that might be alive).
pub(crate) async fn works_on(ctx: &WorkerContext, worker: &str, id: &str) -> bool {
    match ctx.store.worker_tasks(worker).await {
        Ok(Some(tasks)) => tasks.iter().any(|t| t == id),
        Ok(None) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_active_while_any_of_its_jobs_holds_it() {
        let active = ActiveTasks::default();
        let a = active.hold("t1");
        let b = active.hold("t1");
        let c = active.hold("t0");
        assert_eq!(active.ids(), vec!["t0", "t1"]);
        drop(a);
        assert_eq!(active.ids(), vec!["t0", "t1"]);
        drop(b);
        drop(c);
        assert!(active.ids().is_empty());
        assert_eq!(ttl_ms(3000), 6000);
        assert_eq!(ttl_ms(10), 2000);
        assert_eq!(beat_every(2000), Duration::from_millis(500));
        assert_eq!(beat_every(200), Duration::from_millis(100));
    }
}
