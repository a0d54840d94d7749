//! Stage queues (Redis streams read through the consumer group `workers`) and control streams.

use super::*;

impl TaskStore {
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

    pub(super) async fn read_stage_once(
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
    pub(super) async fn stage_jobs(&self, key: &str, entries: Vec<StreamId>) -> Vec<StageJob> {
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

    /// Reads up to one job from each of `queues` at once: entries reclaimed from consumers idle
    /// for `min_idle_ms` (a worker that stopped) first, queue by queue; otherwise new entries,
    /// waiting up to `block_ms` on every queue in one blocking read, so an entry in any of them
    /// is seen as soon as it arrives. Jobs come in the order of `queues`.
    pub async fn read_stages(
        &self,
        queues: &[StageQueue],
        consumer: &str,
        block_ms: u64,
        min_idle_ms: u64,
    ) -> Result<Vec<(StageQueue, StageJob)>, StoreError> {
        for attempt in 0..2 {
            for q in queues {
                self.ensure_group(&self.stage_key(q)).await?;
            }
            match self
                .read_stages_once(queues, consumer, block_ms, min_idle_ms)
                .await
            {
                // Redis lost a group (restarted without persistence): create them again.
                Err(Failure::Redis(e)) if e.code() == Some("NOGROUP") && attempt == 0 => {
                    for q in queues {
                        self.forget_group(&self.stage_key(q));
                    }
                }
                other => return other.map_err(|f| self.fail("read_stages", f)),
            }
        }
        Ok(Vec::new())
    }

    async fn read_stages_once(
        &self,
        queues: &[StageQueue],
        consumer: &str,
        block_ms: u64,
        min_idle_ms: u64,
    ) -> Result<Vec<(StageQueue, StageJob)>, Failure> {
        let keys: Vec<String> = queues.iter().map(|q| self.stage_key(q)).collect();
        for (q, key) in queues.iter().zip(&keys) {
            let mut reclaim = redis::cmd("XAUTOCLAIM");
            reclaim
                .arg(key)
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(1);
            let reclaim = &reclaim;
            let reclaimed = self
                .run(move |mut c| async move {
                    reclaim.query_async::<StreamAutoClaimReply>(&mut c).await
                })
                .await?;
            if !reclaimed.claimed.is_empty() {
                tracing::info!(stream = key, consumer, "reclaimed stale stage entries");
                let jobs = self.stage_jobs(key, reclaimed.claimed).await;
                return Ok(jobs.into_iter().map(|j| (q.clone(), j)).collect());
            }
        }
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms.max(1))
            .arg("STREAMS")
            .arg(&keys);
        for _ in &keys {
            read.arg(">");
        }
        let read = &read;
        let reply = self
            .run_blocking(Duration::from_millis(block_ms), move |mut c| async move {
                read.query_async::<Option<StreamReadReply>>(&mut c).await
            })
            .await?;
        let mut jobs = Vec::new();
        for (q, key) in queues.iter().zip(&keys) {
            let entries: Vec<StreamId> = reply
                .iter()
                .flat_map(|r| &r.keys)
                .filter(|k| &k.key == key)
                .flat_map(|k| k.ids.clone())
                .collect();
            for job in self.stage_jobs(key, entries).await {
                jobs.push((q.clone(), job));
            }
        }
        Ok(jobs)
    }

    /// Puts a job read from `q` back for another reader (a new entry for the same task; the one
    /// read is acknowledged). A task queued twice is run once: the second claim finds it taken.
    pub async fn put_back(&self, q: &StageQueue, job: &StageJob) -> Result<(), StoreError> {
        let key = self.stage_key(q);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("*").arg("task").arg(&job.task_id);
        let cmd = &cmd;
        self.call("put_back", move |mut c| async move {
            cmd.query_async::<String>(&mut c).await
        })
        .await?;
        self.ack_key(&key, &job.entry_id).await
    }

    /// Acknowledges a stage entry and deletes it from the stream.
    pub async fn ack(&self, q: &StageQueue, entry_id: &str) -> Result<(), StoreError> {
        self.ack_key(&self.stage_key(q), entry_id).await
    }

    pub(super) async fn ack_key(&self, key: &str, entry_id: &str) -> Result<(), StoreError> {
        let mut inv = ACK.prepare_invoke();
        inv.key(key).arg(GROUP).arg(entry_id);
        let reply = self.script("ack", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            _ => Err(unexpected("ack", &reply)),
        }
    }

    /// Control messages of the task after entry `after` (`"0"`: from the start, `"$"`: only new
    /// ones, or a previous entry id), waiting up to `block_ms` for one (0: don't wait). Returns
    /// `(entry id, message)`; unknown messages are skipped. An unknown task has no messages.
    pub async fn read_controls(
        &self,
        id: &str,
        after: &str,
        block_ms: u64,
    ) -> Result<Vec<(String, Command)>, StoreError> {
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
                .and_then(|m| Command::parse_from(Sender::Api, m))
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

    // ---- consumer groups ----

    pub(super) async fn ensure_group(&self, key: &str) -> Result<(), StoreError> {
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

    pub(super) fn forget_group(&self, key: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}
