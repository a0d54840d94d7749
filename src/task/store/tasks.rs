//! Reading a task and moving it between statuses (see `lua/transition.lua`), and control
//! messages to its recording worker.

use super::*;

impl TaskStore {
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
    pub(crate) async fn drop_secrets(&self, id: &str) -> Result<(), StoreError> {
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
            .key(self.control_key(id))
            .key(self.counts_key())
            .key(self.streams_key())
            .key(self.expiry_key());
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
            .arg(t.control.map(Command::as_str).unwrap_or(""))
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

    /// Appends a control message to the task's control stream without changing its status
    /// (Refresh). [`StoreError::NotFound`] for an unknown task.
    pub async fn signal(&self, id: &str, msg: Command) -> Result<(), StoreError> {
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
}
