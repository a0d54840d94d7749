//! When to grab the screen within a slot, given when the browser paints.
//!
//! Chromium paints into the X framebuffer on its own clock (about 60 times a second on a
//! virtual display), and the grabber reads it on the slot grid (30 times a second). Both clocks
//! are steady, so their phase moves only slowly (Chromium's frames are 16666 µs, about 40 ppm
//! short of 1/60 s: 2.4 ms a minute). If a grab instant happens to sit
//! on a paint instant, a little jitter decides whether each grab sees that paint or the one before,
//! and the video alternates between pictures 16.7 ms apart: a frame-timing error of one paint on
//! a large share of frames, for the whole recording. `GrabOffset` watches the paint instants the
//! X server reports (DAMAGE events) and moves the grab instants a few milliseconds off the slot
//! instants, to where no paint lands, so each grab sees the same paint every time.

use std::collections::VecDeque;

/// Paints closer together than this are one paint (one frame's damage comes as several
/// rectangles).
const SAME_PAINT: f64 = 0.002;
/// How many recent paints decide the offset (about a second of a 60 Hz painter).
const REMEMBERED: usize = 64;
/// Paints older than this no longer count (the page may have stopped animating).
const FORGET_AFTER: f64 = 2.0;
/// Paints needed before moving off the slot instants.
const MIN_PAINTS: usize = 24;
/// Width of the phase histogram's bins.
const BIN: f64 = 0.0005;
/// A bin with fewer paints than this is free: a lone late paint does not make a phase unsafe
/// (it costs one frame whatever the offset), but a phase where paints keep landing does.
const OCCUPIED: u32 = 2;
/// How far inside a free stretch of phases a grab must be to stay where it is.
const GUARD: f64 = 0.002;
/// How much nearer the slot instant another stretch must be before grabs leave the one they
/// follow once it is past the quarter-period bound. Without it, paints whose phase sits halfway
/// between two stretches (both about a quarter period away) send the grabs back and forth
/// between them with every bit of jitter, one paint apart each time.
const HYSTERESIS: f64 = 0.004;

/// Recent paint instants and the grab offset chosen from them.
#[derive(Debug, Default)]
pub(super) struct GrabOffset {
    paints: VecDeque<f64>,
    offset: f64,
}

impl GrabOffset {
    /// Notes that the screen changed at `at` (seconds, the grab clock).
    pub(super) fn paint(&mut self, at: f64) {
        if self
            .paints
            .back()
            .is_some_and(|&last| at - last < SAME_PAINT)
        {
            return;
        }
        self.paints.push_back(at);
        if self.paints.len() > REMEMBERED {
            self.paints.pop_front();
        }
    }

