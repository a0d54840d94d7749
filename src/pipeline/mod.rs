//! The worker: stage loops over the task queues, plus the diagnose loop.
//!
//! ```text
//!  Start ──► [record] ──► [transcode:<node>] ──► [upload:<node>] ──► [callback] ──► finished
//!              ▲ lease + heartbeat; control stream                       ▲
//!              └──────────── diagnose: expired leases are finished explicitly or re-queued
//! ```
//! The record queue is shared by every worker; a worker reads it only while it has capacity.
//! Transcode and upload read the recorded media from the node's work directory, so their
//! queues are per node. Every status change goes through the task store's atomic transitions,
//! fenced by the worker's lease, so a stale worker can never overwrite a newer one's work.

pub mod callback;
mod canceled;
mod diagnose;
mod disk;
mod held;
mod live_mp4;
mod live_push;
mod mirror;
mod node_watch;
mod orphans;
mod presence;
mod publish;
mod record;
mod side_tasks;
mod snapshot_callbacks;
mod snapshots;
mod takeover;
mod transcode;
mod upload;
mod videos;

#[cfg(test)]
mod settings_tests;

use crate::clock::{now_ms, now_s};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::WorkerConfig;
use crate::metrics;
use crate::task::store::{Stage, StageQueue, StoreError, TaskStore};
use crate::task::{Status, TaskResult};

/// Everything a stage needs.
#[derive(Clone)]
pub struct WorkerContext {
    /// The task store.
    pub(crate) store: TaskStore,
    /// Worker settings.
    pub(crate) cfg: Arc<WorkerConfig>,
    /// This machine's node id.
    pub(crate) node: String,
    /// This worker process's id (lease owner).
    pub(crate) worker_id: String,
    /// Base URL of result files.
    pub(crate) public_url: String,
    /// Cancelled when the worker is told to stop (SIGTERM): no new recordings are taken and
    /// running ones are handed over, stopped or finished as configured.
    pub(crate) drain: CancellationToken,
    /// Cancelled once the running recordings are dealt with: every loop then ends.
    pub(crate) shutdown: CancellationToken,
    /// The tasks this worker's jobs hold a lease on (announced, see `presence`).
    pub(crate) active: presence::ActiveTasks,
    /// Signs the URLs of local results (`None`: they are left unsigned, and refused).
    pub(crate) url_signer: Option<crate::delivery::signed_url::UrlSigner>,
}

impl WorkerContext {
    /// Builds the context; `public_url` is where `serve` publishes result files; `drain` is
    /// cancelled when the worker should stop.
    pub fn new(
        store: TaskStore,
        cfg: WorkerConfig,
        public_url: String,
        drain: CancellationToken,
    ) -> Self {
        let node = cfg.node();
        let worker_id = format!(
            "{node}/{}/{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            store,
            cfg: Arc::new(cfg),
            node,
            worker_id,
            public_url,
            drain,
            shutdown: CancellationToken::new(),
            active: presence::ActiveTasks::default(),
            url_signer: None,
        }
    }

    /// Signs local result URLs with `signer`.
    pub fn with_url_signer(mut self, signer: crate::delivery::signed_url::UrlSigner) -> Self {
        self.url_signer = Some(signer);
        self
    }

    /// The URL of local result file `key` (below the output directory), signed when a signer
    /// is set.
    pub(crate) fn local_file_url(&self, key: &str) -> String {
        match &self.url_signer {
            Some(s) => s.file_url(&self.public_url, key, now_s()),
            None => crate::delivery::signed_url::unsigned_file_url(&self.public_url, key),
        }
    }

    /// MiB free on the work directory's disk (`None` if it cannot be read).
    pub(crate) fn free_disk_mb(&self) -> Option<u64> {
        let root = self.cfg.work_root();
        let _ = std::fs::create_dir_all(&root);
        crate::ops::doctor::free_bytes(&root).map(|b| b >> 20)
    }

    /// Until when a handed-over task may wait for a worker to continue it (unix ms).
    pub(crate) fn handover_deadline_ms(&self) -> i64 {
        handover_deadline(now_ms(), self.cfg.handover_timeout)
    }

    fn lease_ms(&self) -> i64 {
        self.cfg.lease_ms.max(1000) as i64
    }

    fn node_queue(&self, stage: Stage) -> StageQueue {
        StageQueue {
            stage,
            node: Some(self.node.clone()),
        }
    }

