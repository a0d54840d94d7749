//! The task store: task state in Redis, shared by every API server and worker.
//!
//! Every state change is exactly one Lua script call (`src/task/lua/*.lua`), so it is atomic:
//! a status compare-and-set, its field updates and its side effects (control message, stage
//! queue entry, indexes, expiry) happen together or not at all. Which transitions are legal is
//! decided in Rust by [`can_transition`] before Redis is touched; the scripts only check that
//! the task is still where the caller saw it and, for workers, that the caller still holds the
//! lease.
//!
//! # Redis layout
//!
//! All keys start with the store's prefix (e.g. `pagecast:`). The scripts touch several keys at
//! once, so on Redis Cluster the prefix must be a hash tag (e.g. `{pagecast}:`).
//!
//! | key | type | content |
//! |-----|------|---------|
//! | `{prefix}task:{id}` | hash | the task, fields below |
//! | `{prefix}ctl:{id}` | stream | control messages for the recording worker: field `msg` = `pause` / `resume` / `refresh` / `stop`; `MAXLEN ~ 100` |
//! | `{prefix}queued` | zset | ids of tasks created (or sent back to `normal`) and not claimed yet; score = create time (unix s) |
//! | `{prefix}leases` | zset | ids of tasks with a lease; score = `lease_until` (unix ms) |
//! | `{prefix}stream:{stage}` | stream | stage queue shared by all workers: field `task` = id |
//! | `{prefix}worker:{worker}` | string | ids of the tasks a live worker works on, space-separated; expires unless renewed (`store/presence.rs`) |
//! | `{prefix}stream:{stage}:{node}` | stream | stage queue of one node (its work directory holds the media); `record:{node}` holds recordings handed over at shutdown ([`TaskStore::hand_over`]) |
//! | `{prefix}result:{hash}` | string | the id of the task in progress that writes a result place (hash: SHA-256 of its storage location and path, see [`crate::task::names::places`]); released when the task reaches `callback` or `finished` |
//!
//! Stage streams are read through the consumer group `workers`; [`TaskStore::ack`] acknowledges
//! *and deletes* an entry, so a stream only holds work not done yet.
//!
//! Task hash fields:
//!
//! | field | content |
//! |-------|---------|
//! | `status` | [`Status::as_str`] |
//! | `create_time`, `start_time`, `cancel_time`, `stop_time`, `finish_time` | unix seconds |
//! | `stop_ms` | `stop_time` in unix milliseconds (set with it by [`TaskStore::transition`]) |
//! | `spec` | [`StartSpec`] as JSON |
//! | `secrets` | [`TaskSecrets`] as JSON; only [`TaskStore::secrets`] reads it; deleted when the task reaches `finished` (kept while it runs, so a worker taking it over can encrypt) |
//! | `result` | [`TaskResult`] as JSON (its message through [`crate::redact::message`]) |
//! | `stats` | [`TaskStats`] as JSON |
//! | `owner` | id of the worker holding the lease (absent when nobody does) |
//! | `fence` | fencing token: incremented by every claim, never reset |
//! | `lease_until` | unix ms at which the lease expires (absent when nobody holds it) |
//! | `node` | node whose work directory holds the task's local media |
//! | `places` | the `result:` keys the task reserved at creation, space-separated |
//! | `restarts` | times the task was re-dispatched after its worker stopped ([`TaskStore::requeue`], [`Transition::count_restart`]) |
//!
//! Once a task is `finished`, its hash and control stream expire after the retention period
//! ([`TaskStore::with_retention`], 7 days by default).
//!
//! # Leases
//!
//! A worker [claims](TaskStore::claim) a task and gets a fencing token; every worker-side write
//! ([`Transition::lease`], [`TaskStore::renew`], [`TaskStore::release`],
//! [`TaskStore::set_stats`]) carries `(worker, fence)` and is refused with
//! [`StoreError::LeaseLost`] once another worker has claimed the task or the lease was cleared,
//! so a slow stale worker can never overwrite a newer owner's work. Expired leases are found
//! with [`TaskStore::expired_leases`] and cleared by exactly one caller of
//! [`TaskStore::take_expired`].
//!
//! # Failures
//!
//! Each call gets one retry when the connection failed (after Redis restarted, the first command
//! on the old connection fails). A state-changing script whose reply was lost may therefore, very
//! rarely, run twice; the second run then reports what it finds (e.g. `Conflict` with the status
//! the first run set). A call never takes longer than about four seconds (plus the blocking time
//! of blocking reads): an unreachable Redis is [`StoreError::Unavailable`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind,
};

mod presence;
mod service_info;

use super::model::{CallbackDelivery, StartSpec, TaskRecord, TaskResult, TaskSecrets, TaskStats};
use super::status::{Status, can_transition};
use crate::error::{ErrorCode, HasErrorCode};

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound of one store call, retry included (blocking reads add their blocking time).
const CALL_DEADLINE: Duration = Duration::from_secs(4);
/// Default retention of finished tasks.
const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// Approximate length limit of a control stream.
const CONTROL_MAXLEN: u64 = 100;
/// Most control messages one `read_controls` returns.
const CONTROL_READ_COUNT: usize = 100;
/// Keys asked for per SCAN step, and statuses read per pipeline, when walking the keyspace.
const SCAN_BATCH: usize = 1000;
/// The consumer group of every stage stream.
const GROUP: &str = "workers";
/// Idle connections kept for blocking reads.
const BLOCKING_POOL_MAX: usize = 8;
/// Fields of the task hash that make up a [`TaskRecord`] (everything but secrets and lease_until).
const RECORD_FIELDS: [&str; 15] = [
    "status",
    "create_time",
    "start_time",
    "cancel_time",
    "stop_time",
    "stop_ms",
    "finish_time",
    "spec",
    "result",
    "stats",
    "owner",
    "fence",
    "node",
    "restarts",
    "callback",
];

