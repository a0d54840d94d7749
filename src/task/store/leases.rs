//! Leases: which worker works on a task, with fencing (claim, renew, release, hand over,
//! re-dispatch, expiry).

use super::*;

impl TaskStore {
    /// Queues the task on a stage again without changing its status, and counts a restart
    /// (`restarts + 1`), atomically: the re-dispatch of a delivery stage whose worker stopped
    /// (after [`Self::take_expired`]). [`StoreError::NotFound`] for an unknown task.
    pub async fn requeue(&self, id: &str, q: &StageQueue) -> Result<(), StoreError> {
        self.requeue_inner(id, q, None).await
    }

    /// [`Self::requeue`], and the task keeps a lease without owner until `until_ms`: any worker
    /// may claim it, and if none does in time the diagnose loop finds it again (as a task that
    /// nobody continued). For live recordings handed to another worker.
    pub(crate) async fn requeue_with_deadline(
        &self,
        id: &str,
        q: &StageQueue,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.requeue_inner(id, q, Some(until_ms)).await
    }

    pub(super) async fn requeue_inner(
        &self,
        id: &str,
        q: &StageQueue,
        until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut inv = REQUEUE.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.stage_key(q))
            .key(self.leases_key())
            .key(self.streams_key())
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
            .key(self.streams_key())
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

    /// Ids of up to `limit` tasks whose lease expired at or before `now_ms`, oldest first.
    pub async fn expired_leases(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.due_members("expired_leases", self.leases_key(), now_ms, limit)
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
}
