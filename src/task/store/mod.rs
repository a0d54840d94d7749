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
//! once, so on Redis Cluster the prefix is a hash tag (`{pagecast}:`; see
//! [`RedisOptions::effective_prefix`]) and every key lives in one slot.
//!
//! | key | type | content |
//! |-----|------|---------|
//! | `{prefix}task:{id}` | hash | the task, fields below |
//! | `{prefix}snaps:{id}` | list | `Output.Snapshots`: JSON entries of the stored pictures, for Describe; expires a day after the retention of finished tasks from its last entry |
//! | `{prefix}snapcb:due` | zset | snapshot callbacks (`Output.Snapshots.CallbackURL`) by when their next attempt is due (unix ms); a claimed one is due again a lease later |
//! | `{prefix}snapcb:items` | hash | event id → JSON of a snapshot callback waiting in that outbox |
//! | `{prefix}events` | stream | a result stored while recording: fields `task`, `kind` (`snapshot`), `key`, `url`, `time`; `MAXLEN ~ 100000` |
//! | `{prefix}ctl:{id}` | stream | control messages for the recording worker: field `msg` = `pause` / `resume` / `refresh` / `stop`; `MAXLEN ~ 100` |
//! | `{prefix}queued` | zset | ids of tasks created (or sent back to `normal`) and not claimed yet; score = create time (unix s) |
//! | `{prefix}leases` | zset | ids of tasks with a lease; score = `lease_until` (unix ms) |
//! | `{prefix}stream:{stage}` | stream | stage queue shared by all workers: field `task` = id |
//! | `{prefix}worker:{worker}` | string | ids of the tasks a live worker works on, space-separated; expires unless renewed (`store/presence.rs`) |
//! | `{prefix}workers` | zset | worker ids; score = unix ms until which the worker is known alive (renewed by its beat; `store/presence.rs`) |
//! | `{prefix}stream:{stage}:{node}` | stream | stage queue of one node (its work directory holds the media); `record:{node}` holds recordings handed over at shutdown ([`TaskStore::hand_over`]) |
//! | `{prefix}counts` | hash | tasks by status (`status` → number), changed by the scripts in the same step as each creation, transition and deletion |
//! | `{prefix}streams` | set | the key of every stage stream ever used (for queue depths without SCAN) |
//! | `{prefix}expiry` | zset | finished task ids; score = when their retention ends (unix s) |
//! | `{prefix}schema` | string | the layout version (`2`: counts, stream and expiry indexes; see `lua/migrate.lua`) |
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
//! | `restarts` | times the task was re-dispatched after its worker stopped ([`TaskStore::requeue`], [`Transition::counting_restart`]) |
//! | `start_paused` | `1` when a Pause, not followed by a Resume, was given before recording began ([`TaskStore::remember_pause`]) |
//!
//! Once a task is `finished`, its hash and control stream are deleted after the retention period
//! ([`TaskStore::with_retention`], 7 days by default) by [`TaskStore::trim_expired`] (each
//! Start and every worker's diagnose loop run it), which counts them out of `counts` in the
//! same step; they carry no Redis expiry, which the counts could not see.
//!
//! # Leases
//!
//! A worker [claims](TaskStore::claim) a task and gets a fencing token; every worker-side write
//! ([`Transition::lease`], [`TaskStore::renew`], [`TaskStore::release`],
//! [`TaskStore::set_stats`]) carries `(worker, fence)` and is refused with
//! [`StoreError::LeaseLost`] once another worker has claimed the task or the lease was cleared,
//! so a slow stale worker can never overwrite a newer owner's work. Expired leases are found
//! with [`TaskStore::expired_leases`] and cleared by exactly one caller of
//! [`TaskStore::take_expired`]. A worker that stopped beating ([`TaskStore::beat_worker`],
//! [`TaskStore::silent_workers`]) has its tasks' leases cleared before they expire, again by
//! exactly one caller, of [`TaskStore::take_orphaned`].
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, RedisResult};

use super::model::{CallbackDelivery, StartSpec, TaskRecord, TaskResult, TaskSecrets, TaskStats};
use super::status::{Status, can_transition};
use crate::command::{Command, Sender};
use crate::error::{ErrorCode, HasErrorCode};

/// Upper bound of one store call, retry included (blocking reads add their blocking time).
const CALL_DEADLINE: Duration = Duration::from_secs(4);
/// Default retention of finished tasks.
const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// Approximate length limit of a control stream.
const CONTROL_MAXLEN: u64 = 100;
/// Most control messages one `read_controls` returns.
const CONTROL_READ_COUNT: usize = 100;
/// The consumer group of every stage stream.
const GROUP: &str = "workers";
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

mod codec;
mod conn;
mod counts;
mod create;
mod errors;
mod keys;
mod leases;
mod link;
mod options;
mod outbox;
mod presence;
mod prestart;
mod prune;
mod scripts;
mod server;
mod service_info;
mod snapshot_outbox;
pub use snapshot_outbox::SnapshotCallback;
mod snapshots;
mod streams;
mod tasks;
mod types;

