//! Calling Redis: the shared connection, dedicated connections for blocking reads, one retry
//! after a connection failure, a deadline per call, and failures turned into [`StoreError`]s.

use super::errors::{Class, classify, is_connection_error, needs_new_connection};
use super::link::Conn;
use super::*;

impl TaskStore {
    /// Runs a script whose reply is a list of strings. A script missing from the server's cache
    /// (after a failover or a restart) is loaded again and run.
    pub(super) async fn script(
        &self,
        what: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        self.call(what, move |mut c| async move {
            inv.invoke_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    /// Up to `limit` members of the sorted set `key` scored at or before `until`, lowest first:
    /// what is due (expired leases, silent workers, finished tasks past their retention).
    pub(super) async fn due_members(
        &self,
        what: &'static str,
        key: String,
        until: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(key)
            .arg("-inf")
            .arg(until)
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let cmd = &cmd;
        self.call(what, move |mut c| async move {
            cmd.query_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    /// [`Self::run`], with failures turned into [`StoreError`]s; its time goes into
    /// `pagecast_redis_command_duration_seconds` under `op` = `what`.
    pub(super) async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let began = std::time::Instant::now();
        let result = self.run(f).await;
        crate::metrics::observe(
            &crate::metrics::REDIS_SECONDS,
            &[("op", what)],
            began.elapsed().as_secs_f64(),
        );
        result.map_err(|failure| self.fail(what, failure))
    }

    /// Runs `f` on the shared connection within [`CALL_DEADLINE`], retrying once if the
    /// connection failed (on a new connection when the old one cannot reach the primary any
    /// more: see [`needs_new_connection`]).
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            let (generation, conn) = self.link.shared().await?;
            match f(conn).await {
                Err(e) if is_connection_error(&e) || needs_new_connection(self.link.mode(), &e) => {
                    tracing::debug!(error = %e, "redis call failed; retrying once");
                    if needs_new_connection(self.link.mode(), &e) {
                        self.link.renew(generation);
                    }
                    let (_, conn) = self.link.shared().await?;
                    f(conn).await
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
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = block + CALL_DEADLINE;
        let attempts = async {
            let mut retried = false;
            loop {
                let conn = self.link.dedicated().await?;
                match f(conn.clone()).await {
                    Ok(v) => {
                        self.link.give_back(conn);
                        return Ok(v);
                    }
                    Err(e)
                        if is_connection_error(&e)
                            || needs_new_connection(self.link.mode(), &e) =>
                    {
                        // Other idle connections are likely dead (or demoted) too.
                        self.link.clear_idle();
                        if retried {
                            return Err(e);
                        }
                        retried = true;
                        tracing::debug!(error = %e, "redis connection failed; retrying once");
                    }
                    Err(e) => {
                        self.link.give_back(conn);
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

    /// The [`StoreError`] of a failure (logged by the caller); an unavailable Redis is noted
    /// (see [`TaskStore::unavailable_within`]).
    pub(super) fn fail(&self, what: &str, failure: Failure) -> StoreError {
        let error = self.describe_failure(what, failure);
        if matches!(
            error,
            StoreError::Unavailable(_) | StoreError::Misconfigured { .. }
        ) && let Ok(mut at) = self.last_unavailable.lock()
        {
            *at = Some(std::time::Instant::now());
        }
        error
    }

    pub(super) fn describe_failure(&self, what: &str, failure: Failure) -> StoreError {
        let e = match failure {
            Failure::Deadline(d) => {
                return StoreError::Unavailable(format!(
                    "Redis at {} did not answer {what} within {:.1}s",
                    self.shown_url,
                    d.as_secs_f64()
                ));
            }
            Failure::Redis(e) => e,
        };
        // Redis errors may quote what they were given; nothing secret is shown.
        let said = crate::redact::text(&e.to_string());
        match classify(self.link.mode(), &self.prefix, &e) {
            Class::Unavailable(None) => StoreError::Unavailable(format!(
                "Redis at {} failed during {what}: {said}",
                self.shown_url
            )),
            Class::Unavailable(Some(why)) => StoreError::Unavailable(format!(
                "Redis at {} failed during {what}: {why} ({said})",
                self.shown_url
            )),
            Class::Misconfigured(problem, why) => StoreError::Misconfigured {
                problem,
                detail: format!("Redis at {} ({what}): {why} ({said})", self.shown_url),
            },
            Class::Unexpected => StoreError::Corrupt(format!("{what}: Redis answered: {said}")),
        }
    }
}
