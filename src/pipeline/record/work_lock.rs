//! One writer per work directory: the record stage holds an exclusive lock (`flock`) on
//! `<task dir>/worker.lock` while it works on the task's media. A worker that takes a recording
//! over waits for the lock before it reads or writes anything there, so a worker that only
//! stalled (its liveness ran out and its task was taken) cannot write beside its successor: it
//! keeps the lock until it finds its lease lost and lets go. A worker that dies releases it
//! with its last file descriptor (its Chromium and ffmpeg die with it, see `process`, and never
//! inherit the descriptor).
//!
//! std's file lock is used (no crate needed): `flock`, advisory, per open file description.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};

use crate::pipeline::{WorkerContext, now_ms};
use crate::task::store::StoreError;

/// The lock's file name in a task's work directory.
pub(crate) const LOCK_FILE: &str = "worker.lock";

/// The lock, held until dropped (closing the file releases it).
pub(crate) struct WorkLock {
    _file: File,
}

/// Takes the lock of `dir` (created if missing) if nobody holds it.
pub(crate) fn try_lock(dir: &Path) -> std::io::Result<Option<WorkLock>> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(WorkLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Why the lock could not be had.
pub(crate) enum NotLocked {
    /// The task's lease went to another worker meanwhile.
    LeaseLost,
    /// The previous worker still held it after `PAGECAST_HANDOVER_TIMEOUT`.
    StillHeld,
    /// The directory or its lock file could not be opened.
    Io(std::io::Error),
}

/// Takes the lock of `dir` for task `id` held under `(worker, fence)`, waiting while another
/// worker holds it (the lease is renewed meanwhile), at most `PAGECAST_HANDOVER_TIMEOUT`.
pub(crate) async fn lock(
    ctx: &WorkerContext,
    id: &str,
    fence: u64,
    dir: &Path,
) -> Result<WorkLock, NotLocked> {
    let began = tokio::time::Instant::now();
    let limit = Duration::from_secs(ctx.cfg.handover_timeout);
    let renew_every = Duration::from_millis((ctx.lease_ms() / 3) as u64);
    let mut renewed = began;
    let mut told = false;
    loop {
        match try_lock(dir) {
            Ok(Some(lock)) => {
                if told {
                    info!(
                        waited_ms = began.elapsed().as_millis() as u64,
                        "the previous worker let go of the work directory"
                    );
                }
                return Ok(lock);
            }
            Ok(None) => {}
            Err(e) => return Err(NotLocked::Io(e)),
        }
        if !std::mem::replace(&mut told, true) {
            info!("the previous worker of this recording still holds its work directory; waiting");
        }
        if began.elapsed() >= limit {
            return Err(NotLocked::StillHeld);
        }
        if renewed.elapsed() >= renew_every {
            renewed = tokio::time::Instant::now();
            match ctx
                .store
                .renew(id, &ctx.worker_id, fence, now_ms(), ctx.lease_ms())
                .await
            {
                Ok(_) => {}
                Err(StoreError::LeaseLost) => return Err(NotLocked::LeaseLost),
                Err(e) => warn!(error = %e, "renewing the lease failed; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("pagecast-lock-{}", uuid::Uuid::new_v4()));
        let first = try_lock(&dir).unwrap().expect("free at first");
        assert!(try_lock(&dir).unwrap().is_none(), "held by the first");
        drop(first);
        let again = try_lock(&dir).unwrap();
        assert!(again.is_some(), "free once dropped");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
