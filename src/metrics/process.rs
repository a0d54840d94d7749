//! The process's own figures, read from `/proc/self` at each scrape under the conventional
//! names (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...). Chromium and
//! ffmpeg run as child processes: their CPU and memory are not in these figures.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` when encoded (Linux; elsewhere it reports nothing).
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// The figures of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct ProcessFigures {
    /// User plus system CPU time, seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident memory, bytes.
    pub(crate) resident_bytes: f64,
    /// Virtual memory, bytes.
    pub(crate) virtual_bytes: f64,
    /// Open file descriptors.
    pub(crate) open_fds: f64,
    /// Start time, Unix seconds.
    pub(crate) start_time_seconds: f64,
}

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces and
/// parentheses), given clock ticks per second, the page size and the boot time (Unix s).
pub(super) fn parse_stat(
    stat: &str,
    ticks: f64,
    page_size: f64,
    boot_time: f64,
) -> Option<ProcessFigures> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23,
    // rss 24 (1-based, as in proc(5)).
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Some(ProcessFigures {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_size,
        open_fds: 0.0,
    })
}

/// `btime` of `/proc/stat`: the boot time, Unix seconds.
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// This process's figures now.
pub(super) fn read() -> Option<ProcessFigures> {
    // SAFETY: sysconf only reads configuration values.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut figures = parse_stat(&stat, ticks as f64, page as f64, boot_time().unwrap_or(0.0))?;
    figures.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    Some(figures)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(p) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent by this process, in seconds (without Chromium and ffmpeg, its children).",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory of this process, in bytes.",
                p.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory of this process, in bytes.",
                p.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors of this process.",
                p.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of this process, seconds since the Unix epoch.",
                p.start_time_seconds,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_with_an_odd_command_name() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (pagecast (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 \
                    8 0 5000 123456789 2048 18446744073709551615";
        let f = parse_stat(stat, 100.0, 4096.0, 1_700_000_000.0).unwrap();
        assert_eq!(f.cpu_seconds, 4.0);
        assert_eq!(f.start_time_seconds, 1_700_000_050.0);
        assert_eq!(f.virtual_bytes, 123_456_789.0);
        assert_eq!(f.resident_bytes, 2048.0 * 4096.0);
        assert!(parse_stat("garbage", 100.0, 4096.0, 0.0).is_none());
    }

    #[test]
    fn reads_this_process() {
        let f = read().expect("/proc/self is readable");
        assert!(f.resident_bytes > 1e6 && f.open_fds >= 3.0, "{f:?}");
        assert!(f.start_time_seconds > 1_600_000_000.0, "{f:?}");
    }
}
