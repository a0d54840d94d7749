//! The supervisor's decisions, input by input: every budget boundary, the commands while
//! paused, stopping or ending, the limits, the failures.

use super::*;

const T0: f64 = 1_000.0;

fn rules() -> Rules {
    Rules {
        origin: T0,
        wall_limit: None,
        limit_slots: None,
        latency: 0.5,
        memory_limit_mib: 512,
    }
}

fn sup() -> Supervisor {
    Supervisor::new(rules())
}

fn cmd(command: Command, origin: Origin, at: f64) -> Input {
    Input::Command {
        command,
        origin,
        at,
    }
}

fn clock(s: &mut Supervisor, now: f64) -> Vec<Step> {
    s.on(
        Input::Clock {
            now,
            duration_limit_at: None,
        },
        now,
    )
}

#[test]
fn survives_max_page_crashes_and_fails_on_the_next() {
    let mut s = sup();
    for n in 1..=MAX_PAGE_CRASHES {
        let steps = s.on(
            Input::Crash {
                out_of_memory: false,
            },
            T0 + f64::from(n),
        );
        assert_eq!(steps, vec![Step::ReopenPage], "crash {n}");
        assert!(s.running());
    }
    let steps = s.on(
        Input::Crash {
            out_of_memory: false,
        },
        T0 + 10.0,
    );
    assert!(steps.is_empty());
    assert!(!s.running());
    assert_eq!(
        s.failure(),
        Some(&(ErrorCode::PageCrashed, "the page crashed 4 times".into()))
    );
    assert_eq!(s.counters().page_crashes, MAX_PAGE_CRASHES + 1);
    assert_eq!(
        clock(&mut s, T0 + 10.0),
        vec![Step::BeginStop {
            at: T0 + 10.0,
            origin: Origin::Limit
        }]
    );
}

#[test]
fn a_crash_after_the_stop_reopens_nothing() {
    let mut s = sup();
    s.on(cmd(Command::Stop, Origin::Owner, T0 + 1.0), T0 + 1.0);
    assert!(
        s.on(
            Input::Crash {
                out_of_memory: false
            },
            T0 + 2.0
        )
        .is_empty()
    );
    assert_eq!(s.counters().page_crashes, 0);
    assert_eq!(s.failure(), None);
}

#[test]
fn a_crash_out_of_memory_ends_it_with_page_out_of_memory() {
    let mut s = sup();
    let steps = s.on(
        Input::Crash {
            out_of_memory: true,
        },
        T0 + 3.0,
    );
    assert!(steps.is_empty());
    let (code, why) = s.failure().unwrap().clone();
    assert_eq!(code, ErrorCode::PageOutOfMemory);
    assert!(why.contains("PAGECAST_PAGE_MEMORY_MB=512"), "{why}");
    assert_eq!(s.counters().page_crashes, 0);
}

#[test]
fn a_hang_kills_the_renderer_and_its_crash_reopens_counted_as_the_hang() {
    let mut s = sup();
    assert_eq!(s.on(Input::Hang, T0), vec![Step::CrashRenderer]);
    assert_eq!(
        s.on(
            Input::Crash {
                out_of_memory: false
            },
            T0
        ),
        vec![Step::ReopenPage]
    );
    assert_eq!(s.counters().page_hangs, 1);
    assert_eq!(s.counters().page_crashes, 0);
    // The next crash is a crash again.
    s.on(
        Input::Crash {
            out_of_memory: false,
        },
        T0,
    );
    assert_eq!(s.counters().page_crashes, 1);
}

#[test]
fn a_hang_whose_renderer_does_not_report_back_reopens_anyway() {
    let mut s = sup();
    assert_eq!(s.on(Input::Hang, T0), vec![Step::CrashRenderer]);
    assert_eq!(s.on(Input::Hang, T0 + 1.0), vec![Step::ReopenPage]);
}

#[test]
fn survives_max_page_hangs_and_fails_on_the_next() {
    let mut s = sup();
    for n in 1..=MAX_PAGE_HANGS {
        assert!(!s.on(Input::Hang, T0).is_empty(), "hang {n}");
        s.on(
            Input::Crash {
                out_of_memory: false,
            },
            T0,
        );
        assert!(s.running());
    }
    assert!(s.on(Input::Hang, T0 + 5.0).is_empty());
    assert_eq!(
        s.failure(),
        Some(&(
            ErrorCode::PageCrashed,
            "the page stopped responding 4 times".into()
        ))
    );
    assert!(!s.running());
}

