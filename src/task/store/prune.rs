//! The stream index (`{prefix}streams`, read by every scrape) forgets the queues of nodes that
//! are gone: a node's own queues (`{prefix}stream:{stage}:{node}`) stay listed after its last
//! worker stopped, so with workers whose node ids change (no stable pod names) the scrape would
//! grow with every node ever seen. Only empty queues of nodes without a live worker go.

use std::collections::BTreeSet;

use super::*;

impl TaskStore {
    /// Drops from the stream index (and deletes) the empty node queues of nodes none of whose
    /// workers is alive at `now_ms`; returns how many. Queues holding entries stay (work waiting
    /// for its node), and so do the shared ones.
    pub async fn prune_streams(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.streams_key());
        let members = &members;
        let keys: Vec<String> = self
            .call("prune_streams", move |mut c| async move {
                members.query_async(&mut c).await
            })
            .await?;
        let mut alive = redis::cmd("ZRANGEBYSCORE");
        alive.arg(self.workers_key()).arg(now_ms).arg("+inf");
        let alive = &alive;
        let workers: Vec<String> = self
            .call("prune_streams", move |mut c| async move {
                alive.query_async(&mut c).await
            })
            .await?;
        let stream_prefix = format!("{}stream:", self.prefix);
        let candidates = gone_node_streams(&keys, &stream_prefix, &live_nodes(&workers));
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut inv = PRUNE_STREAMS.prepare_invoke();
        inv.key(self.streams_key());
        for key in &candidates {
            inv.key(key);
        }
        let reply = self.script("prune_streams", &inv).await?;
        let dropped = reply
            .first()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| unexpected("prune_streams", &reply))?;
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "queues of nodes that are gone dropped from the index"
            );
        }
        Ok(dropped)
    }
}

/// The nodes of live worker ids (`{node}/{pid}/{random}`).
fn live_nodes(workers: &[String]) -> BTreeSet<String> {
    workers
        .iter()
        .filter_map(|w| {
            let mut parts = w.rsplitn(3, '/');
            let (_, _, node) = (parts.next()?, parts.next()?, parts.next()?);
            Some(node.to_string())
        })
        .collect()
}

/// The node queues (`{stream_prefix}{stage}:{node}`) among `keys` whose node is not in `alive`.
fn gone_node_streams(
    keys: &[String],
    stream_prefix: &str,
    alive: &BTreeSet<String>,
) -> Vec<String> {
    keys.iter()
        .filter(|key| {
            key.strip_prefix(stream_prefix)
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(_, node)| !alive.contains(node))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_node_queues_of_nodes_without_a_live_worker_are_candidates() {
        let alive = live_nodes(&["pod-0/12/ab12cd34".into(), "host:a/7/ffff0000".into()]);
        assert_eq!(
            alive,
            BTreeSet::from(["pod-0".to_string(), "host:a".to_string()])
        );
        let keys: Vec<String> = [
            "p:stream:record",
            "p:stream:record:pod-0",
            "p:stream:transcode:host:a",
            "p:stream:record:pod-7",
            "p:stream:upload:old-host",
            "other",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            gone_node_streams(&keys, "p:stream:", &alive),
            vec!["p:stream:record:pod-7", "p:stream:upload:old-host"]
        );
    }
}
