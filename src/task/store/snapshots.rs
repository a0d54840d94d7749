//! Snapshots (`Output.Snapshots`): the list of a task's stored pictures, for Describe, and the
//! `{prefix}events` stream that announces each one.

use super::{StoreError, TaskStore};
use crate::task::SnapshotEntry;

/// About how many entries `{prefix}events` keeps (`XADD … MAXLEN ~`): the oldest go first.
pub(crate) const EVENTS_MAXLEN: u64 = 100_000;
/// How long a task's snapshot list outlives its last entry beyond the retention of finished
/// tasks (the stages after recording take far less).
const LIST_SLACK_SECS: u64 = 86_400;

impl TaskStore {
    /// The snapshot list of task `id` (`{prefix}snaps:{id}`, a LIST of JSON entries).
    pub(super) fn snapshots_key(&self, id: &str) -> String {
        format!("{}snaps:{id}", self.prefix)
    }

    /// The stream that announces results as they are stored.
    pub(crate) fn events_key(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Lists `entry` among task `id`'s snapshots and announces it on `{prefix}events`
    /// (fields `task`, `kind` = `snapshot`, `key`, `url`, `time`: ms of recorded time).
    pub(crate) async fn add_snapshot(
        &self,
        id: &str,
        entry: &SnapshotEntry,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry)
            .map_err(|e| StoreError::Corrupt(format!("snapshot of task {id}: {e}")))?;
        let list = self.snapshots_key(id);
        let mut pipe = redis::pipe();
        pipe.cmd("RPUSH").arg(&list).arg(json).ignore();
        pipe.cmd("EXPIRE")
            .arg(&list)
            .arg(self.retention_secs + LIST_SLACK_SECS)
            .ignore();
        pipe.cmd("XADD")
            .arg(self.events_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAXLEN)
            .arg("*")
            .arg("task")
            .arg(id)
            .arg("kind")
            .arg("snapshot")
            .arg("key")
            .arg(&entry.filename)
            .arg("url")
            .arg(&entry.file_url)
            .arg("time")
            .arg(entry.time)
            .ignore();
        let pipe = &pipe;
        self.call("add_snapshot", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Task `id`'s snapshots, oldest first (none for a task without any).
    pub(crate) async fn snapshots(&self, id: &str) -> Result<Vec<SnapshotEntry>, StoreError> {
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(self.snapshots_key(id)).arg(0).arg(-1);
        let cmd = &cmd;
        let raw = self
            .call("snapshots", move |mut c| async move {
                cmd.query_async::<Vec<String>>(&mut c).await
            })
            .await?;
        raw.iter()
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot of task {id}: {e}")))
            })
            .collect()
    }
}
