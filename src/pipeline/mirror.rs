//! `StorageType: s3`: a task's intermediate media (completed segments, their lists and the
//! media timeline) is copied to the operator's bucket while it is recorded, under
//! `pagecast-work/<task id>/`. If the machine recording it is lost, a worker on another machine
//! fetches the copy into its own work directory and continues the same task into the same
//! output, exactly as a worker of the same machine would. The copy is removed once the result
//! has been made.
//!
//! Segments are immutable once listed as complete, so each goes up once; the small lists and
//! the timeline go up again whenever they change. Storage errors only delay the copy (it is
//! retried on the next round); they never disturb the recording.

use std::collections::HashMap;
use std::path::Path;

use tracing::{debug, info, warn};

use super::WorkerContext;
use crate::storage::StorageError;
use crate::storage::s3::ObjectStore;
use crate::task::{StorageType, TaskRecord};

/// Where a task's intermediate media is kept in the bucket.
pub(super) fn prefix(task_id: &str) -> String {
    crate::workdir::mirror_prefix(task_id)
}

/// The store for intermediate media: the server's own bucket, for tasks that asked for
/// `StorageType: s3`; `None` otherwise (or without a configured bucket).
pub(super) fn store_for(ctx: &WorkerContext, task: &TaskRecord) -> Option<ObjectStore> {
    if task.spec.storage_type != StorageType::S3 {
        return None;
    }
    let dest = ctx
        .cfg
        .storage
        .destination(&crate::task::OutputTarget::default())?;
    let settings = ctx.cfg.storage.upload_settings();
    Some(ObjectStore::new(dest, settings))
}

/// Copies a work directory to the bucket, incrementally.
pub(super) struct WorkMirror {
    store: ObjectStore,
    prefix: String,
    /// Name → (size, modification time) of what is in the bucket.
    sent: HashMap<String, (u64, std::time::SystemTime)>,
}

impl WorkMirror {
    /// A mirror of task `task_id`'s work directory.
    pub(super) fn new(store: ObjectStore, task_id: &str) -> Self {
        Self {
            store,
            prefix: prefix(task_id),
            sent: HashMap::new(),
        }
    }

    /// Sends what changed since the last round: completed segments once, lists and the timeline
    /// when they changed. Segments go before the lists that name them.
    pub(super) async fn sync(&mut self, dir: &Path) -> Result<usize, StorageError> {
        let io = |e: std::io::Error| StorageError::Io {
            path: dir.display().to_string(),
            source: e,
        };
        let mut paths = crate::media::segments::completed_segments(dir)
            .map_err(|e| StorageError::Config(e.to_string()))?;
        paths.extend(crate::media::segments::segment_lists(dir).map_err(io)?);
        paths.push(crate::recording::timeline::path(dir));
        let names: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        let mut sent = 0;
        for name in names {
            let path = dir.join(&name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if self.sent.get(&name) == Some(&stamp) {
                continue;
            }
            self.store
                .upload_file(&path, &format!("{}{name}", self.prefix))
                .await?;
            self.sent.insert(name, stamp);
            sent += 1;
        }
        if sent > 0 {
            debug!(objects = sent, "intermediate media copied to the bucket");
        }
        Ok(sent)
    }
}

/// Fetches a task's intermediate media from the bucket into `dir` (files already there with the
/// same size are kept). Returns how many files were fetched.
pub(super) async fn fetch(
    store: &ObjectStore,
    task_id: &str,
    dir: &Path,
) -> Result<usize, StorageError> {
    let prefix = prefix(task_id);
    let io = |source| StorageError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut fetched = 0;
    for (key, size) in store.list(&prefix).await? {
        let Some(name) = key.strip_prefix(&prefix) else {
            continue;
        };
        // Only plain file names are ours; anything else is not written by pagecast.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            continue;
        }
        let path = dir.join(name);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            continue;
        }
        store.download_file(&key, &path).await?;
        fetched += 1;
    }
    if fetched > 0 {
        info!(
            files = fetched,
            "intermediate media fetched from the bucket"
        );
    }
    Ok(fetched)
}

/// Removes a task's intermediate media from the bucket (best effort; logged).
pub(super) async fn remove(store: &ObjectStore, task_id: &str) {
    let prefix = prefix(task_id);
    match store.list(&prefix).await {
        Ok(objects) => {
            for (key, _) in objects {
                if let Err(e) = store.delete(&key).await {
                    warn!(error = %e, "could not remove intermediate media from the bucket");
                }
            }
        }
        Err(e) => warn!(error = %e, "could not list intermediate media in the bucket"),
    }
}