mod create;

static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/create.lua")));
static TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/transition.lua")));
static SIGNAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/signal.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static SET_STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/set_stats.lua")));
static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/requeue.lua")));
static DEFER_CALLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/defer_callback.lua")));
static DUE_CALLBACKS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/due_callbacks.lua")));
static HANDOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/handover.lua")));
static TAKE_EXPIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/take_expired.lua")));

/// What can go wrong in the task store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, timed out or refused to serve.
    #[error("task store unavailable: {0}; retry later")]
    Unavailable(String),
    /// No task with this id (never created, or expired after it finished).
    #[error("task {0} not found")]
    NotFound(String),
    /// The task's status changed concurrently.
    #[error("task is {actual}, not {expected}: it changed concurrently; read it again")]
    Conflict {
        /// The status the caller expected.
        expected: Status,
        /// The status the task has.
        actual: Status,
    },
    /// The status machine does not allow this move.
    #[error("a task cannot go from {from} to {to}")]
    Illegal {
        /// Current status.
        from: Status,
        /// Requested status.
        to: Status,
    },
    /// The caller's lease is gone: another worker claimed the task, or the lease was cleared.
    #[error(
        "the task's lease was lost (taken over by another worker or cleared); stop working on it"
    )]
    LeaseLost,
    /// Too many tasks are waiting for a worker.
    #[error("too many tasks are queued (limit {limit}); retry later")]
    QueueFull {
        /// The configured limit.
        limit: u64,
    },
    /// A task with this id exists already.
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// A task in progress will write where the new task's result would go.
    #[error(
        "another task in progress writes {0}: choose another TargetDir or TargetName, or start \
         again once that task has finished (a finished task's result may be replaced)"
    )]
    OutputInUse(String),
    /// Stored data could not be decoded, or Redis answered something unexpected.
    #[error("task store data is corrupt or unexpected: {0}")]
    Corrupt(String),
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            StoreError::NotFound(_) => ErrorCode::TaskNotFound,
            StoreError::Conflict { .. } | StoreError::Illegal { .. } | StoreError::LeaseLost => {
                ErrorCode::InvalidState
            }
            StoreError::QueueFull { .. } => ErrorCode::LimitExceeded,
            StoreError::AlreadyExists(_) => ErrorCode::InvalidParam,
            StoreError::OutputInUse(_) => ErrorCode::OutputInUse,
            StoreError::Corrupt(_) => ErrorCode::InternalError,
        }
    }
}

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
    pub fn as_str(self) -> &'static str {
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
    pub stage: Stage,
    /// The node whose workers read this queue; `None`: any worker.
    pub node: Option<String>,
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

/// A command to the recording worker of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlMsg {
    /// Pause recording.
    Pause,
    /// Resume recording.
    Resume,
    /// Reload the page.
    Refresh,
    /// Stop recording.
    Stop,
}

