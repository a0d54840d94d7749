//! The tasks a recording job runs beside its recording: the reader of the task's control
//! stream, the side work (bucket copy, HLS publishing, live MP4 upload), and the recording
//! itself. Each is held by a guard that ends it when the job ends, however it ends: an early
//! return on a store error must not leave a reader polling Redis, a loop copying media, or a
//! browser recording for nobody.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::command::Command;
use crate::recording::Controls;
use crate::task::store::TaskStore;

/// Reads the task's control stream (API commands) on the side; the reading task is aborted
/// when this is dropped (a `JoinSet` aborts its tasks on drop).
pub(super) struct ControlReader {
    messages: mpsc::UnboundedReceiver<Command>,
    _reader: JoinSet<()>,
}

impl ControlReader {
    /// Starts reading the control stream of task `id`, from new messages on.
    pub(super) fn spawn(store: TaskStore, id: String) -> Self {
        let (tx, messages) = mpsc::unbounded_channel();
        let mut reader = JoinSet::new();
        reader.spawn(async move {
            let mut after = "$".to_string();
            loop {
                match store.read_controls(&id, &after, 1_000).await {
                    Ok(msgs) => {
                        for (entry, msg) in msgs {
                            after = entry;
                            if tx.send(msg).is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        ControlReader {
            messages,
            _reader: reader,
        }
    }

    /// The next command for the recording.
    pub(super) async fn recv(&mut self) -> Option<Command> {
        self.messages.recv().await
    }
}

/// The side work of a recording: a loop that does a last round and ends when told to
/// ([`SideWork::finish`]), or is aborted when this is dropped.
pub(super) struct SideWork {
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl SideWork {
    /// Guards `handle`, which ends after a last round once `stop` fires.
    pub(super) fn new(stop: oneshot::Sender<()>, handle: tokio::task::JoinHandle<()>) -> Self {
        SideWork {
            stop: Some(stop),
            handle,
        }
    }

    /// Lets the last round run (at most `limit`); what is left then is the later stages' work.
    pub(super) async fn finish(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // On timeout, the drop aborts it.
        let _ = tokio::time::timeout(limit, &mut self.handle).await;
    }
}

impl Drop for SideWork {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Asks the recording to stop when dropped: a job that ends early leaves no browser and encoder
/// running (the recording ends as after a Stop, its segments complete). A recording that has
/// ended already ignores it.
pub(super) struct StopOnDrop(pub(super) Controls);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send(Command::Stop);
    }
}
