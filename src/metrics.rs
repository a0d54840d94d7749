//! Prometheus metrics: one process-wide registry, rendered in the text exposition format
//! (version 0.0.4) at `GET /metrics`.
//!
//! The registry is prometheus-client's (`metrics/registry.rs` wraps it); every metric is
//! declared once below as a [`Desc`] (name, help, kind), so the list of what pagecast exports
//! is this file, plus the process figures read at scrape time (`metrics/process.rs`).
//!
//! Values gathered at scrape time from Redis (tasks by status, queue depths) and the work disk
//! are set by the `/metrics` handler just before rendering; everything else is updated where it
//! happens. No label carries a task id.

use std::sync::OnceLock;

mod process;
mod registry;

pub use registry::{CONTENT_TYPE, Registry};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets (bounds in [`Desc::buckets`]).
    Histogram,
}

/// A metric's declaration.
#[derive(Debug)]
pub struct Desc {
    /// The metric name.
    pub(crate) name: &'static str,
    /// One line of help.
    pub(crate) help: &'static str,
    /// Counter, gauge or histogram.
    pub(crate) kind: Kind,
    /// Upper bounds of the histogram buckets, ascending (histograms only).
    pub(crate) buckets: &'static [f64],
}

const fn counter(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: Kind::Counter,
        buckets: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: Kind::Gauge,
        buckets: &[],
    }
}

/// Stage durations run from a fraction of a second (a callback) to hours (a class recording).
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Tasks in Redis by status (label `status`), counted at scrape time.
pub(crate) static TASKS: Desc = gauge("pagecast_tasks", "Tasks stored in Redis, by status");
/// Unacknowledged entries per stage stream (labels `stage`, `node`), at scrape time.
pub(crate) static QUEUE_DEPTH: Desc = gauge(
    "pagecast_queue_depth",
    "Jobs waiting or running in each stage queue (Redis stream entries not yet acknowledged)",
);
/// Callbacks waiting in the outbox for their next attempt, at scrape time.
pub(crate) static CALLBACK_OUTBOX: Desc = gauge(
    "pagecast_callback_outbox",
    "Callbacks waiting in the outbox for their next attempt",
);
/// Start requests that created a task.
pub(crate) static STARTS_ACCEPTED: Desc = counter(
    "pagecast_starts_accepted_total",
    "Start requests that created a task",
);
/// Start requests refused (label `code`).
pub(crate) static STARTS_REJECTED: Desc = counter(
    "pagecast_starts_rejected_total",
    "Start requests refused, by error code",
);
/// Every API request (labels `action`, `code`: `OK` or the error code).
pub static API_REQUESTS: Desc = counter(
    "pagecast_api_requests_total",
    "Action API requests, by action and outcome (OK or the error code)",
);
/// Connections closed at once because their client had too many open.
pub(crate) static CONNECTIONS_REFUSED: Desc = counter(
    "pagecast_http_connections_refused_total",
    "HTTP connections closed at once because their client already had PAGECAST_MAX_CONNECTIONS_PER_CLIENT open",
);
/// Recordings this process runs now.
pub(crate) static RECORDINGS_RUNNING: Desc = gauge(
    "pagecast_recordings_running",
    "Recordings this worker runs now",
);
/// Recordings this process may run at once.
pub(crate) static WORKER_CAPACITY: Desc = gauge(
    "pagecast_worker_capacity",
    "Recordings this worker may run at once",
);
/// Frames captured per second, summed over the running recordings (no per-task label).
pub(crate) static CAPTURE_FPS: Desc = gauge(
    "pagecast_recordings_capture_fps",
    "Frames per second Chromium delivers, summed over the running recordings (divide by pagecast_recordings_running for the mean)",
);
/// The lowest capture rate among the running recordings.
pub(crate) static CAPTURE_FPS_LOWEST: Desc = gauge(
    "pagecast_recordings_capture_fps_lowest",
    "The lowest capture rate (frames per second) among the running recordings",
);
/// Output frames that repeat the previous one, summed over the running recordings.
pub(crate) static RECORDING_DUPLICATED: Desc = gauge(
    "pagecast_recordings_frames_duplicated",
    "Output frames of the running recordings that repeat the previous frame (the page painted nothing new)",
);
/// Captured frames not used, summed over the running recordings.
pub(crate) static RECORDING_DROPPED: Desc = gauge(
    "pagecast_recordings_frames_dropped",
    "Captured frames of the running recordings that were skipped (more frames than the output rate, or too late)",
);
/// Frames captured by finished recordings.
pub(crate) static FRAMES_CAPTURED: Desc = counter(
    "pagecast_frames_captured_total",
    "Frames captured by recordings that ended",
);
/// Output frames written by finished recordings.
pub(crate) static FRAMES_WRITTEN: Desc = counter(
    "pagecast_frames_written_total",
    "Output frames written by recordings that ended",
);
/// Duplicated output frames of finished recordings.
pub(crate) static FRAMES_DUPLICATED: Desc = counter(
    "pagecast_frames_duplicated_total",
    "Output frames that repeat the previous frame, in recordings that ended",
);
/// Dropped frames of finished recordings.
pub(crate) static FRAMES_DROPPED: Desc = counter(
    "pagecast_frames_dropped_total",
    "Captured frames skipped, in recordings that ended",
);
/// Recordings that ended (label `outcome`: `recorded`, `failed`, `canceled`, `handed_over`).
pub(crate) static RECORDINGS_ENDED: Desc = counter(
    "pagecast_recordings_ended_total",
    "Recordings that ended on this worker, by outcome",
);
/// Renderer crashes after which the page was reopened.
pub(crate) static PAGE_CRASHES: Desc = counter(
    "pagecast_page_crashes_total",
    "Times a page's renderer crashed and the page was reopened",
);
/// Page hangs after which the page was reopened.
pub(crate) static PAGE_HANGS: Desc = counter(
    "pagecast_page_hangs_total",
    "Times a page's main thread stopped answering and the page was reopened",
);
/// Browser deaths after which a new Chromium took the page over.
pub(crate) static BROWSER_RESTARTS: Desc = counter(
    "pagecast_browser_restarts_total",
    "Times Chromium died during a recording and a new one reopened the page",
);
/// Recordings continued after their worker stopped (killed, or handed over at shutdown).
pub(crate) static TAKEOVERS: Desc = counter(
    "pagecast_takeovers_total",
    "Recordings this worker continued after the worker recording them stopped",
);
/// Encoder deaths after which a new ffmpeg was started.
pub(crate) static ENCODER_RESTARTS: Desc = counter(
    "pagecast_encoder_restarts_total",
    "Times ffmpeg died during a recording and was restarted",
);
/// Bytes sent to object storage.
pub(crate) static UPLOAD_BYTES: Desc = counter(
    "pagecast_upload_bytes_total",
    "Bytes uploaded to object storage",
);
/// Upload rounds retried after a retryable storage failure.
pub(crate) static UPLOAD_RETRIES: Desc = counter(
    "pagecast_upload_retries_total",
    "Uploads retried after a storage failure (outage, throttling, 5xx)",
);
/// Callback requests sent.
pub(crate) static CALLBACK_ATTEMPTS: Desc =
    counter("pagecast_callback_attempts_total", "Callback requests sent");
