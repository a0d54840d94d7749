//! The frame counters of running recordings (`pagecast_frames_*_total`) move as a recording
//! runs, not only when it ends: each heartbeat adds what the recording did since the previous
//! one, and its end adds the rest. A counter thus shows a long recording's frames all along, and
//! every frame is counted once.

use crate::metrics;

/// A recording's frame counters so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FrameCounts {
    /// Frames Chromium delivered.
    pub(crate) captured: u64,
    /// Output frames written.
    pub(crate) written: u64,
    /// Output frames that repeat the previous one.
    pub(crate) duplicated: u64,
    /// Captured frames skipped.
    pub(crate) dropped: u64,
}

/// What `now` has beyond `before`, per counter (a counter that went back counts 0).
pub(crate) fn delta(before: FrameCounts, now: FrameCounts) -> FrameCounts {
    FrameCounts {
        captured: now.captured.saturating_sub(before.captured),
        written: now.written.saturating_sub(before.written),
        duplicated: now.duplicated.saturating_sub(before.duplicated),
        dropped: now.dropped.saturating_sub(before.dropped),
    }
}

/// What one recording has added to the process's frame counters so far.
#[derive(Debug, Default)]
pub(crate) struct FrameTotals {
    reported: FrameCounts,
}

impl FrameTotals {
    /// Adds the recording's progress since the last call to the frame counters.
    pub(crate) fn advance(&mut self, now: FrameCounts) {
        let d = delta(self.reported, now);
        metrics::add(&metrics::FRAMES_CAPTURED, &[], d.captured as f64);
        metrics::add(&metrics::FRAMES_WRITTEN, &[], d.written as f64);
        metrics::add(&metrics::FRAMES_DUPLICATED, &[], d.duplicated as f64);
        metrics::add(&metrics::FRAMES_DROPPED, &[], d.dropped as f64);
        self.reported = FrameCounts {
            captured: self.reported.captured.max(now.captured),
            written: self.reported.written.max(now.written),
            duplicated: self.reported.duplicated.max(now.duplicated),
            dropped: self.reported.dropped.max(now.dropped),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_is_counted_once() {
        let c = |captured, written| FrameCounts {
            captured,
            written,
            duplicated: 0,
            dropped: 0,
        };
        assert_eq!(delta(c(10, 5), c(25, 9)), c(15, 4));
        assert_eq!(delta(c(10, 5), c(3, 5)), c(0, 0));
        let before = metrics::registry().get(&metrics::FRAMES_WRITTEN, &[]);
        let mut t = FrameTotals::default();
        t.advance(c(30, 30));
        t.advance(c(60, 59));
        // A reading that went back (never expected) adds nothing, and nothing is counted twice.
        t.advance(c(50, 50));
        t.advance(c(61, 61));
        let after = metrics::registry().get(&metrics::FRAMES_WRITTEN, &[]);
        assert!(after - before >= 61.0, "{before} -> {after}");
    }
}
