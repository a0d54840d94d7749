//! The memory cap of one recording's browser (`PAGECAST_PAGE_MEMORY_MB`): one page took
//! Chromium to 2.2 GB. Three layers:
//!
//! - a cgroup v2 of its own with `memory.max`, where pagecast may create cgroups (a delegated
//!   subtree: a container's cgroup namespace, a systemd unit with `Delegate=yes`): the kernel
//!   enforces the cap, and its `memory.events` count the processes it killed;
//! - V8's heap limit (`--js-flags=--max-old-space-size`, half the cap): a page
//!   that grows its JavaScript heap crashes its own renderer, which says so on stderr
//!   ("V8 javascript OOM"), counted here;
//! - a watchdog (see `recording`) that sums the memory of the browser's processes (PSS where
//!   readable, else RSS) and ends the recording when it passes the cap, catching memory outside
//!   the JavaScript heap (typed arrays, images, canvases) where no cgroup is available.

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Share of the cap V8's heap may take (the rest is the browser and its helpers, about 350 MB,
/// and memory outside the heap). Half: a page growing its heap then meets V8's limit, a clean
/// and recognisable end, before the watchdog's.
const HEAP_SHARE: (u64, u64) = (1, 2);

/// The Chromium flag capping V8's heap for a `limit_mb` cap (none for no cap).
pub(crate) fn js_flags(limit_mb: u64) -> Option<String> {
    (limit_mb > 0).then(|| {
        format!(
            "--js-flags=--max-old-space-size={}",
            (limit_mb * HEAP_SHARE.0 / HEAP_SHARE.1).max(64)
        )
    })
}

/// Whether a line of Chromium's stderr reports a process running out of memory (V8's
/// "V8 javascript OOM (...)", allocators' "Out of memory").
pub(crate) fn is_oom_line(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("javascript oom") || l.contains("out of memory")
}

/// The process group id in the text of `/proc/<pid>/stat` (the fifth field; the second, the
/// command name, may hold spaces and parentheses).
fn pgid_in_stat(stat: &str) -> Option<u32> {
    stat.rsplit_once(") ")?.1.split(' ').nth(2)?.parse().ok()
}

