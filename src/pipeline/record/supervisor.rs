//! The record job's decisions, without Redis or a browser: what a control message, a heartbeat's
//! answer, the disk, a lost lease or a shutdown does to the recording, which status move a
//! recording event makes, and how the job ends.
//!
//! [`JobSupervisor::on`] takes one [`JobInput`] and returns the [`JobStep`]s the job's loop
//! carries out (send a command to the recording, cut it short); the functions below it decide
//! the job's end. The loop (`record::job_loop`) only turns events into inputs and steps into
//! actions.

use tracing::warn;

use crate::command::Command;
use crate::config::ShutdownMode;
use crate::error::ErrorCode;
use crate::recording::Origin;
use crate::task::Status;

/// What the disk message says when the encoder had to be killed.
const DISK_FULL: &str =
    "the work disk filled up; the recording was ended there and what it recorded is delivered";

/// Something that happened to a record job while its recording runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JobInput {
    /// A command from the task's control stream; `status` is the task's status as the job
    /// knows it.
    Command {
        /// The command.
        command: Command,
        /// The task's status.
        status: Status,
    },
    /// What was given while the page loaded: `stopped` when the task was stopped meanwhile
    /// (the Stop was sent).
    CaughtUp {
        /// Whether a Stop was sent.
        stopped: bool,
    },
    /// The lease was renewed and the task's stored status read; `stale` when recording events
    /// came in meanwhile (the status read may predate them).
    Renewed {
        /// The stored status.
        status: Status,
        /// Whether the read is stale.
        stale: bool,
    },
    /// Another worker holds the task now.
    LeaseLost,
    /// A look at the disk: `stop` when it must end (with its code and reason), `cut` when the
    /// encoder must be killed at once.
    Disk {
        /// Why it must stop.
        stop: Option<(ErrorCode, String)>,
        /// Whether to cut it short.
        cut: bool,
    },
    /// The process is shutting down in `mode`.
    Drain(ShutdownMode),
}

/// What the job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobStep {
    /// Send a command to the recording.
    Send(Command),
    /// Send a Pause or Resume that was given before recording began.
    SendBeforeStart(Command),
    /// Kill the encoder now, keeping what is on disk.
    Cut,
}

/// The record job's flags while its recording runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobSupervisor {
    stop_sent: bool,
    lease_lost: bool,
    handing_over: bool,
    disk_full: Option<(ErrorCode, String)>,
}

impl JobSupervisor {
    /// A job whose recording just started.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether a shutdown in `mode` still has something to do (the select's guard).
    pub(crate) fn drains(&self, mode: ShutdownMode) -> bool {
        !self.stop_sent && mode != ShutdownMode::Finish
    }

    /// Whether the disk's verdict is still wanted (no disk stop yet): the quota is measured
    /// only then.
    pub(crate) fn watches_disk(&self) -> bool {
        self.disk_full.is_none()
    }

    /// Whether the lease was lost (the job then leaves the task to its new worker).
    pub(crate) fn lease_lost(&self) -> bool {
        self.lease_lost
    }

    /// Whether the recording was ended to hand the task over.
    pub(crate) fn handing_over(&self) -> bool {
        self.handing_over
    }

    /// What `input` does.
    pub(crate) fn on(&mut self, input: JobInput) -> Vec<JobStep> {
        match input {
            JobInput::Command { command, status } => vec![forward(status, command)],
            JobInput::CaughtUp { stopped } => {
                self.stop_sent |= stopped;
                Vec::new()
            }
            // The page's own pause/resume may have taken effect while the status was read:
            // then acting on it would undo the page's command; the next beat follows it.
            JobInput::Renewed { stale: true, .. } => Vec::new(),
            // Follow the stored status even if a control message was missed.
            JobInput::Renewed { status, .. } => match status {
                Status::Paused => vec![JobStep::Send(Command::Pause)],
                Status::Recording => vec![JobStep::Send(Command::Resume)],
                Status::Canceled | Status::Finished if !self.stop_sent => {
                    self.stop_sent = true;
                    vec![JobStep::Send(Command::Stop)]
                }
                _ => Vec::new(),
            },
            JobInput::LeaseLost => {
                self.lease_lost = true;
                vec![JobStep::Send(Command::Stop)]
            }
            JobInput::Disk { stop, cut } => {
                let mut steps = Vec::new();
                if self.disk_full.is_none()
                    && let Some((code, why)) = stop
                {
                    warn!(%code, "{why}");
                    self.disk_full = Some((code, why));
                    self.stop_sent = true;
                    steps.push(JobStep::Send(Command::Stop));
                }
                if cut {
                    warn!(
                        "the work disk cannot take the frames still waiting for the encoder; \
                         ending the recording with what is on disk"
                    );
                    self.disk_full
                        .get_or_insert((ErrorCode::DiskFull, DISK_FULL.into()));
                    self.stop_sent = true;
                    steps.push(JobStep::Cut);
                }
                steps
            }
            JobInput::Drain(mode) => {
                if !self.drains(mode) {
                    return Vec::new();
                }
                // End the recording here (its segments complete); `handover` then gives the
                // task to another worker, `stop` delivers what was recorded.
                self.stop_sent = true;
                self.handing_over = mode == ShutdownMode::Handover;
                vec![JobStep::Send(Command::Stop)]
            }
        }
    }
}

