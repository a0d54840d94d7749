//! The recording side of the memory cap (`PAGECAST_PAGE_MEMORY_MB`, see `browser::memory`):
//! a watchdog on the browser's memory, and telling a crash from running out of memory.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::browser::BrowserSession;
use crate::browser::memory::group_memory;

/// How often the browser's memory is measured.
const EVERY: Duration = Duration::from_secs(1);
/// How long a crash waits for the browser's stderr to say it was a lack of memory (the line
/// and the crash event travel separately).
const REPORT_WAIT: Duration = Duration::from_millis(300);

/// Measures the memory of the browser whose processes form the group `pgid` every second and
/// reports (once) the first measurement above `limit` bytes on `over`.
pub(crate) async fn watch(pgid: u32, limit: u64, over: mpsc::UnboundedSender<u64>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let used = tokio::task::spawn_blocking(move || group_memory(pgid))
            .await
            .unwrap_or(0);
        if used > limit {
            let _ = over.send(used);
            return;
        }
    }
}

/// Whether the browser reported running out of memory since `seen` (which is updated); waits
/// a moment for a report that is on its way.
pub(crate) async fn ran_out(session: &BrowserSession, seen: &mut u64) -> bool {
    let deadline = tokio::time::Instant::now() + REPORT_WAIT;
    loop {
        let now = session.memory_failures();
        if now > *seen {
            *seen = now;
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The task's error message when the page took too much memory (`used_mib` when measured).
pub(crate) fn message(used_mib: Option<u64>, limit_mib: u64) -> String {
    match used_mib {
        Some(used) => format!(
            "the page used {used} MiB of memory, more than a recording may \
             (PAGECAST_PAGE_MEMORY_MB={limit_mib}); the recording was ended there"
        ),
        None => format!(
            "the page ran out of memory (the cap is PAGECAST_PAGE_MEMORY_MB={limit_mib}); the \
             recording was ended there"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_names_the_setting() {
        let m = super::message(Some(2100), 2048);
        assert!(
            m.contains("2100 MiB") && m.contains("PAGECAST_PAGE_MEMORY_MB=2048"),
            "{m}"
        );
        assert!(super::message(None, 512).contains("ran out of memory"));
    }
}
