//! The snapshot callbacks' outbox (`Output.Snapshots.CallbackURL`): each picture's callback waits
//! here, in Redis, until it is delivered or given up, so it survives the worker that stored the
//! picture (`lua/claim_snapshot_callbacks.lua`).
//!
//! `{prefix}snapcb:due` (ZSET: event id by due unix ms) says when each is due;
//! `{prefix}snapcb:items` (HASH: event id → JSON [`SnapshotCallback`]) holds them.

use serde::{Deserialize, Serialize};

use super::*;

/// One snapshot callback, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCallback {
    /// `X-Pagecast-Event-Id`, the same on every attempt; also its name in the outbox.
    pub event_id: String,
    /// The task whose picture it announces.
    pub task: String,
    /// Where it is posted.
    pub url: String,
    /// The JSON body, signed as it is sent.
    pub body: String,
    /// When it was stored (the retry period counts from here), unix ms.
    pub first_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl TaskStore {
    fn snapshot_callbacks_due_key(&self) -> String {
        format!("{}snapcb:due", self.prefix)
    }

    fn snapshot_callbacks_key(&self) -> String {
        format!("{}snapcb:items", self.prefix)
    }

    /// Puts `cb` in the outbox, due at `due_ms` (a new one, or one whose attempt failed).
    pub async fn put_snapshot_callback(
        &self,
        cb: &SnapshotCallback,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let json = to_json(cb, "snapshot callback")?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(self.snapshot_callbacks_key())
            .arg(&cb.event_id)
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(self.snapshot_callbacks_due_key())
            .arg(due_ms)
            .arg(&cb.event_id)
            .ignore();
        let pipe = &pipe;
        self.call("put_snapshot_callback", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Takes up to `limit` snapshot callbacks due at `now_ms`; each stays due again `lease_ms`
    /// later unless it is [done](Self::drop_snapshot_callback) or
    /// [put back](Self::put_snapshot_callback) first.
    pub async fn claim_snapshot_callbacks(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: u64,
    ) -> Result<Vec<SnapshotCallback>, StoreError> {
        let mut inv = CLAIM_SNAPSHOT_CALLBACKS.prepare_invoke();
        inv.key(self.snapshot_callbacks_due_key())
            .key(self.snapshot_callbacks_key())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_ms);
        let reply = self.script("claim_snapshot_callbacks", &inv).await?;
        reply
            .iter()
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot callback: {e}")))
            })
            .collect()
    }

    /// Removes a delivered (or given up) snapshot callback.
    pub async fn drop_snapshot_callback(&self, event_id: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(self.snapshot_callbacks_due_key())
            .arg(event_id)
            .ignore()
            .cmd("HDEL")
            .arg(self.snapshot_callbacks_key())
            .arg(event_id)
            .ignore();
        let pipe = &pipe;
        self.call("drop_snapshot_callback", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Snapshot callbacks in the outbox (waiting for an attempt, or being sent).
    pub async fn pending_snapshot_callbacks(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.snapshot_callbacks_due_key());
        let cmd = &cmd;
        self.call("pending_snapshot_callbacks", move |mut c| async move {
            cmd.query_async::<u64>(&mut c).await
        })
        .await
    }
}
