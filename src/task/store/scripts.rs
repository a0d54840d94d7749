//! The Lua scripts (`src/task/lua/*.lua`), each one atomic step of the store.

use std::sync::LazyLock;

use redis::Script;

pub(super) static CREATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/create.lua")));
pub(super) static TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/transition.lua")));
pub(super) static SIGNAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/signal.lua")));
pub(super) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/claim.lua")));
pub(super) static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/renew.lua")));
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release.lua")));
pub(super) static SET_STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/set_stats.lua")));
pub(super) static REQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/requeue.lua")));
pub(super) static DEFER_CALLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/defer_callback.lua")));
pub(super) static SET_CALLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/set_callback.lua")));
pub(super) static DUE_CALLBACKS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/due_callbacks.lua")));
pub(super) static HANDOVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/handover.lua")));
pub(super) static TAKE_EXPIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/take_expired.lua")));
pub(super) static ACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/ack.lua")));
pub(super) static TRIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/trim.lua")));
pub(super) static PRUNE_STREAMS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/prune_streams.lua")));
pub(super) static MIGRATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/migrate.lua")));
pub(super) static REMEMBER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/remember.lua")));
pub(super) static TAKE_ORPHANED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/take_orphaned.lua")));
pub(super) static CLAIM_SNAPSHOT_CALLBACKS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/claim_snapshot_callbacks.lua")));