    /// Keeps this worker's lease on `id` alive (renewing every third of the lease period) until
    /// the returned guard is dropped: for stages whose work can outlast one lease.
    pub(crate) fn heartbeat(&self, id: &str, fence: u64) -> Heartbeat {
        let ctx = self.clone();
        let active = self.active.hold(id);
        let id = id.to_string();
        let every = Duration::from_millis((self.lease_ms() / 3).max(200) as u64);
        Heartbeat {
            _active: active,
            renewing: tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = ctx
                        .store
                        .renew(&id, &ctx.worker_id, fence, now_ms(), ctx.lease_ms())
                        .await
                    {
                        warn!(task_id = %id, error = %e, "renewing the lease failed");
                    }
                }
            }),
        }
    }

    /// Takes the lease of a task waiting in `stage`; `None` when another worker has it or the
    /// task has moved on (then the queue entry is simply dropped).
    pub(crate) async fn claim_stage(
        &self,
        id: &str,
        stage: Status,
    ) -> Result<Option<(u64, crate::task::TaskRecord)>, StoreError> {
        Ok(
            match self
                .store
                .claim(id, &self.worker_id, &[stage], now_ms(), self.lease_ms())
                .await?
            {
                crate::task::store::Claim::Acquired { fence, task } => Some((fence, task)),
                crate::task::store::Claim::Busy | crate::task::store::Claim::NotClaimable(_) => {
                    None
                }
            },
        )
    }

    /// Ends a task that failed at `from` with an error: on to `callback` when the client asked
    /// for one, else to `finished`. Keeps whatever result (files) it already had.
    pub(crate) async fn fail_task(
        &self,
        id: &str,
        from: Status,
        fence: Option<u64>,
        code: crate::error::ErrorCode,
        message: String,
    ) -> Result<(), StoreError> {
        warn!(task_id = id, %code, %message, "task failed");
        metrics::inc(&metrics::TASKS_FAILED, &[("code", code.as_str())]);
        let task = held::retry(self, id, fence, "reading the task", || self.store.get(id)).await?;
        let mut result = task.result.clone().unwrap_or_default();
        result.error_code = Some(code.as_str().to_string());
        result.error_message = Some(message);
        let mut from = from;
        // Recording or paused: the recording ends first (canceled), then the outcome is reported.
        if from.is_live() {
            let t = crate::task::moves::fail_live(from, now_s())
                .with_lease_of(fence.map(|f| (self.worker_id.clone(), f)));
            held::transition(self, id, t).await?;
            from = Status::Canceled;
        }
        self.finish_or_callback(id, from, fence, Some(result)).await
    }

    /// Moves a task to `callback` (queued) if it has a callback URL, else to `finished`.
    pub(crate) async fn finish_or_callback(
        &self,
        id: &str,
        from: Status,
        fence: Option<u64>,
        result: Option<TaskResult>,
    ) -> Result<(), StoreError> {
        let task = held::retry(self, id, fence, "reading the task", || self.store.get(id)).await?;
        let has_callback = task.spec.callback_url.is_some();
        let t = crate::task::moves::report(from, has_callback, result, now_s())
            .with_lease_of(fence.map(|f| (self.worker_id.clone(), f)));
        held::transition(self, id, t).await
    }
}

