//! What the processes of one service tell each other through Redis about the service itself
//! (not about a task): `{prefix}public-url`, the base URL under which the API servers publish
//! local results (`/files/`), so a separate worker can name its results without being told.

use super::{StoreError, TaskStore};

impl TaskStore {
    /// Publishes the base URL of the API servers' `/files/` (the last one to start wins: every
    /// API server of a service is reached through the same address).
    pub async fn publish_public_url(&self, url: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.public_url_key()).arg(url);
        let cmd = &cmd;
        self.call("publish_public_url", move |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    /// The base URL an API server published, if any has.
    pub async fn published_public_url(&self) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.public_url_key());
        let cmd = &cmd;
        self.call("published_public_url", move |mut c| async move {
            cmd.query_async::<Option<String>>(&mut c).await
        })
        .await
    }

    /// A value shared by every process of the service under `name` (below the prefix): the
    /// stored one, or `fresh` if none was stored yet (the first process to ask stores it; `SET
    /// NX`, then `GET`). Through the store's connection, so any deployment (TLS, cluster,
    /// sentinel) works.
    pub(crate) async fn shared_value(
        &self,
        name: &str,
        fresh: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = format!("{}{name}", self.prefix);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(fresh).arg("NX");
        let set = &set;
        self.call("shared_value", move |mut c| async move {
            set.query_async::<Option<String>>(&mut c).await
        })
        .await?;
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let get = &get;
        self.call("shared_value", move |mut c| async move {
            get.query_async::<Option<String>>(&mut c).await
        })
        .await
    }

    fn public_url_key(&self) -> String {
        format!("{}public-url", self.prefix)
    }
}
