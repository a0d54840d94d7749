//! Readiness: the checks behind `GET /readyz`, each with its own time limit, so one slow
//! dependency cannot hold the probe past the prober's timeout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::storage::StorageConfig;
use crate::task::store::TaskStore;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// `redis`, `storage`, `chromium`, `ffmpeg`, `worker`, `disk`.
    pub(crate) name: &'static str,
    /// Whether this check passed.
    pub ok: bool,
    /// What was found, or what is wrong.
    pub detail: String,
}

impl Check {
    pub(crate) fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

/// What this process depends on: Redis always; storage, binaries and capacity when a worker
/// runs in it.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// The task store.
    pub(crate) store: TaskStore,
    /// Server-wide object storage, when a bucket is configured.
    pub storage: Option<StorageConfig>,
    /// Binaries the in-process worker runs (`chromium`, `ffmpeg`), when there is one.
    pub binaries: Vec<(&'static str, PathBuf)>,
    /// The recording slots of the worker in this process, when there is one (reported with
    /// how many are in use).
    pub worker: Option<usize>,
    /// The worker's work directory and the MiB that must stay free there
    /// (`PAGECAST_MIN_FREE_MB`), when a worker runs in this process: below it the worker takes
    /// no new recordings, so the process is not ready.
    pub work_disk: Option<(PathBuf, u64)>,
    /// Cancelled when the process shuts down: it is then no longer ready.
    pub shutdown: Option<CancellationToken>,
}

impl Readiness {
    /// Only Redis (an API-only process, or tests).
    pub fn redis_only(store: TaskStore) -> Self {
        Readiness {
            store,
            storage: None,
            binaries: Vec::new(),
            worker: None,
            work_disk: None,
            shutdown: None,
        }
    }

    /// Runs every check (concurrently).
    pub async fn check(&self) -> Vec<Check> {
        let redis = async {
            let began = Instant::now();
            match tokio::time::timeout(CHECK_TIMEOUT, self.store.server_facts()).await {
                Ok(Ok(facts)) => redis_check(&facts, began.elapsed()),
                Ok(Err(e)) => Check::new("redis", false, e.to_string()),
                Err(_) => Check::new("redis", false, "no answer within 3 s"),
            }
        };
        let storage = async {
            let cfg = self.storage.as_ref()?;
            Some(
                match tokio::time::timeout(CHECK_TIMEOUT, check_storage(cfg)).await {
                    Ok(Ok(detail)) => Check::new("storage", true, detail),
                    Ok(Err(e)) => Check::new("storage", false, e),
                    Err(_) => Check::new("storage", false, "no answer within 3 s"),
                },
            )
        };
        let (redis, storage) = tokio::join!(redis, storage);
        let mut checks = vec![redis];
        checks.extend(storage);
        for (name, path) in &self.binaries {
            checks.push(match crate::process::resolve_program(name, path) {
                Ok(found) => Check::new(name, true, found.display().to_string()),
                Err(e) => Check::new(name, false, e.to_string()),
            });
        }
        if let Some(capacity) = self.worker {
            let running = metrics::registry().get(&metrics::RECORDINGS_RUNNING, &[]);
            checks.push(Check::new(
                "worker",
                true,
                format!("{running} of {capacity} recording slots in use"),
            ));
        }
        if let Some((dir, min_free_mb)) = &self.work_disk {
            checks.push(check_disk(dir, *min_free_mb));
        }
        if let Some(token) = &self.shutdown
            && token.is_cancelled()
        {
            checks.push(Check::new(
                "shutdown",
                false,
                "shutting down: no new work is taken",
            ));
        }
        checks
    }
}

/// The `redis` check from the server's INFO: ready unless it is too old to run pagecast; an
/// eviction policy other than `noeviction` is shown as a warning (the store still works, but
/// Redis may drop tasks when its memory runs short).
fn redis_check(facts: &crate::task::store::ServerFacts, took: Duration) -> Check {
    let mut detail = format!("answered in {} ms; {}", took.as_millis(), facts.summary());
    if let Err(e) = facts.check_version() {
        return Check::new("redis", false, e.to_string());
    }
    if let Some(warning) = facts.eviction_warning() {
        detail.push_str(&format!("; warning: {warning}"));
    }
    Check::new("redis", true, detail)
}

/// Whether the work disk has the room a new recording needs.
fn check_disk(dir: &std::path::Path, min_free_mb: u64) -> Check {
    match crate::ops::doctor::free_bytes(dir).map(|b| b >> 20) {
        Some(free) if free >= min_free_mb => Check::new(
            "disk",
            true,
            format!("{free} MiB free in the work directory (PAGECAST_MIN_FREE_MB={min_free_mb})"),
        ),
        Some(free) => Check::new(
            "disk",
            false,
            format!(
                "the work disk is low: {free} MiB free in the work directory, below \
                 PAGECAST_MIN_FREE_MB={min_free_mb}; no new recordings are taken"
            ),
        ),
        None => Check::new(
            "disk",
            false,
            "the free space of the work directory cannot be read",
        ),
    }
}

/// Reaches the configured bucket with the configured credentials.
pub(crate) async fn check_storage(cfg: &StorageConfig) -> Result<String, String> {
    let dest = cfg
        .destination(&crate::task::OutputTarget::default())
        .ok_or_else(|| "no bucket is configured".to_string())?;
    let store = crate::storage::s3::ObjectStore::new(
        dest.clone(),
        crate::storage::s3::UploadSettings {
            part_size: cfg.part_size(),
            concurrency: 1,
            max_attempts: 1,
        },
    );
    store
        .check_bucket()
        .await
        .map(|()| format!("bucket {} reachable", dest.bucket))
        .map_err(|e| e.to_string())
}
