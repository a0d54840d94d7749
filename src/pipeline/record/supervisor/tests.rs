//! The record job's decisions, input by input.

use super::*;
use Status::*;

fn disk(stop: Option<(ErrorCode, &str)>, cut: bool) -> JobInput {
    JobInput::Disk {
        stop: stop.map(|(c, w)| (c, w.to_string())),
        cut,
    }
}

#[test]
fn api_commands_before_start_are_remembered_as_such() {
    assert_eq!(
        forward(Normal, Command::Pause),
        JobStep::SendBeforeStart(Command::Pause)
    );
    assert_eq!(
        forward(Normal, Command::Resume),
        JobStep::SendBeforeStart(Command::Resume)
    );
    assert_eq!(forward(Normal, Command::Stop), JobStep::Send(Command::Stop));
    assert_eq!(
        forward(Normal, Command::Refresh),
        JobStep::Send(Command::Refresh)
    );
    for c in [
        Command::Pause,
        Command::Resume,
        Command::Refresh,
        Command::Stop,
    ] {
        assert_eq!(forward(Recording, c), JobStep::Send(c));
        assert_eq!(forward(Paused, c), JobStep::Send(c));
    }
    let mut s = JobSupervisor::new();
    assert_eq!(
        s.on(JobInput::Command {
            command: Command::Pause,
            status: Normal
        }),
        vec![JobStep::SendBeforeStart(Command::Pause)]
    );
}

#[test]
fn the_heartbeat_follows_the_stored_status_unless_stale() {
    let mut s = JobSupervisor::new();
    let beat = |s: &mut JobSupervisor, status, stale| s.on(JobInput::Renewed { status, stale });
    assert_eq!(
        beat(&mut s, Paused, false),
        vec![JobStep::Send(Command::Pause)]
    );
    assert_eq!(
        beat(&mut s, Recording, false),
        vec![JobStep::Send(Command::Resume)]
    );
    assert!(beat(&mut s, Paused, true).is_empty(), "stale");
    assert!(beat(&mut s, Normal, false).is_empty());
    assert!(beat(&mut s, Transcode, false).is_empty());
    // A stop is sent once.
    assert_eq!(
        beat(&mut s, Canceled, false),
        vec![JobStep::Send(Command::Stop)]
    );
    assert!(beat(&mut s, Canceled, false).is_empty());
    assert!(beat(&mut s, Finished, false).is_empty());
    let mut s = JobSupervisor::new();
    assert_eq!(
        beat(&mut s, Finished, false),
        vec![JobStep::Send(Command::Stop)]
    );
}

#[test]
fn a_stop_caught_up_after_loading_is_not_sent_again() {
    let mut s = JobSupervisor::new();
    s.on(JobInput::CaughtUp { stopped: true });
    assert!(
        s.on(JobInput::Renewed {
            status: Canceled,
            stale: false
        })
        .is_empty()
    );
    assert!(!s.drains(ShutdownMode::Stop));
    let mut s = JobSupervisor::new();
    s.on(JobInput::CaughtUp { stopped: false });
    assert!(s.drains(ShutdownMode::Stop));
}

#[test]
fn a_lost_lease_stops_and_abandons_the_task() {
    let mut s = JobSupervisor::new();
    assert_eq!(
        s.on(JobInput::LeaseLost),
        vec![JobStep::Send(Command::Stop)]
    );
    assert!(s.lease_lost());
    for ended in [Ended::Recorded, Ended::CanceledBeforeStart, Ended::Failed] {
        assert_eq!(s.after(ended, Recording), AfterRecording::Abandon);
    }
}

#[test]
fn the_disk_stops_once_and_its_reason_wins() {
    let mut s = JobSupervisor::new();
    assert!(s.on(disk(None, false)).is_empty());
    assert!(s.watches_disk());
    assert_eq!(
        s.on(disk(Some((ErrorCode::DiskFull, "low")), false)),
        vec![JobStep::Send(Command::Stop)]
    );
    assert!(!s.watches_disk());
    assert!(
        s.on(disk(Some((ErrorCode::RecordFailed, "quota")), false))
            .is_empty()
    );
    assert_eq!(
        s.disk_full.as_ref(),
        Some(&(ErrorCode::DiskFull, "low".into()))
    );
    // A cut after the stop keeps the stop's reason.
    assert_eq!(s.on(disk(None, true)), vec![JobStep::Cut]);
    assert_eq!(
        s.disk_full.as_ref(),
        Some(&(ErrorCode::DiskFull, "low".into()))
    );
    // The disk's reason comes before the recording's failure and the lost media.
    assert_eq!(
        s.delivery_error(Some((ErrorCode::PageCrashed, "x".into())), Some("y".into())),
        Some((ErrorCode::DiskFull, "low".into()))
    );
    assert_eq!(
        s.failure(ErrorCode::StartTimeout, "m".into(), || "t".into()),
        (ErrorCode::DiskFull, "low".into())
    );
    assert_eq!(
        s.nothing_kept(),
        (
            ErrorCode::DiskFull,
            "low; nothing of it could be kept".into()
        )
    );
}