/// Proportional set size of a process, from `smaps_rollup` (bytes).
fn pss_of(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident set size of a process, from `statm` (bytes): readable where `smaps_rollup` is not
/// (Chromium's sandboxed processes are not dumpable).
fn rss_of(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split(' ').nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

/// Memory of every process in the process group `pgid` (the browser leads its own group, and
/// its helpers stay in it), in bytes.
pub(crate) fn group_memory(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().into_string().ok()?;
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(pid)
        })
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| pgid_in_stat(&s))
                == Some(pgid)
        })
        .filter_map(|pid| pss_of(&pid).or_else(|| rss_of(&pid)))
        .sum()
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` (the `0::` line).
fn own_cgroup(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// The count of `oom_kill` in a `memory.events` file.
fn oom_kills_in(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Where browser cgroups go: this process's cgroup v2, with the memory controller enabled for
/// its children. `None` where that is not possible (cgroup v1, no delegation, no permission).
fn delegated_base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        let root = Path::new("/sys/fs/cgroup");
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let base = root.join(own_cgroup(&own)?.trim_start_matches('/'));
        let controllers = std::fs::read_to_string(base.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return None;
        }
        let subtree = base.join("cgroup.subtree_control");
        let enabled = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|s| s.split_whitespace().any(|c| c == "memory"))
                .unwrap_or(false)
        };
        if !enabled(&subtree) && std::fs::write(&subtree, "+memory").is_err() {
            // A cgroup with processes may not hand controllers to children (the kernel's "no
            // internal processes" rule): move pagecast into a leaf of its own, then enable.
            let leaf = base.join("pagecast");
            std::fs::create_dir_all(&leaf).ok()?;
            std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()).ok()?;
            std::fs::write(&subtree, "+memory").ok()?;
        }
        tracing::info!(cgroup = %base.display(), "browsers' memory is capped by cgroups");
        Some(base)
    })
    .as_deref()
}

/// The names of the browser cgroups of this process that are alive.
static LIVE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// One browser's cgroup with `memory.max`; removed when dropped (once empty).
#[derive(Debug)]
pub(crate) struct MemoryCgroup {
    dir: PathBuf,
    procs: CString,
}

impl MemoryCgroup {
    /// A fresh cgroup capped at `limit_mb` MiB, where cgroups can be made.
    pub(crate) fn create(limit_mb: u64) -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        if limit_mb == 0 {
            return None;
        }
        let base = delegated_base()?;
        sweep(base);
        let name = format!(
            "pagecast-browser-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Self {
            procs: CString::new(
                dir.join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .ok()?,
            dir,
        };
        std::fs::write(cgroup.dir.join("memory.max"), (limit_mb << 20).to_string()).ok()?;
        // No swapping out of the cap (where swap is accounted).
        let _ = std::fs::write(cgroup.dir.join("memory.swap.max"), "0");
        if let Ok(mut live) = LIVE.lock() {
            live.get_or_insert_with(HashSet::new).insert(name);
        }
        Some(cgroup)
    }

    /// Makes `cmd`'s process join this cgroup between fork and exec, so the browser and every
    /// helper it starts are inside from the first instruction.
    pub(crate) fn enter_on_exec(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let procs = self.procs.clone();
        // SAFETY: the closure runs between fork and exec and only calls open(2), write(2) and
        // close(2), which are async-signal-safe; it allocates nothing (the path was prepared
        // before the fork) and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    // "0" moves the writing process. A failure leaves the browser to the
                    // watchdog, like a machine without cgroups.
                    let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
                Ok(())
            });
        }
    }

    /// How many processes the kernel killed in this cgroup for passing its cap.
    pub(crate) fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .map(|e| oom_kills_in(&e))
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Fails while killed processes are still on their way out; the next cgroup this
        // process makes removes it then.
        let _ = std::fs::remove_dir(&self.dir);
        if let (Ok(mut live), Some(name)) = (LIVE.lock(), self.dir.file_name())
            && let Some(live) = live.as_mut()
        {
            live.remove(&*name.to_string_lossy());
        }
    }
}

/// Removes browser cgroups that are done: this process's that are no longer live, and those of
/// processes that are gone (a cgroup still holding processes cannot be removed, so nothing
/// running is touched).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let own = std::process::id();
    let live = LIVE.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pagecast-browser-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let done = if pid == own {
            !live.contains(&name)
        } else {
            !Path::new(&format!("/proc/{pid}")).exists()
        };
        if done {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v8_gets_half_the_cap() {
        assert_eq!(
            js_flags(2048).as_deref(),
            Some("--js-flags=--max-old-space-size=1024")
        );
        assert_eq!(js_flags(0), None);
        assert_eq!(
            js_flags(10).as_deref(),
            Some("--js-flags=--max-old-space-size=64")
        );
    }

    #[test]
    fn chromiums_out_of_memory_lines_are_recognised() {
        assert!(is_oom_line(
            "[30855:30855:1206/130741.846078:ERROR:third_party/blink/renderer/bindings/core/v8/v8_oom.cc:49] V8 javascript OOM (Ineffective mark-compacts near heap limit)."
        ));
        assert!(is_oom_line("FATAL:partition_alloc Out of memory"));
        assert!(!is_oom_line(
            "[ERROR:bus.cc(407)] Failed to connect to the bus"
        ));
    }

    #[test]
    fn proc_and_cgroup_files_are_read() {
        assert_eq!(
            pgid_in_stat("1234 (chromium (x) y) S 1 777 777 0 -1 4194560 ..."),
            Some(777)
        );
        assert_eq!(pgid_in_stat("garbage"), None);
        assert_eq!(
            own_cgroup("12:memory:/x\n0::/system.slice/pagecast.service\n"),
            Some("/system.slice/pagecast.service")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
        assert_eq!(
            oom_kills_in("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kills_in(""), 0);
    }

    #[test]
    fn this_processes_group_has_memory() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert!(group_memory(own) > 1 << 20);
        assert_eq!(group_memory(u32::MAX), 0);
    }
}