#[test]
fn hangs_after_the_stop_keep_the_first_reason() {
    let mut s = sup();
    s.on(cmd(Command::Stop, Origin::Page, T0 + 1.0), T0 + 1.0);
    for _ in 0..=MAX_PAGE_HANGS {
        s.on(Input::Hang, T0 + 2.0);
    }
    // A stop given first stays the stop; the hangs' failure is reported.
    assert_eq!(s.stop, Some((T0 + 1.0, Origin::Page)));
    assert_eq!(s.failure().unwrap().0, ErrorCode::PageCrashed);
}

#[test]
fn survives_max_browser_restarts_and_fails_on_the_next() {
    let mut s = sup();
    for n in 1..=MAX_BROWSER_RESTARTS {
        let steps = s.on(
            Input::BrowserGone {
                out_of_memory: false,
            },
            T0,
        );
        assert_eq!(steps, vec![Step::RelaunchBrowser(n)]);
        assert!(s.on(Input::Relaunched(Ok(())), T0).is_empty());
    }
    assert!(
        s.on(
            Input::BrowserGone {
                out_of_memory: false
            },
            T0 + 9.0
        )
        .is_empty()
    );
    assert_eq!(
        s.failure(),
        Some(&(ErrorCode::BrowserFailed, "the browser died 4 times".into()))
    );
    assert_eq!(s.stop, Some((T0 + 9.0, Origin::Limit)));
}

#[test]
fn a_relaunch_clears_a_pending_hang() {
    let mut s = sup();
    s.on(Input::Hang, T0);
    s.on(
        Input::BrowserGone {
            out_of_memory: false,
        },
        T0,
    );
    s.on(Input::Relaunched(Ok(())), T0);
    s.on(
        Input::Crash {
            out_of_memory: false,
        },
        T0,
    );
    assert_eq!(
        s.counters().page_crashes,
        1,
        "not taken for the hang's crash"
    );
}

#[test]
fn a_browser_killed_for_memory_is_not_replaced() {
    let mut s = sup();
    assert!(
        s.on(
            Input::BrowserGone {
                out_of_memory: true
            },
            T0
        )
        .is_empty()
    );
    assert_eq!(s.failure().unwrap().0, ErrorCode::PageOutOfMemory);
    assert_eq!(s.counters().browser_restarts, 0);
    // Gone while ending: nothing.
    assert!(
        s.on(
            Input::BrowserGone {
                out_of_memory: false
            },
            T0
        )
        .is_empty()
    );
}

#[test]
fn memory_over_the_cap_ends_it_once_and_frees_the_memory() {
    let mut s = sup();
    assert_eq!(
        s.on(Input::MemoryOver { used_mib: 600 }, T0 + 1.0),
        vec![Step::CrashRenderer]
    );
    let why = &s.failure().unwrap().1;
    assert!(why.contains("600 MiB"), "{why}");
    assert!(
        s.on(Input::MemoryOver { used_mib: 700 }, T0 + 2.0)
            .is_empty()
    );
    assert!(s.failure().unwrap().1.contains("600 MiB"));
}

#[test]
fn pause_and_resume_are_idempotent() {
    let mut s = sup();
    let pause = |s: &mut Supervisor, at| s.on(cmd(Command::Pause, Origin::Owner, at), at);
    let resume = |s: &mut Supervisor, at| s.on(cmd(Command::Resume, Origin::Page, at), at);
    assert_eq!(resume(&mut s, T0), vec![Step::Answer(Answer::Done)]);
    assert_eq!(
        pause(&mut s, T0 + 1.0),
        vec![
            Step::Pause {
                at: T0 + 1.0,
                origin: Origin::Owner
            },
            Step::Answer(Answer::Done)
        ]
    );
    assert_eq!(pause(&mut s, T0 + 2.0), vec![Step::Answer(Answer::Done)]);
    assert_eq!(
        resume(&mut s, T0 + 3.0),
        vec![
            Step::Resume {
                at: T0 + 3.0,
                origin: Origin::Page
            },
            Step::Answer(Answer::Done)
        ]
    );
    assert_eq!(resume(&mut s, T0 + 4.0), vec![Step::Answer(Answer::Done)]);
    assert_eq!(s.counters().pauses, 1);
}

