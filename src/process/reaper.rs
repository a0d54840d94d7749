//! Orphans reaped. pagecast makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): helpers
//! that outlive the child that started them (Chromium's zygote and renderers after Chromium was
//! killed, a daemonised PulseAudio) become its children rather than init's, and it reaps those
//! that exit. So none stays a zombie, even when pagecast runs as PID 1 with no init (tini) in
//! front of it, and none is left to an init that does not reap.
//!
//! The process core's own children are waited for by their owners (tokio's `Child`, std's
//! `Child::wait`), which need their exit status: the reaper never waits for them. Every spawn in
//! the core records the child's pid while holding [`OWNED`]'s lock ([`spawn_owned`]), and the
//! reaper holds that lock while it looks for zombies, so a child of the core that exits at once
//! is never taken for an orphan. A recorded pid is forgotten once it is no longer a child of
//! this process (its owner reaped it).
//!
//! Hand-written: no maintained crate reaps only the children it does not own (the reapers of
//! init-like crates wait for any child, which would steal the exit statuses tokio waits for).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Pids of the process core's children that their owners will wait for.
static OWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn owned() -> MutexGuard<'static, BTreeSet<u32>> {
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns with `spawn` and records the child's pid (`pid` of what it returns) before any reaper
/// pass can see it.
pub(crate) fn spawn_owned<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid: impl Fn(&T) -> Option<u32>,
) -> std::io::Result<T> {
    let mut owned = owned();
    let child = spawn()?;
    if let Some(p) = pid(&child) {
        owned.insert(p);
    }
    Ok(child)
}

/// Makes this process a child subreaper and reaps, on every SIGCHLD (and every few seconds, in
/// case a signal was coalesced), the zombie children it does not own. Returns whether the
/// kernel took the subreaper setting (Linux 3.4 and later).
pub fn start() -> bool {
    // SAFETY: prctl(2) with these arguments reads and writes no memory of this process.
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0;
    if !subreaper {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot become a child subreaper: orphaned helpers are left to init"
        );
    }
    tokio::spawn(async {
        let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGCHLD handler: orphans are reaped every 5 s");
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            match sigchld.as_mut() {
                Some(s) => {
                    tokio::select! {
                        _ = s.recv() => {}
                        _ = tick.tick() => {}
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            let reaped = reap_orphans();
            if reaped > 0 {
                tracing::debug!(reaped, "reaped orphaned processes");
            }
        }
    });
    subreaper
}

/// One pass: waits for every zombie child of this process that the core does not own. Returns
/// how many were reaped.
pub fn reap_orphans() -> usize {
    let me = std::process::id();
    let mut owned = owned();
    let children = children_of(me);
    // Owned pids that are no longer children of this process were reaped by their owners.
    owned.retain(|p| children.iter().any(|(c, _)| c == p));
    let mut reaped = 0;
    for pid in orphan_zombies(&children, &owned) {
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            continue;
        };
        let mut status = 0;
        // SAFETY: waitpid(2) writes only to `status`, a local; WNOHANG never blocks. The pid is
        // a zombie child of this process that no owner waits for.
        if unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) } == raw {
            reaped += 1;
        }
    }
    reaped
}

/// The children of `parent` with their state letter (`Z` for a zombie), from `/proc`.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = parse_stat(&stat)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// The state and parent pid in a `/proc/<pid>/stat` line (`pid (comm) S ppid …`; the command
/// name may hold spaces and parentheses, so the fields are read after the last `)`).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The zombies among `children` that no owner waits for.
fn orphan_zombies(children: &[(u32, char)], owned: &BTreeSet<u32>) -> Vec<u32> {
    children
        .iter()
        .filter(|(pid, state)| *state == 'Z' && !owned.contains(pid))
        .map(|(pid, _)| *pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        assert_eq!(
            parse_stat("4242 (chrome) Z 17 4242 4242 0 -1 4228164 0 0"),
            Some(('Z', 17))
        );
        // A name with spaces and parentheses.
        assert_eq!(parse_stat("99 (a (b) c) S 1 99 99 0 -1"), Some(('S', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn only_zombies_nobody_owns_are_reaped() {
        let children = [(10, 'Z'), (11, 'Z'), (12, 'S'), (13, 'R')];
        let owned: BTreeSet<u32> = [11, 12].into();
        assert_eq!(orphan_zombies(&children, &owned), vec![10]);
    }
}
