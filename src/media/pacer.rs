//! Turns screencast frames, which arrive whenever Chromium repaints and stamped with the time they
//! were painted, into a constant-frame-rate sequence.
//!
//! The output is a grid of slots `k = 0, 1, 2, ...`; slot `k` stands for recorded time `k / fps`
//! and for the paint-clock instant `origin + paused + k / fps`, where `paused` is the total time
//! spent paused before it. Each slot shows the frame painted nearest to that instant (never a frame
//! older than the one before it, never one more than half a slot in the future). A slot is decided
//! only once `latency` has passed after its instant, so frames that reach us late still land in
//! the right slot: a stall in the pipe does not turn into a freeze followed by a burst.
//!
//! Slot instants are computed from the slot index (not by adding periods), so the output length
//! equals the recorded wall-clock time with no accumulated rounding error. When the page paints
//! nothing, slots repeat the previous frame; when it paints faster than `fps`, the extra frames
//! are skipped.

use std::collections::VecDeque;

use super::delta::Held;

/// One captured frame: its picture (JPEG, or raw from the X server) and the paint-clock time
/// (seconds since the epoch).
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// When Chromium painted it.
    pub(crate) painted_at: f64,
    /// The picture: raw ones wait here as their differences from the one before, half a
    /// second's worth of them (`latency`).
    pub(crate) image: Held,
}

/// Counters describing how frames were used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PacerStats {
    /// Frames received from the browser.
    pub frames_captured: u64,
    /// Slots written to the encoder (= output frames).
    pub frames_written: u64,
    /// Slots that repeated the previous frame because nothing new was painted.
    pub frames_duplicated: u64,
    /// Frames never shown because a newer frame was nearer to the slot (page painted faster than fps).
    pub frames_skipped: u64,
    /// Frames that arrived after their slot had already been written.
    pub frames_late: u64,
    /// Frames painted while the recording was paused or before it started.
    pub(crate) frames_outside_recording: u64,
}

/// A frame chosen for one slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotFrame {
    /// Slot index (output frame number).
    pub(crate) slot: u64,
    /// The paint-clock instant the slot stands for (its sound starts there).
    pub(crate) instant: f64,
    /// The picture.
    pub(crate) image: Held,
}

/// The pacing state machine. Pure: time is passed in, nothing is read from clocks.
#[derive(Debug)]
pub(crate) struct FramePacer {
    fps: u32,
    origin: f64,
    latency: f64,
    /// Before the first slot is written, a frame painted before `origin` may stand in for it only
    /// after this long (ManualStart: prefer the first frame painted after the start call).
    preroll_grace: f64,
    paused_total: f64,
    paused_since: Option<f64>,
    next_slot: u64,
    /// The frame most recently written.
    current: Option<Frame>,
    /// The newest frame painted before `origin`.
    preroll: Option<Frame>,
    /// Frames not yet shown, ordered by paint time.
    pending: VecDeque<Frame>,
    stats: PacerStats,
}

