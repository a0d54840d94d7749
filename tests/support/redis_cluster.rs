//! A Redis Cluster started by the tests (part of `redis_deploy.rs`): three masters, optionally
//! with a replica each, and a slot moved between masters as `redis-cli --cluster reshard` would.

use std::time::{Duration, Instant};

use super::{Server, run, tool};

/// A Redis Cluster: three masters, without replicas or ([`TestCluster::start_replicated`]) with
/// one each.
pub struct TestCluster {
    pub nodes: Vec<Server>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster::start_with(3, 0, 2000)
    }

    /// Three masters with one replica each (six nodes), failing over quickly: a master's death
    /// is noticed after 1 s (`cluster-node-timeout`) and its replica takes over within about
    /// two more.
    pub fn start_replicated() -> TestCluster {
        TestCluster::start_with(3, 1, 1000)
    }

    fn start_with(masters: usize, replicas: usize, node_timeout_ms: u64) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("pagecast-redis-cluster-")
            .tempdir()
            .expect("temporary directory");
        let nodes: Vec<Server> = (0..masters * (1 + replicas))
            .map(|i| {
                let args = |port: u16| -> Vec<String> {
                    vec![
                        "--port".into(),
                        port.to_string(),
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.path()
                            .join(format!("nodes-{port}.conf"))
                            .display()
                            .to_string(),
                        "--cluster-node-timeout".into(),
                        node_timeout_ms.to_string(),
                    ]
                };
                Server::start(dir.path(), &format!("node{i}"), args, Vec::new())
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        run(
            tool("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]),
            "redis-cli --cluster create",
        );
        let cluster = TestCluster { nodes, dir };
        cluster.wait_ok(Duration::from_secs(20));
        if replicas > 0 {
            // Every replica attached to its master and in sync.
            let started = Instant::now();
            while !cluster.nodes.iter().all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master")
                    && info.contains(&format!("connected_slaves:{replicas}"))
                    || info.contains("role:slave") && info.contains("master_link_status:up")
            }) {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the replicas did not sync"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`.
    pub fn wait_ok(&self, limit: Duration) {
        let started = Instant::now();
        while !self.live().all(|n| {
            n.cli_try(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(started.elapsed() < limit, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes not killed.
    pub fn live(&self) -> impl Iterator<Item = &Server> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let n = self.live().next().expect("a live node");
        n.cli(&["CLUSTER", "KEYSLOT", key]).trim().parse().unwrap()
    }

    /// The node id of `node`.
    pub fn id_of(node: &Server) -> String {
        node.cli(&["CLUSTER", "MYID"]).trim().to_string()
    }

    /// Index in `nodes` of the master that a live node's view (`CLUSTER NODES`) says serves
    /// `slot`, when that master is not marked failed.
    pub fn master_of_slot(&self, slot: u16) -> Option<usize> {
        let view = self.live().next()?.cli_try(&["CLUSTER", "NODES"])?;
        let line = view.lines().find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 8
                && f[2].contains("master")
                && !f[2].contains("fail")
                && f[8..].iter().any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    match (a.parse::<u16>(), b.parse::<u16>()) {
                        (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                        _ => false,
                    }
                })
        })?;
        let port: u16 = line
            .split_whitespace()
            .nth(1)?
            .split(['@', ':'])
            .nth(1)?
            .parse()
            .ok()?;
        self.nodes.iter().position(|n| n.port == port)
    }

    /// Moves `slot` from master `from` to master `to` (indices in `nodes`) as `redis-cli
    /// --cluster reshard` does: IMPORTING/MIGRATING, then its keys in two halves with `between`
    /// called in the middle (the slot split over two nodes: clients meet ASK, and TRYAGAIN for
    /// operations over keys on both), then the slot assigned to `to` on every master. Returns
    /// how many keys moved.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize, between: impl FnOnce()) -> usize {
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let (src_id, dst_id) = (Self::id_of(src), Self::id_of(dst));
        let slot_s = slot.to_string();
        dst.cli(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]);
        let migrate = |keys: &[String]| {
            if keys.is_empty() {
                return;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let out = src.cli(&args);
            if out.contains("BUSYKEY") {
                // A key is on both nodes. As `redis-cli --cluster reshard` does: the same value
                // on both is moved again with REPLACE; different values stop the move.
                for k in keys {
                    let one = src.cli(&["MIGRATE", "127.0.0.1", &port, k, "0", "5000"]);
                    if !one.contains("BUSYKEY") {
                        assert!(
                            one.contains("OK") || one.contains("NOKEY"),
                            "MIGRATE {k}: {one}"
                        );
                        continue;
                    }
                    let here = src.cli_stdin(&format!("DUMP {k}\n"));
                    let there = dst.cli_stdin(&format!("ASKING\nDUMP {k}\n"));
                    assert!(
                        there.strip_prefix(b"OK\n".as_slice()) == Some(here.as_slice()),
                        "{k} is on both nodes with different values (source: {}, pttl {})",
                        src.cli(&["TYPE", k]).trim(),
                        src.cli(&["PTTL", k]).trim()
                    );
                    let again =
                        src.cli(&["MIGRATE", "127.0.0.1", &port, k, "0", "5000", "REPLACE"]);
                    assert!(again.contains("OK"), "MIGRATE {k} REPLACE: {again}");
                }
                return;
            }
            assert!(
                out.contains("OK") || out.contains("NOKEY"),
                "MIGRATE: {out}"
            );
        };
        let keys = |n: usize| -> Vec<String> {
            src.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, &n.to_string()])
                .lines()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        let all = keys(10_000);
        migrate(&all[..all.len() / 2]);
        between();
        let mut moved = all.len() / 2;
        // Keys written meanwhile on the source (existing ones are written there) go too.
        loop {
            let rest = keys(1000);
            if rest.is_empty() {
                break;
            }
            moved += rest.len();
            migrate(&rest);
        }
        for n in self.live().filter(|n| {
            n.cli(&["ROLE"])
                .lines()
                .next()
                .is_some_and(|r| r.trim() == "master")
        }) {
            n.cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        }
        moved
    }

    /// The seed list: `redis://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let mut parts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        parts[0] = format!("redis://{}", parts[0]);
        parts.join(",")
    }

    /// The node serving `key`'s slot (the others answer MOVED).
    pub fn node_of(&self, key: &str) -> &Server {
        self.live()
            .find(|n| {
                n.cli_try(&["GET", key])
                    .is_some_and(|o| !o.contains("MOVED") && !o.contains("ASK"))
            })
            .expect("a node owns the slot")
    }
}