    /// The offset (seconds, normally within a quarter period either way, at most `HYSTERESIS`
    /// / 2 more) to add to the instants of the grid `phase + k * period`, as of `now`.
    ///
    /// The recent paints' phases within a period form clusters (two for a 60 Hz painter and 30
    /// slots a second) with free stretches between them; only stretches wide enough to hold a
    /// grab count. Grabs go to the middle of the free stretch they are in, and follow it if the
    /// paints' phase moves, but do not jump across a cluster while that stretch holds them
    /// within a quarter period of the grid instant, nor past that until another stretch is
    /// `HYSTERESIS` nearer: crossing one changes which paint every later grab sees. When the
    /// grabs are in no stretch (at the start, after the page's paint rhythm changed, or when a
    /// few stray paints cut their stretch short), they go to the stretch within that bound that
    /// is the smallest move away; when the stretch they follow has walked too far, to the
    /// stretch nearest the grid instant. With too few recent paints (a still page) or no free
    /// stretch (paints at every phase), they stay where they are.
    pub(super) fn choose(&mut self, phase: f64, period: f64, now: f64) -> f64 {
        while self.paints.front().is_some_and(|&t| now - t > FORGET_AFTER) {
            self.paints.pop_front();
        }
        let bins = (period / BIN).floor() as usize;
        if self.paints.len() < MIN_PAINTS || bins < 8 {
            return self.offset;
        }
        let bin_of =
            |x: f64| (((x.rem_euclid(period)) / period * bins as f64) as usize).min(bins - 1);
        let mut count = vec![0u32; bins];
        for &t in &self.paints {
            count[bin_of(t - phase)] += 1;
        }
        let free: Vec<bool> = count.iter().map(|&c| c < OCCUPIED).collect();
        if free.iter().all(|&f| f) || !free.iter().any(|&f| f) {
            return self.offset;
        }
        let width = period / bins as f64;
        let here = bin_of(self.offset);
        let guard_bins = (GUARD / width).ceil() as usize;
        // Only stretches a grab can stay in: the few empty bins inside a cluster of jittery
        // paints are not a gap between paints.
        let stretch: Vec<Stretch> = free_stretches(&free)
            .into_iter()
            .filter(|s| s.len > 2 * guard_bins)
            .collect();
        // A stretch's middle as an offset, less than half a period from the slot instant.
        let middle_of = |s: &Stretch| {
            let middle = (s.start as f64 + s.len as f64 / 2.0) * width;
            (middle + period / 2.0).rem_euclid(period) - period / 2.0
        };
        // Follow the stretch holding the grab while its middle stays within a quarter period of
        // the slot instant. Chromium's frame clock runs about 40 ppm fast (its frames are 16666
        // µs), so the paints' phase walks 2.4 ms a minute; followed without bound, the pictures
        // would lag or lead their slots by up to half a period. Past the bound, or from inside a
        // cluster, go to the stretch whose middle is nearest the slot instant: that jump across
        // one paint is the step any sampler on a fixed clock takes when the paints slip by it.
        // Past the bound, the jump waits until the other stretch is `HYSTERESIS` nearer.
        let holding = stretch.iter().find(|s| s.contains(here, bins, guard_bins));
        let nearest = stretch
            .iter()
            .min_by(|a, b| middle_of(a).abs().total_cmp(&middle_of(b).abs()));
        // Out of every stretch (a paint or two landed on the grabs' phase, or the page's rhythm
        // moved), the one within the bound that is the smallest move away, so that jitter does
        // not carry the grabs across a paint.
        let closest = stretch
            .iter()
            .filter(|s| middle_of(s).abs() <= period / 4.0 + HYSTERESIS / 2.0)
            .min_by(|a, b| {
                let away = |s: &Stretch| {
                    let d = (middle_of(s) - self.offset).rem_euclid(period);
                    d.min(period - d)
                };
                away(a).total_cmp(&away(b))
            });
        let (target, jumped) = match (holding, nearest, closest) {
            (Some(h), _, _) if middle_of(h).abs() <= period / 4.0 => (h, false),
            (Some(h), Some(n), _) if middle_of(n).abs() + HYSTERESIS >= middle_of(h).abs() => {
                (h, false)
            }
            (None, _, Some(c)) => (c, true),
            (_, Some(n), _) => (n, true),
            (_, None, _) => return self.offset,
        };
        let offset = middle_of(target);
        if jumped && (offset - self.offset).abs() > width {
            tracing::debug!(
                from_ms = self.offset * 1000.0,
                to_ms = offset * 1000.0,
                "grab instants moved off the browser's paints"
            );
        }
        self.offset = offset;
        self.offset
    }
}

/// A run of free bins on the circle of phases.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stretch {
    start: usize,
    len: usize,
}

impl Stretch {
    /// Whether `bin` lies in the stretch at least `guard` bins from both of its ends.
    fn contains(&self, bin: usize, bins: usize, guard: usize) -> bool {
        let pos = (bin + bins - self.start) % bins;
        pos < self.len && pos >= guard && self.len - pos > guard
    }
}

