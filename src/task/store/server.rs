//! What the Redis server says about itself (`INFO`), and whether pagecast can rely on it: the
//! version (stage queues need `XAUTOCLAIM`, Redis 6.2) and the eviction policy (only
//! `noeviction` never drops a task, lease or queue entry).

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::errors::Misconfig;
use super::link::Conn;
use super::options::RedisMode;
use super::{StoreError, TaskStore};

/// The oldest Redis pagecast works with: `XAUTOCLAIM` (stage queues) appeared in 6.2.
pub const MIN_VERSION: (u32, u32) = (6, 2);
/// The one eviction policy under which Redis never drops pagecast's keys.
pub const REQUIRED_POLICY: &str = "noeviction";

/// Facts from `INFO` of the server that holds the store's keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFacts {
    /// `redis_version` (e.g. `7.0.15`); empty when INFO did not say.
    pub(crate) version: String,
    /// `maxmemory_policy`, when INFO says.
    pub(crate) maxmemory_policy: Option<String>,
    /// `role` (`master`, `slave`), when INFO says.
    pub(crate) role: Option<String>,
    /// Whether the server is a cluster node (`cluster_enabled:1`).
    pub(crate) cluster_enabled: bool,
}

impl ServerFacts {
    /// Reads the facts from INFO's `key:value` lines.
    pub(crate) fn parse(info: &str) -> ServerFacts {
        let mut facts = ServerFacts::default();
        for line in info.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            match key {
                "redis_version" => facts.version = value.to_string(),
                "maxmemory_policy" => facts.maxmemory_policy = Some(value.to_string()),
                "role" => facts.role = Some(value.to_string()),
                "cluster_enabled" => facts.cluster_enabled = value == "1",
                _ => {}
            }
        }
        facts
    }

    /// `(major, minor)` of the version, when it reads as one.
    pub fn version_number(&self) -> Option<(u32, u32)> {
        let mut parts = self.version.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some((major, minor))
    }

    /// [`StoreError::Misconfigured`] ([`Misconfig::Version`]) for a server older than
    /// [`MIN_VERSION`]; an unknown version passes (some managed services hide it).
    pub(crate) fn check_version(&self) -> Result<(), StoreError> {
        match self.version_number() {
            Some(v) if v < MIN_VERSION => Err(StoreError::misconfigured(
                Misconfig::Version,
                format!(
                    "Redis {} is too old: pagecast needs Redis {}.{} or later (its stage queues \
                     use XAUTOCLAIM)",
                    self.version, MIN_VERSION.0, MIN_VERSION.1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// [`StoreError::Misconfigured`] ([`Misconfig::Mode`]) when the server is a cluster node
    /// and the mode is not `cluster`, or the other way round.
    pub(crate) fn check_mode(&self, mode: RedisMode) -> Result<(), StoreError> {
        match (mode == RedisMode::Cluster, self.cluster_enabled) {
            (false, true) => Err(StoreError::misconfigured(
                Misconfig::Mode,
                "this Redis is a cluster node: set PAGECAST_REDIS_MODE=cluster and list seed \
                 nodes in PAGECAST_REDIS_URL",
            )),
            (true, false) => Err(StoreError::misconfigured(
                Misconfig::Mode,
                "this Redis is not a cluster: set PAGECAST_REDIS_MODE=standalone (or sentinel)",
            )),
            _ => Ok(()),
        }
    }

    /// What is wrong with the eviction policy, if anything (`None`: `noeviction`, or not
    /// known).
    pub(crate) fn eviction_warning(&self) -> Option<String> {
        let policy = self.maxmemory_policy.as_deref()?;
        (policy != REQUIRED_POLICY).then(|| {
            format!(
                "maxmemory-policy is {policy}: it must be {REQUIRED_POLICY}, or Redis may evict \
                 tasks, leases and queue entries when memory runs short (CONFIG SET \
                 maxmemory-policy {REQUIRED_POLICY}, or the provider's parameter group)"
            )
        })
    }

    /// One line for doctor and readiness: version, policy and role.
    pub(crate) fn summary(&self) -> String {
        let mut s = if self.version.is_empty() {
            "Redis (version not shown)".to_string()
        } else {
            format!("Redis {}", self.version)
        };
        if let Some(p) = &self.maxmemory_policy {
            s.push_str(&format!(", maxmemory-policy {p}"));
        }
        if let Some(r) = &self.role {
            s.push_str(&format!(", role {r}"));
        }
        s
    }
}

impl TaskStore {
    /// `INFO` of the server that holds the store's keys (on a cluster: the primary of the
    /// prefix's slot).
    pub async fn server_facts(&self) -> Result<ServerFacts, StoreError> {
        let key = format!("{}info", self.prefix);
        let cmd = redis::cmd("INFO");
        let (key, cmd) = (&key, &cmd);
        let value = self
            .call("info", move |conn| async move {
                match conn {
                    Conn::Cluster(mut c) => {
                        let route = Route::with_key(key, SlotAddr::Master);
                        c.route_command(
                            cmd.clone(),
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                        )
                        .await
                    }
                    mut other => cmd.query_async::<redis::Value>(&mut other).await,
                }
            })
            .await?;
        let text: String = redis::from_redis_value(value)
            .map_err(|e| StoreError::Corrupt(format!("INFO: {e}")))?;
        Ok(ServerFacts::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n\
                        # Cluster\r\ncluster_enabled:0\r\n\
                        # Memory\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\
                        # Replication\r\nrole:master\r\n";

    #[test]
    fn reads_version_policy_and_role() {
        let f = ServerFacts::parse(INFO);
        assert_eq!(f.version, "7.0.15");
        assert_eq!(f.version_number(), Some((7, 0)));
        assert_eq!(f.maxmemory_policy.as_deref(), Some("noeviction"));
        assert_eq!(f.role.as_deref(), Some("master"));
        assert!(f.check_version().is_ok());
        assert!(f.check_mode(RedisMode::Standalone).is_ok());
        assert!(f.check_mode(RedisMode::Sentinel).is_ok());
        assert!(f.check_mode(RedisMode::Cluster).is_err());
        let node = ServerFacts::parse("cluster_enabled:1\r\n");
        assert!(node.cluster_enabled);
        assert!(node.check_mode(RedisMode::Standalone).is_err());
        assert!(node.check_mode(RedisMode::Cluster).is_ok());
        assert_eq!(f.eviction_warning(), None);
        assert_eq!(
            f.summary(),
            "Redis 7.0.15, maxmemory-policy noeviction, role master"
        );
    }

    #[test]
    fn old_versions_are_refused_and_evicting_policies_warned() {
        for (v, ok) in [
            ("6.2.0", true),
            ("6.2.14", true),
            ("7.4.1", true),
            ("10.0", true),
            ("6.0.20", false),
            ("5.0.14", false),
            ("", true),
            ("unknown", true),
        ] {
            let f = ServerFacts {
                version: v.into(),
                ..ServerFacts::default()
            };
            match f.check_version() {
                Ok(()) => assert!(ok, "{v} passed"),
                Err(StoreError::Misconfigured { problem, detail }) => {
                    assert!(!ok, "{v} refused");
                    assert_eq!(problem, Misconfig::Version);
                    assert!(detail.contains("6.2"), "{detail}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        let f = ServerFacts {
            maxmemory_policy: Some("allkeys-lru".into()),
            ..ServerFacts::default()
        };
        assert!(f.eviction_warning().unwrap().contains("noeviction"));
    }
}
