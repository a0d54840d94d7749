//! Pause and Resume before a task's recording began (see [`crate::task::prestart`] and
//! `lua/remember.lua`): remembered in the task hash's `start_paused` field, applied by the worker
//! as recording begins.

use super::{CONTROL_MAXLEN, REMEMBER, Status, StoreError, TaskStore, parse_status, unexpected};
use crate::command::Command;

impl TaskStore {
    /// Remembers a Pause (`paused`) or Resume of task `id`, which must still be `normal`
    /// ([`StoreError::Conflict`] otherwise), and sends it to the control stream.
    pub(crate) async fn remember_pause(&self, id: &str, paused: bool) -> Result<(), StoreError> {
        let msg = if paused {
            Command::Pause
        } else {
            Command::Resume
        };
        let mut inv = REMEMBER.prepare_invoke();
        inv.key(self.task_key(id))
            .key(self.control_key(id))
            .arg(Status::Normal.as_str())
            .arg(if paused { "1" } else { "0" })
            .arg(msg.as_str())
            .arg(CONTROL_MAXLEN);
        let reply = self.script("remember", &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("notfound") => Err(StoreError::NotFound(id.to_owned())),
            Some("conflict") => Err(StoreError::Conflict {
                expected: Status::Normal,
                actual: parse_status(reply.get(1))?,
            }),
            _ => Err(unexpected("remember", &reply)),
        }
    }

    /// Whether task `id` should start paused (a Pause, not followed by a Resume, was given
    /// before its recording began).
    pub async fn start_paused(&self, id: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.task_key(id)).arg("start_paused");
        let cmd = &cmd;
        let value = self
            .call("start_paused", move |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        Ok(value.as_deref() == Some("1"))
    }
}
