//! The recording's decisions, without a browser: what a crash, a hang, a dead browser, a command,
//! a limit or a failed encoder does to a running recording.
//!
//! [`Supervisor::on`] takes one [`Input`] (something that happened, with its time) and returns
//! the [`Step`]s the engine's loop carries out (reopen the page, relaunch the browser, pause,
//! stop, finish...). The loop (`recording::engine`) only turns events into inputs and steps into
//! actions; every rule (the crash, hang and restart budgets, what a command does while the
//! recording ends, when the limits stop it, how it finishes) is here, unit-tested.
//!
//! Before recording begins (ManualStart), [`StartGate`] decides what a command does.
//!
//! The decisions log why they were taken (no I/O otherwise): the log lines are the same
//! whichever loop feeds the supervisor.

use tracing::{info, warn};

use crate::command::Command;
use crate::error::ErrorCode;

use super::Origin;
use super::memory;

/// Renderer crashes a recording survives; one more ends it with `PageCrashed`.
pub(crate) const MAX_PAGE_CRASHES: u32 = 3;
/// Hangs a recording survives; one more ends it with `PageCrashed`.
pub(crate) const MAX_PAGE_HANGS: u32 = 3;
/// Browser deaths a recording survives; one more ends it with `BrowserFailed`.
pub(crate) const MAX_BROWSER_RESTARTS: u32 = 3;

/// Something that happened to a running recording.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// A command took its turn, given at `at` (wall-clock seconds).
    Command {
        /// Which.
        command: Command,
        /// Who gave it.
        origin: Origin,
        /// When.
        at: f64,
    },
    /// The page's main thread did not answer in time.
    Hang,
    /// The browser uses more memory than the cap (`used_mib`).
    MemoryOver {
        /// Measured use, MiB.
        used_mib: u64,
    },
    /// The page's renderer crashed; `out_of_memory` when the browser said it ran out of memory
    /// (asked only while [`Supervisor::running`]).
    Crash {
        /// Whether it was a lack of memory.
        out_of_memory: bool,
    },
    /// The browser's DevTools connection ended; `out_of_memory` as for [`Input::Crash`].
    BrowserGone {
        /// Whether it was killed for its memory.
        out_of_memory: bool,
    },
    /// The new browser a [`Step::RelaunchBrowser`] asked for has the page, or could not take it
    /// (a browser death: another may be asked for).
    Relaunched(Result<(), (ErrorCode, String)>),
    /// The disk cannot take more: end at once with what is on disk.
    Cut,
    /// The clock moved on: `duration_limit_at` is the instant the duration limit falls on (if
    /// there is one), as the frame pacer counts it.
    Clock {
        /// Now.
        now: f64,
        /// When the duration limit is reached.
        duration_limit_at: Option<f64>,
    },
    /// The encoder or the frame source gave up.
    MediaFailed {
        /// Now.
        now: f64,
        /// The error it ends the recording with.
        code: ErrorCode,
        /// Why.
        why: String,
    },
    /// Whether the recording may finish now: `cut` once the disk cut it short.
    Ready {
        /// Now.
        now: f64,
        /// Whether it was cut.
        cut: bool,
    },
}

/// How a page control's call is answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// It took effect (or was in effect already).
    Done,
    /// It cannot take effect.
    Refused(ErrorCode, String),
    /// Answered, then the page reloads (the answer must reach the page before the reload).
    ThenReload,
}

/// What the engine does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Answer the call that gave the command (if a page gave it).
    Answer(Answer),
    /// Reopen the page in the same browser (after a crash or hang).
    ReopenPage,
    /// Kill the page's renderer (to end a hang, or to free memory).
    CrashRenderer,
    /// Start browser number `n` (counted from 1) and load the page in it; report with
    /// [`Input::Relaunched`].
    RelaunchBrowser(u32),
    /// Pause the timeline at `at`.
    Pause {
        /// When.
        at: f64,
        /// Who asked.
        origin: Origin,
    },
    /// Resume the timeline at `at`.
    Resume {
        /// When.
        at: f64,
        /// Who asked.
        origin: Origin,
    },
    /// Record that a reload took effect (the page reloads through [`Answer::ThenReload`]).
    Refreshed {
        /// When.
        at: f64,
        /// Who asked.
        origin: Origin,
    },
    /// Freeze the timeline at `at`: the recording is ending.
    BeginStop {
        /// The stop point.
        at: f64,
        /// Who ended it.
        origin: Origin,
    },
    /// Write the last slots (as [`Tail`] says), finish the encoder, and end.
    Finish {
        /// The stop point.
        at: f64,
        /// Who ended it.
        origin: Origin,
        /// Which slots are left to write.
        tail: Tail,
    },
}

