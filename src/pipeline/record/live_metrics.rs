//! A recording's figures in the process's aggregate metrics.

use crate::metrics;
use crate::task::TaskStats;

/// Adds the counters of this worker's part of a recording to the totals (the frames it has
/// not added while it ran).
pub(super) fn count_ended(
    s: &TaskStats,
    outcome: &'static str,
    frames: &mut crate::ops::frames::FrameTotals,
) {
    frames.advance(crate::ops::frames::FrameCounts {
        captured: s.frames_captured,
        written: s.frames_written,
        duplicated: s.frames_duplicated,
        dropped: s.frames_dropped,
    });
    metrics::add(&metrics::PAGE_CRASHES, &[], f64::from(s.page_crashes));
    metrics::add(&metrics::PAGE_HANGS, &[], f64::from(s.page_hangs));
    metrics::add(
        &metrics::BROWSER_RESTARTS,
        &[],
        f64::from(s.browser_restarts),
    );
    metrics::add(
        &metrics::ENCODER_RESTARTS,
        &[],
        f64::from(s.encoder_restarts),
    );
    metrics::inc(&metrics::RECORDINGS_ENDED, &[("outcome", outcome)]);
}

/// One running recording's figures in the process's aggregate metrics (no metric carries a
/// task id; per-task figures are in Describe); removed when it ends.
pub(super) struct LiveMetrics {
    live: Option<crate::ops::live::LiveRecording>,
    last: Option<(tokio::time::Instant, u64)>,
    /// What this recording added to the frame counters so far (they move as it runs).
    pub(super) frames: crate::ops::frames::FrameTotals,
}

impl LiveMetrics {
    pub(super) fn new() -> Self {
        LiveMetrics {
            live: Some(crate::ops::live::LiveRecording::start()),
            last: None,
            frames: crate::ops::frames::FrameTotals::default(),
        }
    }

    pub(super) fn update(&mut self, p: &crate::recording::Progress) {
        let now = tokio::time::Instant::now();
        let captured = p.stats.frames_captured;
        let capture_fps = self.last.and_then(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64();
            (secs > 0.0).then(|| captured.saturating_sub(before) as f64 / secs)
        });
        self.last = Some((now, captured));
        self.frames.advance(crate::ops::frames::FrameCounts {
            captured,
            written: p.stats.frames_written,
            duplicated: p.stats.frames_duplicated,
            dropped: p.stats.frames_skipped + p.stats.frames_late,
        });
        if let Some(live) = &self.live {
            live.update(crate::ops::live::Figures {
                capture_fps,
                frames_duplicated: p.stats.frames_duplicated,
                frames_dropped: p.stats.frames_skipped + p.stats.frames_late,
            });
        }
    }

    pub(super) fn finish(&mut self) {
        self.live = None;
    }
}
