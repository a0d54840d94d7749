//! The task's moves: each protocol step as a named, pure function returning the
//! [`Transition`] the store applies. The rules of the wire contract live here, not in callers:
//!
//! - Stop sets CancelTime (set once: the first Stop wins); the end of a recording sets
//!   StopTime; reaching `finished` sets FinishTime;
//! - a failure while the recording is live (`recording`, `paused`) passes through `canceled`
//!   (CancelTime and StopTime), so the status machine is never skipped;
//! - an outcome is reported on the callback stage when the task has a CallbackURL, else the task
//!   is finished at once; either way the worker lets go of it;
//! - `normal → recording` notes the node whose work directory holds the media.
//!
//! Callers add what only they know with the builders (a lease, statistics, a result).

use super::model::{CallbackDelivery, TaskResult};
use super::status::Status;
use super::store::{Stage, StageQueue, TimeField, Transition};
use crate::command::Command;

/// The API's move for a control action (`Stop`, `Pause`, `Resume` moving `from → to`): the
/// recording's worker is told through the control stream; Stop sets CancelTime, and a task
/// that reaches `finished` (stopped before it was ever taken) its FinishTime.
pub(crate) fn control(from: Status, to: Status, command: Command, now: i64) -> Transition {
    let mut t = Transition::new(from, to).with_control(command);
    if command == Command::Stop {
        t = t.with_time(TimeField::Cancel, now);
    }
    if to == Status::Finished {
        t = t.with_time(TimeField::Finish, now);
    }
    t
}

/// The recording ends as canceled (a Stop, the page's `stopRecord()`, a handover nobody took
/// up): CancelTime.
pub(crate) fn cancel(from: Status, now: i64) -> Transition {
    Transition::new(from, Status::Canceled).with_time(TimeField::Cancel, now)
}

/// A failure while live: the recording is canceled and stopped at once (CancelTime, StopTime),
/// before the outcome is reported with [`report`].
pub(crate) fn fail_live(from: Status, now: i64) -> Transition {
    Transition::new(from, Status::Canceled)
        .with_time(TimeField::Cancel, now)
        .with_time(TimeField::Stop, now)
}

/// A step of the recording stage `from → to` with the times the step sets; the start of the
/// recording (`normal → recording`) notes `node`, whose work directory holds the media.
pub(crate) fn record_step(
    from: Status,
    to: Status,
    times: Vec<(TimeField, i64)>,
    node: &str,
) -> Transition {
    let t = Transition::new(from, to).with_times(times);
    if from == Status::Normal && to == Status::Recording {
        t.with_node(node)
    } else {
        t
    }
}

/// The recording is over: on to the transcode stage of `queue` (the node holding the media),
/// with StopTime.
pub(crate) fn to_transcode(from: Status, now: i64, queue: StageQueue) -> Transition {
    Transition::new(from, Status::Transcode)
        .with_time(TimeField::Stop, now)
        .with_enqueue(queue)
}

/// The deliverable is made: on to the upload stage of `queue` with `result` (its files); the
/// transcoding worker lets go.
pub(crate) fn to_upload(result: TaskResult, queue: StageQueue) -> Transition {
    Transition::new(Status::Transcode, Status::Upload)
        .with_result(result)
        .with_enqueue(queue)
        .releasing_lease()
}

/// Reports the outcome of a task at `from`: to `callback` (queued on the callback stage) when it
/// has a CallbackURL, else to `finished` with FinishTime. The worker lets go of it; `result`, if
/// given, replaces the stored one.
pub(crate) fn report(
    from: Status,
    has_callback: bool,
    result: Option<TaskResult>,
    now: i64,
) -> Transition {
    let t = if has_callback {
        Transition::new(from, Status::Callback).with_enqueue(StageQueue::shared(Stage::Callback))
    } else {
        Transition::new(from, Status::Finished).with_time(TimeField::Finish, now)
    };
    let t = t.releasing_lease();
    match result {
        Some(r) => t.with_result(r),
        None => t,
    }
}

