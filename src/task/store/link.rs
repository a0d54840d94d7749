//! The connections to Redis, whatever its deployment: one server, a cluster, or the master the
//! sentinels name. A [`Link`] holds the shared (multiplexed) connection, makes a new one when
//! the old one can no longer reach the primary, and keeps a small pool of dedicated
//! connections for blocking reads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, TlsMode, Value,
};

use super::StoreError;
use super::errors::{Class, classify};
use super::options::{RedisMode, RedisOptions};

/// How long establishing a connection may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its reply.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for blocking reads.
const BLOCKING_POOL_MAX: usize = 8;
/// Reply timeout of dedicated connections (blocking reads wait long; each call has its own
/// deadline on top).
const BLOCKING_RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);

/// One connection of any deployment; cheap to clone (clones share it).
#[derive(Clone)]
pub(super) enum Conn {
    /// Reconnects by itself to the same address (one server, or the current master).
    Managed(ConnectionManager),
    /// A plain multiplexed connection (dedicated, for blocking reads).
    Plain(redis::aio::MultiplexedConnection),
    /// Follows the cluster's topology (MOVED, ASK, failovers) by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections come from.
enum Target {
    Standalone(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// The connections of one store (shared by its clones).
pub(super) struct Link {
    mode: RedisMode,
    target: Target,
    /// The shared connection and its generation (`None` after it was dropped).
    shared: Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
    /// Held while a new shared connection is made, so concurrent callers make one.
    making: tokio::sync::Mutex<()>,
    /// Idle dedicated connections for blocking reads (a blocking command would stall every
    /// other command multiplexed on the shared connection).
    idle: Mutex<Vec<Conn>>,
}

impl Link {
    /// Prepares the clients; no connection is made yet.
    pub(super) fn new(opts: &RedisOptions) -> Result<Link, StoreError> {
        Ok(Link {
            mode: opts.mode,
            target: target(opts)?,
            shared: Mutex::new(None),
            generation: AtomicU64::new(0),
            making: tokio::sync::Mutex::new(()),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// How Redis is deployed.
    pub(super) fn mode(&self) -> RedisMode {
        self.mode
    }

    /// The shared connection (made first if there is none) and its generation.
    pub(super) async fn shared(&self) -> RedisResult<(u64, Conn)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _making = self.making.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let conn = match &self.target {
            Target::Standalone(client) => Conn::Managed(
                ConnectionManager::new_with_config(client.clone(), manager_config()).await?,
            ),
            Target::Sentinel(sentinel) => {
                // The sentinels name the master (and it is asked whether it is one).
                let client = sentinel.lock().await.async_get_client().await?;
                Conn::Managed(ConnectionManager::new_with_config(client, manager_config()).await?)
            }
            Target::Cluster(cluster) => Conn::Cluster(cluster.get_async_connection().await?),
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    fn current(&self) -> Option<(u64, Conn)> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the shared connection of `generation` (if it is still the current one), so the
    /// next call makes a new one; idle dedicated connections go too.
    pub(super) fn renew(&self, generation: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared.as_ref().is_some_and(|(g, _)| *g == generation) {
            *shared = None;
            self.clear_idle();
        }
    }

    /// A dedicated connection for a blocking read: an idle one, or a new one.
    pub(super) async fn dedicated(&self) -> RedisResult<Conn> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(BLOCKING_RESPONSE_TIMEOUT));
        Ok(match &self.target {
            Target::Standalone(client) => Conn::Plain(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Target::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                Conn::Plain(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster(cluster) => Conn::Cluster(
                cluster
                    .get_async_connection_with_config(
                        ClusterConfig::new()
                            .set_connection_timeout(CONNECT_TIMEOUT)
                            .set_response_timeout(BLOCKING_RESPONSE_TIMEOUT),
                    )
                    .await?,
            ),
        })
    }

    /// Puts a dedicated connection back for reuse.
    pub(super) fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < BLOCKING_POOL_MAX {
            idle.push(conn);
        }
    }

    /// Forgets the idle dedicated connections (after one failed, the others likely will too).
    pub(super) fn clear_idle(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// The clients for `opts` (no connection made yet).
fn target(opts: &RedisOptions) -> Result<Target, StoreError> {
    let invalid = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!(
            "invalid Redis settings ({}): {e}",
            opts.shown_url()
        ))
    };
    // A client that cannot be built from the settings (e.g. a TLS file that is no PEM).
    let refused = |e: redis::RedisError| match classify(opts.mode, "", &e) {
        Class::Misconfigured(problem, why) => StoreError::Misconfigured {
            problem,
            detail: format!("{why} ({e})"),
        },
        _ => invalid(&e),
    };
    let urls = opts.urls().map_err(|(_, why)| invalid(&why))?;
    let certs = opts.tls_certificates()?;
    // rustls needs the process's one crypto provider (a library user may not have installed it).
    crate::tls::install_crypto_provider();
    let infos = urls
        .iter()
        .map(|u| {
            u.as_str()
                .into_connection_info()
                .map_err(|e| invalid(&format!("{}: {e}", crate::redact::url(u))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let first = infos.first().ok_or_else(|| invalid(&"no URL"))?.clone();
    Ok(match opts.mode {
        RedisMode::Standalone => Target::Standalone(
            match certs {
                Some(certs) => Client::build_with_tls(first, certs),
                None => Client::open(first),
            }
            .map_err(refused)?,
        ),
        RedisMode::Cluster => {
            let mut builder = ClusterClientBuilder::new(infos)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(3)
                .max_retry_wait(500);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            Target::Cluster(builder.build().map_err(refused)?)
        }
        RedisMode::Sentinel => {
            let master = opts.sentinel_master.as_deref().unwrap_or_default().trim();
            let redis = first.redis_settings();
            let addrs: Vec<ConnectionAddr> = infos.iter().map(|i| i.addr().clone()).collect();
            let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                .map_err(refused)?
                .set_client_to_redis_db(redis.db());
            if let Some(user) = redis.username() {
                builder = builder.set_client_to_redis_username(user);
            }
            if let Some(password) = redis.password() {
                builder = builder.set_client_to_redis_password(password);
            }
            if let Some(password) = &opts.sentinel_password {
                builder = builder.set_client_to_sentinel_password(password);
            }
            if opts.tls() {
                builder = builder
                    .set_client_to_redis_tls_mode(TlsMode::Secure)
                    .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                if let Some(certs) = certs {
                    builder = builder
                        .set_client_to_redis_certificates(certs.clone())
                        .set_client_to_sentinel_certificates(certs);
                }
            }
            Target::Sentinel(tokio::sync::Mutex::new(builder.build().map_err(refused)?))
        }
    })
}