#[test]
fn start_while_recording_is_answered_and_changes_nothing() {
    let mut s = sup();
    assert_eq!(
        s.on(cmd(Command::Start, Origin::Page, T0), T0),
        vec![Step::Answer(Answer::Done)]
    );
    assert!(s.running());
}

#[test]
fn a_refresh_answers_then_reloads_and_is_counted() {
    let mut s = sup();
    assert_eq!(
        s.on(cmd(Command::Refresh, Origin::Owner, T0 + 1.0), T0 + 1.0),
        vec![
            Step::Answer(Answer::ThenReload),
            Step::Refreshed {
                at: T0 + 1.0,
                origin: Origin::Owner
            }
        ]
    );
    assert_eq!(s.counters().refreshes, 1);
}

#[test]
fn begins_paused_when_a_pause_came_before() {
    let mut s = sup();
    assert_eq!(
        s.begin(true),
        vec![Step::Pause {
            at: T0,
            origin: Origin::BeforeStart
        }]
    );
    assert_eq!(s.counters().pauses, 1);
    assert_eq!(
        s.on(cmd(Command::Pause, Origin::Owner, T0 + 1.0), T0 + 1.0),
        vec![Step::Answer(Answer::Done)]
    );
    assert!(sup().begin(false).is_empty());
}

#[test]
fn a_stop_begins_once_then_finishes_after_the_latency() {
    let mut s = sup();
    assert_eq!(
        s.on(cmd(Command::Stop, Origin::Page, T0 + 5.0), T0 + 5.0),
        vec![Step::Answer(Answer::Done)]
    );
    let begin = vec![Step::BeginStop {
        at: T0 + 5.0,
        origin: Origin::Page,
    }];
    assert_eq!(clock(&mut s, T0 + 5.0), begin);
    assert!(clock(&mut s, T0 + 5.1).is_empty(), "once");
    let ready = |s: &mut Supervisor, now| s.on(Input::Ready { now, cut: false }, now);
    assert!(ready(&mut s, T0 + 5.4).is_empty());
    assert_eq!(
        ready(&mut s, T0 + 5.5),
        vec![Step::Finish {
            at: T0 + 5.0,
            origin: Origin::Page,
            tail: Tail::UntilStop
        }]
    );
}

#[test]
fn commands_while_ending_are_refused() {
    let mut s = sup();
    s.on(cmd(Command::Stop, Origin::Owner, T0), T0);
    for c in [
        Command::Pause,
        Command::Resume,
        Command::Refresh,
        Command::Stop,
        Command::Start,
    ] {
        assert_eq!(
            s.on(cmd(c, Origin::Page, T0 + 1.0), T0 + 1.0),
            vec![Step::Answer(Answer::Refused(
                ErrorCode::InvalidState,
                "the recording is ending".into()
            ))],
            "{c:?}"
        );
    }
    assert_eq!(s.stop, Some((T0, Origin::Owner)), "the first stop stays");
}

#[test]
fn the_duration_limit_stops_at_its_instant_with_its_exact_length() {
    let mut s = Supervisor::new(Rules {
        limit_slots: Some(300),
        ..rules()
    });
    let tick = |s: &mut Supervisor, now| {
        s.on(
            Input::Clock {
                now,
                duration_limit_at: Some(T0 + 10.0),
            },
            now,
        )
    };
    assert!(tick(&mut s, T0 + 9.99).is_empty());
    assert_eq!(
        tick(&mut s, T0 + 10.2),
        vec![Step::BeginStop {
            at: T0 + 10.0,
            origin: Origin::Limit
        }]
    );
    assert_eq!(
        s.on(
            Input::Ready {
                now: T0 + 10.6,
                cut: false
            },
            T0 + 10.6
        ),
        vec![Step::Finish {
            at: T0 + 10.0,
            origin: Origin::Limit,
            tail: Tail::SlotCount(300)
        }]
    );
}