/// The last slots written when a recording finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Up to the stop point.
    UntilStop,
    /// Exactly this many slots in all (the duration limit's length).
    SlotCount(u64),
    /// None: the disk cannot take them.
    Nothing,
}

/// The counters a recording reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Pauses.
    pub(crate) pauses: u32,
    /// Page reloads.
    pub(crate) refreshes: u32,
    /// Renderer crashes (reopened, or the last one).
    pub(crate) page_crashes: u32,
    /// Hangs.
    pub(crate) page_hangs: u32,
    /// Browser deaths.
    pub(crate) browser_restarts: u32,
}

/// The limits and settings the decisions need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rules {
    /// Wall-clock instant the recording began.
    pub(crate) origin: f64,
    /// The wall-clock limit (pauses included), seconds.
    pub(crate) wall_limit: Option<f64>,
    /// The duration limit in slots, when there is one.
    pub(crate) limit_slots: Option<u64>,
    /// How long after the stop point frames may still arrive, seconds.
    pub(crate) latency: f64,
    /// The memory cap, MiB (for the messages).
    pub(crate) memory_limit_mib: u64,
}

/// The decisions of one running recording.
#[derive(Debug, Clone)]
pub(crate) struct Supervisor {
    rules: Rules,
    paused: bool,
    /// The stop point and who ended it, once it is ending.
    stop: Option<(f64, Origin)>,
    /// Whether [`Step::BeginStop`] was given.
    stopping: bool,
    /// Whether a renderer was killed to end a hang and has not restarted yet.
    hang_pending: bool,
    failure: Option<(ErrorCode, String)>,
    counters: Counters,
}

impl Supervisor {
    /// A recording that began at `rules.origin`.
    pub(crate) fn new(rules: Rules) -> Self {
        Supervisor {
            rules,
            paused: false,
            stop: None,
            stopping: false,
            hang_pending: false,
            failure: None,
            counters: Counters::default(),
        }
    }

    /// The steps as recording begins: paused at once when a Pause came before it began.
    pub(crate) fn begin(&mut self, start_paused: bool) -> Vec<Step> {
        if !start_paused {
            return Vec::new();
        }
        self.paused = true;
        self.counters.pauses += 1;
        vec![Step::Pause {
            at: self.rules.origin,
            origin: Origin::BeforeStart,
        }]
    }

    /// Whether the recording is still running (not ending).
    pub(crate) fn running(&self) -> bool {
        self.stop.is_none()
    }

    /// The failure the recording ends with, if any.
    pub(crate) fn failure(&self) -> Option<&(ErrorCode, String)> {
        self.failure.as_ref()
    }

    /// The counters so far.
    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    /// Ends the recording at `at` with `failure` (the first failure is the one reported).
    fn fail(&mut self, at: f64, code: ErrorCode, why: String) {
        self.failure.get_or_insert((code, why));
        if self.stop.is_none() {
            self.stop = Some((at, Origin::Limit));
        }
    }

    /// What `input` does; `now` is the wall clock.
    pub(crate) fn on(&mut self, input: Input, now: f64) -> Vec<Step> {
        match input {
            Input::Command {
                command,
                origin,
                at,
            } => self.command(command, origin, at),
            Input::Hang => self.hang(now),
            Input::MemoryOver { used_mib } => {
                if !self.running() {
                    return Vec::new();
                }
                warn!(
                    used_mib,
                    limit_mib = self.rules.memory_limit_mib,
                    "the page uses more memory than a recording may; ending the recording"
                );
                let why = memory::message(Some(used_mib), self.rules.memory_limit_mib);
                self.fail(now, ErrorCode::PageOutOfMemory, why);
                // Free the memory at once: the page's renderer goes (and is not reopened).
                vec![Step::CrashRenderer]
            }
            Input::Crash { out_of_memory } => self.crash(out_of_memory, now),
            Input::BrowserGone { out_of_memory } => self.browser_gone(out_of_memory, now),
            Input::Relaunched(Ok(())) => {
                self.hang_pending = false;
                Vec::new()
            }
            Input::Relaunched(Err((_, why))) => self.relaunch_failed(&why, now),
            Input::Cut => {
                if self.running() {
                    warn!("the disk cannot take more: ending the recording with what is on disk");
                    self.stop = Some((now, Origin::Limit));
                }
                Vec::new()
            }
            Input::Clock {
                now,
                duration_limit_at,
            } => self.clock(now, duration_limit_at),
            Input::MediaFailed { now, code, why } => {
                if self.running() {
                    self.fail(now, code, why);
                }
                Vec::new()
            }
            Input::Ready { now, cut } => self.ready(now, cut),
        }
    }