/// How a command from the API's control stream reaches the recording: a Pause or Resume for a
/// task still `normal` was given before recording began.
pub(crate) fn forward(status: Status, command: Command) -> JobStep {
    match (status, command) {
        (Status::Normal, Command::Pause | Command::Resume) => JobStep::SendBeforeStart(command),
        _ => JobStep::Send(command),
    }
}

/// The status move a recording event makes (`None`: the status stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventMove {
    /// Recording began: `normal → recording` with the start time (or, after a takeover, the
    /// gap is counted instead).
    Started,
    /// The page paused: `recording → paused`.
    Paused,
    /// The page resumed: `paused → recording`.
    Resumed,
    /// The recording ended itself (limit, page, failure): `→ canceled` with the cancel time.
    EndedItself,
}

/// Which status move `control` (given by `origin`) makes for a task in `status`. Commands
/// from the API moved the status already; the page's own calls, those given before recording
/// began, and the recording's own end move it here.
pub(crate) fn event_move(control: Command, origin: Origin, status: Status) -> Option<EventMove> {
    let moves_status = matches!(origin, Origin::Page | Origin::BeforeStart);
    match control {
        Command::Start => Some(EventMove::Started),
        Command::Pause if moves_status && status == Status::Recording => Some(EventMove::Paused),
        Command::Resume if moves_status && status == Status::Paused => Some(EventMove::Resumed),
        Command::Stop if origin != Origin::Owner && status.is_live() => {
            Some(EventMove::EndedItself)
        }
        _ => None,
    }
}

/// What a job does once its recording ended, before delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRecording {
    /// The lease went to another worker: leave the task alone.
    Abandon,
    /// Hand the task over; `started` when recording had begun (its figures go with it).
    HandOver {
        /// Whether recording had begun.
        started: bool,
    },
    /// Deliver or fail as the outcome says.
    Deliver,
}

/// How a recording ended, as far as the job's end is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Something was recorded.
    Recorded,
    /// Stopped before it began.
    CanceledBeforeStart,
    /// It failed.
    Failed,
}

impl JobSupervisor {
    /// What the job does after its recording `ended`, the task's stored status being `status`
    /// (read again when handing over: a Stop may have come meanwhile).
    pub(crate) fn after(&self, ended: Ended, status: Status) -> AfterRecording {
        if self.lease_lost {
            return AfterRecording::Abandon;
        }
        match ended {
            _ if !self.handing_over => AfterRecording::Deliver,
            Ended::Recorded if status.is_live() => AfterRecording::HandOver { started: true },
            Ended::CanceledBeforeStart if status == Status::Normal => {
                AfterRecording::HandOver { started: false }
            }
            _ => AfterRecording::Deliver,
        }
    }

    /// The error a recorded task is delivered with: the disk's reason if the disk ended it
    /// (whatever failed after), else the recording's failure, else the media a lost machine
    /// took with it.
    pub(crate) fn delivery_error(
        &self,
        failure: Option<(ErrorCode, String)>,
        lost_media: Option<String>,
    ) -> Option<(ErrorCode, String)> {
        self.disk_full
            .clone()
            .or(failure)
            .or_else(|| lost_media.map(|why| (ErrorCode::RecordIncomplete, why)))
    }

    /// The error of a recording cut short for the disk with nothing kept.
    pub(crate) fn nothing_kept(&self) -> (ErrorCode, String) {
        let (code, why) = self
            .disk_full
            .clone()
            .unwrap_or((ErrorCode::DiskFull, "the work disk filled up".into()));
        (code, format!("{why}; nothing of it could be kept"))
    }

    /// The error of a recording that failed with `code` and `message`; a start timeout says
    /// how long the page was waited for (`timeout_message`). The disk's reason comes first:
    /// ended for the disk before anything reached it, that is why.
    pub(crate) fn failure(
        &self,
        code: ErrorCode,
        message: String,
        timeout_message: impl FnOnce() -> String,
    ) -> (ErrorCode, String) {
        self.disk_full.clone().unwrap_or_else(|| match code {
            ErrorCode::StartTimeout => (ErrorCode::StartTimeout, timeout_message()),
            code => (code, message),
        })
    }
}

#[cfg(test)]
mod tests;
