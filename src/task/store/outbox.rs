//! The callback outbox: failed callback attempts wait here for their next try
//! (`lua/defer_callback.lua`, `lua/due_callbacks.lua`).

use super::*;

impl TaskStore {
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

    /// Records the callback delivery about to be attempted (its event id and attempt count),
    /// only while `(worker, fence)` holds the lease: a worker that continues the delivery after
    /// this one died sends the same event id, so the receiver can drop a duplicate.
    pub async fn set_callback(
        &self,
        id: &str,
        worker: &str,
        fence: u64,
        delivery: &CallbackDelivery,
    ) -> Result<(), StoreError> {
        let delivery = to_json(&shown_delivery(delivery), "callback")?;
        let mut inv = SET_CALLBACK.prepare_invoke();
        inv.key(self.task_key(id))
            .arg(worker)
            .arg(fence)
            .arg(delivery);
        let reply = self.script("set_callback", &inv).await?;
        lease_checked_reply("set_callback", id, &reply)
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
            .key(self.streams_key())
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
}
