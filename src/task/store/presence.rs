//! Which workers are alive, and which tasks each one is working on: `{prefix}worker:{worker id}`,
//! a string of task ids separated by spaces, with a time to live. A worker renews it while it
//! runs; the diagnose loop reads it before it treats a task whose lease ran out as abandoned, so
//! a worker that is fine (it only could not renew a lease for a moment) never loses its task.

use super::{StoreError, TaskStore};

impl TaskStore {
    /// Says that `worker` is alive and working on `tasks`, for `ttl_ms`.
    pub(crate) async fn announce_worker(
        &self,
        worker: &str,
        tasks: &[String],
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.worker_key(worker))
            .arg(tasks.join(" "))
            .arg("PX")
            .arg(ttl_ms.max(1));
        let cmd = &cmd;
        self.call("announce_worker", move |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    /// The tasks `worker` last said it works on; `None` when it has not announced itself within
    /// its time to live (it stopped, or never ran).
    pub(crate) async fn worker_tasks(
        &self,
        worker: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.worker_key(worker));
        let cmd = &cmd;
        let value = self
            .call("worker_tasks", move |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        Ok(value.map(|v| v.split_whitespace().map(String::from).collect()))
    }

    /// Removes `worker`'s announcement (it is stopping).
    pub(crate) async fn forget_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.worker_key(worker));
        let cmd = &cmd;
        self.call("forget_worker", move |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    fn worker_key(&self, worker: &str) -> String {
        format!("{}worker:{worker}", self.prefix)
    }
}
