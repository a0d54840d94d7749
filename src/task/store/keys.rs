//! The Redis keys of the store, all under its prefix.

use super::*;

impl TaskStore {
    // ---- keys ----

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

    pub(super) fn stage_key(&self, q: &StageQueue) -> String {
        match &q.node {
            Some(node) => format!("{}stream:{}:{node}", self.prefix, q.stage.as_str()),
            None => format!("{}stream:{}", self.prefix, q.stage.as_str()),
        }
    }
}