/// Stops renewing a lease (and counting the task as this worker's) when dropped.
pub(crate) struct Heartbeat {
    _active: presence::ActiveTask,
    renewing: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// Counts a recording in `pagecast_recordings_running` and its time in the record stage's
/// histogram; the drop keeps both right even when the job panics.
struct RunningRecording(std::time::Instant);

impl RunningRecording {
    fn start() -> Self {
        metrics::add(&metrics::RECORDINGS_RUNNING, &[], 1.0);
        RunningRecording(std::time::Instant::now())
    }
}

impl Drop for RunningRecording {
    fn drop(&mut self) {
        metrics::add(&metrics::RECORDINGS_RUNNING, &[], -1.0);
        metrics::observe(
            &metrics::STAGE_SECONDS,
            &[("stage", "record")],
            self.0.elapsed().as_secs_f64(),
        );
    }
}

/// Runs a worker until `ctx.drain` is cancelled and its running recordings are dealt with.
pub async fn run_worker(ctx: WorkerContext) {
    // Counters a worker may never touch are shown from the start, at zero.
    for d in [
        &crate::metrics::HANDOVERS,
        &crate::metrics::TAKEOVERS,
        &crate::metrics::PAGE_CRASHES,
        &crate::metrics::PAGE_HANGS,
        &crate::metrics::BROWSER_RESTARTS,
        &crate::metrics::ENCODER_RESTARTS,
    ] {
        crate::metrics::add(d, &[], 0.0);
    }
    info!(worker = %ctx.worker_id, capacity = ctx.cfg.capacity(), "worker started");
    metrics::add(&metrics::WORKER_CAPACITY, &[], ctx.cfg.capacity() as f64);
    let mut loops = tokio::task::JoinSet::new();
    // The other loops run until the recordings are dealt with (in `finish` mode, that is when
    // the last one ends), so what they produce is still delivered.
    let recorder = ctx.clone();
    loops.spawn(async move {
        record_loop(recorder.clone()).await;
        if recorder.cfg.shutdown != crate::config::ShutdownMode::Handover {
            // `finish` and `stop` promise delivery: let this node's transcode and upload
            // queues run empty first (callbacks are retried by any worker).
            wait_for_local_delivery(&recorder).await;
        }
        recorder.shutdown.cancel();
    });
    // Finalizing is I/O-bound stream copying; two at a time keep the disk busy without
    // starving recordings of CPU.
    loops.spawn(stage_loop(
        ctx.clone(),
        ctx.node_queue(Stage::Transcode),
        2,
        transcode::run,
    ));
    loops.spawn(stage_loop(
        ctx.clone(),
        ctx.node_queue(Stage::Upload),
        4,
        upload::run,
    ));
    loops.spawn(stage_loop(
        ctx.clone(),
        StageQueue {
            stage: Stage::Callback,
            node: None,
        },
        ctx.cfg.callback_concurrency as usize,
        callback::run,
    ));
    loops.spawn(outbox_loop(ctx.clone()));
    loops.spawn(snapshot_callbacks::run(ctx.clone()));
    loops.spawn(diagnose::run(ctx.clone()));
    loops.spawn(presence::run(ctx.clone()));
    loops.spawn(orphans::run(ctx.clone()));
    while loops.join_next().await.is_some() {}
    metrics::add(&metrics::WORKER_CAPACITY, &[], -(ctx.cfg.capacity() as f64));
    info!(worker = %ctx.worker_id, "worker stopped");
}

/// Waits until this node's transcode and upload queues are empty (at most the upload retry
/// period plus ten minutes, so a stuck storage cannot hold the process forever).
async fn wait_for_local_delivery(ctx: &WorkerContext) {
    let limit = Duration::from_secs(ctx.cfg.storage.upload_retry_seconds + 600);
    let deadline = tokio::time::Instant::now() + limit;
    let queues = [
        ctx.node_queue(Stage::Transcode),
        ctx.node_queue(Stage::Upload),
    ];
    info!("waiting for this node's results to be delivered before exiting");
    while tokio::time::Instant::now() < deadline {
        let mut pending = 0;
        for q in &queues {
            // Redis down counts as pending: the deadline still bounds the wait.
            pending += ctx.store.queue_len(q).await.unwrap_or(1);
        }
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    warn!(
        "results of this node are still waiting for delivery; a worker of this node will finish them"
    );
}

/// Pauses after a Redis error so a worker does not spin while Redis is down.
async fn backoff(ctx: &WorkerContext, attempt: &mut u32) {
    let ms = (250u64 << (*attempt).min(5)).min(5_000);
    *attempt += 1;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = ctx.shutdown.cancelled() => {}
    }
}

/// Reads the record queues while this worker has capacity; each task runs on its own. Tasks
/// handed over by a worker of this node (on the node's own record queue) come first.
async fn record_loop(ctx: WorkerContext) {
    let capacity = Arc::new(Semaphore::new(ctx.cfg.capacity()));
    let shared = StageQueue {
        stage: Stage::Record,
        node: None,
    };
    let handed_over = ctx.node_queue(Stage::Record);
    let mut errors = 0;
    let mut running = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = capacity.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = ctx.drain.cancelled() => break,
        };
        if let Some(free) = ctx.free_disk_mb()
            && free < ctx.cfg.min_free_mb
        {
            // A new recording would fill the disk: leave the queue to workers that have room.
            warn!(
                free_mb = free,
                min_mb = ctx.cfg.min_free_mb,
                "the work disk is almost full; taking no new recordings"
            );
            drop(permit);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
                _ = ctx.drain.cancelled() => break,
            }
        }
        // Both queues in one blocking read: a recording this node's diagnose loops hand on (its
        // worker stopped) is seen as soon as it is queued, not after a wait on the shared queue.
        let queues = [handed_over.clone(), shared.clone()];
        let read = ctx
            .store
            .read_stages(&queues, &ctx.worker_id, 1_000, 30_000);
        let jobs = tokio::select! {
            r = read => r,
            _ = ctx.drain.cancelled() => break,
        };
        let mut jobs = match jobs {
            Ok(jobs) => {
                errors = 0;
                jobs.into_iter()
            }
            Err(e) => {
                warn!(error = %e, "reading the record queue failed");
                backoff(&ctx, &mut errors).await;
                continue;
            }
        };
        let Some((queue, job)) = jobs.next() else {
            continue;
        };
        // One entry from each queue at once and no room for the second: it goes back for
        // another worker (or this one, next round).
        for (q, extra) in jobs {
            if let Err(e) = ctx.store.put_back(&q, &extra).await {
                warn!(error = %e, "putting a record job back failed; it is reclaimed once idle");
            }
        }
        if !room_for_a_recording(&ctx).await {
            // The disk filled while the queue was read: the job stays unacknowledged, and a
            // worker with room (or this one, later) takes it once it has been idle a while.
            drop(permit);
            continue;
        }
        let ctx2 = ctx.clone();
        let span = info_span!("task", task_id = %job.task_id, stage = "record");
        running.spawn(
            async move {
                let _permit = permit;
                let _running = RunningRecording::start();
                record::run(ctx2, queue, job).await;
            }
            .instrument(span),
        );
        while running.try_join_next().is_some() {}
    }
    // Draining: running recordings see `ctx.drain` and are handed over, stopped or finished.
    while running.join_next().await.is_some() {}
}