/// The runs of free bins around the circle (a run may wrap past the last bin), when at least one
/// bin is taken.
fn free_stretches(free: &[bool]) -> Vec<Stretch> {
    let n = free.len();
    let Some(first_taken) = free.iter().position(|f| !f) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut run: Option<Stretch> = None;
    // Start just after a taken bin so no run is cut in two by the wrap.
    for k in 1..=n {
        let b = (first_taken + k) % n;
        match (free[b], run.as_mut()) {
            (true, Some(r)) => r.len += 1,
            (true, None) => run = Some(Stretch { start: b, len: 1 }),
            (false, _) => out.extend(run.take()),
        }
    }
    out.extend(run);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: f64 = 1.0 / 30.0;
    const PAINT: f64 = 1.0 / 60.0;

    /// `n` paints of a 60 Hz painter from `from`, landing `lag` after the slot instants of the
    /// grid at 100.0 (and half a slot later), up to `jitter` early or late in turn.
    fn painter(g: &mut GrabOffset, from: f64, lag: f64, jitter: f64, n: usize) -> f64 {
        let first = ((from - 100.0) / PAINT).ceil() as usize;
        let mut t = from;
        for i in first..first + n {
            let j = [jitter, -jitter, jitter / 2.0, 0.0][i % 4];
            t = 100.0 + i as f64 * PAINT + lag + j;
            g.paint(t);
        }
        t
    }

    /// How far the grab instants at `offset` are from the painter's phases (`lag` ± `jitter`).
    fn clearance(offset: f64, lag: f64, jitter: f64) -> f64 {
        [
            lag - jitter,
            lag + jitter,
            lag - jitter + PAINT,
            lag + jitter + PAINT,
        ]
        .iter()
        .map(|&p| {
            let d = (p - offset).rem_euclid(P);
            d.min(P - d)
        })
        .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn grabs_go_between_the_paints() {
        // Paints 8 ms after the slot instants: grabs stay near them, in the middle of the gap.
        let mut g = GrabOffset::default();
        let now = painter(&mut g, 100.0, 0.008, 0.001, 40);
        let o = g.choose(100.0, P, now);
        assert!(o.abs() < 0.0015, "{o}");
        assert!(clearance(o, 0.008, 0.001) > 0.006, "{o}");
    }

    #[test]
    fn grabs_move_off_paints_that_land_on_the_slot_instants_and_then_stay() {
        let mut g = GrabOffset::default();
        let now = painter(&mut g, 100.0, 0.0003, 0.001, 40);
        let o = g.choose(100.0, P, now);
        assert!(o.abs() > 0.006 && o.abs() < P / 2.0, "{o}");
        assert!(clearance(o, 0.0003, 0.001) > 0.006, "{o}");
        // More of the same paints: it does not move.
        let now = painter(&mut g, now, 0.0003, 0.001, 30);
        assert!((g.choose(100.0, P, now) - o).abs() < 0.0006);
    }

    /// A painter whose phase starts at `lag` and walks 0.5 ms later `steps` times. Returns the
    /// offset chosen at the start and after each step, each checked to keep 2 ms from the paints.
    fn walk(lag: f64, steps: usize) -> Vec<f64> {
        let mut g = GrabOffset::default();
        let mut lag = lag;
        let mut now = painter(&mut g, 100.0, lag, 0.001, 40);
        let mut offsets = vec![g.choose(100.0, P, now)];
        for _ in 0..steps {
            lag += 0.0005;
            now = painter(&mut g, now, lag, 0.001, 20);
            let o = g.choose(100.0, P, now);
            assert!(clearance(o, lag, 0.001) > 0.002, "{o} at lag {lag}");
            offsets.push(o);
        }
        offsets
    }

    #[test]
    fn grabs_follow_a_drifting_painter_without_crossing_its_paints() {
        // The paints' phase moves by 12 ms, 0.5 ms at a time.
        let offsets = walk(0.004, 24);
        for w in offsets.windows(2) {
            assert!(
                (w[1] - w[0]).abs() < 0.002,
                "jumped from {} to {}",
                w[0],
                w[1]
            );
        }
        let (start, end) = (offsets[0], offsets[offsets.len() - 1]);
        assert!(end - start > 0.008, "followed from {start} to {end}");
    }

    #[test]
    fn a_painter_that_walks_a_whole_paint_period_costs_one_jump_of_one_paint() {
        // 20 ms of walk, 0.5 ms at a time: more than one paint period.
        let offsets = walk(0.002, 40);
        // The walk's 0.5 ms steps can overshoot the bound (plus its hysteresis) by one step.
        for o in &offsets[1..] {
            assert!(o.abs() <= P / 4.0 + HYSTERESIS / 2.0 + 0.0006, "{o}");
        }
        let jumps: Vec<f64> = offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| d.abs() > 0.002)
            .collect();
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        assert!((jumps[0].abs() - PAINT).abs() < 0.002, "{jumps:?}");
    }

    /// A 60 Hz painter at phase `lag` as seen on this machine: each paint up to 0.6 ms early or
    /// late at random, and one in four a further 2.5 ms late, which leaves a few empty phase
    /// bins between the main cluster and its late tail.
    fn jittery_painter(g: &mut GrabOffset, from: f64, lag: f64, n: usize, seed: &mut u64) -> f64 {
        let first = ((from - 100.0) / PAINT).ceil() as usize;
        let mut t = from;
        for i in first..first + n {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (*seed >> 11) as f64 / (1u64 << 53) as f64;
            let late = if (*seed >> 7).is_multiple_of(4) {
                0.0025
            } else {
                0.0
            };
            t = 100.0 + i as f64 * PAINT + lag + (r - 0.5) * 0.0012 + late;
            g.paint(t);
        }
        t
    }

    /// How far grabs at `offset` are from a painter's main cluster and late tail at `lag`.
    fn clearance_of_tail(offset: f64, lag: f64) -> f64 {
        clearance(offset, lag, 0.0006).min(clearance(offset, lag + 0.0025, 0.0006))
    }

    #[test]
    fn empty_bins_between_a_cluster_and_its_late_tail_do_not_draw_the_grabs_in() {
        let mut seed = 1;
        let mut g = GrabOffset::default();
        let mut now = jittery_painter(&mut g, 100.0, 0.0, 64, &mut seed);
        for _ in 0..50 {
            now = jittery_painter(&mut g, now, 0.0, 3, &mut seed);
            let o = g.choose(100.0, P, now);
            assert!(clearance_of_tail(o, 0.0) > 0.002, "{o}");
        }
    }

    #[test]
    fn paints_halfway_between_two_stretches_do_not_send_the_grabs_back_and_forth() {
        // The paints' phase walks from 2 ms before to 2 ms after the point where the two free
        // stretches are equally far from the slot instants (a quarter period each), 0.01 ms at
        // a time, while the jitter keeps changing which of them looks nearer.
        for start in 1..6 {
            let mut seed = start;
            let mut g = GrabOffset::default();
            let lag0 = 0.0008 - 0.002;
            let mut now = jittery_painter(&mut g, 100.0, lag0, 64, &mut seed);
            let mut offsets = vec![g.choose(100.0, P, now)];
            for step in 0..400 {
                let lag = lag0 + step as f64 * 0.00001;
                now = jittery_painter(&mut g, now, lag, 3, &mut seed);
                let o = g.choose(100.0, P, now);
                assert!(clearance_of_tail(o, lag) > 0.0015, "{o} at lag {lag}");
                offsets.push(o);
            }
            let jumps = offsets
                .windows(2)
                .filter(|w| (w[1] - w[0]).abs() > 0.004)
                .count();
            assert!(jumps <= 1, "seed {start}: {jumps} jumps: {offsets:?}");
        }
    }

    #[test]
    fn a_shifted_paint_rhythm_does_not_send_the_grabs_a_paint_away() {
        // The page paints at one phase for a second, then (a long task, a resize) its rhythm
        // moves by a quarter of a slot. For a while the histogram holds both rhythms: four
        // clusters, and the free stretches left between them can all be far from the slot
        // instants. Grabs must not go a whole paint away, and must clear the new paints soon.
        for (seed0, old, new) in [(1, 0.0083, 0.0), (2, 0.0, 0.0083), (3, 0.012, 0.004)] {
            let mut seed = seed0;
            let mut g = GrabOffset::default();
            let mut now = jittery_painter(&mut g, 100.0, old, 64, &mut seed);
            g.choose(100.0, P, now);
            for step in 0..40 {
                now = jittery_painter(&mut g, now, new, 3, &mut seed);
                let o = g.choose(100.0, P, now);
                assert!(
                    o.abs() <= P / 4.0 + HYSTERESIS / 2.0 + 0.0006,
                    "{o} at step {step}"
                );
                if step >= 12 {
                    assert!(clearance(o, new, 0.0006) > 0.0015, "{o} at step {step}");
                }
            }
        }
    }

    /// Paint instants (ms from a slot instant) of a 1080p recording on 2 cores over 2.3 s, at
    /// the moment a few irregular paints landed beside the grabs' phase.
    const PAINTS_1080P: &[f64] = &[
        -17.53, -1.19, 15.90, 35.88, 50.10, 73.28, 82.82, 105.09, 116.03, 132.59, 149.14, 166.64,
        182.73, 199.10, 215.23, 232.18, 248.42, 265.74, 282.07, 299.59, 316.22, 334.06, 350.30,
        368.75, 384.55, 400.01, 418.87, 435.04, 450.94, 471.05, 485.64, 499.62, 517.37, 533.89,
        549.77, 566.38, 582.77, 600.59, 618.58, 631.91, 649.42, 665.79, 683.77, 699.26, 716.86,
        734.44, 749.08, 768.44, 782.11, 799.48, 817.93, 833.57, 850.05, 865.23, 883.03, 898.45,
        919.64, 931.70, 949.43, 967.84, 982.28, 998.19, 1016.54, 1033.47, 1049.15, 1066.64,
        1082.61, 1102.79, 1117.78, 1133.07, 1148.62, 1167.07, 1183.29, 1201.48, 1217.31, 1234.25,
        1250.15, 1270.73, 1284.14, 1299.62, 1321.25, 1333.47, 1351.12, 1367.80, 1384.47, 1399.71,
        1420.13, 1433.77, 1454.78, 1466.83, 1484.68, 1498.23, 1517.43, 1535.55, 1549.06, 1566.29,
        1583.70, 1598.22, 1616.37, 1632.21, 1651.35, 1668.83, 1682.64, 1698.82, 1717.86, 1735.62,
        1749.72, 1765.50, 1782.53, 1799.60, 1817.80, 1833.03, 1850.01, 1868.74, 1875.61, 1901.35,
        1917.00, 1937.51, 1949.32, 1965.41, 1976.79, 1997.96, 2010.18, 2033.89, 2048.59, 2067.48,
        2083.00, 2100.57, 2115.17, 2134.24, 2148.78, 2159.86, 2182.14, 2193.22, 2215.24, 2229.17,
        2249.90,
    ];

    #[test]
    fn a_few_stray_paints_beside_the_grabs_do_not_send_them_across_a_paint() {
        // The grabs follow a free stretch 9 ms after the slot instants, a little past the
        // quarter-period bound; the other stretch, beyond a paint, is 7 ms before them. Three
        // irregular paints (a busy machine) cut the grabs' stretch short. That is jitter, not a
        // new rhythm: going to the other stretch would show every later frame one paint
        // earlier, and did in this recording (p95 17 ms).
        let at = |ms: f64| 100.0 + ms / 1000.0;
        let mut g = GrabOffset {
            offset: 0.00909,
            ..GrabOffset::default()
        };
        let mut paints = PAINTS_1080P.iter().peekable();
        for slot in 0..70 {
            let now = at(slot as f64 * P * 1000.0);
            while let Some(&&p) = paints.peek() {
                if at(p) > now {
                    break;
                }
                g.paint(at(p));
                paints.next();
            }
            let o = g.choose(100.0, P, now);
            assert!(o > 0.004, "slot {slot}: grabs went to {o}");
        }
    }

    #[test]
    fn a_still_page_or_a_lone_late_paint_change_nothing() {
        let mut g = GrabOffset::default();
        g.paint(100.0);
        g.paint(100.0005); // one paint's second rectangle
        assert_eq!(g.paints.len(), 1);
        assert_eq!(g.choose(100.0, P, 100.1), 0.0);
        // A 50 Hz painter's phases walk around the whole period: the grabs stay within half a
        // period of their slot instants whatever they do.
        for i in 0..64 {
            g.paint(200.0 + i as f64 * 0.02);
            assert!(g.choose(200.0, P, 200.0 + i as f64 * 0.02).abs() <= P / 2.0);
        }
        // Old paints are forgotten.
        g.offset = 0.0;
        assert_eq!(g.choose(200.0, P, 300.0), 0.0);
        assert!(g.paints.is_empty());
        // A single paint on a slot instant among paints 8 ms away does not move the grabs.
        let now = painter(&mut g, 400.0, 0.008, 0.0, 30);
        let o = g.choose(100.0, P, now);
        g.paint(now + 0.0167 - 0.008);
        assert_eq!(g.choose(100.0, P, now + 0.01), o);
    }

    #[test]
    fn free_stretches_wrap_around() {
        let f = |s: &str| s.chars().map(|c| c == '.').collect::<Vec<_>>();
        assert_eq!(
            free_stretches(&f("..#..#.")),
            vec![Stretch { start: 3, len: 2 }, Stretch { start: 6, len: 3 },]
        );
        let s = Stretch { start: 6, len: 3 };
        assert!(s.contains(0, 7, 1) && !s.contains(1, 7, 1) && !s.contains(6, 7, 1));
    }
}