impl ControlMsg {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlMsg::Pause => "pause",
            ControlMsg::Resume => "resume",
            ControlMsg::Refresh => "refresh",
            ControlMsg::Stop => "stop",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<ControlMsg> {
        [
            ControlMsg::Pause,
            ControlMsg::Resume,
            ControlMsg::Refresh,
            ControlMsg::Stop,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
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
/// [`TaskStore::transition`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The status the caller saw (compare-and-set).
    pub from: Status,
    /// The new status.
    pub to: Status,
    /// `(worker id, fence)`: refuse with [`StoreError::LeaseLost`] unless this worker still holds
    /// the task's lease. `None` (API side): no lease check.
    pub lease: Option<(String, u64)>,
    /// Timestamps (unix seconds). `Start` and `Cancel` are set only if not set yet; `Stop` and
    /// `Finish` overwrite.
    pub times: Vec<(TimeField, i64)>,
    /// Replace the result.
    pub result: Option<TaskResult>,
    /// Replace the statistics.
    pub stats: Option<TaskStats>,
    /// Set the node holding the task's media.
    pub node: Option<String>,
    /// Also append this message to the task's control stream.
    pub control: Option<ControlMsg>,
    /// Also queue the task on this stage.
    pub enqueue: Option<StageQueue>,
    /// Clear owner and lease (the fence stays).
    pub release_lease: bool,
    /// Increment `restarts` (used when a task is sent back to `normal` to be taken over).
    pub count_restart: bool,
    /// Replace the callback delivery state.
    pub callback: Option<CallbackDelivery>,
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

    /// Set a timestamp (unix seconds).
    pub fn with_time(mut self, field: TimeField, unix_secs: i64) -> Self {
        self.times.push((field, unix_secs));
        self
    }

    /// Append a control message.
    pub fn with_control(mut self, msg: ControlMsg) -> Self {
        self.control = Some(msg);
        self
    }

    /// Queue the task on a stage.
    pub fn with_enqueue(mut self, queue: StageQueue) -> Self {
        self.enqueue = Some(queue);
        self
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

/// Why one Redis call failed, before it is turned into a [`StoreError`].
enum Failure {
    Redis(RedisError),
    Deadline(Duration),
}

/// Task state in Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct TaskStore {
    conn: ConnectionManager,
    client: Client,
    prefix: Arc<str>,
    /// The URL without credentials, for messages.
    shown_url: Arc<str>,
    retention_secs: u64,
    /// Stage streams whose consumer group is known to exist.
    groups: Arc<Mutex<HashSet<String>>>,
    /// Idle dedicated connections for blocking reads (a blocking command would stall every
    /// other command multiplexed on the shared connection).
    blocking: Arc<Mutex<Vec<MultiplexedConnection>>>,
    /// When a call last found Redis unavailable (see [`TaskStore::unavailable_within`]).
    last_unavailable: Arc<Mutex<Option<std::time::Instant>>>,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("retention_secs", &self.retention_secs)
            .finish()
    }
}

impl TaskStore {
    /// Connects to Redis at `url` (`redis://[:password@]host:port[/db]`); every key starts with
    /// `prefix`. A bad URL or an unreachable server is [`StoreError::Unavailable`].
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let shown_url = crate::redact::url(url);
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL {shown_url}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = match tokio::time::timeout(
            CALL_DEADLINE,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to Redis at {shown_url}: {e}"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to Redis at {shown_url}: no answer within {}s",
                    CALL_DEADLINE.as_secs()
                )));
            }
        };
        Ok(TaskStore {
            conn,
            client,
            prefix: prefix.into(),
            shown_url: shown_url.into(),
            retention_secs: DEFAULT_RETENTION_SECS,
            groups: Arc::default(),
            blocking: Arc::default(),
            last_unavailable: Arc::default(),
        })
    }

    /// Whether a call of this process found Redis unavailable within the last `window`. While
    /// Redis was away no worker could renew its lease, so just after it returns an expired
    /// lease does not mean its worker stopped: the diagnose loop leaves such leases alone until
    /// their workers have had time to renew them.
    pub fn unavailable_within(&self, window: std::time::Duration) -> bool {
        self.last_unavailable
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() < window)
    }

    /// Keep finished tasks for `secs` seconds (default 7 days).
    pub fn with_retention(mut self, secs: u64) -> Self {
        self.retention_secs = secs.max(1);
        self
    }

    /// The Redis URL without its password, for messages.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        self.call("ping", move |mut c| async move {
            cmd.query_async::<String>(&mut c).await
        })
        .await?;
        Ok(())
    }

    /// The task, without its secrets.
    pub async fn get(&self, id: &str) -> Result<TaskRecord, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.task_key(id)).arg(&RECORD_FIELDS[..]);
        let cmd = &cmd;
        let values = self
            .call("get", move |mut c| async move {
                cmd.query_async::<Vec<Option<String>>>(&mut c).await
            })
            .await?;
        let fields: HashMap<String, String> = RECORD_FIELDS
            .iter()
            .zip(values)
            .filter_map(|(name, value)| value.map(|v| ((*name).to_owned(), v)))
            .collect();
        if !fields.contains_key("status") {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        decode_record(id, fields)
    }

    /// The task's secrets. [`StoreError::NotFound`] once they are gone: a finished task has none
    /// (they are deleted when it reaches `finished`), nor one whose secrets were dropped.
    pub async fn secrets(&self, id: &str) -> Result<TaskSecrets, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.task_key(id)).arg("secrets");
        let cmd = &cmd;
        let value = self
            .call("secrets", move |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        let value = value.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("secrets of task {id}: {e}")))
    }

    /// Forgets the task's secrets (a generated HLS key once it was handed to the callback
    /// receiver). Later reads of the secrets find none.
    pub async fn drop_secrets(&self, id: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.task_key(id)).arg("secrets");
        let cmd = &cmd;
        self.call("drop_secrets", move |mut c| async move {
            cmd.query_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    /// Applies `t` in one atomic script: refuses illegal moves ([`StoreError::Illegal`], checked
    /// before Redis is touched), a lost lease ([`StoreError::LeaseLost`], checked first) and a
    /// status other than `t.from` ([`StoreError::Conflict`]); then sets the fields and performs
    /// the side effects.
    ///
    /// Leaving `normal` removes the task from the queued index; going back to `normal` adds it
    /// again. Reaching `finished` also sets `finish_time` if absent (Redis clock), releases the
    /// lease, deletes the task's secrets, and makes the task expire after the retention period.
    pub async fn transition(&self, id: &str, t: Transition) -> Result<(), StoreError> {
        if !can_transition(t.from, t.to) {
            return Err(StoreError::Illegal {
                from: t.from,
                to: t.to,
            });
        }
        let mut times: [String; 4] = Default::default();
        for (field, value) in &t.times {
            let slot = match field {
                TimeField::Start => 0,
                TimeField::Cancel => 1,
                TimeField::Stop => 2,
                TimeField::Finish => 3,
            };
            times[slot] = value.to_string();
        }
        let result = t
            .result
            .as_ref()
            .map(|r| to_json(&shown_result(r), "result"))
            .transpose()?;
        let stats = t.stats.as_ref().map(|s| to_json(s, "stats")).transpose()?;
        let callback = t
            .callback
            .as_ref()
            .map(|c| to_json(&shown_delivery(c), "callback"))
            .transpose()?;
        let (worker, fence) = match &t.lease {
            Some((worker, fence)) => (worker.as_str(), fence.to_string()),
            None => ("", String::new()),
        };
        // The stop time in milliseconds, from this process's clock when it is in the second the
        // caller gave (it just read the same clock), else that second's start.
        let stop_ms = t
            .times
            .iter()
            .find(|(f, _)| *f == TimeField::Stop)
            .map(|(_, secs)| stop_millis(*secs, unix_ms()).to_string())
            .unwrap_or_default();
        // A task that no longer writes its result gives its places up (they never change after
        // creation, so reading them first is safe).
        let places = if t.to == Status::Callback || t.to.is_final() {
            self.reserved_places(id).await?
        } else {
            Vec::new()
        };
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut inv = TRANSITION.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.queued_key())
            .key(self.leases_key())
            .key(self.control_key(id));
        if let Some(q) = &t.enqueue {
            inv.key(self.stage_key(q));
        }
        for key in &places {
            inv.key(key);
        }
        inv.arg(id)
            .arg(t.from.as_str())
            .arg(t.to.as_str())
            .arg(worker)
            .arg(fence)
            .arg(&times[..])
            .arg(result.unwrap_or_default())
            .arg(stats.unwrap_or_default())
            .arg(t.node.as_deref().unwrap_or(""))
            .arg(t.control.map(ControlMsg::as_str).unwrap_or(""))
            .arg(flag(t.release_lease))
            .arg(flag(t.count_restart))
            .arg(flag(t.to.is_final()))
            .arg(flag(t.from == Status::Normal && t.to != Status::Normal))
            .arg(flag(t.to == Status::Normal && t.from != Status::Normal))
            .arg(self.retention_secs)
            .arg(CONTROL_MAXLEN)
            .arg(callback.unwrap_or_default())
            .arg(stop_ms)
            .arg(places.len());
        let reply = self.script("transition", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                tracing::debug!(task = id, from = %t.from, to = %t.to, "task transition");
                Ok(())
            }
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            Some("leaselost") => Err(StoreError::LeaseLost),
            Some("conflict") => Err(StoreError::Conflict {
                expected: t.from,
                actual: parse_status(reply.get(1))?,
            }),
            _ => Err(unexpected("transition", &reply)),
        }
    }

    /// Puts a task whose callback attempt failed back in the outbox: records `delivery` (and
    /// `stats`), releases the lease and schedules the next attempt at `due_ms`, atomically and
    /// only while this worker holds the lease of the task in `callback`. The schedule lives in
    /// Redis, so it survives worker restarts; [`TaskStore::release_due_callbacks`] queues it again.
    pub async fn defer_callback(
        &self,
        id: &str,
        worker: &str,
        fence: u64,
        delivery: &CallbackDelivery,
        stats: Option<&TaskStats>,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let delivery = to_json(&shown_delivery(delivery), "callback")?;
        let stats = stats.map(|s| to_json(s, "stats")).transpose()?;
        let mut inv = DEFER_CALLBACK.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.leases_key())
            .key(self.callbacks_due_key())
            .arg(id)
            .arg(worker)
            .arg(fence)
            .arg(delivery)
            .arg(stats.unwrap_or_default())
            .arg(due_ms);
        let reply = self.script("defer_callback", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            Some("leaselost") => Err(StoreError::LeaseLost),
            Some("conflict") => Err(StoreError::Conflict {
                expected: Status::Callback,
                actual: parse_status(reply.get(1))?,
            }),
            _ => Err(unexpected("defer_callback", &reply)),
        }
    }

    /// Moves up to `limit` callbacks whose next attempt is due (at `now_ms`) from the outbox to
    /// the callback queue; returns how many. Safe on many workers at once.
    pub async fn release_due_callbacks(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut inv = DUE_CALLBACKS.prepare_invoke();
        inv.key(self.callbacks_due_key())
            .key(self.stage_key(&StageQueue::shared(Stage::Callback)))
            .arg(now_ms)
            .arg(limit);
        let reply = self.script("due_callbacks", &inv).await?;
        reply
            .first()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| unexpected("due_callbacks", &reply))
    }

    /// Callbacks waiting in the outbox for their next attempt.
    pub async fn pending_callbacks(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.callbacks_due_key());
        let cmd = &cmd;
        self.call("pending_callbacks", move |mut c| async move {
            cmd.query_async::<u64>(&mut c).await
        })
        .await
    }

    /// Appends a control message to the task's control stream without changing its status
    /// (Refresh). [`StoreError::NotFound`] for an unknown task.
    pub async fn signal(&self, id: &str, msg: ControlMsg) -> Result<(), StoreError> {
        let mut inv = SIGNAL.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.control_key(id))
            .arg(msg.as_str())
            .arg(CONTROL_MAXLEN);
        let reply = self.script("signal", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            _ => Err(unexpected("signal", &reply)),
        }
    }

    /// Queues the task on a stage again without changing its status, and counts a restart
    /// (`restarts + 1`), atomically: the re-dispatch of a delivery stage whose worker stopped
    /// (after [`Self::take_expired`]). [`StoreError::NotFound`] for an unknown task.
    pub async fn requeue(&self, id: &str, q: &StageQueue) -> Result<(), StoreError> {
        self.requeue_inner(id, q, None).await
    }

    /// [`Self::requeue`], and the task keeps a lease without owner until `until_ms`: any worker
    /// may claim it, and if none does in time the diagnose loop finds it again (as a task that
    /// nobody continued). For live recordings handed to another worker.
    pub async fn requeue_with_deadline(
        &self,
        id: &str,
        q: &StageQueue,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.requeue_inner(id, q, Some(until_ms)).await
    }

    async fn requeue_inner(
        &self,
        id: &str,
        q: &StageQueue,
        until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut inv = REQUEUE.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.stage_key(q))
            .key(self.leases_key())
            .arg(id)
            .arg(until_ms.map(|t| t.to_string()).unwrap_or_default());
        let reply = self.script("requeue", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                tracing::debug!(task = id, stage = %q.stage, node = ?q.node, "task queued again");
                Ok(())
            }
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            _ => Err(unexpected("requeue", &reply)),
        }
    }

    /// Worker side, at shutdown: stores `stats` (if any), gives up the lease and queues the task
    /// on `q` for another worker to continue, atomically; the status stays. Not counted in
    /// `restarts` (the worker counts handovers in its stats).
    /// The task keeps a lease without owner until `until_ms`: any worker may claim it, and if
    /// none has by then, [`Self::take_expired`] hands it to a diagnose loop (its `owner` is then
    /// absent). A `normal` task goes back into the queued index. [`StoreError::LeaseLost`] when
    /// another worker took the task meanwhile.
    pub async fn hand_over(
        &self,
        id: &str,
        worker: &str,
        fence: u64,
        stats: Option<&TaskStats>,
        q: &StageQueue,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let stats = match stats {
            Some(s) => to_json(s, "stats")?,
            None => String::new(),
        };
        let mut inv = HANDOVER.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.leases_key())
            .key(self.queued_key())
            .key(self.stage_key(q))
            .arg(id)
            .arg(worker)
            .arg(fence)
            .arg(stats)
            .arg(Status::Normal.as_str())
            .arg(until_ms);
        let reply = self.script("hand_over", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                tracing::info!(task = id, stage = %q.stage, node = ?q.node, "task handed over");
                Ok(())
            }
            Some("leaselost") => Err(StoreError::LeaseLost),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            _ => Err(unexpected("hand_over", &reply)),
        }
    }

    /// Worker side: takes the task's lease if its status is one of `expect` and nobody holds an
    /// unexpired lease (an expired one is taken over). The fence is incremented; the lease lasts
    /// until `now_ms + lease_ms`. A `normal` task leaves the queued index.
    pub async fn claim(
        &self,
        id: &str,
        worker: &str,
        expect: &[Status],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim, StoreError> {
        let expect: Vec<&str> = expect.iter().map(|s| s.as_str()).collect();
        let mut inv = CLAIM.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.queued_key())
            .key(self.leases_key())
            .arg(id)
            .arg(worker)
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .arg(Status::Normal.as_str())
            .arg(expect);
        let reply = self.script("claim", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("acquired") => {
                let fence = reply
                    .get(1)
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| unexpected("claim", &reply))?;
                let task = decode_record(id, pairs(&reply[2..]))?;
                tracing::debug!(task = id, worker, fence, "lease acquired");
                Ok(Claim::Acquired { fence, task })
            }
            Some("busy") => Ok(Claim::Busy),
            Some("notclaimable") => Ok(Claim::NotClaimable(parse_status(reply.get(1))?)),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            _ => Err(unexpected("claim", &reply)),
        }
    }

    /// Heartbeat: extends the lease to `now_ms + lease_ms` if `(worker, fence)` still holds it
    /// (even if it expired meanwhile, as long as nobody took it), and returns the task's current
    /// status, so the worker sees API-side moves (Pause, Stop) even if it missed the control
    /// message. [`StoreError::LeaseLost`] otherwise.
    pub async fn renew(
        &self,
        id: &str,
        worker: &str,
        fence: u64,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Status, StoreError> {
        let mut inv = RENEW.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.leases_key())
            .arg(id)
            .arg(worker)
            .arg(fence)
            .arg(now_ms.saturating_add(lease_ms));
        let reply = self.script("renew", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => parse_status(reply.get(1)),
            Some("leaselost") => Err(StoreError::LeaseLost),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            _ => Err(unexpected("renew", &reply)),
        }
    }

    /// Gives the lease back (owner and lease cleared; the fence stays) if `(worker, fence)` still
    /// holds it; [`StoreError::LeaseLost`] otherwise.
    pub async fn release(&self, id: &str, worker: &str, fence: u64) -> Result<(), StoreError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.leases_key())
            .arg(id)
            .arg(worker)
            .arg(fence);
        let reply = self.script("release", &inv).await?;
        lease_checked_reply("release", id, &reply)
    }

    /// Stores capture statistics while recording, if `(worker, fence)` still holds the lease.
    pub async fn set_stats(
        &self,
        id: &str,
        worker: &str,
        fence: u64,
        stats: &TaskStats,
    ) -> Result<(), StoreError> {
        let stats = to_json(stats, "stats")?;
        let mut inv = SET_STATS.prepare_invoke();
        inv.key(self.task_key(id)).arg(worker).arg(fence).arg(stats);
        let reply = self.script("set_stats", &inv).await?;
        lease_checked_reply("set_stats", id, &reply)
    }

    /// Reads up to `count` jobs of a stage queue as `consumer` of the group `workers` (created
    /// on first use). Entries another consumer received but did not ack for `min_idle_ms` are
    /// reclaimed first; only when there are none does it wait up to `block_ms` (0: don't wait)
    /// for new entries.
    pub async fn read_stage(
        &self,
        q: &StageQueue,
        consumer: &str,
        count: usize,
        block_ms: u64,
        min_idle_ms: u64,
    ) -> Result<Vec<StageJob>, StoreError> {
        let key = self.stage_key(q);
        let count = count.max(1);
        self.ensure_group(&key).await?;
        match self
            .read_stage_once(&key, consumer, count, block_ms, min_idle_ms)
            .await
        {
            // Redis lost the group (restarted without persistence): create it again.
            Err(Failure::Redis(e)) if e.code() == Some("NOGROUP") => {
                self.forget_group(&key);
                self.ensure_group(&key).await?;
                self.read_stage_once(&key, consumer, count, block_ms, min_idle_ms)
                    .await
                    .map_err(|f| self.fail("read_stage", f))
            }
            other => other.map_err(|f| self.fail("read_stage", f)),
        }
    }

    async fn read_stage_once(
        &self,
        key: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
        min_idle_ms: u64,
    ) -> Result<Vec<StageJob>, Failure> {
        let mut reclaim = redis::cmd("XAUTOCLAIM");
        reclaim
            .arg(key)
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count);
        let reclaim = &reclaim;
        let reclaimed =
            self.run(move |mut c| async move {
                reclaim.query_async::<StreamAutoClaimReply>(&mut c).await
            })
            .await?;
        if !reclaimed.claimed.is_empty() {
            tracing::info!(
                stream = key,
                consumer,
                n = reclaimed.claimed.len(),
                "reclaimed stale stage entries"
            );
            return Ok(self.stage_jobs(key, reclaimed.claimed).await);
        }

        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if block_ms > 0 {
            read.arg("BLOCK").arg(block_ms);
        }
        read.arg("STREAMS").arg(key).arg(">");
        let read = &read;
        let reply = if block_ms > 0 {
            self.run_blocking(Duration::from_millis(block_ms), move |mut c| async move {
                read.query_async::<Option<StreamReadReply>>(&mut c).await
            })
            .await?
        } else {
            self.run(move |mut c| async move {
                read.query_async::<Option<StreamReadReply>>(&mut c).await
            })
            .await?
        };
        let entries = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        Ok(self.stage_jobs(key, entries).await)
    }

    /// Turns stream entries into jobs; entries without a task id are acknowledged and dropped.
    async fn stage_jobs(&self, key: &str, entries: Vec<StreamId>) -> Vec<StageJob> {
        let mut jobs = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.get::<String>("task") {
                Some(task_id) => jobs.push(StageJob {
                    entry_id: entry.id,
                    task_id,
                }),
                None => {
                    tracing::warn!(
                        stream = key,
                        entry = entry.id,
                        "stage entry without a task id dropped"
                    );
                    if let Err(e) = self.ack_key(key, &entry.id).await {
                        tracing::warn!(stream = key, entry = entry.id, error = %e, "dropping a bad stage entry failed");
                    }
                }
            }
        }
        jobs
    }

    /// Acknowledges a stage entry and deletes it from the stream.
    pub async fn ack(&self, q: &StageQueue, entry_id: &str) -> Result<(), StoreError> {
        self.ack_key(&self.stage_key(q), entry_id).await
    }

    async fn ack_key(&self, key: &str, entry_id: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(key)
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(key)
            .arg(entry_id)
            .ignore();
        let pipe = &pipe;
        self.call("ack", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Control messages of the task after entry `after` (`"0"`: from the start, `"$"`: only new
    /// ones, or a previous entry id), waiting up to `block_ms` for one (0: don't wait). Returns
    /// `(entry id, message)`; unknown messages are skipped. An unknown task has no messages.
    pub async fn read_controls(
        &self,
        id: &str,
        after: &str,
        block_ms: u64,
    ) -> Result<Vec<(String, ControlMsg)>, StoreError> {
        let key = self.control_key(id);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(CONTROL_READ_COUNT);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&key).arg(after);
        let cmd = &cmd;
        let reply = if block_ms > 0 {
            self.run_blocking(Duration::from_millis(block_ms), move |mut c| async move {
                cmd.query_async::<Option<StreamReadReply>>(&mut c).await
            })
            .await
        } else {
            self.run(move |mut c| async move {
                cmd.query_async::<Option<StreamReadReply>>(&mut c).await
            })
            .await
        }
        .map_err(|f| self.fail("read_controls", f))?;
        let mut out = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            match entry
                .get::<String>("msg")
                .as_deref()
                .and_then(ControlMsg::parse)
            {
                Some(msg) => out.push((entry.id, msg)),
                None => tracing::warn!(
                    task = id,
                    entry = entry.id,
                    "unknown control message skipped"
                ),
            }
        }
        Ok(out)
    }

    /// Ids of up to `limit` tasks whose lease expired at or before `now_ms`, oldest first.
    pub async fn expired_leases(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.leases_key())
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let cmd = &cmd;
        self.call("expired_leases", move |mut c| async move {
            cmd.query_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    /// Atomically clears the task's lease (owner and lease; the fence stays) if it is (still)
    /// expired at `now_ms`, and returns the task as it was just before, so the caller may act on
    /// it (re-dispatch or fail it): `owner` names the worker that stopped renewing. Of many
    /// concurrent callers, exactly one gets `Some`. A task still `normal` goes back into the queued index. `None`
    /// when the lease is held and unexpired, or there is no lease or no task (stale index
    /// entries are removed).
    pub async fn take_expired(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let mut inv = TAKE_EXPIRED.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.queued_key())
            .key(self.leases_key())
            .arg(id)
            .arg(now_ms)
            .arg(Status::Normal.as_str());
        let reply = self.script("take_expired", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("taken") => {
                let task = decode_record(id, pairs(&reply[1..]))?;
                tracing::info!(task = id, status = %task.status, fence = task.fence, "expired lease taken");
                Ok(Some(task))
            }
            Some("none") => Ok(None),
            _ => Err(unexpected("take_expired", &reply)),
        }
    }

    /// Number of tasks created (or sent back to `normal`) and not claimed yet.
    pub async fn queued_count(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.queued_key());
        let cmd = &cmd;
        self.call("queued_count", move |mut c| async move {
            cmd.query_async::<u64>(&mut c).await
        })
        .await
    }

    /// Entries in one stage queue (acknowledged entries are deleted, so: work not done yet).
    pub async fn queue_len(&self, q: &StageQueue) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(self.stage_key(q));
        let cmd = &cmd;
        self.call("queue_len", move |mut c| async move {
            cmd.query_async::<u64>(&mut c).await
        })
        .await
    }

    /// Every key matching `pattern` (of `key_type`, if given), walked with `SCAN` in batches so
    /// Redis stays responsive; `what` names the operation in errors.
    async fn scan_keys(
        &self,
        what: &'static str,
        pattern: &str,
        key_type: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            if let Some(t) = key_type {
                scan.arg("TYPE").arg(t);
            }
            let scan = &scan;
            let (next, batch): (u64, Vec<String>) = self
                .call(
                    what,
                    move |mut c| async move { scan.query_async(&mut c).await },
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Tasks by status, counted over every task hash of this prefix. Walks the keyspace with
    /// `SCAN` and reads statuses in pipelined batches (Redis stays responsive), so its cost grows
    /// with the number of retained tasks: meant for metrics scrapes, not for hot paths.
    pub async fn status_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        let keys = self
            .scan_keys("status_counts", &format!("{}task:*", self.prefix), None)
            .await?;
        let mut counts = HashMap::new();
        for batch in keys.chunks(SCAN_BATCH) {
            let mut pipe = redis::pipe();
            for k in batch {
                pipe.cmd("HGET").arg(k).arg("status");
            }
            let pipe = &pipe;
            let statuses: Vec<Option<String>> = self
                .call("status_counts", move |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?;
            for s in statuses.into_iter().flatten() {
                *counts.entry(s).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Entries in every stage stream of this prefix (entries are deleted when acknowledged, so
    /// this is the work not done yet), as `((stage, node), depth)`; `node` is empty for shared
    /// queues.
    pub async fn queue_depths(&self) -> Result<Vec<((String, String), u64)>, StoreError> {
        let stream_prefix = format!("{}stream:", self.prefix);
        let keys = self
            .scan_keys("queue_depths", &format!("{stream_prefix}*"), Some("stream"))
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut xlen = redis::cmd("XLEN");
            xlen.arg(&key);
            let xlen = &xlen;
            let depth: u64 = self
                .call("queue_depths", move |mut c| async move {
                    xlen.query_async(&mut c).await
                })
                .await?;
            let name = key.strip_prefix(&stream_prefix).unwrap_or(&key);
            let (stage, node) = name.split_once(':').unwrap_or((name, ""));
            out.push(((stage.to_string(), node.to_string()), depth));
        }
        out.sort();
        Ok(out)
    }

    // ---- keys ----

    fn task_key(&self, id: &str) -> String {
        format!("{}task:{id}", self.prefix)
    }

    fn control_key(&self, id: &str) -> String {
        format!("{}ctl:{id}", self.prefix)
    }

    fn callbacks_due_key(&self) -> String {
        format!("{}callbacks:due", self.prefix)
    }

    fn queued_key(&self) -> String {
        format!("{}queued", self.prefix)
    }

    fn leases_key(&self) -> String {
        format!("{}leases", self.prefix)
    }

    fn stage_key(&self, q: &StageQueue) -> String {
        match &q.node {
            Some(node) => format!("{}stream:{}:{node}", self.prefix, q.stage.as_str()),
            None => format!("{}stream:{}", self.prefix, q.stage.as_str()),
        }
    }

    // ---- consumer groups ----

    async fn ensure_group(&self, key: &str) -> Result<(), StoreError> {
        if self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
        {
            return Ok(());
        }
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        let cmd = &cmd;
        match self
            .run(move |mut c| async move { cmd.query_async::<()>(&mut c).await })
            .await
        {
            Ok(()) => {}
            Err(Failure::Redis(e)) if e.code() == Some("BUSYGROUP") => {}
            Err(f) => return Err(self.fail("create consumer group", f)),
        }
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
        Ok(())
    }

    fn forget_group(&self, key: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    // ---- calling Redis ----

    /// Runs a script whose reply is a list of strings.
    async fn script(
        &self,
        what: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        self.call(what, move |mut c| async move {
            inv.invoke_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    /// [`Self::run`], with failures turned into [`StoreError`]s.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run(f)
            .await
            .map_err(|failure| self.fail(what, failure))
    }

    /// Runs `f` on the shared connection within [`CALL_DEADLINE`], retrying once if the
    /// connection failed.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match f(self.conn.clone()).await {
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "redis connection failed; retrying once");
                    f(self.conn.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(CALL_DEADLINE, attempts).await {
            Ok(result) => result.map_err(Failure::Redis),
            Err(_) => Err(Failure::Deadline(CALL_DEADLINE)),
        }
    }

    /// Runs a blocking command (blocking up to `block`) on a dedicated connection, retrying once
    /// on a fresh connection if the connection failed.
    async fn run_blocking<T, F, Fut>(&self, block: Duration, f: F) -> Result<T, Failure>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = block + CALL_DEADLINE;
        let attempts = async {
            let mut retried = false;
            loop {
                let conn = self.blocking_connection().await?;
                match f(conn.clone()).await {
                    Ok(v) => {
                        self.return_blocking_connection(conn);
                        return Ok(v);
                    }
                    Err(e) if is_connection_error(&e) => {
                        // Other idle connections are likely dead too.
                        self.blocking
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clear();
                        if retried {
                            return Err(e);
                        }
                        retried = true;
                        tracing::debug!(error = %e, "redis connection failed; retrying once");
                    }
                    Err(e) => {
                        self.return_blocking_connection(conn);
                        return Err(e);
                    }
                }
            }
        };
        match tokio::time::timeout(deadline, attempts).await {
            Ok(result) => result.map_err(Failure::Redis),
            Err(_) => Err(Failure::Deadline(deadline)),
        }
    }

    async fn blocking_connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
        {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn return_blocking_connection(&self, conn: MultiplexedConnection) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < BLOCKING_POOL_MAX {
            pool.push(conn);
        }
    }

    fn fail(&self, what: &str, failure: Failure) -> StoreError {
        let error = self.describe_failure(what, failure);
        if matches!(error, StoreError::Unavailable(_))
            && let Ok(mut at) = self.last_unavailable.lock()
        {
            *at = Some(std::time::Instant::now());
        }
        error
    }

    fn describe_failure(&self, what: &str, failure: Failure) -> StoreError {
        match failure {
            Failure::Deadline(d) => StoreError::Unavailable(format!(
                "Redis at {} did not answer {what} within {:.1}s",
                self.shown_url,
                d.as_secs_f64()
            )),
            Failure::Redis(e) if is_unavailable(&e) => StoreError::Unavailable(format!(
                "Redis at {} failed during {what}: {e}",
                self.shown_url
            )),
            Failure::Redis(e) => StoreError::Corrupt(format!("{what}: Redis answered: {e}")),
        }
    }
}

/// The connection broke (or could not be made): worth one retry on a new connection.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Redis cannot serve us right now (as opposed to a bad reply or a bug).
fn is_unavailable(e: &RedisError) -> bool {
    is_connection_error(e)
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::InvalidClientConfig
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::NoPerm
                )
        )
        || matches!(e.code(), Some("OOM" | "MISCONF" | "BUSY"))
}

fn lease_checked_reply(what: &str, id: &str, reply: &[String]) -> Result<(), StoreError> {
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(()),
        Some("leaselost") => Err(StoreError::LeaseLost),
        Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
        _ => Err(unexpected(what, reply)),
    }
}

fn unexpected(what: &str, reply: &[String]) -> StoreError {
    StoreError::Corrupt(format!(
        "unexpected reply of the {what} script: {:?}",
        reply.first()
    ))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

fn parse_status(s: Option<&String>) -> Result<Status, StoreError> {
    s.and_then(|s| Status::parse(s))
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

/// `[k1, v1, k2, v2, ...]` → map.
fn pairs(flat: &[String]) -> HashMap<String, String> {
    flat.chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

/// Builds a record from the task hash fields.
fn decode_record(id: &str, mut f: HashMap<String, String>) -> Result<TaskRecord, StoreError> {
    let corrupt = |field: &str, e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("task {id}: field {field}: {e}"))
    };
    let status = f
        .get("status")
        .ok_or_else(|| corrupt("status", &"missing"))?;
    let status = Status::parse(status)
        .ok_or_else(|| corrupt("status", &format!("unknown status {status:?}")))?;
    let int = |f: &HashMap<String, String>, name: &str| -> Result<Option<i64>, StoreError> {
        match f.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| corrupt(name, &e)),
        }
    };
    let create_time = int(&f, "create_time")?.ok_or_else(|| corrupt("create_time", &"missing"))?;
    let start_time = int(&f, "start_time")?;
    let cancel_time = int(&f, "cancel_time")?;
    let stop_time = int(&f, "stop_time")?;
    let stop_time_ms = int(&f, "stop_ms")?;
    let finish_time = int(&f, "finish_time")?;
    let fence = int(&f, "fence")?.unwrap_or(0);
    let fence = u64::try_from(fence).map_err(|e| corrupt("fence", &e))?;
    let restarts = int(&f, "restarts")?.unwrap_or(0);
    let restarts = u32::try_from(restarts).map_err(|e| corrupt("restarts", &e))?;
    let spec = f.get("spec").ok_or_else(|| corrupt("spec", &"missing"))?;
    let spec: StartSpec = serde_json::from_str(spec).map_err(|e| corrupt("spec", &e))?;
    let result = match f.get("result").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(serde_json::from_str::<TaskResult>(v).map_err(|e| corrupt("result", &e))?),
    };
    let stats = match f.get("stats").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(serde_json::from_str::<TaskStats>(v).map_err(|e| corrupt("stats", &e))?),
    };
    let callback = match f.get("callback").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            Some(serde_json::from_str::<CallbackDelivery>(v).map_err(|e| corrupt("callback", &e))?)
        }
    };
    let owner = f.remove("owner").filter(|v| !v.is_empty());
    let node = f.remove("node").filter(|v| !v.is_empty());
    Ok(TaskRecord {
        id: id.to_owned(),
        status,
        create_time,
        start_time,
        cancel_time,
        stop_time,
        stop_time_ms,
        finish_time,
        spec,
        result,
        stats,
        owner,
        fence,
        node,
        restarts,
        callback,
    })
}

