//! What a recording continues from when another worker took its task over, and the rules that
//! go with it: how the parts' figures add up, and how many times a task may lose its worker.

use crate::task::{Status, TaskRecord, TaskStats};

use crate::clock::now_s;

/// Times a task's workers may stop (killed, machine lost) with its recording continued
/// elsewhere; the next time it ends with `RecordFailed`. Graceful handovers at shutdown are
/// not counted (`Stats.Handovers`).
pub(crate) const MAX_RESTARTS: u32 = 5;

/// Whether a task taken over after `restarts` stopped workers has spent its budget: it survives
/// [`MAX_RESTARTS`] of them, and fails on the one after.
pub(crate) fn crash_budget_spent(restarts: u32) -> bool {
    restarts > MAX_RESTARTS
}

/// What a takeover continues from: the media the stopped worker completed in this node's work
/// directory (segments are numbered on, so the new recording appends to them) and its figures.
pub(crate) struct Takeover {
    /// The earlier attempts' stats, with `recorded_duration` = the media actually kept.
    pub(crate) base: TaskStats,
    /// Unix seconds: end of the last media kept.
    kept_until: f64,
    /// Seconds of media the stopped worker recorded but never completed (its segment in
    /// progress), counted as missing when the task was paused at the time.
    unfinished: f64,
    /// Whether the task was paused when its worker stopped (the page's life meanwhile is not
    /// part of the video, so it is not missing).
    was_paused: bool,
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Takeover {
    /// What a worker of node `this_node` continues from, with the task's media (if any) in
    /// `work_dir`.
    pub(crate) fn inspect(task: &TaskRecord, work_dir: &std::path::Path, this_node: &str) -> Self {
        let mut base = task.stats.clone().unwrap_or_default();
        let earlier = base.recorded_duration;
        base.recorded_duration = crate::media::segments::completed_seconds(work_dir);
        if base.lost_media.is_none() {
            base.lost_media = lost_media(
                earlier,
                base.recorded_duration,
                task.node.as_deref(),
                this_node,
            );
        }
        let started = task
            .start_time
            .map(|s| s as f64)
            .unwrap_or_else(|| now_s() as f64);
        let kept = base.recorded_duration;
        let points = crate::recording::timeline::read(work_dir);
        let timeline = crate::recording::timeline::wall_at(&points, kept).map(|until| {
            let written = points.last().map_or(kept, |p| p.0);
            (until, (written - kept).max(0.0))
        });
        let (kept_until, unfinished) =
            match (timeline, crate::media::segments::media_times(work_dir)) {
                (Some(t), _) => t,
                // No timeline: the segment list's modification time (late by the encoder's latency).
                (None, Some((completed, last_write))) => {
                    let (c, w) = (unix_secs(completed), unix_secs(last_write));
                    (c, (w - c).max(0.0))
                }
                // The media was on another machine: nothing of it is here. What it recorded is
                // missing too (counted when the task was paused, see `gap`).
                (None, None) => (started, earlier),
            };
        Self {
            base,
            kept_until,
            unfinished,
            was_paused: task.status == Status::Paused,
        }
    }

    /// The gap closed by a recording that resumed at unix time `resumed_at`.
    pub(crate) fn gap(&self, resumed_at: f64) -> crate::task::RecordingGap {
        let seconds = if self.was_paused {
            self.unfinished
        } else {
            (resumed_at - self.kept_until).max(0.0)
        };
        crate::task::RecordingGap {
            time: self.kept_until,
            seconds,
        }
    }
}

/// Why the earlier part of a recording cannot be in its result, if it cannot: none of the
/// `earlier` seconds the stopped workers recorded is `kept` here, or the media was on another
/// node (`media_node`; its work directory is out of reach). `None` when what was recorded is
/// here (a takeover on the same machine only misses the seconds of the gap).
pub(crate) fn lost_media(
    earlier: f64,
    kept: f64,
    media_node: Option<&str>,
    this_node: &str,
) -> Option<String> {
    if kept > 0.0 {
        return None;
    }
    let elsewhere = media_node.filter(|n| *n != this_node);
    if earlier <= 0.0 && elsewhere.is_none() {
        return None;
    }
    let part = if earlier > 0.0 {
        format!("the first {earlier:.1} s of the recording")
    } else {
        "the start of the recording".to_string()
    };
    let lost = match elsewhere {
        Some(node) => format!("{part} stayed on node {node}, whose worker stopped responding"),
        None => format!("{part} could not be recovered after its worker stopped responding"),
    };
    Some(format!(
        "{lost}; node {this_node} continued the recording without it, so the result starts \
         later (the gap is in Stats.Gaps)"
    ))
}

/// The task's figures: the earlier parts' (`base`, from before the takeover) plus this one's.
pub(crate) fn combined(b: &TaskStats, now: &TaskStats) -> TaskStats {
    TaskStats {
        recorded_duration: ((b.recorded_duration + now.recorded_duration) * 1000.0).round()
            / 1000.0,
        frames_captured: b.frames_captured + now.frames_captured,
        frames_written: b.frames_written + now.frames_written,
        frames_duplicated: b.frames_duplicated + now.frames_duplicated,
        frames_dropped: b.frames_dropped + now.frames_dropped,
        pauses: b.pauses + now.pauses,
        refreshes: b.refreshes + now.refreshes,
        callback_attempts: 0,
        page_crashes: b.page_crashes + now.page_crashes,
        page_hangs: b.page_hangs + now.page_hangs,
        browser_restarts: b.browser_restarts + now.browser_restarts,
        encoder_restarts: b.encoder_restarts + now.encoder_restarts,
        lost_seconds: b.lost_seconds + now.lost_seconds,
        gaps: b.gaps.clone(),
        handovers: b.handovers + now.handovers,
        lost_media: b.lost_media.clone().or_else(|| now.lost_media.clone()),
        // The pushes are this worker's (a takeover reconnects them).
        live: if now.live.is_empty() {
            b.live.clone()
        } else {
            now.live.clone()
        },
    }
}

/// The figures of one worker's part of a recording, from its progress.
pub(crate) fn stats_of(p: &crate::recording::Progress) -> TaskStats {
    let s = &p.stats;
    TaskStats {
        recorded_duration: (p.recorded_seconds * 1000.0).round() / 1000.0,
        frames_captured: s.frames_captured,
        frames_written: s.frames_written,
        frames_duplicated: s.frames_duplicated,
        frames_dropped: s.frames_skipped + s.frames_late,
        pauses: p.pauses,
        refreshes: p.refreshes,
        callback_attempts: 0,
        page_crashes: p.page_crashes,
        page_hangs: p.page_hangs,
        browser_restarts: p.browser_restarts,
        encoder_restarts: p.encoder_restarts,
        lost_seconds: p.lost_seconds,
        gaps: Vec::new(),
        handovers: 0,
        lost_media: None,
        live: Vec::new(),
    }
}

/// This worker's part of a recording that ended (without earlier workers' parts).
pub(crate) fn this_part(
    p: &crate::recording::Progress,
    media: &crate::recording::RecordedMedia,
) -> TaskStats {
    stats_of(&ended_progress(p, media))
}

/// The last progress report of a recording, completed with the figures it ended with.
pub(crate) fn ended_progress(
    p: &crate::recording::Progress,
    media: &crate::recording::RecordedMedia,
) -> crate::recording::Progress {
    let mut p = p.clone();
    p.recorded_seconds = media.recorded_seconds;
    p.page_crashes = media.page_crashes;
    p.page_hangs = media.page_hangs;
    p.browser_restarts = media.browser_restarts;
    p.encoder_restarts = media.encoder_restarts;
    p.lost_seconds = media.lost_seconds;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_survives_five_stopped_workers_and_fails_on_the_sixth() {
        assert!((0..=5).all(|r| !crash_budget_spent(r)));
        assert!(crash_budget_spent(6));
        assert_eq!(MAX_RESTARTS, 5, "docs/operations.md says 5");
    }

    #[test]
    fn media_left_on_a_lost_machine_makes_the_result_incomplete() {
        // Continued elsewhere, nothing of the 5.2 s recorded there is here.
        let why = lost_media(5.2, 0.0, Some("node-a"), "node-b").unwrap();
        assert!(
            why.contains("first 5.2 s") && why.contains("node node-a"),
            "{why}"
        );
        assert!(why.contains("node node-b continued"), "{why}");
        // Killed before it reported any progress: still the start is missing.
        assert!(lost_media(0.0, 0.0, Some("node-a"), "node-b").is_some());
        // The same machine, with its media: only the gap is missing.
        assert!(lost_media(5.2, 4.0, Some("node-a"), "node-a").is_none());
        // Media fetched from the bucket onto another machine: nothing is lost.
        assert!(lost_media(5.2, 5.0, Some("node-a"), "node-b").is_none());
        // The same machine, but nothing was kept of what it had recorded.
        assert!(lost_media(3.0, 0.0, Some("node-a"), "node-a").is_some());
        // Nothing was recorded anywhere yet.
        assert!(lost_media(0.0, 0.0, None, "node-a").is_none());
    }

    #[test]
    fn handovers_add_up_across_parts_and_have_no_budget() {
        let earlier = TaskStats {
            recorded_duration: 10.0,
            frames_written: 300,
            handovers: 7,
            gaps: vec![crate::task::RecordingGap {
                time: 1.0,
                seconds: 2.0,
            }],
            ..TaskStats::default()
        };
        let now = TaskStats {
            recorded_duration: 5.5,
            frames_written: 165,
            handovers: 0,
            ..TaskStats::default()
        };
        let all = combined(&earlier, &now);
        assert_eq!(
            (all.recorded_duration, all.frames_written, all.handovers),
            (15.5, 465, 7)
        );
        assert_eq!(all.gaps, earlier.gaps);
        // However many handovers, the budget is about stopped workers only.
        assert!(!crash_budget_spent(0));
    }
}
