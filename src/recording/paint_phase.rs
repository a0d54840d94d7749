//! When to grab the screen within a slot, given when the browser paints.
//!
//! Chromium paints into the X framebuffer on its own clock (about 60 times a second on a
//! virtual display), and the grabber reads it on the slot grid (30 times a second). Both clocks
//! are steady, so their phase stays put for a whole recording. If a grab instant happens to sit
//! on a paint instant, a little jitter decides whether each grab sees that paint or the one before,
//! and the video alternates between pictures 16.7 ms apart: a frame-timing error of one paint on
//! a large share of frames, for the whole recording. `GrabOffset` watches the paint instants the
//! X server reports (DAMAGE events) and moves the grab instants a few milliseconds off the slot
//! instants, to where no paint lands, so each grab sees the same paint every time.

use std::collections::VecDeque;

/// Paints closer together than this are one paint (one frame's damage comes as several
/// rectangles).
const SAME_PAINT: f64 = 0.002;
/// How many recent paints decide the offset.
const REMEMBERED: usize = 48;
/// Paints older than this no longer count (the page may have stopped animating).
const FORGET_AFTER: f64 = 2.0;
/// Paints needed before moving off the slot instants.
const MIN_PAINTS: usize = 8;
/// How far from every recent paint's phase a grab must be to be safe.
const GUARD: f64 = 0.0025;
/// The largest offset tried: grabs stay well within their slot (the pacer takes the frame
/// nearest the slot instant, and half a slot would be another slot's).
const MAX_OFFSET: f64 = 0.008;
/// Candidate offsets are tried in steps of this.
const STEP: f64 = 0.0005;

/// Recent paint instants and the grab offset chosen from them.
#[derive(Debug, Default)]
pub struct GrabOffset {
    paints: VecDeque<f64>,
    offset: f64,
}

impl GrabOffset {
    /// Notes that the screen changed at `at` (seconds, the grab clock).
    pub fn paint(&mut self, at: f64) {
        if self.paints.back().is_some_and(|&last| at - last < SAME_PAINT) {
            return;
        }
        self.paints.push_back(at);
        if self.paints.len() > REMEMBERED {
            self.paints.pop_front();
        }
    }

    /// The offset (seconds, within ±`MAX_OFFSET`) to add to the slot instants of the grid
    /// `phase + k * period`, as of `now`. It stays where it is while it is safe, so grabs do not
    /// wander; it moves to the safe offset nearest zero when a paint comes near; with too few
    /// recent paints (a still page) or none safe (paints at every phase), it is left alone.
    pub fn choose(&mut self, phase: f64, period: f64, now: f64) -> f64 {
        while self.paints.front().is_some_and(|&t| now - t > FORGET_AFTER) {
            self.paints.pop_front();
        }
        if self.paints.len() < MIN_PAINTS || period <= 2.0 * GUARD {
            return self.offset;
        }
        let phases: Vec<f64> = self
            .paints
            .iter()
            .map(|&t| (t - phase).rem_euclid(period))
            .collect();
        let clearance = |offset: f64| {
            let at = offset.rem_euclid(period);
            phases
                .iter()
                .map(|&p| {
                    let d = (p - at).abs();
                    d.min(period - d)
                })
                .fold(f64::INFINITY, f64::min)
        };
        if clearance(self.offset) >= GUARD {
            return self.offset;
        }
        let steps = (MAX_OFFSET / STEP).round() as i32;
        let nearest_safe = (0..=steps)
            .flat_map(|k| [k, -k])
            .map(|k| f64::from(k) * STEP)
            .find(|&o| clearance(o) >= GUARD);
        if let Some(o) = nearest_safe {
            tracing::debug!(
                from_ms = self.offset * 1000.0,
                to_ms = o * 1000.0,
                "grab instants moved off the browser's paints"
            );
            self.offset = o;
        }
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: f64 = 1.0 / 30.0;
    const PAINT: f64 = 1.0 / 60.0;

    /// A 60 Hz painter whose paints land `lag` seconds after the slot instants (and half a slot
    /// later), `jitter` early or late in turn at each of those phases.
    fn painter(g: &mut GrabOffset, from: f64, lag: f64, jitter: f64, n: usize) -> f64 {
        let mut t = from;
        for i in 0..n {
            t = from + i as f64 * PAINT;
            let j = if i % 4 < 2 { jitter } else { -jitter };
            g.paint(t + lag + j);
        }
        t
    }

    #[test]
    fn grabs_stay_on_the_slot_instants_while_paints_are_away_from_them() {
        let mut g = GrabOffset::default();
        let now = painter(&mut g, 100.0, 0.008, 0.0005, 40);
        assert_eq!(g.choose(100.0, P, now), 0.0);
    }

    #[test]
    fn grabs_move_off_paints_that_land_on_the_slot_instants() {
        let mut g = GrabOffset::default();
        let now = painter(&mut g, 100.0, 0.0003, 0.0008, 40);
        let o = g.choose(100.0, P, now);
        assert!(o != 0.0 && o.abs() <= MAX_OFFSET, "{o}");
        // Every paint phase (0.3 ms ± 0.8 ms, and half a slot later) is at least GUARD away.
        for lag in [-0.0005, 0.0011, PAINT - 0.0005, PAINT + 0.0011] {
            let d = (lag - o).rem_euclid(P);
            assert!(d.min(P - d) >= GUARD - 1e-9, "offset {o} vs paint at {lag}");
        }
        // And it stays put while it is safe.
        let now = painter(&mut g, now, 0.0003, 0.0008, 10);
        assert_eq!(g.choose(100.0, P, now), o);
    }

    #[test]
    fn a_still_page_or_paints_at_every_phase_leave_the_offset_alone() {
        let mut g = GrabOffset::default();
        g.paint(100.0);
        g.paint(100.0005); // one paint's second rectangle
        assert_eq!(g.paints.len(), 1);
        assert_eq!(g.choose(100.0, P, 100.1), 0.0);
        // Paints every 2.5 ms cover every phase: nothing is safe, nothing moves.
        for i in 0..48 {
            g.paint(200.0 + i as f64 * 0.0025);
        }
        assert_eq!(g.choose(200.0, P, 200.2), 0.0);
        // Old paints are forgotten.
        assert_eq!(g.choose(200.0, P, 300.0), 0.0);
        assert!(g.paints.is_empty());
    }
}
