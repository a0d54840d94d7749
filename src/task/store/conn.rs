//! Calling Redis: the shared connection, dedicated connections for blocking reads, one retry
//! after a connection failure, a deadline per call, and failures turned into [`StoreError`]s.

use super::*;

impl TaskStore {
    // ---- calling Redis ----

    /// Runs a script whose reply is a list of strings.
    pub(super) async fn script(
        &self,
        what: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        self.call(what, move |mut c| async move {
            inv.invoke_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    /// [`Self::run`], with failures turned into [`StoreError`]s.
    pub(super) async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run(f)
            .await
            .map_err(|failure| self.fail(what, failure))
    }

    /// Runs `f` on the shared connection within [`CALL_DEADLINE`], retrying once if the
    /// connection failed.
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match f(self.conn.clone()).await {
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "redis connection failed; retrying once");
                    f(self.conn.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(CALL_DEADLINE, attempts).await {
            Ok(result) => result.map_err(Failure::Redis),
            Err(_) => Err(Failure::Deadline(CALL_DEADLINE)),
        }
    }

    /// Runs a blocking command (blocking up to `block`) on a dedicated connection, retrying once
    /// on a fresh connection if the connection failed.
    pub(super) async fn run_blocking<T, F, Fut>(&self, block: Duration, f: F) -> Result<T, Failure>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = block + CALL_DEADLINE;
        let attempts = async {
            let mut retried = false;
            loop {
                let conn = self.blocking_connection().await?;
                match f(conn.clone()).await {
                    Ok(v) => {
                        self.return_blocking_connection(conn);
                        return Ok(v);
                    }
                    Err(e) if is_connection_error(&e) => {
                        // Other idle connections are likely dead too.
                        self.blocking
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clear();
                        if retried {
                            return Err(e);
                        }
                        retried = true;
                        tracing::debug!(error = %e, "redis connection failed; retrying once");
                    }
                    Err(e) => {
                        self.return_blocking_connection(conn);
                        return Err(e);
                    }
                }
            }
        };
        match tokio::time::timeout(deadline, attempts).await {
            Ok(result) => result.map_err(Failure::Redis),
            Err(_) => Err(Failure::Deadline(deadline)),
        }
    }

    pub(super) async fn blocking_connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
        {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub(super) fn return_blocking_connection(&self, conn: MultiplexedConnection) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < BLOCKING_POOL_MAX {
            pool.push(conn);
        }
    }

    pub(super) fn fail(&self, what: &str, failure: Failure) -> StoreError {
        let error = self.describe_failure(what, failure);
        if matches!(error, StoreError::Unavailable(_))
            && let Ok(mut at) = self.last_unavailable.lock()
        {
            *at = Some(std::time::Instant::now());
        }
        error
    }

    pub(super) fn describe_failure(&self, what: &str, failure: Failure) -> StoreError {
        match failure {
            Failure::Deadline(d) => StoreError::Unavailable(format!(
                "Redis at {} did not answer {what} within {:.1}s",
                self.shown_url,
                d.as_secs_f64()
            )),
            Failure::Redis(e) if is_unavailable(&e) => StoreError::Unavailable(format!(
                "Redis at {} failed during {what}: {e}",
                self.shown_url
            )),
            Failure::Redis(e) => StoreError::Corrupt(format!("{what}: Redis answered: {e}")),
        }
    }
}

/// The connection broke (or could not be made): worth one retry on a new connection.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Redis cannot serve us right now (as opposed to a bad reply or a bug).
pub(super) fn is_unavailable(e: &RedisError) -> bool {
    is_connection_error(e)
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::InvalidClientConfig
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::NoPerm
                )
        )
        || matches!(e.code(), Some("OOM" | "MISCONF" | "BUSY"))
}
