//! A task before its recording began: how long a ManualStart page may take to call
//! `window.startRecord()`, and how a task stopped meanwhile ends.
//!
//! As in the source product, a ManualStart task has no start deadline of its own, and its
//! `MaxDurationLimit` counts from Start: the task ends at Start + MaxDurationLimit whatever it is
//! doing then, waiting for the page to call `window.startRecord()` (it fails with
//! `StartTimeout`) or recording (it stops there, as at its limit). web-record's recording
//! function, invoked at Start, counted its limit from its own start, before the page loaded,
//! and kept counting through the wait. The extension `StartTimeout` sets a deadline of its own
//! for the wait, counted from the moment the page has loaded.
//!
//! Stop (or Cancel, or the page's `stopRecord()`) before recording began moves the task
//! `normal → canceled`, and it ends through the stages like any other: to `callback` when it
//! has a CallbackURL, then `finished`, with `Result.ErrorCode = Canceled` and no videos. "Before
//! recording began" means the task never got a StartTime: a worker that had already begun
//! capturing when the Stop arrived throws those moments away.

use std::time::Duration;

use super::model::{StartSpec, TaskRecord, TaskResult};
use super::status::Status;
use super::store::{StoreError, TaskStore, Transition};
use crate::error::ErrorCode;

/// What bounds a ManualStart task's wait for `window.startRecord()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartBound {
    /// The request's `StartTimeout` (seconds after the page loaded).
    StartTimeout(u32),
    /// `MaxDurationLimit` (seconds after Start).
    MaxDurationLimit(u32),
}

/// How long a ManualStart page may still take to call `window.startRecord()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartWait {
    /// The wait from the moment the page has loaded (the end instant may cut it short).
    pub(crate) limit: Duration,
    /// What sets it.
    pub(crate) bound: StartBound,
    /// When the task ends (Unix seconds): Start + MaxDurationLimit.
    pub(crate) ends_at: i64,
    /// Its MaxDurationLimit, in seconds.
    max_duration_secs: u32,
}

impl StartWait {
    /// The wait of a task created at `create_time` (unix seconds), at `now`. At least a second,
    /// so a task taken up late still gives its page a moment.
    pub(crate) fn of(spec: &StartSpec, create_time: i64, now: i64) -> StartWait {
        let ends_at = create_time.saturating_add(i64::from(spec.max_duration_secs));
        if spec.start_timeout_secs > 0 {
            return StartWait {
                limit: Duration::from_secs(u64::from(spec.start_timeout_secs)),
                bound: StartBound::StartTimeout(spec.start_timeout_secs),
                ends_at,
                max_duration_secs: spec.max_duration_secs,
            };
        }
        let waited = u64::try_from(now.saturating_sub(create_time)).unwrap_or(0);
        let left = u64::from(spec.max_duration_secs).saturating_sub(waited);
        StartWait {
            limit: Duration::from_secs(left.max(1)),
            bound: StartBound::MaxDurationLimit(spec.max_duration_secs),
            ends_at,
            max_duration_secs: spec.max_duration_secs,
        }
    }

    /// The instant the recording ends at (see [`crate::recording::RecordOptions::ends_at`]),
    /// for a task taken up at `now`: Start + MaxDurationLimit, or a last second for a task
    /// taken up after it (a long queue).
    pub(crate) fn end_instant(&self, now: i64) -> f64 {
        self.ends_at.max(now.saturating_add(1)) as f64
    }

    /// Why the task ended when the page did not start in time (its `Result.ErrorMessage`), at
    /// `now`: the wait ended at StartTimeout or, once Start + MaxDurationLimit has come, there.
    pub(crate) fn timeout_message(&self, now: i64) -> String {
        match self.bound {
            StartBound::StartTimeout(s) if now < self.ends_at => format!(
                "the page did not call window.startRecord() within StartTimeout ({s} s after it \
                 loaded)"
            ),
            _ => format!(
                "the page did not call window.startRecord() within MaxDurationLimit ({} s after \
                 Start)",
                self.max_duration_secs
            ),
        }
    }
}

/// Whether `task` was stopped before its recording began.
pub(crate) fn canceled_before_start(task: &TaskRecord) -> bool {
    task.status == Status::Canceled && task.start_time.is_none()
}