    fn command(&mut self, command: Command, origin: Origin, at: f64) -> Vec<Step> {
        if !self.running() {
            // A page control's Promise settles once its action has taken effect; while the
            // recording ends, nothing more can.
            return vec![Step::Answer(Answer::Refused(
                ErrorCode::InvalidState,
                "the recording is ending".into(),
            ))];
        }
        let mut steps = Vec::new();
        match command {
            Command::Start => {}
            Command::Pause if !self.paused => {
                self.paused = true;
                self.counters.pauses += 1;
                steps.push(Step::Pause { at, origin });
            }
            Command::Resume if self.paused => {
                self.paused = false;
                steps.push(Step::Resume { at, origin });
            }
            // In effect already.
            Command::Pause | Command::Resume => {}
            Command::Refresh => {
                self.counters.refreshes += 1;
                steps.push(Step::Answer(Answer::ThenReload));
                steps.push(Step::Refreshed { at, origin });
                return steps;
            }
            Command::Stop => self.stop = Some((at, origin)),
        }
        steps.push(Step::Answer(Answer::Done));
        steps
    }

    fn hang(&mut self, now: f64) -> Vec<Step> {
        self.counters.page_hangs += 1;
        let hangs = self.counters.page_hangs;
        if hangs > MAX_PAGE_HANGS {
            warn!(
                page_hangs = hangs,
                "the page keeps hanging; ending the recording"
            );
            let why = format!("the page stopped responding {hangs} times");
            self.fail(now, ErrorCode::PageCrashed, why);
            Vec::new()
        } else if self.hang_pending {
            // Restarting the renderer did not report back: open the page again anyway.
            warn!(
                page_hangs = hangs,
                "the page is still unresponsive; reopening it"
            );
            vec![Step::ReopenPage]
        } else {
            warn!(
                page_hangs = hangs,
                "the page's main thread stopped responding; restarting its renderer"
            );
            self.hang_pending = true;
            vec![Step::CrashRenderer]
        }
    }

    fn crash(&mut self, out_of_memory: bool, now: f64) -> Vec<Step> {
        if !self.running() {
            // Ended already (out of memory, say): nothing to reopen.
            return Vec::new();
        }
        if out_of_memory {
            warn!("the page ran out of memory; ending the recording");
            let why = memory::message(None, self.rules.memory_limit_mib);
            self.fail(now, ErrorCode::PageOutOfMemory, why);
            return Vec::new();
        }
        if std::mem::take(&mut self.hang_pending) {
            // The crash that ended a hang: reopen, counted as the hang it was.
            info!(
                page_hangs = self.counters.page_hangs,
                "the hung page's renderer restarted; reopening the page"
            );
            return vec![Step::ReopenPage];
        }
        self.counters.page_crashes += 1;
        let crashes = self.counters.page_crashes;
        if crashes > MAX_PAGE_CRASHES {
            warn!(
                page_crashes = crashes,
                "the page keeps crashing; ending the recording"
            );
            let why = format!("the page crashed {crashes} times");
            self.fail(now, ErrorCode::PageCrashed, why);
            return Vec::new();
        }
        // Content from before the crash stays; the video repeats the last frame until the
        // reopened page paints again.
        warn!(page_crashes = crashes, "the page crashed; reopening it");
        vec![Step::ReopenPage]
    }