impl FramePacer {
    /// A pacer whose slot 0 is at paint-clock time `origin`.
    pub(crate) fn new(fps: u32, origin: f64, latency: f64, preroll_grace: f64) -> Self {
        Self {
            fps: fps.max(1),
            origin,
            latency,
            preroll_grace,
            paused_total: 0.0,
            paused_since: None,
            next_slot: 0,
            current: None,
            preroll: None,
            pending: VecDeque::new(),
            stats: PacerStats::default(),
        }
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Output frames written so far.
    pub(crate) fn slots_written(&self) -> u64 {
        self.next_slot
    }

    /// Recorded time (pauses excluded) at paint-clock time `now`, in seconds.
    pub(crate) fn recorded_at(&self, now: f64) -> f64 {
        let end = self.paused_since.unwrap_or(now).min(now);
        (end - self.origin - self.paused_total).max(0.0)
    }

    /// The paint-clock instant at which recorded time reaches `recorded`, given no further pauses.
    pub(crate) fn instant_of(&self, recorded: f64) -> f64 {
        self.origin + self.paused_total + recorded
    }

    fn slot_instant(&self, slot: u64) -> f64 {
        self.origin + self.paused_total + slot as f64 / f64::from(self.fps)
    }

    fn half_period(&self) -> f64 {
        0.5 / f64::from(self.fps)
    }

    /// Accepts a frame from the browser.
    pub(crate) fn push(&mut self, frame: Frame) {
        self.stats.frames_captured += 1;
        if frame.painted_at < self.origin {
            if self
                .preroll
                .as_ref()
                .is_none_or(|p| p.painted_at <= frame.painted_at)
            {
                if self.preroll.is_some() {
                    self.stats.frames_outside_recording += 1;
                }
                self.preroll = Some(frame);
            } else {
                self.stats.frames_outside_recording += 1;
            }
            return;
        }
        if self.next_slot > 0 {
            let last_instant = self.slot_instant(self.next_slot - 1);
            if frame.painted_at <= last_instant && self.paused_since.is_none() {
                // Its slot is gone. It is still the newest content, so later slots may show it.
                self.stats.frames_late += 1;
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.painted_at < frame.painted_at)
                {
                    self.pending.push_front(frame);
                }
                return;
            }
        }
        // Frames nearly always arrive in paint order; keep `pending` sorted when they do not.
        let at = self
            .pending
            .iter()
            .rposition(|f| f.painted_at <= frame.painted_at)
            .map_or(0, |i| i + 1);
        self.pending.insert(at, frame);
    }

    /// Pauses at paint-clock time `at`. Slots at or after `at` are not written until resume.
    pub(crate) fn pause(&mut self, at: f64) {
        if self.paused_since.is_some() {
            return;
        }
        // Slots already written cannot be taken back: never pause before the last one.
        let floor = if self.next_slot > 0 {
            self.slot_instant(self.next_slot - 1)
        } else {
            self.origin
        };
        self.paused_since = Some(at.max(floor));
    }

    /// Resumes at paint-clock time `at`; recorded time continues where it stopped.
    pub(crate) fn resume(&mut self, at: f64) {
        if let Some(since) = self.paused_since.take() {
            self.paused_total += (at - since).max(0.0);
        }
    }

    /// Decides every slot whose instant is at least `latency` before `now`.
    pub(crate) fn due(&mut self, now: f64) -> Vec<SlotFrame> {
        let mut out = Vec::new();
        loop {
            let instant = self.slot_instant(self.next_slot);
            if instant + self.latency > now {
                break;
            }
            if self.paused_since.is_some_and(|p| instant >= p) {
                break;
            }
            match self.fill_slot(instant, now) {
                Some(slot) => out.push(slot),
                None => break,
            }
        }
        out
    }

    /// Ends the recording at paint-clock time `at` (or at the pause point if paused): decides all
    /// remaining slots up to it using whatever frames have arrived. Returns them.
    pub(crate) fn finish(&mut self, at: f64) -> Vec<SlotFrame> {
        let end = self.paused_since.unwrap_or(at);
        let recorded = (end - self.origin - self.paused_total).max(0.0);
        let total = (recorded * f64::from(self.fps)).round() as u64;
        self.finish_at_slot_count(total)
    }

    /// Ends the recording after exactly `total` output frames (e.g. `duration * fps`).
    pub(crate) fn finish_at_slot_count(&mut self, total: u64) -> Vec<SlotFrame> {
        let mut out = Vec::new();
        while self.next_slot < total {
            let instant = self.slot_instant(self.next_slot);
            match self.fill_slot(instant, f64::INFINITY) {
                Some(slot) => out.push(slot),
                None => break, // no frame ever arrived: nothing can be written
            }
        }
        out
    }

