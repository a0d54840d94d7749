//! The task status machine: the contract's statuses and the one table of legal transitions.
//!
//! ```text
//!   normal ──► recording ◄──► paused
//!     │           │             │
//!     ├───────────┴──► canceled ◄┘          (Stop, the page's stopRecord(), or MaxDurationLimit)
//!     │                   │
//!     │                   ▼
//!     │               transcode ──► upload ──► callback ──► finished
//!     │                   │           │                        ▲
//!     └───────────────────┴───────────┴── (cancel or failure) ─┘
//! ```
//! Stop before recording began moves `normal → canceled` too; such a task then ends with
//! `Result.ErrorCode = Canceled` (see [`super::prestart`]). Every non-final status may go to
//! `finished` (a failure recorded in the result), and to `callback` when a callback still has
//! to report the outcome. A recording whose worker vanished may go back to `normal` to be taken
//! over.

use serde::{Deserialize, Serialize};

use crate::command::Command;

/// The contract's task statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, not recording yet (queued, loading, or waiting for `startRecord()`).
    Normal,
    /// Recording.
    Recording,
    /// Paused.
    Paused,
    /// Recording ended (Stop or the limit); result not produced yet.
    Canceled,
    /// Producing the deliverable.
    Transcode,
    /// Uploading it.
    Upload,
    /// Reporting the result to the callback URL.
    Callback,
    /// Done (successfully or with an error in the result).
    Finished,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 8] = [
        Status::Normal,
        Status::Recording,
        Status::Paused,
        Status::Canceled,
        Status::Transcode,
        Status::Upload,
        Status::Callback,
        Status::Finished,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Normal => "normal",
            Status::Recording => "recording",
            Status::Paused => "paused",
            Status::Canceled => "canceled",
            Status::Transcode => "transcode",
            Status::Upload => "upload",
            Status::Callback => "callback",
            Status::Finished => "finished",
        }
    }

    /// Parses the wire string.
    pub(crate) fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves this status.
    pub(crate) fn is_final(self) -> bool {
        self == Status::Finished
    }

    /// A browser is (or should be) running for the task.
    pub(crate) fn is_live(self) -> bool {
        matches!(self, Status::Recording | Status::Paused)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `from → to` is a legal transition. The only place that decides it.
pub fn can_transition(from: Status, to: Status) -> bool {
    use Status::*;
    match (from, to) {
        (Finished, _) => false,
        (_, Finished) => true,
        (Normal, Recording) => true,
        (Recording, Paused) | (Paused, Recording) => true,
        (Normal | Recording | Paused, Canceled) => true,
        // A worker that vanished mid-recording: the task is queued again to be taken over.
        (Recording | Paused, Normal) => true,
        (Canceled, Transcode) => true,
        (Transcode, Upload) => true,
        // Upload done, or an earlier stage failed and the callback reports it.
        (Normal | Canceled | Transcode | Upload, Callback) => true,
        _ => false,
    }
}

/// What an action asks of a task in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionEffect {
    /// Move to this status.
    Move(Status),
    /// Already in effect: succeed and change nothing.
    AlreadyDone,
    /// A one-off command to the recording worker that leaves the status alone (Refresh).
    Signal,
    /// Pause or Resume before recording began: remembered, and applied as recording begins
    /// (the status stays `normal`; see [`super::prestart`]).
    BeforeStart,
    /// Not allowed in this status.
    NotAllowed,
}

/// What `action` does to a task in `status` (the API's rules; the worker follows the status).
pub fn action_effect(action: Command, status: Status) -> ActionEffect {
    use ActionEffect::*;
    use Status::*;
    let effect = match (action, status) {
        (Command::Pause, Recording) => Move(Paused),
        (Command::Pause, Paused) => AlreadyDone,
        (Command::Resume, Paused) => Move(Recording),
        (Command::Resume, Recording) => AlreadyDone,
        (Command::Pause | Command::Resume, Normal) => BeforeStart,
        // Before recording began: a page already loaded (waiting for startRecord()) reloads.
        (Command::Refresh, Normal | Recording | Paused) => Signal,
        // Before recording began too: the task then ends as `Canceled` through the stages.
        (Command::Stop, Normal | Recording | Paused) => Move(Canceled),
        (Command::Stop, Canceled | Transcode | Upload | Callback | Finished) => AlreadyDone,
        _ => NotAllowed,
    };
    debug_assert!(!matches!(effect, Move(to) if !can_transition(status, to)));
    effect
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn every_pair_is_decided_as_designed() {
        let legal: &[(Status, Status)] = &[
            (Normal, Recording),
            (Normal, Canceled),
            (Normal, Callback),
            (Normal, Finished),
            (Recording, Paused),
            (Recording, Canceled),
            (Recording, Normal),
            (Recording, Finished),
            (Paused, Recording),
            (Paused, Canceled),
            (Paused, Normal),
            (Paused, Finished),
            (Canceled, Transcode),
            (Canceled, Callback),
            (Canceled, Finished),
            (Transcode, Upload),
            (Transcode, Callback),
            (Transcode, Finished),
            (Upload, Callback),
            (Upload, Finished),
            (Callback, Finished),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    can_transition(from, to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn nothing_leaves_finished_and_nothing_moves_backwards_into_recording_from_delivery() {
        for to in Status::ALL {
            assert!(!can_transition(Finished, to));
        }
        for from in [Canceled, Transcode, Upload, Callback] {
            for to in [Normal, Recording, Paused] {
                assert!(!can_transition(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn action_effects() {
        use Command::*;
        assert_eq!(action_effect(Pause, Recording), ActionEffect::Move(Paused));
        assert_eq!(action_effect(Pause, Paused), ActionEffect::AlreadyDone);
        assert_eq!(action_effect(Pause, Normal), ActionEffect::BeforeStart);
        assert_eq!(action_effect(Resume, Normal), ActionEffect::BeforeStart);
        assert_eq!(action_effect(Refresh, Normal), ActionEffect::Signal);
        assert_eq!(action_effect(Pause, Canceled), ActionEffect::NotAllowed);
        assert_eq!(action_effect(Resume, Paused), ActionEffect::Move(Recording));
        assert_eq!(action_effect(Resume, Recording), ActionEffect::AlreadyDone);
        assert_eq!(action_effect(Resume, Finished), ActionEffect::NotAllowed);
        assert_eq!(action_effect(Refresh, Paused), ActionEffect::Signal);
        assert_eq!(action_effect(Stop, Normal), ActionEffect::Move(Canceled));
        assert_eq!(action_effect(Stop, Paused), ActionEffect::Move(Canceled));
        assert_eq!(action_effect(Stop, Upload), ActionEffect::AlreadyDone);
        // Every Move an action asks for is a legal transition.
        for a in [Pause, Resume, Refresh, Stop] {
            for s in Status::ALL {
                if let ActionEffect::Move(to) = action_effect(a, s) {
                    assert!(can_transition(s, to), "{a:?} on {s}");
                }
            }
        }
    }

    #[test]
    fn wire_strings_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("Recording"), None);
    }
}
