//! The browser's restart budget when new browsers die too: a browser killed while it is being
//! started (or while it loads the page) is one death, counted once, and replaced while the
//! budget lasts.

use super::*;

const T0: f64 = 1_000.0;

fn sup() -> Supervisor {
    Supervisor::new(Rules {
        origin: T0,
        wall_limit: None,
        limit_slots: None,
        latency: 0.5,
        memory_limit_mib: 512,
    })
}

fn gone() -> Input {
    Input::BrowserGone {
        out_of_memory: false,
    }
}

fn failed(why: &str) -> Input {
    Input::Relaunched(Err((ErrorCode::PageLoadFailed, why.into())))
}

/// Before the fix a failed relaunch ended the recording at once: the second death (the new
/// browser killed while it loaded the page) ended a recording whose budget is three.
#[test]
fn a_new_browser_killed_while_it_starts_is_one_death_and_is_replaced() {
    let mut s = sup();
    assert_eq!(s.on(gone(), T0), vec![Step::RelaunchBrowser(1)]);
    assert_eq!(
        s.on(failed("the browser went away"), T0 + 1.0),
        vec![Step::RelaunchBrowser(2)],
        "the second death is replaced too"
    );
    assert!(s.running() && s.failure().is_none());
    assert_eq!(s.counters().browser_restarts, 2, "each death counted once");
    assert!(s.on(Input::Relaunched(Ok(())), T0 + 2.0).is_empty());
    // The third death is still within the budget.
    assert_eq!(s.on(gone(), T0 + 5.0), vec![Step::RelaunchBrowser(3)]);
    assert!(s.on(Input::Relaunched(Ok(())), T0 + 6.0).is_empty());
    assert!(s.running());
    // The fourth is one more than the budget.
    assert!(s.on(gone(), T0 + 9.0).is_empty());
    assert_eq!(
        s.failure(),
        Some(&(ErrorCode::BrowserFailed, "the browser died 4 times".into()))
    );
}

#[test]
fn every_death_during_relaunches_counts_once_up_to_the_budget() {
    let mut s = sup();
    let mut steps = s.on(gone(), T0);
    let mut relaunches = Vec::new();
    while let [Step::RelaunchBrowser(n)] = steps.as_slice() {
        relaunches.push(*n);
        steps = s.on(failed("killed while loading"), T0 + f64::from(*n));
    }
    assert_eq!(relaunches, (1..=MAX_BROWSER_RESTARTS).collect::<Vec<_>>());
    assert!(steps.is_empty());
    assert_eq!(s.counters().browser_restarts, MAX_BROWSER_RESTARTS + 1);
    assert_eq!(
        s.failure(),
        Some(&(
            ErrorCode::BrowserFailed,
            "the browser died 4 times; the last new one: killed while loading".into()
        ))
    );
    assert_eq!(
        s.stop,
        Some((T0 + f64::from(MAX_BROWSER_RESTARTS), Origin::Limit))
    );
}

#[test]
fn a_failed_relaunch_after_the_stop_starts_nothing() {
    let mut s = sup();
    assert_eq!(s.on(gone(), T0), vec![Step::RelaunchBrowser(1)]);
    s.on(
        Input::Command {
            command: Command::Stop,
            origin: Origin::Owner,
            at: T0 + 0.5,
        },
        T0 + 0.5,
    );
    assert!(s.on(failed("gone"), T0 + 1.0).is_empty());
    assert!(s.failure().is_none(), "stopped by its owner, not failed");
    assert_eq!(s.counters().browser_restarts, 1);
}