/// Callback requests that failed (no answer or non-2xx).
pub(crate) static CALLBACK_FAILURES: Desc = counter(
    "pagecast_callback_failures_total",
    "Callback requests that failed (no answer in time or a non-2xx answer)",
);
/// Tasks that ended with an error (label `code`).
pub(crate) static TASKS_FAILED: Desc = counter(
    "pagecast_tasks_failed_total",
    "Tasks that ended with an error, by error code",
);
/// Running tasks handed back to the queue at shutdown.
pub(crate) static HANDOVERS: Desc = counter(
    "pagecast_handovers_total",
    "Running recordings handed back to the queue at shutdown, for another worker to continue",
);
/// How long each stage took (label `stage`).
pub(crate) static STAGE_SECONDS: Desc = Desc {
    name: "pagecast_stage_duration_seconds",
    help: "Time one job spent in a stage (record: from claim to the end of the recording)",
    kind: Kind::Histogram,
    buckets: DURATION_BUCKETS,
};

/// Request and command latencies: from a fraction of a millisecond (loopback Redis) to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The build (label `version`); always 1.
pub(crate) static BUILD_INFO: Desc = gauge(
    "pagecast_build_info",
    "The pagecast build this process runs (label version); always 1",
);
/// Free bytes on the work directory's disk (worker processes), at scrape time.
pub(crate) static WORK_DISK_FREE: Desc = gauge(
    "pagecast_work_disk_free_bytes",
    "Bytes free for pagecast on the disk of the work directory (processes that run a worker)",
);
/// Action API requests by action, from receipt to answer.
pub(crate) static API_REQUEST_SECONDS: Desc = Desc {
    name: "pagecast_api_request_duration_seconds",
    help: "Time to answer an Action API request, by action (unknown: no known Action named)",
    kind: Kind::Histogram,
    buckets: LATENCY_BUCKETS,
};
/// Task store calls to Redis by operation, retry included.
pub(crate) static REDIS_SECONDS: Desc = Desc {
    name: "pagecast_redis_command_duration_seconds",
    help: "Time of one task store call to Redis (a command, pipeline or script; its retry included), by operation; blocking reads are not included",
    kind: Kind::Histogram,
    buckets: LATENCY_BUCKETS,
};

