//! Creating a task, with the reservation of its result's places (see
//! [`crate::task::names::places`] and `lua/create.lua`).

use super::{
    CREATE, Stage, StageQueue, StartSpec, Status, StoreError, TaskSecrets, TaskStore, to_json,
    unexpected, unix_ms,
};
use crate::task::names;

/// Tries of [`TaskStore::create`] when a result place changes hands while it reads it.
const PLACE_ATTEMPTS: usize = 5;
/// Most expired tasks one [`TaskStore::create`] deletes.
const TRIM_ON_CREATE: usize = 10;

impl TaskStore {
    /// Creates the task (status `normal`) and queues it on the record stage, and reserves the
    /// places its result will occupy, atomically. [`StoreError::QueueFull`] if `max_queued`
    /// tasks are already waiting for a worker; [`StoreError::OutputInUse`] if a task in progress
    /// holds one of those places (see [`crate::task::names::places`]).
    pub async fn create(
        &self,
        id: &str,
        spec: &StartSpec,
        secrets: &TaskSecrets,
        now: i64,
        max_queued: u64,
    ) -> Result<(), StoreError> {
        let spec_json = to_json(spec, "spec")?;
        let secrets = to_json(secrets, "secrets")?;
        let places = names::places(id, &spec.output, spec.muxer);
        let reserve = places.reserve.len();
        let all: Vec<_> = places.reserve.iter().chain(places.free.iter()).collect();
        let keys: Vec<String> = all.iter().map(|p| self.place_key(&p.key)).collect();
        // The holders are read first, then the script checks they are still the same (their
        // task keys must be passed to it); a holder that changed meanwhile means another try.
        for _ in 0..PLACE_ATTEMPTS {
            let holders = self.holders(&keys).await?;
            let mut inv = CREATE.prepare_invoke();
            inv.key(self.task_key(id))
                .key(self.queued_key())
                .key(self.stage_key(&StageQueue::shared(Stage::Record)))
                .key(self.counts_key())
                .key(self.streams_key());
            for key in &keys {
                inv.key(key);
            }
            for holder in &holders {
                inv.key(self.task_key(holder.as_deref().unwrap_or(id)));
            }
            inv.arg(id)
                .arg(Status::Normal.as_str())
                .arg(&spec_json)
                .arg(&secrets)
                .arg(now)
                .arg(max_queued)
                .arg(reserve);
            for holder in &holders {
                inv.arg(holder.as_deref().unwrap_or(""));
            }
            inv.arg(Status::Callback.as_str())
                .arg(Status::Finished.as_str());
            let reply = self.script("create", &inv).await?;
            match reply.first().map(String::as_str) {
                Some("ok") => {
                    tracing::debug!(task = id, "task created and queued");
                    // Each new task takes a few finished ones out whose retention is over, so
                    // they go at least as fast as tasks come (the workers' diagnose loop takes
                    // the rest).
                    if let Err(e) = self.trim_expired(unix_ms() / 1000, TRIM_ON_CREATE).await {
                        tracing::debug!(error = %e, "trimming expired tasks failed");
                    }
                    return Ok(());
                }
                Some("exists") => return Err(StoreError::AlreadyExists(id.to_owned())),
                Some("full") => return Err(StoreError::QueueFull { limit: max_queued }),
                Some("inuse") => {
                    let place = reply
                        .get(1)
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| all.get(i.checked_sub(1)?))
                        .ok_or_else(|| unexpected("create", &reply))?;
                    return Err(StoreError::OutputInUse(place.shown.clone()));
                }
                Some("changed") => continue,
                _ => return Err(unexpected("create", &reply)),
            }
        }
        Err(StoreError::Unavailable(
            "the result's place kept changing hands; retry".into(),
        ))
    }

    /// Who holds each of these `result:` keys.
    async fn holders(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        let cmd = &cmd;
        self.call("holders", move |mut c| async move {
            cmd.query_async::<Vec<Option<String>>>(&mut c).await
        })
        .await
    }

    /// The `result:` keys task `id` reserved (empty for tasks created before reservations).
    pub(super) async fn reserved_places(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.task_key(id)).arg("places");
        let cmd = &cmd;
        let value = self
            .call("places", move |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        Ok(value
            .unwrap_or_default()
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The key of a result place: its location and path hashed (paths may be long).
    pub(super) fn place_key(&self, place: &str) -> String {
        use sha2::Digest;
        format!(
            "{}result:{}",
            self.prefix,
            hex::encode(sha2::Sha256::digest(place.as_bytes()))
        )
    }
}