/// The callback is over (delivered or given up): `finished` at `finish_time`, the time the
/// callback body showed, with the delivery's state; the worker lets go.
pub(crate) fn callback_done(
    finish_time: i64,
    result: Option<TaskResult>,
    stats: Option<super::model::TaskStats>,
    delivery: CallbackDelivery,
) -> Transition {
    let mut t = Transition::new(Status::Callback, Status::Finished)
        .with_time(TimeField::Finish, finish_time)
        .with_callback(delivery)
        .releasing_lease();
    if let Some(r) = result {
        t = t.with_result(r);
    }
    if let Some(s) = stats {
        t = t.with_stats(s);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskStats;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn stop_sets_cancel_time_and_a_move_to_finished_its_finish_time() {
        let t = control(Status::Recording, Status::Canceled, Command::Stop, NOW);
        assert_eq!(t.control, Some(Command::Stop));
        assert_eq!(t.times, vec![(TimeField::Cancel, NOW)]);
        assert_eq!((t.from, t.to), (Status::Recording, Status::Canceled));
        assert!(t.lease.is_none() && !t.release_lease && t.enqueue.is_none());

        let pause = control(Status::Recording, Status::Paused, Command::Pause, NOW);
        assert!(pause.times.is_empty());
        assert_eq!(pause.control, Some(Command::Pause));

        let finished = control(Status::Normal, Status::Finished, Command::Stop, NOW);
        assert_eq!(
            finished.times,
            vec![(TimeField::Cancel, NOW), (TimeField::Finish, NOW)]
        );
    }

    #[test]
    fn cancel_sets_cancel_time_only() {
        let t = cancel(Status::Normal, NOW);
        assert_eq!((t.from, t.to), (Status::Normal, Status::Canceled));
        assert_eq!(t.times, vec![(TimeField::Cancel, NOW)]);
        assert_eq!(
            t,
            Transition::new(Status::Normal, Status::Canceled).with_time(TimeField::Cancel, NOW)
        );
    }

    #[test]
    fn a_failure_while_live_passes_through_canceled_and_stops() {
        for from in [Status::Recording, Status::Paused] {
            let t = fail_live(from, NOW);
            assert_eq!((t.from, t.to), (from, Status::Canceled));
            assert_eq!(
                t.times,
                vec![(TimeField::Cancel, NOW), (TimeField::Stop, NOW)]
            );
            assert!(
                !t.release_lease,
                "the lease is kept for the report that follows"
            );
        }
    }

    #[test]
    fn only_the_start_of_a_recording_notes_the_node() {
        let start = record_step(
            Status::Normal,
            Status::Recording,
            vec![(TimeField::Start, NOW)],
            "node-a",
        );
        assert_eq!(start.node.as_deref(), Some("node-a"));
        assert_eq!(start.times, vec![(TimeField::Start, NOW)]);
        for (from, to) in [
            (Status::Recording, Status::Paused),
            (Status::Paused, Status::Recording),
            (Status::Recording, Status::Canceled),
        ] {
            let t = record_step(from, to, Vec::new(), "node-a");
            assert_eq!(t.node, None, "{from} -> {to}");
            assert_eq!((t.from, t.to), (from, to));
        }
    }

    #[test]
    fn the_end_of_a_recording_sets_stop_time_and_queues_transcode() {
        let q = StageQueue::on_node(Stage::Transcode, "node-a");
        let t = to_transcode(Status::Canceled, NOW, q.clone());
        assert_eq!((t.from, t.to), (Status::Canceled, Status::Transcode));
        assert_eq!(t.times, vec![(TimeField::Stop, NOW)]);
        assert_eq!(t.enqueue, Some(q));
        assert!(!t.release_lease);
    }

    #[test]
    fn a_made_deliverable_goes_to_upload_and_lets_go() {
        let q = StageQueue::on_node(Stage::Upload, "node-a");
        let result = TaskResult {
            error_code: Some("PageCrashed".into()),
            ..TaskResult::default()
        };
        let t = to_upload(result.clone(), q.clone());
        assert_eq!((t.from, t.to), (Status::Transcode, Status::Upload));
        assert_eq!(t.result, Some(result));
        assert_eq!(t.enqueue, Some(q));
        assert!(t.release_lease && t.times.is_empty());
    }

    #[test]
    fn an_outcome_goes_to_the_callback_stage_or_finishes() {
        let with_cb = report(Status::Canceled, true, None, NOW);
        assert_eq!(with_cb.to, Status::Callback);
        assert_eq!(with_cb.enqueue, Some(StageQueue::shared(Stage::Callback)));
        assert!(
            with_cb.times.is_empty(),
            "FinishTime is set when the callback is over"
        );
        assert!(with_cb.release_lease && with_cb.result.is_none());

        let result = TaskResult::default();
        let without = report(Status::Upload, false, Some(result.clone()), NOW);
        assert_eq!(
            (without.from, without.to),
            (Status::Upload, Status::Finished)
        );
        assert_eq!(without.times, vec![(TimeField::Finish, NOW)]);
        assert_eq!(without.enqueue, None);
        assert_eq!(without.result, Some(result));
        assert!(without.release_lease);
    }

    #[test]
    fn the_end_of_a_callback_finishes_with_its_delivery() {
        let d = CallbackDelivery {
            attempts: 2,
            ..CallbackDelivery::default()
        };
        let t = callback_done(NOW, None, None, d.clone());
        assert_eq!((t.from, t.to), (Status::Callback, Status::Finished));
        assert_eq!(t.times, vec![(TimeField::Finish, NOW)]);
        assert_eq!(t.callback, Some(d.clone()));
        assert!(t.release_lease && t.result.is_none() && t.stats.is_none());

        let stats = TaskStats::default();
        let t = callback_done(NOW, Some(TaskResult::default()), Some(stats.clone()), d);
        assert_eq!(t.result, Some(TaskResult::default()));
        assert_eq!(t.stats, Some(stats));
    }

    #[test]
    fn the_builders_set_every_field() {
        let d = CallbackDelivery::default();
        let t = Transition::new(Status::Recording, Status::Normal)
            .with_lease_of(Some(("w".into(), 3)))
            .with_times([(TimeField::Stop, 1)])
            .with_stats(TaskStats::default())
            .with_node("n")
            .with_callback(d.clone())
            .counting_restart()
            .releasing_lease();
        assert_eq!(t.lease(), Some(&("w".to_string(), 3)));
        assert_eq!((t.from(), t.to()), (Status::Recording, Status::Normal));
        assert_eq!(t.times, vec![(TimeField::Stop, 1)]);
        assert!(t.count_restart && t.release_lease);
        assert_eq!(t.node.as_deref(), Some("n"));
        assert_eq!(t.callback, Some(d));
        assert!(t.stats.is_some());
        assert_eq!(
            Transition::new(Status::Normal, Status::Recording)
                .with_lease_of(None)
                .lease(),
            None
        );
    }
}
