//! The Redis keys of the store, all under its prefix.

use super::*;

impl TaskStore {
    pub(super) fn task_key(&self, id: &str) -> String {
        format!("{}task:{id}", self.prefix)
    }

    pub(super) fn control_key(&self, id: &str) -> String {
        format!("{}ctl:{id}", self.prefix)
    }

    pub(super) fn callbacks_due_key(&self) -> String {
        format!("{}callbacks:due", self.prefix)
    }

    pub(super) fn queued_key(&self) -> String {
        format!("{}queued", self.prefix)
    }

    pub(super) fn leases_key(&self) -> String {
        format!("{}leases", self.prefix)
    }

    /// Tasks by status (HASH), kept by the scripts.
    pub(super) fn counts_key(&self) -> String {
        format!("{}counts", self.prefix)
    }

    /// Every stage stream ever used (SET of keys), for queue depths without SCAN.
    pub(super) fn streams_key(&self) -> String {
        format!("{}streams", self.prefix)
    }

    /// Finished tasks by when their retention ends (ZSET, unix seconds).
    pub(super) fn expiry_key(&self) -> String {
        format!("{}expiry", self.prefix)
    }

    /// The layout version of the stored data (see `lua/migrate.lua`).
    pub(super) fn schema_key(&self) -> String {
        format!("{}schema", self.prefix)
    }

    pub(super) fn stage_key(&self, q: &StageQueue) -> String {
        match &q.node {
            Some(node) => format!("{}stream:{}:{node}", self.prefix, q.stage.as_str()),
            None => format!("{}stream:{}", self.prefix, q.stage.as_str()),
        }
    }
}
