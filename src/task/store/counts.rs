//! Figures for `/metrics`: tasks by status and queue depths.

use super::*;

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

    /// Every key matching `pattern` (of `key_type`, if given), walked with `SCAN` in batches so
    /// Redis stays responsive; `what` names the operation in errors.
    pub(super) async fn scan_keys(
        &self,
        what: &'static str,
        pattern: &str,
        key_type: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            if let Some(t) = key_type {
                scan.arg("TYPE").arg(t);
            }
            let scan = &scan;
            let (next, batch): (u64, Vec<String>) = self
                .call(
                    what,
                    move |mut c| async move { scan.query_async(&mut c).await },
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Tasks by status, counted over every task hash of this prefix. Walks the keyspace with
    /// `SCAN` and reads statuses in pipelined batches (Redis stays responsive), so its cost grows
    /// with the number of retained tasks: meant for metrics scrapes, not for hot paths.
    pub async fn status_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        let keys = self
            .scan_keys("status_counts", &format!("{}task:*", self.prefix), None)
            .await?;
        let mut counts = HashMap::new();
        for batch in keys.chunks(SCAN_BATCH) {
            let mut pipe = redis::pipe();
            for k in batch {
                pipe.cmd("HGET").arg(k).arg("status");
            }
            let pipe = &pipe;
            let statuses: Vec<Option<String>> = self
                .call("status_counts", move |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?;
            for s in statuses.into_iter().flatten() {
                *counts.entry(s).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Entries in every stage stream of this prefix (entries are deleted when acknowledged, so
    /// this is the work not done yet), as `((stage, node), depth)`; `node` is empty for shared
    /// queues.
    pub async fn queue_depths(&self) -> Result<Vec<((String, String), u64)>, StoreError> {
        let stream_prefix = format!("{}stream:", self.prefix);
        let keys = self
            .scan_keys("queue_depths", &format!("{stream_prefix}*"), Some("stream"))
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut xlen = redis::cmd("XLEN");
            xlen.arg(&key);
            let xlen = &xlen;
            let depth: u64 = self
                .call("queue_depths", move |mut c| async move {
                    xlen.query_async(&mut c).await
                })
                .await?;
            let name = key.strip_prefix(&stream_prefix).unwrap_or(&key);
            let (stage, node) = name.split_once(':').unwrap_or((name, ""));
            out.push(((stage.to_string(), node.to_string()), depth));
        }
        out.sort();
        Ok(out)
    }
}
