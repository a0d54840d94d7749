//! Which workers are alive, and which tasks each one is working on: `{prefix}worker:{worker id}`,
//! a string of task ids separated by spaces, with a time to live. A worker renews it while it
//! runs; the diagnose loop reads it before it treats a task whose lease ran out as abandoned, so
//! a worker that is fine (it only could not renew a lease for a moment) never loses its task.
//!
//! Liveness: `{prefix}workers`, a sorted set of worker ids scored by the unix ms until which each
//! is known alive. A worker beats (renews both keys) every quarter of `PAGECAST_LIVENESS_MS`; a
//! worker whose score is in the past stopped beating (killed, or stalled), and the tasks it
//! announced are taken from it ([`TaskStore::take_orphaned`]) without waiting for their leases
//! to expire. Its fence makes whatever it still tries fail once it is back.

use super::*;

impl TaskStore {
    /// The tasks `worker` last said it works on; `None` when it has not announced itself within
    /// its time to live (it stopped, or never ran).
    pub async fn worker_tasks(&self, worker: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.worker_key(worker));
        let cmd = &cmd;
        let value = self
            .call("worker_tasks", move |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        Ok(value.map(|v| v.split_whitespace().map(String::from).collect()))
    }

    /// Removes `worker`'s announcement and liveness (it is stopping, or it is known to have
    /// stopped and nothing of it is left to take).
    pub async fn forget_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.worker_key(worker))
            .ignore()
            .cmd("ZREM")
            .arg(self.workers_key())
            .arg(worker)
            .ignore();
        let pipe = &pipe;
        self.call("forget_worker", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Drops a silent `worker` from the liveness set (nothing of it is left to take; should it
    /// beat again, it is back in it).
    pub async fn forget_silent_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.workers_key()).arg(worker);
        let cmd = &cmd;
        self.call("forget_silent_worker", move |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    /// A worker's beat, in one round trip: it is alive and working on `tasks` (the
    /// announcement, for `ttl_ms`), and alive until `alive_until_ms` (unix ms; its liveness).
    pub async fn beat_worker(
        &self,
        worker: &str,
        tasks: &[String],
        ttl_ms: u64,
        alive_until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.worker_key(worker))
            .arg(tasks.join(" "))
            .arg("PX")
            .arg(ttl_ms.max(1))
            .ignore()
            .cmd("ZADD")
            .arg(self.workers_key())
            .arg(alive_until_ms)
            .arg(worker)
            .ignore();
        let pipe = &pipe;
        self.call("beat_worker", move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Up to `limit` workers that stopped beating: known alive only until `now_ms` or earlier.
    pub async fn silent_workers(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.due_members("silent_workers", self.workers_key(), now_ms, limit)
            .await
    }

    /// Atomically clears the lease of task `id` (owner and lease; the fence stays) if `worker`
    /// holds it and is still silent at `now_ms` (see [`Self::silent_workers`]), and returns the
    /// task as it was just before, like [`Self::take_expired`]: of many concurrent callers,
    /// exactly one gets `Some`. `None` when the worker beat again, or does not hold the task.
    pub async fn take_orphaned(
        &self,
        id: &str,
        worker: &str,
        now_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.take_orphaned_inner(id, worker, now_ms, false).await
    }

    /// [`Self::take_orphaned`] for a worker known to be dead (its process is gone), whatever
    /// its liveness says: only that it still holds the task is required.
    pub async fn take_from_dead(
        &self,
        id: &str,
        worker: &str,
        now_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.take_orphaned_inner(id, worker, now_ms, true).await
    }

    async fn take_orphaned_inner(
        &self,
        id: &str,
        worker: &str,
        now_ms: i64,
        dead: bool,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let mut inv = TAKE_ORPHANED.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.queued_key())
            .key(self.leases_key())
            .key(self.workers_key())
            .arg(id)
            .arg(worker)
            .arg(now_ms)
            .arg(Status::Normal.as_str())
            .arg(if dead { "1" } else { "0" });
        let reply = self.script("take_orphaned", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("taken") => {
                let task = decode_record(id, pairs(&reply[1..]))?;
                tracing::info!(task = id, worker, dead, status = %task.status, fence = task.fence, "lease of a silent or dead worker taken");
                Ok(Some(task))
            }
            Some("none") => Ok(None),
            _ => Err(unexpected("take_orphaned", &reply)),
        }
    }

    pub(super) fn workers_key(&self) -> String {
        format!("{}workers", self.prefix)
    }

    fn worker_key(&self, worker: &str) -> String {
        format!("{}worker:{worker}", self.prefix)
    }
}
