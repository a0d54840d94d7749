//! A task before its recording began: how long a ManualStart page may take to call
//! `window.startRecord()`.
//!
//! As in the source product, a ManualStart task has no start deadline of its own: it waits for
//! the page until `MaxDurationLimit`, counted from Start while it waits (once recording begins,
//! the limit counts again from there). The extension `StartTimeout` sets a deadline of its own,
//! counted from the moment the page has loaded.

use std::time::Duration;

use super::model::StartSpec;

/// What bounds a ManualStart task's wait for `window.startRecord()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartBound {
    /// The request's `StartTimeout` (seconds after the page loaded).
    StartTimeout(u32),
    /// `MaxDurationLimit` (seconds after Start).
    MaxDurationLimit(u32),
}

/// How long a ManualStart page may still take to call `window.startRecord()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartWait {
    /// The wait from now.
    pub limit: Duration,
    /// What sets it.
    pub bound: StartBound,
}

impl StartWait {
    /// The wait of a task created at `create_time` (unix seconds), at `now`. At least a second,
    /// so a task taken up late still gives its page a moment.
    pub fn of(spec: &StartSpec, create_time: i64, now: i64) -> StartWait {
        if spec.start_timeout_secs > 0 {
            return StartWait {
                limit: Duration::from_secs(u64::from(spec.start_timeout_secs)),
                bound: StartBound::StartTimeout(spec.start_timeout_secs),
            };
        }
        let waited = u64::try_from(now.saturating_sub(create_time)).unwrap_or(0);
        let left = u64::from(spec.max_duration_secs).saturating_sub(waited);
        StartWait {
            limit: Duration::from_secs(left.max(1)),
            bound: StartBound::MaxDurationLimit(spec.max_duration_secs),
        }
    }

    /// Why the task ended when the page did not start in time (its `Result.ErrorMessage`).
    pub fn timeout_message(&self) -> String {
        match self.bound {
            StartBound::StartTimeout(s) => format!(
                "the page did not call window.startRecord() within StartTimeout ({s} s after it \
                 loaded)"
            ),
            StartBound::MaxDurationLimit(s) => format!(
                "the page did not call window.startRecord() within MaxDurationLimit ({s} s after \
                 Start)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Muxer, OutputTarget, StorageType};

    fn spec(max: u32, start_timeout: u32) -> StartSpec {
        StartSpec {
            record_url: "https://example.org/".into(),
            manual_start: true,
            width: 1280,
            height: 720,
            fps: 30,
            max_duration_secs: max,
            callback_url: None,
            storage_type: StorageType::Local,
            muxer: Muxer::Mp4,
            auth_url: None,
            output: OutputTarget::default(),
            start_timeout_secs: start_timeout,
            user_context: None,
            audio: true,
            capture: None,
            user_agent: None,
        }
    }

    #[test]
    fn without_start_timeout_the_page_has_until_max_duration_limit_after_start() {
        // No deadline of its own: a page may start an hour later if the limit allows.
        let w = StartWait::of(&spec(36_000, 0), 1_000, 1_000);
        assert_eq!(w.limit, Duration::from_secs(36_000));
        assert_eq!(w.bound, StartBound::MaxDurationLimit(36_000));
        // Counted from Start: time spent queued or loading is taken off.
        let w = StartWait::of(&spec(600, 0), 1_000, 1_250);
        assert_eq!(w.limit, Duration::from_secs(350));
        // Taken up after the limit (a long queue): a last second, not a negative wait.
        assert_eq!(
            StartWait::of(&spec(60, 0), 1_000, 9_000).limit,
            Duration::from_secs(1)
        );
        // A clock that went backwards does not lengthen the wait.
        assert_eq!(
            StartWait::of(&spec(60, 0), 1_000, 900).limit,
            Duration::from_secs(60)
        );
        assert!(
            w.timeout_message()
                .contains("MaxDurationLimit (600 s after Start)")
        );
    }

    #[test]
    fn start_timeout_is_a_deadline_of_its_own() {
        let w = StartWait::of(&spec(36_000, 90), 1_000, 1_500);
        assert_eq!(w.limit, Duration::from_secs(90));
        assert_eq!(w.bound, StartBound::StartTimeout(90));
        assert!(w.timeout_message().contains("StartTimeout (90 s"));
    }
}
