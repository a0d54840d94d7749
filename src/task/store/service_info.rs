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

    fn public_url_key(&self) -> String {
        format!("{}public-url", self.prefix)
    }
}