#[test]
fn the_duration_limit_while_paused_stops_at_the_pacers_instant() {
    // While paused the pacer moves the limit's instant on; the supervisor uses what the
    // pacer says, and a pause changes nothing about the limit's exact length.
    let mut s = Supervisor::new(Rules {
        limit_slots: Some(30),
        ..rules()
    });
    s.on(cmd(Command::Pause, Origin::Owner, T0 + 0.5), T0 + 0.5);
    let steps = s.on(
        Input::Clock {
            now: T0 + 20.0,
            duration_limit_at: Some(T0 + 25.0),
        },
        T0 + 20.0,
    );
    assert!(steps.is_empty(), "not reached while paused");
    let steps = s.on(
        Input::Clock {
            now: T0 + 26.0,
            duration_limit_at: Some(T0 + 25.0),
        },
        T0 + 26.0,
    );
    assert_eq!(
        steps,
        vec![Step::BeginStop {
            at: T0 + 25.0,
            origin: Origin::Limit
        }]
    );
}

#[test]
fn the_wall_limit_counts_pauses_too() {
    let mut s = Supervisor::new(Rules {
        wall_limit: Some(60.0),
        ..rules()
    });
    s.on(cmd(Command::Pause, Origin::Owner, T0 + 1.0), T0 + 1.0);
    assert!(clock(&mut s, T0 + 59.9).is_empty());
    assert_eq!(
        clock(&mut s, T0 + 61.0),
        vec![Step::BeginStop {
            at: T0 + 60.0,
            origin: Origin::Limit
        }]
    );
}

#[test]
fn a_failure_ends_it_early_without_the_limits_exact_length() {
    let mut s = Supervisor::new(Rules {
        limit_slots: Some(300),
        ..rules()
    });
    s.on(
        Input::MediaFailed {
            now: T0 + 3.0,
            code: ErrorCode::RecordFailed,
            why: "ffmpeg".into(),
        },
        T0 + 3.0,
    );
    clock(&mut s, T0 + 3.0);
    assert_eq!(
        s.on(
            Input::Ready {
                now: T0 + 4.0,
                cut: false
            },
            T0 + 4.0
        ),
        vec![Step::Finish {
            at: T0 + 3.0,
            origin: Origin::Limit,
            tail: Tail::UntilStop
        }]
    );
}

#[test]
fn a_failure_while_stopping_is_not_recorded() {
    let mut s = sup();
    s.on(cmd(Command::Stop, Origin::Owner, T0), T0);
    s.on(
        Input::MediaFailed {
            now: T0 + 0.1,
            code: ErrorCode::RecordFailed,
            why: "late".into(),
        },
        T0 + 0.1,
    );
    assert_eq!(s.failure(), None);
    assert_eq!(s.stop, Some((T0, Origin::Owner)));
}

#[test]
fn a_cut_finishes_at_once_with_nothing_more_written() {
    let mut s = sup();
    s.on(Input::Cut, T0 + 2.0);
    assert_eq!(
        s.on(
            Input::Ready {
                now: T0 + 2.0,
                cut: true
            },
            T0 + 2.0
        ),
        vec![Step::Finish {
            at: T0 + 2.0,
            origin: Origin::Limit,
            tail: Tail::Nothing
        }]
    );
    // A cut during a stop under way also finishes at once.
    let mut s = sup();
    s.on(cmd(Command::Stop, Origin::Owner, T0), T0);
    s.on(Input::Cut, T0 + 0.1);
    assert_eq!(s.stop, Some((T0, Origin::Owner)));
    assert!(matches!(
        s.on(
            Input::Ready {
                now: T0 + 0.1,
                cut: true
            },
            T0 + 0.1
        )[..],
        [Step::Finish {
            tail: Tail::Nothing,
            ..
        }]
    ));
}

#[test]
fn not_ready_before_a_stop() {
    let mut s = sup();
    assert!(
        s.on(
            Input::Ready {
                now: T0 + 100.0,
                cut: false
            },
            T0 + 100.0
        )
        .is_empty()
    );
}

#[test]
fn the_start_gate() {
    let mut g = StartGate::new(false);
    assert_eq!(g.on(Command::Pause), Gate::Wait);
    assert!(g.paused);
    assert_eq!(g.on(Command::Pause), Gate::Wait);
    assert!(g.paused);
    assert_eq!(g.on(Command::Resume), Gate::Wait);
    assert!(!g.paused);
    assert_eq!(g.on(Command::Refresh), Gate::Reload);
    assert_eq!(g.on(Command::Start), Gate::Begin);
    // Stop before start: the recording ends before it began.
    assert_eq!(StartGate::new(true).on(Command::Stop), Gate::Cancel);
}