/// Whether the work disk has room for a new recording; when it has not, waits (up to 20 s,
/// less than a queue entry's idle time before another worker may take it) for room to come
/// back.
async fn room_for_a_recording(ctx: &WorkerContext) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut told = false;
    loop {
        match ctx.free_disk_mb() {
            Some(free) if free < ctx.cfg.min_free_mb => {
                if !std::mem::replace(&mut told, true) {
                    warn!(
                        free_mb = free,
                        min_mb = ctx.cfg.min_free_mb,
                        "the work disk is almost full; the recording waits for room"
                    );
                }
            }
            _ => return true,
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = ctx.drain.cancelled() => return false,
        }
    }
}

/// Reads one stage queue and runs up to `concurrency` of its jobs at once; each job is
/// acknowledged when it ends (a job whose worker dies is redelivered).
async fn stage_loop<F, Fut>(ctx: WorkerContext, queue: StageQueue, concurrency: usize, run: F)
where
    F: Fn(WorkerContext, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let mut errors = 0;
    loop {
        while running.try_join_next().is_some() {}
        // Wait for a free slot, then read as many jobs as there are free slots.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = ctx.shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let jobs = tokio::select! {
            r = ctx.store.read_stage(&queue, &ctx.worker_id, permits.len(), 1_000, 60_000) => r,
            _ = ctx.shutdown.cancelled() => break,
        };
        let jobs = match jobs {
            Ok(jobs) => {
                errors = 0;
                jobs
            }
            Err(e) => {
                warn!(stage = queue.stage.as_str(), error = %e, "reading a stage queue failed");
                drop(permits);
                backoff(&ctx, &mut errors).await;
                continue;
            }
        };
        for (job, permit) in jobs.into_iter().zip(permits) {
            let span = info_span!("task", task_id = %job.task_id, stage = queue.stage.as_str());
            let (ctx2, queue2) = (ctx.clone(), queue.clone());
            let work = run(ctx.clone(), job.task_id.clone()).instrument(span);
            let stage = queue.stage.as_str();
            running.spawn(async move {
                let _permit = permit;
                let began = std::time::Instant::now();
                // A panic in one job must not take the loop down.
                let outcome = tokio::spawn(work).await;
                metrics::observe(
                    &metrics::STAGE_SECONDS,
                    &[("stage", stage)],
                    began.elapsed().as_secs_f64(),
                );
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(task_id = %job.task_id, error = %e, "stage ended with a store error")
                    }
                    Err(e) => warn!(task_id = %job.task_id, error = %e, "stage job panicked"),
                }
                if let Err(e) = ctx2.store.ack(&queue2, &job.entry_id).await {
                    warn!(error = %e, "ack failed; the job will be redelivered");
                }
            });
        }
    }
    while running.join_next().await.is_some() {}
}

/// Moves callbacks whose next attempt is due from the outbox to the callback queue.
async fn outbox_loop(ctx: WorkerContext) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        match ctx.store.release_due_callbacks(now_ms(), 100).await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "callbacks due again"),
            Err(e) => warn!(error = %e, "reading the callback outbox failed"),
        }
    }
}

/// Until when (unix ms) a task handed over at `now_ms` may wait for a worker to continue it:
/// `timeout_s` (PAGECAST_HANDOVER_TIMEOUT) later. A timeout beyond what the clock can count
/// waits as long as it can (it must never land in the past).
pub(crate) fn handover_deadline(now_ms: i64, timeout_s: u64) -> i64 {
    now_ms.saturating_add(
        i64::try_from(timeout_s)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
    )
}