#[test]
fn a_cut_alone_ends_it_with_disk_full() {
    let mut s = JobSupervisor::new();
    assert_eq!(
        s.on(disk(Some((ErrorCode::RecordFailed, "quota")), true)),
        vec![JobStep::Send(Command::Stop), JobStep::Cut]
    );
    assert_eq!(s.disk_full.as_ref().unwrap().0, ErrorCode::RecordFailed);
    let mut s = JobSupervisor::new();
    assert_eq!(s.on(disk(None, true)), vec![JobStep::Cut]);
    assert_eq!(s.disk_full.as_ref().unwrap().0, ErrorCode::DiskFull);
    assert!(!s.drains(ShutdownMode::Handover));
}

#[test]
fn without_the_disk_errors_come_from_the_recording() {
    let s = JobSupervisor::new();
    assert_eq!(s.delivery_error(None, None), None);
    assert_eq!(
        s.delivery_error(None, Some("lost".into())),
        Some((ErrorCode::RecordIncomplete, "lost".into()))
    );
    assert_eq!(
        s.delivery_error(
            Some((ErrorCode::PageCrashed, "c".into())),
            Some("lost".into())
        ),
        Some((ErrorCode::PageCrashed, "c".into()))
    );
    assert_eq!(
        s.failure(ErrorCode::StartTimeout, "engine's".into(), || "waited 30 s"
            .into()),
        (ErrorCode::StartTimeout, "waited 30 s".into())
    );
    assert_eq!(
        s.failure(
            ErrorCode::BrowserFailed,
            "no browser".into(),
            || unreachable!()
        ),
        (ErrorCode::BrowserFailed, "no browser".into())
    );
    assert_eq!(
        s.nothing_kept(),
        (
            ErrorCode::DiskFull,
            "the work disk filled up; nothing of it could be kept".into()
        )
    );
}

#[test]
fn shutdown_modes() {
    let mut s = JobSupervisor::new();
    assert!(!s.drains(ShutdownMode::Finish));
    assert!(s.on(JobInput::Drain(ShutdownMode::Finish)).is_empty());
    assert_eq!(
        s.on(JobInput::Drain(ShutdownMode::Handover)),
        vec![JobStep::Send(Command::Stop)]
    );
    assert!(s.handing_over());
    // Once only.
    assert!(s.on(JobInput::Drain(ShutdownMode::Stop)).is_empty());
    assert!(s.handing_over());

    let mut s = JobSupervisor::new();
    assert_eq!(
        s.on(JobInput::Drain(ShutdownMode::Stop)),
        vec![JobStep::Send(Command::Stop)]
    );
    assert!(!s.handing_over());
    assert_eq!(s.after(Ended::Recorded, Recording), AfterRecording::Deliver);
}

#[test]
fn a_handover_goes_ahead_only_while_the_task_is_still_wanted() {
    let mut s = JobSupervisor::new();
    s.on(JobInput::Drain(ShutdownMode::Handover));
    assert_eq!(
        s.after(Ended::Recorded, Recording),
        AfterRecording::HandOver { started: true }
    );
    assert_eq!(
        s.after(Ended::Recorded, Paused),
        AfterRecording::HandOver { started: true }
    );
    // Stopped meanwhile: delivered as usual.
    assert_eq!(s.after(Ended::Recorded, Canceled), AfterRecording::Deliver);
    assert_eq!(
        s.after(Ended::CanceledBeforeStart, Normal),
        AfterRecording::HandOver { started: false }
    );
    assert_eq!(
        s.after(Ended::CanceledBeforeStart, Canceled),
        AfterRecording::Deliver
    );
    // A failure while stopping for the handover is delivered as a failure.
    assert_eq!(s.after(Ended::Failed, Recording), AfterRecording::Deliver);
}

#[test]
fn event_moves() {
    use Origin::*;
    for origin in [Page, Owner, Limit, BeforeStart] {
        assert_eq!(
            event_move(Command::Start, origin, Normal),
            Some(EventMove::Started)
        );
        assert_eq!(event_move(Command::Refresh, origin, Recording), None);
    }
    // The API moved the status itself for its own commands.
    assert_eq!(event_move(Command::Pause, Owner, Recording), None);
    assert_eq!(event_move(Command::Resume, Owner, Paused), None);
    assert_eq!(event_move(Command::Pause, Limit, Recording), None);
    for origin in [Page, BeforeStart] {
        assert_eq!(
            event_move(Command::Pause, origin, Recording),
            Some(EventMove::Paused)
        );
        assert_eq!(event_move(Command::Pause, origin, Paused), None);
        assert_eq!(
            event_move(Command::Resume, origin, Paused),
            Some(EventMove::Resumed)
        );
        assert_eq!(event_move(Command::Resume, origin, Recording), None);
    }
    assert_eq!(event_move(Command::Stop, Owner, Recording), None);
    for origin in [Page, Limit, BeforeStart] {
        assert_eq!(
            event_move(Command::Stop, origin, Recording),
            Some(EventMove::EndedItself)
        );
        assert_eq!(
            event_move(Command::Stop, origin, Paused),
            Some(EventMove::EndedItself)
        );
        assert_eq!(event_move(Command::Stop, origin, Canceled), None);
        assert_eq!(event_move(Command::Stop, origin, Normal), None);
    }
}