    fn browser_gone(&mut self, out_of_memory: bool, now: f64) -> Vec<Step> {
        if !self.running() {
            return Vec::new();
        }
        if out_of_memory {
            // Killed for its memory (a cgroup's cap): a new browser would be too.
            warn!("the browser ran out of memory; ending the recording");
            let why = memory::message(None, self.rules.memory_limit_mib);
            self.fail(now, ErrorCode::PageOutOfMemory, why);
            return Vec::new();
        }
        self.counters.browser_restarts += 1;
        let restarts = self.counters.browser_restarts;
        if restarts > MAX_BROWSER_RESTARTS {
            warn!(
                browser_restarts = restarts,
                "the browser keeps dying; ending the recording"
            );
            let why = format!("the browser died {restarts} times");
            self.fail(now, ErrorCode::BrowserFailed, why);
            return Vec::new();
        }
        // The video repeats the last frame meanwhile, so its length stays true.
        warn!(
            browser_restarts = restarts,
            "the browser died; starting a new one"
        );
        vec![Step::RelaunchBrowser(restarts)]
    }

    /// A new browser that could not take the page (killed while it started or loaded it, say)
    /// is one more browser death, counted once: another is started while the budget lasts.
    fn relaunch_failed(&mut self, why: &str, now: f64) -> Vec<Step> {
        if !self.running() {
            return Vec::new();
        }
        self.counters.browser_restarts += 1;
        let restarts = self.counters.browser_restarts;
        if restarts > MAX_BROWSER_RESTARTS {
            warn!(
                browser_restarts = restarts,
                error = why,
                "no new browser could take the page; ending the recording"
            );
            let why = format!("the browser died {restarts} times; the last new one: {why}");
            self.fail(now, ErrorCode::BrowserFailed, why);
            return Vec::new();
        }
        warn!(
            browser_restarts = restarts,
            error = why,
            "the new browser could not take the page; starting another"
        );
        vec![Step::RelaunchBrowser(restarts)]
    }

    fn clock(&mut self, now: f64, duration_limit_at: Option<f64>) -> Vec<Step> {
        // The duration limit ends the recording at exactly `limit * fps` frames: the timeline
        // is frozen at the limit's instant, so no slot at or beyond it is ever decided.
        if self.running()
            && let Some(at) = duration_limit_at
            && now >= at
        {
            self.stop = Some((at, Origin::Limit));
        }
        if self.running()
            && let Some(limit) = self.rules.wall_limit
        {
            let at = self.rules.origin + limit;
            if now >= at {
                self.stop = Some((at, Origin::Limit));
            }
        }
        match self.stop {
            Some((at, origin)) if !self.stopping => {
                self.stopping = true;
                self.paused = true;
                vec![Step::BeginStop { at, origin }]
            }
            _ => Vec::new(),
        }
    }

    fn ready(&mut self, now: f64, cut: bool) -> Vec<Step> {
        let Some((at, origin)) = self.stop else {
            return Vec::new();
        };
        if !(now >= at + self.rules.latency || cut) {
            return Vec::new();
        }
        let tail = match self.rules.limit_slots {
            _ if cut => Tail::Nothing,
            // Exactly the duration limit's length, unless a failure ended it early.
            Some(l) if origin == Origin::Limit && self.failure.is_none() => Tail::SlotCount(l),
            _ => Tail::UntilStop,
        };
        vec![Step::Finish { at, origin, tail }]
    }
}

/// What a command does while a ManualStart recording waits for `window.startRecord()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Recording begins.
    Begin,
    /// The recording ends before it began (answered first).
    Cancel,
    /// The page reloads (answered first); still waiting.
    Reload,
    /// Still waiting (answered).
    Wait,
}

/// The decisions before a ManualStart recording begins: a Pause or Resume meanwhile decides
/// whether it begins paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartGate {
    /// Whether recording begins paused.
    pub(crate) paused: bool,
}

impl StartGate {
    /// Waiting, paused or not.
    pub(crate) fn new(paused: bool) -> Self {
        StartGate { paused }
    }

    /// What `command` does while waiting.
    pub(crate) fn on(&mut self, command: Command) -> Gate {
        match command {
            Command::Start => Gate::Begin,
            Command::Stop => Gate::Cancel,
            Command::Refresh => Gate::Reload,
            Command::Pause | Command::Resume => {
                self.paused = command == Command::Pause;
                Gate::Wait
            }
        }
    }
}

#[cfg(test)]
mod relaunch_tests;
#[cfg(test)]
mod tests;