    fn fill_slot(&mut self, instant: f64, now: f64) -> Option<SlotFrame> {
        // The newest pending frame painted at or before the instant...
        let mut before: Option<Frame> = None;
        while self
            .pending
            .front()
            .is_some_and(|f| f.painted_at <= instant)
        {
            if let Some(prev) = before.replace(self.pending.pop_front()?) {
                self.count_unshown(&prev);
            }
        }
        // ...or the first one after it, if that is nearer and less than half a slot ahead.
        let after_is_nearer = self.pending.front().is_some_and(|a| {
            let ahead = a.painted_at - instant;
            ahead < self.half_period()
                && ahead
                    < instant
                        - before
                            .as_ref()
                            .or(self.current.as_ref())
                            .map_or(f64::NEG_INFINITY, |b| b.painted_at)
        });
        let chosen = if after_is_nearer {
            if let Some(prev) = before.take() {
                self.count_unshown(&prev);
            }
            self.pending.pop_front()
        } else {
            before
        };

        let (frame, duplicate) = match (chosen, &self.current) {
            (Some(f), _) => (f, false),
            (None, Some(c)) => (c.clone(), true),
            (None, None) => {
                // Nothing written yet. Prefer the first frame painted after the start; fall back to
                // the last one painted before it once the grace period is over.
                if let Some(first) = self.pending.pop_front() {
                    (first, false)
                } else if self.preroll.is_some()
                    && now >= instant + self.preroll_grace.max(self.latency)
                {
                    (self.preroll.take()?, false)
                } else {
                    return None;
                }
            }
        };
        if duplicate {
            self.stats.frames_duplicated += 1;
        }
        self.stats.frames_written += 1;
        let slot = SlotFrame {
            slot: self.next_slot,
            instant,
            image: frame.image.clone(),
        };
        self.current = Some(frame);
        self.next_slot += 1;
        Some(slot)
    }

    fn count_unshown(&mut self, frame: &Frame) {
        if self.paused_since.is_some() || self.paused_frame(frame) {
            self.stats.frames_outside_recording += 1;
        } else {
            self.stats.frames_skipped += 1;
        }
    }

