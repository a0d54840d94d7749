//! The vocabulary of the store's callers: stages and their queues, control messages, status
//! transitions, claims and queue entries.

use super::*;

/// A stage of the pipeline with its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Recording the page.
    Record,
    /// Producing the deliverable.
    Transcode,
    /// Uploading it.
    Upload,
    /// Reporting the result.
    Callback,
}

impl Stage {
    /// The name used in stream keys.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Record => "record",
            Stage::Transcode => "transcode",
            Stage::Upload => "upload",
            Stage::Callback => "callback",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage queue: shared by all workers, or bound to one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StageQueue {
    /// The stage.
    pub(crate) stage: Stage,
    /// The node whose workers read this queue; `None`: any worker.
    pub(crate) node: Option<String>,
}

impl StageQueue {
    /// The queue of `stage` shared by all workers.
    pub fn shared(stage: Stage) -> Self {
        StageQueue { stage, node: None }
    }

    /// The queue of `stage` read only by the workers of `node`.
    pub fn on_node(stage: Stage, node: impl Into<String>) -> Self {
        StageQueue {
            stage,
            node: Some(node.into()),
        }
    }
}

/// A timestamp of the task record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeField {
    /// `start_time`: set only if not set yet.
    Start,
    /// `cancel_time`: set only if not set yet.
    Cancel,
    /// `stop_time`: overwritten.
    Stop,
    /// `finish_time`: overwritten.
    Finish,
}

/// A status change and everything that goes with it, applied atomically by
/// [`TaskStore::transition`]. Made only by its builders, most often through a named move of
/// `task::moves`, which keeps the protocol's rules (which times a move sets, where the
/// task is queued next) in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The status the caller saw (compare-and-set).
    pub(in crate::task) from: Status,
    /// The new status.
    pub(in crate::task) to: Status,
    /// `(worker id, fence)`: refuse with [`StoreError::LeaseLost`] unless this worker still holds
    /// the task's lease. `None` (API side): no lease check.
    pub(in crate::task) lease: Option<(String, u64)>,
    /// Timestamps (unix seconds). `Start` and `Cancel` are set only if not set yet; `Stop` and
    /// `Finish` overwrite.
    pub(in crate::task) times: Vec<(TimeField, i64)>,
    /// Replace the result.
    pub(in crate::task) result: Option<TaskResult>,
    /// Replace the statistics.
    pub(in crate::task) stats: Option<TaskStats>,
    /// Set the node holding the task's media.
    pub(in crate::task) node: Option<String>,
    /// Also append this message to the task's control stream.
    pub(in crate::task) control: Option<Command>,
    /// Also queue the task on this stage.
    pub(in crate::task) enqueue: Option<StageQueue>,
    /// Clear owner and lease (the fence stays).
    pub(in crate::task) release_lease: bool,
    /// Increment `restarts` (used when a task is sent back to `normal` to be taken over).
    pub(in crate::task) count_restart: bool,
    /// Replace the callback delivery state.
    pub(in crate::task) callback: Option<CallbackDelivery>,
}

impl Transition {
    /// `from → to` with nothing else.
    pub fn new(from: Status, to: Status) -> Self {
        Transition {
            from,
            to,
            lease: None,
            times: Vec::new(),
            result: None,
            stats: None,
            node: None,
            control: None,
            enqueue: None,
            release_lease: false,
            count_restart: false,
            callback: None,
        }
    }

    /// Require the lease `(worker, fence)`.
    pub fn with_lease(mut self, worker: impl Into<String>, fence: u64) -> Self {
        self.lease = Some((worker.into(), fence));
        self
    }

    /// Require the lease `(worker, fence)` when one is given (`None`: no lease check).
    pub(crate) fn with_lease_of(mut self, lease: Option<(String, u64)>) -> Self {
        self.lease = lease;
        self
    }

    /// Set a timestamp (unix seconds).
    pub fn with_time(mut self, field: TimeField, unix_secs: i64) -> Self {
        self.times.push((field, unix_secs));
        self
    }

    /// Set these timestamps (unix seconds) too.
    pub(crate) fn with_times(mut self, times: impl IntoIterator<Item = (TimeField, i64)>) -> Self {
        self.times.extend(times);
        self
    }

    /// Append a control message.
    pub fn with_control(mut self, msg: Command) -> Self {
        self.control = Some(msg);
        self
    }

    /// Queue the task on a stage.
    pub fn with_enqueue(mut self, queue: StageQueue) -> Self {
        self.enqueue = Some(queue);
        self
    }

    /// Replace the result.
    pub fn with_result(mut self, result: TaskResult) -> Self {
        self.result = Some(result);
        self
    }

    /// Replace the statistics.
    pub fn with_stats(mut self, stats: TaskStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Note the node holding the task's media.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Replace the callback delivery state.
    pub fn with_callback(mut self, delivery: CallbackDelivery) -> Self {
        self.callback = Some(delivery);
        self
    }

    /// Clear the task's owner and lease (the fence stays).
    pub fn releasing_lease(mut self) -> Self {
        self.release_lease = true;
        self
    }

    /// Count a restart (a task sent back to `normal` to be taken over).
    pub fn counting_restart(mut self) -> Self {
        self.count_restart = true;
        self
    }

    /// The status the caller saw.
    pub fn from(&self) -> Status {
        self.from
    }

    /// The new status.
    pub fn to(&self) -> Status {
        self.to
    }

    /// The lease it requires, if any: `(worker id, fence)`.
    pub(crate) fn lease(&self) -> Option<&(String, u64)> {
        self.lease.as_ref()
    }
}

/// The outcome of [`TaskStore::claim`].
// Unboxed on purpose: a claim result is produced once per job and destructured at once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the lease now, with this fencing token.
    Acquired {
        /// Fencing token to pass with every worker-side write.
        fence: u64,
        /// The task after the claim (without secrets).
        task: TaskRecord,
    },
    /// Another worker holds an unexpired lease.
    Busy,
    /// The task is in a status the caller did not expect.
    NotClaimable(Status),
}

/// An entry read from a stage queue; [`TaskStore::ack`] it once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageJob {
    /// Stream entry id.
    pub entry_id: String,
    /// The task to work on.
    pub task_id: String,
}
