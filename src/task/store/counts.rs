//! Figures for `/metrics` that do not grow with the number of stored tasks: the scripts keep
//! tasks by status in `{prefix}counts` (changed in the same atomic step as each creation,
//! transition and deletion) and list every stage stream in `{prefix}streams`, so a scrape reads
//! a hash, a set and one `XLEN` per queue; nothing walks the keyspace. Finished tasks are
//! deleted after their retention by [`TaskStore::trim_expired`] (instead of a key expiry the
//! counts could not see).

use super::*;

/// The layout version this code keeps: 2 = counts, the stream index and the expiry index.
const SCHEMA_VERSION: &str = "2";

impl TaskStore {
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

    /// Tasks by status, as the scripts count them (one `HGETALL` of a hash with one field per
    /// status: its cost does not depend on how many tasks are stored). Statuses without tasks
    /// may be absent.
    pub async fn status_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.counts_key());
        let cmd = &cmd;
        let counts: HashMap<String, i64> = self
            .call("status_counts", move |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        Ok(counts
            .into_iter()
            .map(|(status, n)| (status, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// Entries in every stage stream of this prefix (entries are deleted when acknowledged, so
    /// this is the work not done yet), as `((stage, node), depth)`; `node` is empty for shared
    /// queues. Reads the stream index and one `XLEN` per stream.
    pub async fn queue_depths(&self) -> Result<Vec<((String, String), u64)>, StoreError> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.streams_key());
        let members = &members;
        let mut keys: Vec<String> = self
            .call("queue_depths", move |mut c| async move {
                members.query_async(&mut c).await
            })
            .await?;
        keys.sort();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("XLEN").arg(key);
        }
        let pipe = &pipe;
        let depths: Vec<u64> = self
            .call("queue_depths", move |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        let stream_prefix = format!("{}stream:", self.prefix);
        Ok(keys
            .iter()
            .zip(depths)
            .map(|(key, depth)| {
                let name = key.strip_prefix(&stream_prefix).unwrap_or(key);
                let (stage, node) = name.split_once(':').unwrap_or((name, ""));
                ((stage.to_string(), node.to_string()), depth)
            })
            .collect())
    }

    /// Deletes up to `limit` finished tasks whose retention ended by `now` (unix seconds), and
    /// counts them out; returns how many. Safe on many processes at once (each candidate is
    /// checked again inside `lua/trim.lua`).
    pub async fn trim_expired(&self, now: i64, limit: usize) -> Result<u64, StoreError> {
        let ids = self
            .due_members("trim_expired", self.expiry_key(), now, limit.max(1))
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = TRIM.prepare_invoke();
        inv.key(self.expiry_key()).key(self.counts_key());
        for id in &ids {
            inv.key(self.task_key(id)).key(self.control_key(id));
        }
        for id in &ids {
            inv.arg(id);
        }
        let reply = self.script("trim_expired", &inv).await?;
        let deleted = reply
            .first()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| unexpected("trim", &reply))?;
        if deleted > 0 {
            tracing::debug!(deleted, "finished tasks deleted after their retention");
        }
        Ok(deleted)
    }

    /// Brings data stored by a version without counts up to date, once (see
    /// `lua/migrate.lua`): a no-op read of the schema key afterwards. Not on a cluster, whose
    /// deployments have no earlier data.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        if self.mode() == RedisMode::Cluster {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.schema_key()).arg(SCHEMA_VERSION);
            let cmd = &cmd;
            return self
                .call("migrate", move |mut c| async move {
                    cmd.query_async::<()>(&mut c).await
                })
                .await;
        }
        let mut get = redis::cmd("GET");
        get.arg(self.schema_key());
        let get = &get;
        let current: Option<String> = self
            .call("migrate", move |mut c| async move {
                get.query_async(&mut c).await
            })
            .await?;
        if current.as_deref() == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        let mut inv = MIGRATE.prepare_invoke();
        inv.key(self.schema_key())
            .key(self.counts_key())
            .key(self.streams_key())
            .key(self.expiry_key())
            .arg(&*self.prefix)
            .arg(SCHEMA_VERSION);
        // A walk over the whole keyspace: it may take longer than an ordinary call.
        let reply = self.script("migrate", &inv).await?;
        if reply.first().map(String::as_str) == Some("migrated") {
            tracing::info!(
                tasks = reply.get(1).map(String::as_str).unwrap_or("?"),
                expiries = reply.get(2).map(String::as_str).unwrap_or("?"),
                streams = reply.get(3).map(String::as_str).unwrap_or("?"),
                "counted the stored tasks once (data from a version without counts)"
            );
        }
        Ok(())
    }
}