    /// Whether a frame was painted during a pause that has since ended (between the last written
    /// slot and the resume point).
    fn paused_frame(&self, frame: &Frame) -> bool {
        self.next_slot > 0
            && self.paused_total > 0.0
            && frame.painted_at < self.slot_instant(self.next_slot) - 1.0 / f64::from(self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(t: f64, id: u8) -> Frame {
        Frame {
            painted_at: t,
            image: Held::whole(Arc::from(vec![id])),
        }
    }

    fn ids(slots: &[SlotFrame]) -> Vec<u8> {
        slots.iter().map(|s| s.image.image()[0]).collect()
    }

    const T0: f64 = 1_700_000_000.0;

    #[test]
    fn static_page_is_repeated_to_full_length() {
        let mut p = FramePacer::new(30, T0, 0.2, 0.0);
        p.push(frame(T0 - 0.5, 1)); // painted before the start: the page's current look
        let mut slots = p.due(T0 + 5.0);
        slots.extend(p.finish(T0 + 10.0));
        assert_eq!(slots.len(), 300, "10 s at 30 fps");
        assert!(slots.iter().all(|s| s.image.image()[0] == 1));
        assert_eq!(p.stats().frames_duplicated, 299);
    }

    #[test]
    fn fast_painting_keeps_the_nearest_frame_per_slot() {
        let mut p = FramePacer::new(30, T0, 0.2, 0.0);
        // 60 Hz paints offset by 4 ms from the slot grid.
        for i in 0..120u32 {
            p.push(frame(T0 + 0.004 + f64::from(i) / 60.0, (i % 250) as u8));
        }
        let slots = p.finish(T0 + 2.0);
        assert_eq!(slots.len(), 60);
        // Slot k (at k/30 s) is nearest to paint 2k (at 2k/60 + 4 ms).
        for (k, s) in slots.iter().enumerate() {
            assert_eq!(
                u32::from(s.image.image()[0]),
                (2 * k as u32) % 250,
                "slot {k}"
            );
        }
        assert_eq!(p.stats().frames_duplicated, 0);
        assert!(p.stats().frames_skipped >= 58);
    }

    #[test]
    fn late_frames_still_land_in_their_slot() {
        let mut p = FramePacer::new(10, T0, 0.5, 0.0);
        p.push(frame(T0, 0));
        // A stall: frames painted at 0.1..0.4 arrive only at 0.45 s. Nothing is decided before.
        assert!(p.due(T0 + 0.45).is_empty());
        for i in 1..=4 {
            p.push(frame(T0 + f64::from(i) * 0.1, i as u8));
        }
        let slots = p.due(T0 + 0.95);
        assert_eq!(ids(&slots), vec![0, 1, 2, 3, 4], "no freeze, no burst");
    }

    #[test]
    fn pause_resume_leaves_no_gap() {
        let mut p = FramePacer::new(10, T0, 0.0, 0.0);
        for i in 0..100u32 {
            p.push(frame(T0 + f64::from(i) * 0.1, i as u8));
        }
        let mut slots = p.due(T0 + 1.0); // slots 0..=10 (instants 0.0..=1.0)
        assert_eq!(slots.len(), 11);
        p.pause(T0 + 1.05);
        assert!(
            p.due(T0 + 3.0).is_empty(),
            "nothing is written while paused"
        );
        p.resume(T0 + 3.05);
        slots.extend(p.finish(T0 + 5.0));
        // Recorded time: 1.05 s before the pause + 1.95 s after = 3.0 s -> 30 frames.
        assert_eq!(slots.len(), 30);
        let shown = ids(&slots);
        // Right after the pause the content jumps from the pre-pause frame to the post-resume one.
        assert_eq!(&shown[9..13], &[9, 10, 31, 32]);
        assert!(
            slots.windows(2).all(|w| w[1].slot == w[0].slot + 1),
            "slot numbers are contiguous"
        );
        assert!(p.stats().frames_outside_recording >= 19, "{:?}", p.stats());
        assert!((p.recorded_at(T0 + 5.0) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn manual_start_waits_for_a_frame_painted_after_the_start() {
        let mut p = FramePacer::new(10, T0, 0.1, 1.0);
        p.push(frame(T0 - 0.2, 7)); // red, before startRecord
        assert!(
            p.due(T0 + 0.5).is_empty(),
            "waits for a post-start frame within the grace period"
        );
        p.push(frame(T0 + 0.03, 8)); // green, right after startRecord
        let slots = p.due(T0 + 0.5);
        assert_eq!(
            slots[0].image.image()[0],
            8,
            "the first frame is the post-start one"
        );
        assert_eq!(slots.len(), 5);
    }

    #[test]
    fn manual_start_on_a_static_page_falls_back_to_the_preroll() {
        let mut p = FramePacer::new(10, T0, 0.1, 1.0);
        p.push(frame(T0 - 0.2, 7));
        assert!(p.due(T0 + 0.9).is_empty());
        // After the grace period the pre-start frame fills every slot that is due (0.0 ..= 1.15 s).
        let slots = p.due(T0 + 1.25);
        assert_eq!(ids(&slots), vec![7; 12]);
    }

    #[test]
    fn exact_frame_count_for_a_duration() {
        let mut p = FramePacer::new(30, T0, 0.2, 0.0);
        p.push(frame(T0, 1));
        let mut n = p.due(T0 + 3.0).len() as u64;
        n += p.finish_at_slot_count(30 * 7).len() as u64;
        assert_eq!(n, 210);
        assert_eq!(p.slots_written(), 210);
    }

    #[test]
    fn cumulative_rounding_has_no_drift() {
        // 29.97-ish irregular paints over 10 minutes at 30 fps: slot count is exactly 18000.
        let mut p = FramePacer::new(30, T0, 0.2, 0.0);
        let mut written = 0usize;
        let mut t = 0.0;
        while t < 600.0 {
            p.push(frame(T0 + t, 0));
            written += p.due(T0 + t).len();
            t += 0.0337;
        }
        written += p.finish(T0 + 600.0).len();
        assert_eq!(written, 18_000);
    }

    #[test]
    fn a_late_frame_is_used_by_later_slots() {
        let mut p = FramePacer::new(10, T0, 0.0, 0.0);
        p.push(frame(T0, 1));
        assert_eq!(p.due(T0 + 0.3).len(), 4); // slots at 0, .1, .2, .3 all show frame 1
        p.push(frame(T0 + 0.25, 2)); // painted at .25 but arrived after slot .3 was decided
        assert_eq!(p.stats().frames_late, 1);
        let slots = p.due(T0 + 0.4);
        assert_eq!(ids(&slots), vec![2]);
    }
}
