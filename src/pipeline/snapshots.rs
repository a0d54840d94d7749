//! `Output.Snapshots` for the record stage: pictures from the recording's frames stored as they
//! are taken at `<TargetDir>/snapshots/<ms>.<ext>` in the task's storage (the output directory,
//! or its bucket), listed for Describe, announced on `{prefix}events`, and posted to the
//! snapshots' CallbackURL when there is one (through the outbox of `snapshot_callbacks`).
//!
//! A picture that cannot be stored is lost (with a warning); the recording never fails for its
//! snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};

use super::WorkerContext;
use crate::media::snapshot::{Snapshot, SnapshotFeed, write_picture};
use crate::storage::s3::ObjectStore;
use crate::task::{SnapshotEntry, SnapshotSpec, TaskRecord};

/// Attempts to send one picture to the bucket.
const UPLOAD_ATTEMPTS: u32 = 3;

/// The snapshots of one recording.
pub(super) struct Snapshots {
    /// What the recording offers its frames to.
    pub(super) feed: SnapshotFeed,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Where the pictures go.
enum Sink {
    /// The output directory (local delivery).
    Local,
    /// The task's bucket; pictures are staged in the work directory.
    Bucket(ObjectStore),
}

/// Everything the storing loop needs.
struct Storer {
    ctx: WorkerContext,
    id: String,
    spec: SnapshotSpec,
    size: (u32, u32),
    dir: String,
    domain: Option<String>,
    sink: Sink,
    work: PathBuf,
}

/// The snapshots of `task`, started; `None` without `Output.Snapshots` (or when its bucket
/// cannot be used: the recording goes on without them).
pub(super) async fn start(
    ctx: &WorkerContext,
    task: &TaskRecord,
    work_dir: &Path,
) -> Option<Snapshots> {
    let spec = task.spec.output.snapshots.clone()?;
    let sink = match ctx.cfg.storage.destination(&task.spec.output) {
        None => Sink::Local,
        Some(dest) => match super::upload::task_store(ctx, task, &dest).await {
            Ok(store) => Sink::Bucket(store),
            Err(e) => {
                warn!(error = %e, "the task's bucket cannot be used; no snapshots");
                return None;
            }
        },
    };
    // A task continued after another worker: its pictures go on where that worker's stopped.
    let last = match ctx.store.snapshots(&task.id).await {
        Ok(list) => list.last().map(|s| s.time),
        Err(e) => {
            warn!(error = %e, "the task's earlier snapshots could not be read");
            None
        }
    };
    let (feed, rx) = SnapshotFeed::new(spec.interval_ms, last);
    let storer = Storer {
        ctx: ctx.clone(),
        id: task.id.clone(),
        size: (task.spec.width, task.spec.height),
        dir: crate::task::names::result_dir(&task.id, &task.spec.output).to_string(),
        domain: task.spec.output.domain.clone(),
        spec,
        sink,
        work: work_dir.join("snapshots"),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(
        storer
            .run(rx, stop.clone())
            .instrument(tracing::Span::current()),
    );
    Some(Snapshots { feed, stop, task })
}

impl Snapshots {
    /// Waits (up to `limit`) for the pictures taken so far to be stored, once the recording has
    /// ended.
    pub(super) async fn finish(self, limit: Duration) {
        let Snapshots { stop, mut task, .. } = self;
        stop.cancel();
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            warn!("snapshots still being stored were given up");
            task.abort();
        }
    }
}

/// The key of the picture at `time_ms` below the output root.
pub(crate) fn snapshot_key(dir: &str, time_ms: u64, ext: &str) -> String {
    if dir.is_empty() {
        format!("snapshots/{time_ms}.{ext}")
    } else {
        format!("{dir}/snapshots/{time_ms}.{ext}")
    }
}

impl Storer {
    async fn run(
        self,
        mut rx: mpsc::Receiver<Snapshot>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let _ = tokio::fs::create_dir_all(&self.work).await;
        loop {
            let snap = tokio::select! {
                s = rx.recv() => s,
                // The recording is over: what it queued is stored, then the loop ends.
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some(snap) = snap else { break };
            let time = snap.time_ms;
            match self.store(&snap).await {
                Ok(entry) => {
                    debug!(time, key = %entry.filename, "snapshot stored");
                    if let Err(e) = self.ctx.store.add_snapshot(&self.id, &entry).await {
                        warn!(time, error = %e, "a snapshot could not be listed");
                    }
                    if let Some(url) = &self.spec.callback_url {
                        super::snapshot_callbacks::enqueue(&self.ctx, url, &self.id, &entry).await;
                    }
                }
                Err(e) => warn!(time, error = %e, "a snapshot was lost"),
            }
        }
        let _ = tokio::fs::remove_dir_all(&self.work).await;
    }

    /// Writes the picture in its place and returns its entry.
    async fn store(&self, snap: &Snapshot) -> Result<SnapshotEntry, String> {
        let ext = self.spec.format.ext();
        let key = snapshot_key(&self.dir, snap.time_ms, ext);
        let path = match self.sink {
            Sink::Local => self.ctx.cfg.output_dir.join(&key),
            Sink::Bucket(_) => self.work.join(format!("{}.{ext}", snap.time_ms)),
        };
        let size = write_picture(snap, self.size, self.spec.format, self.spec.width, &path)
            .await
            .map_err(|e| e.to_string())?;
        let url = match &self.sink {
            Sink::Local => match self.domain.as_deref() {
                // The operator's own domain serves the files: its URLs are not signed.
                Some(d) => crate::storage::local_file_url(&self.ctx.public_url, Some(d), &key),
                None => self.ctx.local_file_url(&key),
            },
            Sink::Bucket(store) => {
                let sent = upload(store, &path, &key).await;
                let _ = tokio::fs::remove_file(&path).await;
                sent?;
                store.url_of(&key).await.map_err(|e| e.to_string())?
            }
        };
        Ok(SnapshotEntry {
            filename: key,
            file_size: size,
            file_url: url,
            time: snap.time_ms,
        })
    }
}

/// Sends one picture, retrying what storage may recover from.
async fn upload(store: &ObjectStore, path: &Path, key: &str) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.upload_file(path, key).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < UPLOAD_ATTEMPTS => {
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_go_below_the_result_directory() {
        assert_eq!(
            snapshot_key("room1/2024", 3000, "jpg"),
            "room1/2024/snapshots/3000.jpg"
        );
        assert_eq!(snapshot_key("", 0, "png"), "snapshots/0.png");
    }
}