/// The result of a task stopped before its recording began.
pub(crate) fn canceled_result() -> TaskResult {
    TaskResult {
        error_code: Some(ErrorCode::Canceled.as_str().to_string()),
        error_message: Some(
            "the task was stopped before its recording began; nothing was recorded".to_string(),
        ),
        videos: Vec::new(),
    }
}

/// Ends a task stopped before its recording began (in status `canceled`): on to `callback` when
/// it has a CallbackURL, else `finished`, with [`canceled_result`]. The caller adds its lease, if
/// it holds one.
pub(crate) fn end_canceled(task: &TaskRecord, now: i64) -> Transition {
    super::moves::report(
        Status::Canceled,
        task.spec.callback_url.is_some(),
        Some(canceled_result()),
        now,
    )
}

/// After a Stop moved task `id` from `normal` to `canceled` on the API's side: a task no worker
/// holds (still queued) is ended here at once, so its client hears back without waiting for a
/// worker; one a worker holds is ended by that worker. Losing a race with a worker that ends
/// it first is fine.
pub(crate) async fn end_if_unclaimed(
    store: &TaskStore,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let task = store.get(id).await?;
    if !canceled_before_start(&task) || task.owner.is_some() {
        return Ok(());
    }
    match store.transition(id, end_canceled(&task, now)).await {
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::store::{Stage, TimeField};
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
            w.timeout_message(1_600)
                .contains("MaxDurationLimit (600 s after Start)")
        );
        // The task ends at Start + MaxDurationLimit, waiting or recording.
        assert_eq!(w.ends_at, 1_600);
        assert_eq!(w.end_instant(1_250), 1_600.0);
        // Taken up after that instant: a last second.
        assert_eq!(
            StartWait::of(&spec(60, 0), 1_000, 9_000).end_instant(9_000),
            9_001.0
        );
    }

    fn record(status: Status, start_time: Option<i64>, callback: bool) -> TaskRecord {
        let mut spec = spec(60, 0);
        spec.callback_url = callback.then(|| "https://hooks.example.org/cb".to_string());
        TaskRecord {
            id: "t".into(),
            status,
            create_time: 1_000,
            start_time,
            cancel_time: None,
            stop_time: None,
            stop_time_ms: None,
            finish_time: None,
            spec,
            result: None,
            stats: None,
            owner: None,
            fence: 0,
            node: None,
            restarts: 0,
            callback: None,
        }
    }

    #[test]
    fn a_task_stopped_before_it_recorded_ends_canceled_through_the_callback() {
        assert!(canceled_before_start(&record(
            Status::Canceled,
            None,
            false
        )));
        // Stopped after it began: its recording is delivered as usual.
        assert!(!canceled_before_start(&record(
            Status::Canceled,
            Some(1_010),
            false
        )));
        assert!(!canceled_before_start(&record(Status::Normal, None, false)));

        let t = end_canceled(&record(Status::Canceled, None, true), 1_100);
        assert_eq!((t.from, t.to), (Status::Canceled, Status::Callback));
        assert_eq!(t.enqueue.as_ref().map(|q| q.stage), Some(Stage::Callback));
        assert!(t.times.is_empty(), "the callback stage sets FinishTime");
        let result = t.result.clone().unwrap();
        assert_eq!(result.error_code.as_deref(), Some("Canceled"));
        assert!(result.videos.is_empty());
        assert!(t.release_lease);
        assert!(crate::task::can_transition(t.from, t.to));

        let t = end_canceled(&record(Status::Canceled, None, false), 1_100);
        assert_eq!(t.to, Status::Finished);
        assert_eq!(t.times, vec![(TimeField::Finish, 1_100)]);
        assert!(t.enqueue.is_none());
    }

    #[test]
    fn start_timeout_is_a_deadline_of_its_own() {
        let w = StartWait::of(&spec(36_000, 90), 1_000, 1_500);
        assert_eq!(w.limit, Duration::from_secs(90));
        assert_eq!(w.bound, StartBound::StartTimeout(90));
        assert!(w.timeout_message(1_590).contains("StartTimeout (90 s"));
        // MaxDurationLimit still ends the task at Start + MaxDurationLimit, whichever comes first.
        let w = StartWait::of(&spec(60, 90), 1_000, 1_010);
        assert_eq!(w.end_instant(1_010), 1_060.0);
        assert!(w.timeout_message(1_059).contains("StartTimeout (90 s"));
        assert!(
            w.timeout_message(1_060)
                .contains("MaxDurationLimit (60 s after Start)")
        );
    }
}