/// Every metric, in the order `/metrics` lists them.
pub(crate) static ALL: &[&Desc] = &[
    &BUILD_INFO,
    &TASKS,
    &QUEUE_DEPTH,
    &CALLBACK_OUTBOX,
    &STARTS_ACCEPTED,
    &STARTS_REJECTED,
    &API_REQUESTS,
    &CONNECTIONS_REFUSED,
    &RECORDINGS_RUNNING,
    &WORKER_CAPACITY,
    &CAPTURE_FPS,
    &CAPTURE_FPS_LOWEST,
    &RECORDING_DUPLICATED,
    &RECORDING_DROPPED,
    &FRAMES_CAPTURED,
    &FRAMES_WRITTEN,
    &FRAMES_DUPLICATED,
    &FRAMES_DROPPED,
    &RECORDINGS_ENDED,
    &PAGE_CRASHES,
    &ENCODER_RESTARTS,
    &UPLOAD_BYTES,
    &UPLOAD_RETRIES,
    &CALLBACK_ATTEMPTS,
    &CALLBACK_FAILURES,
    &TASKS_FAILED,
    &HANDOVERS,
    &PAGE_HANGS,
    &BROWSER_RESTARTS,
    &TAKEOVERS,
    &STAGE_SECONDS,
    &API_REQUEST_SECONDS,
    &REDIS_SECONDS,
    &WORK_DISK_FREE,
];

/// A series's labels, in declaration order.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// The process-wide registry (with the build's version set, and the process figures).
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let r = Registry::with_collectors(vec![Box::new(process::ProcessCollector)]);
        r.set(&BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        r
    })
}

/// Shorthand for the process-wide registry's [`Registry::inc`].
pub(crate) fn inc(d: &'static Desc, l: &[(&'static str, &str)]) {
    registry().inc(d, l);
}

/// Shorthand for the process-wide registry's [`Registry::add`].
pub(crate) fn add(d: &'static Desc, l: &[(&'static str, &str)], by: f64) {
    registry().add(d, l, by);
}

/// Shorthand for the process-wide registry's [`Registry::set`].
pub(crate) fn set(d: &'static Desc, l: &[(&'static str, &str)], value: f64) {
    registry().set(d, l, value);
}

/// Shorthand for the process-wide registry's [`Registry::observe`].
pub(crate) fn observe(d: &'static Desc, l: &[(&'static str, &str)], value: f64) {
    registry().observe(d, l, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `series` (name and labels as rendered) in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let r = Registry::default();
        r.inc(&STARTS_REJECTED, &[("code", "InvalidParam")]);
        r.inc(&STARTS_REJECTED, &[("code", "InvalidParam")]);
        r.set(&TASKS, &[("status", "recording")], 3.0);
        r.observe(&STAGE_SECONDS, &[("stage", "record")], 0.3);
        r.observe(&STAGE_SECONDS, &[("stage", "record")], 20000.0);
        r.set(&TASKS, &[("status", "a\"b\\c\nd")], 29.5);
        let text = r.render();
        // The names and types of the text format 0.0.4, counters with their `_total`.
        assert!(text.contains("# TYPE pagecast_starts_rejected_total counter\n"));
        assert!(text.contains("# TYPE pagecast_tasks gauge\n"));
        assert!(text.contains("# TYPE pagecast_stage_duration_seconds histogram\n"));
        assert_eq!(
            value(
                &text,
                "pagecast_starts_rejected_total{code=\"InvalidParam\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "pagecast_tasks{status=\"recording\"}"),
            Some(3.0)
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!("pagecast_stage_duration_seconds_bucket{{stage=\"record\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.1"), Some(0.0));
        assert_eq!(bucket("0.5"), Some(1.0));
        assert_eq!(bucket("14400"), Some(1.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            value(
                &text,
                "pagecast_stage_duration_seconds_count{stage=\"record\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "pagecast_tasks{status=\"a\\\"b\\\\c\\nd\"}"),
            Some(29.5)
        );
        // Declared metrics without series still announce themselves.
        assert!(text.contains("# TYPE pagecast_upload_bytes_total counter\n"));
        assert!(text.contains("# TYPE pagecast_redis_command_duration_seconds histogram\n"));
        r.remove(&TASKS, &[("status", "a\"b\\c\nd")]);
        assert!(!r.render().contains("pagecast_tasks{status=\"a"));
        assert_eq!(r.get(&TASKS, &[("status", "recording")]), 3.0);
        assert_eq!(r.get(&STARTS_REJECTED, &[("code", "InvalidParam")]), 2.0);
        // A counter never goes down.
        r.add(&STARTS_REJECTED, &[("code", "InvalidParam")], -5.0);
        assert_eq!(r.get(&STARTS_REJECTED, &[("code", "InvalidParam")]), 2.0);
    }

    #[test]
    fn the_process_registry_has_the_build_and_process_figures() {
        let text = registry().render();
        assert_eq!(
            value(
                &text,
                &format!(
                    "pagecast_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            Some(1.0)
        );
        assert!(value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
        assert!(value(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    }

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut names: Vec<_> = ALL.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for d in ALL {
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
        }
    }
}