/// The result as it is kept and shown: its message through [`crate::redact::message`] (every
/// message a task keeps is written here, so none keeps what must not be shown).
fn shown_result(r: &TaskResult) -> TaskResult {
    let mut r = r.clone();
    r.error_message = r.error_message.as_deref().map(crate::redact::message);
    r
}

/// The callback delivery as it is kept and shown (see [`shown_result`]).
fn shown_delivery(d: &CallbackDelivery) -> CallbackDelivery {
    let mut d = d.clone();
    d.last_error = d.last_error.as_deref().map(crate::redact::message);
    d
}

/// Now, in Unix milliseconds.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `secs` in milliseconds: `now_ms` when that is within second `secs`, else the second's start.
fn stop_millis(secs: i64, now_ms: i64) -> i64 {
    if now_ms.div_euclid(1000) == secs {
        now_ms
    } else {
        secs.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_milliseconds_keep_the_given_second() {
        assert_eq!(
            stop_millis(1_700_000_000, 1_700_000_000_123),
            1_700_000_000_123
        );
        assert_eq!(
            stop_millis(1_700_000_000, 1_700_000_001_005),
            1_700_000_000_000
        );
        assert_eq!(
            stop_millis(1_700_000_000, 1_699_999_999_999),
            1_700_000_000_000
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            StoreError::Unavailable(String::new()).code(),
            ErrorCode::ServiceUnavailable
        );
        assert_eq!(
            StoreError::NotFound(String::new()).code(),
            ErrorCode::TaskNotFound
        );
        assert_eq!(StoreError::LeaseLost.code(), ErrorCode::InvalidState);
        assert_eq!(
            StoreError::QueueFull { limit: 1 }.code(),
            ErrorCode::LimitExceeded
        );
        assert_eq!(
            StoreError::AlreadyExists(String::new()).code(),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            StoreError::Corrupt(String::new()).code(),
            ErrorCode::InternalError
        );
    }

    #[test]
    fn stage_and_control_names() {
        for m in [
            ControlMsg::Pause,
            ControlMsg::Resume,
            ControlMsg::Refresh,
            ControlMsg::Stop,
        ] {
            assert_eq!(ControlMsg::parse(m.as_str()), Some(m));
        }
        assert_eq!(Stage::Transcode.as_str(), "transcode");
    }
}