use codec::*;
pub use errors::Misconfig;
pub use options::{RedisMode, RedisOptions};
use scripts::*;
pub use server::{MIN_VERSION, REQUIRED_POLICY, ServerFacts};
pub use types::{Claim, Stage, StageJob, StageQueue, TimeField, Transition};

/// What can go wrong in the task store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, timed out or refused to serve.
    #[error("task store unavailable: {0}; retry later")]
    Unavailable(String),
    /// Redis is set up in a way pagecast cannot work with (credentials, certificates, mode,
    /// version): retrying does not help until its configuration or pagecast's is fixed.
    #[error("task store misconfigured ({problem}): {detail}")]
    Misconfigured {
        /// Which kind of problem.
        problem: Misconfig,
        /// What was found and how to fix it.
        detail: String,
    },
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

impl StoreError {
    pub(crate) fn misconfigured(problem: Misconfig, detail: impl Into<String>) -> Self {
        StoreError::Misconfigured {
            problem,
            detail: detail.into(),
        }
    }
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Unavailable(_) | StoreError::Misconfigured { .. } => {
                ErrorCode::ServiceUnavailable
            }
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

/// Why one Redis call failed, before it is turned into a [`StoreError`].
enum Failure {
    Redis(RedisError),
    Deadline(Duration),
}

/// Task state in Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct TaskStore {
    link: Arc<link::Link>,
    prefix: Arc<str>,
    /// The URL without credentials, for messages.
    shown_url: Arc<str>,
    retention_secs: u64,
    /// Stage streams whose consumer group is known to exist.
    groups: Arc<Mutex<HashSet<String>>>,
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
    /// Connects to one Redis server at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS against the system's roots); every key starts with `prefix`. A bad
    /// URL or an unreachable server is [`StoreError::Unavailable`].
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open(&RedisOptions::standalone(url), prefix).await
    }

    /// Connects to Redis as `opts` say (one server, a cluster, or the master the sentinels
    /// name; TLS material). Every key starts with `prefix`; on a cluster, with the prefix given
    /// a hash tag (see [`RedisOptions::effective_prefix`]). Unreachable: [`StoreError::Unavailable`];
    /// refused (credentials, certificates, mode): [`StoreError::Misconfigured`].
    pub async fn open(opts: &RedisOptions, prefix: &str) -> Result<Self, StoreError> {
        let store = TaskStore {
            link: Arc::new(link::Link::new(opts)?),
            prefix: opts.effective_prefix(prefix).into(),
            shown_url: opts.shown_url().into(),
            retention_secs: DEFAULT_RETENTION_SECS,
            groups: Arc::default(),
            last_unavailable: Arc::default(),
        };
        // A command, not only the connection: a server that lets any client connect may still
        // refuse every command (NOAUTH) to one without the right credentials.
        let first = async {
            let (_, mut conn) = store.link.shared().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(CALL_DEADLINE, first).await {
            Ok(Ok(_)) => {
                store.check_server().await?;
                store.migrate().await?;
                Ok(store)
            }
            Ok(Err(e)) => Err(match store.describe_failure("connect", Failure::Redis(e)) {
                StoreError::Corrupt(why) | StoreError::Unavailable(why) => {
                    StoreError::Unavailable(format!("cannot connect: {why}"))
                }
                other => other,
            }),
            Err(_) => Err(StoreError::Unavailable(format!(
                "cannot connect to Redis at {}: no answer within {}s",
                store.shown_url,
                CALL_DEADLINE.as_secs()
            ))),
        }
    }

    /// Refuses a server older than [`MIN_VERSION`]; warns about an eviction policy other than
    /// [`REQUIRED_POLICY`]. A server that does not show its INFO (some managed services) is
    /// taken as it is, with a warning.
    async fn check_server(&self) -> Result<(), StoreError> {
        match self.server_facts().await {
            Ok(facts) => {
                facts.check_version()?;
                facts.check_mode(self.mode())?;
                if let Some(warning) = facts.eviction_warning() {
                    tracing::warn!(redis = %self.shown_url, "{warning}");
                }
                tracing::info!(redis = %self.shown_url, mode = self.mode().as_str(), "connected to {}", facts.summary());
            }
            Err(e) => tracing::warn!(
                redis = %self.shown_url,
                error = %e,
                "cannot read the server's INFO: its version and maxmemory-policy are not checked"
            ),
        }
        Ok(())
    }

    /// How Redis is deployed.
    pub(crate) fn mode(&self) -> RedisMode {
        self.link.mode()
    }

    /// Whether a call of this process found Redis unavailable within the last `window`. While
    /// Redis was away no worker could renew its lease, so just after it returns an expired
    /// lease does not mean its worker stopped: the diagnose loop leaves such leases alone until
    /// their workers have had time to renew them.
    pub(crate) fn unavailable_within(&self, window: std::time::Duration) -> bool {
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
        assert_eq!(Stage::Transcode.as_str(), "transcode");
    }
}
