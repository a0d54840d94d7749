//! The record stage's side of what is given before a task's recording began (the rules are in
//! [`crate::task::prestart`]): a Stop that came while the page loaded, and a Pause or Resume,
//! remembered in the store and applied as recording begins, so a task paused before it began
//! begins paused.
//!
//! The remembered state reaches the recording three ways, so that none is missed: it is read
//! when the recording's options are made (a task paused while queued begins paused exactly);
//! after the page loaded, for what came meanwhile (a ManualStart page still waiting then begins
//! paused exactly); and once more as soon as the task is `recording`, for a Pause the API
//! remembered just before that.

use tracing::info;

use super::RecordJob;
use crate::command::Command;
use crate::recording::{Controls, RecordingEvent};
use crate::task::Status;
use crate::task::store::StoreError;

impl RecordJob {
    /// Whether the recording should begin paused (a new recording, not a takeover).
    pub(super) async fn begins_paused(&self) -> bool {
        self.takeover.is_none() && self.ctx.store.start_paused(&self.id).await.unwrap_or(false)
    }

    /// Once the page has loaded: a Stop given meanwhile ends the recording (returns true); a
    /// Pause or Resume given meanwhile reaches it. The control stream is read from now on.
    pub(super) async fn catch_up(&self, controls: &Controls) -> bool {
        let Ok(task) = self.ctx.store.get(&self.id).await else {
            return false;
        };
        if matches!(task.status, Status::Canceled | Status::Finished) {
            controls.send(Command::Stop);
            return true;
        }
        if task.status == Status::Normal && self.takeover.is_none() {
            let paused = self.ctx.store.start_paused(&self.id).await.unwrap_or(false);
            controls.send_before_start(if paused {
                Command::Pause
            } else {
                Command::Resume
            });
        }
        false
    }

    /// [`RecordJob::on_event`], and once recording has begun, a Pause the API remembered just
    /// before: the task moves on to `paused` and the recording pauses.
    pub(super) async fn on_event_with(
        &mut self,
        ev: RecordingEvent,
        controls: &Controls,
    ) -> Result<(), StoreError> {
        self.on_event(ev).await?;
        if ev.control == Command::Start
            && self.takeover.is_none()
            && self.status == Status::Recording
            && self.ctx.store.start_paused(&self.id).await.unwrap_or(false)
        {
            info!("a Pause was given as recording began; pausing");
            controls.send_before_start(Command::Pause);
            self.move_to(Status::Paused, vec![]).await?;
        }
        Ok(())
    }
}
