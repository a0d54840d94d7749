//! Places captured PCM on pagecast's wall clock and cuts it into the pieces that go with each
//! video slot.
//!
//! The capture (`parec` reading the sink's monitor) delivers a continuous stream of samples in
//! chunks. Sample `i` of the stream is played at wall time `t0 + i / RATE`, where `t0` is
//! unknown: the stream starts at an arbitrary moment (a fresh null sink delivers its first data
//! up to two seconds after connecting; joining a running one first delivers a backlog) and each
//! chunk reaches us some milliseconds after it was rendered.
//!
//! A null sink renders one block (its latency, 10 ms here, as the capture asks) at the moment
//! the block's first sample falls due, and its monitor hands the block on at once: the block's
//! samples are played from that moment on, while they are already on their way to us. So a block
//! cannot arrive before its *first* sample's play time, and every block gives an upper bound
//! `arrival - first_index / RATE` on `t0`; the smallest bound seen recently is the estimate.
//! (Bounding by the last sample instead would stamp all sound one block early.) Reads that
//! arrive within [`SAME_BLOCK`] of each other are parts of one block. The estimate comes from
//! the data flow itself (no hand-tuned delay), tightens as blocks arrive, and follows a slow
//! drift between the sound clock and the wall clock because only the last [`ANCHOR_WINDOW`]
//! seconds of bounds count.
//!
//! [`AudioTimeline::take`] then returns exactly `n` samples starting at a given wall time (the
//! instant of a video slot), with silence wherever nothing was captured. Consecutive requests
//! continue from where the previous one ended as long as the requested instant agrees with it
//! within [`CONTINUITY`], so a continuous recording has no seams; a pause (whose resume makes
//! the instants jump) is a cut at exactly the requested instant.
//!
//! Continuing alone would fix the sound's place at the first request for the whole recording,
//! while the stream does not keep exact time: a null sink advances its clock by each rendered
//! chunk's length rounded down to whole microseconds, so with a browser feeding it chunks of odd
//! lengths it consumes samples tens of ppm faster than real time (65 ppm measured here: 117 ms
//! in 30 minutes, the sound ever later against the picture). So where the stream index a request
//! continues from and the index the current estimate of `t0` gives differ by more than
//! [`SLEW_DEADBAND`] (8 ms), the request skips or repeats up to [`SLEW_STEP`] samples to close
//! the gap: a slew of up to 1250 ppm at 30 fps, one inaudible sample at a time, not a seam.

use std::collections::VecDeque;

/// Sample rate of the capture and of the encoded audio.
pub(crate) const RATE: u32 = 48_000;
/// Interleaved channels.
pub(crate) const CHANNELS: usize = 2;
/// Bytes per sample frame (s16le, stereo).
pub(crate) const FRAME_BYTES: usize = 2 * CHANNELS;
/// Reads closer together than this (seconds) are parts of one rendered block.
pub(crate) const SAME_BLOCK: f64 = 0.002;
/// Seconds of bounds that make up the estimate of `t0`.
pub(crate) const ANCHOR_WINDOW: f64 = 10.0;
/// A request whose instant is within this many seconds of where the previous one ended continues
/// from there (no seam).
pub(crate) const CONTINUITY: f64 = 0.004;
/// Samples by which a continuing request may be off the estimate before it is moved (8 ms).
/// The estimate itself moves by up to 6 ms for ten seconds after a browser's stream joins the
/// sink (measured: its rewinds deliver a few blocks early), which is not worth following; a
/// drift of tens of ppm is, once it adds up to this.
pub(crate) const SLEW_DEADBAND: i64 = 384;
/// Samples a continuing request may skip or repeat to move toward the estimate.
pub(crate) const SLEW_STEP: i64 = 2;
/// Seconds of captured audio kept behind the newest sample.
pub(crate) const HISTORY: f64 = 12.0;

/// The number of samples that belong to slot `slot` at `fps` frames per second (they add up
/// exactly, with no rounding drift, over any number of slots).
pub(crate) fn samples_for_slot(slot: u64, fps: u32) -> usize {
    let fps = u64::from(fps.max(1));
    let rate = u64::from(RATE);
    ((slot + 1) * rate / fps - slot * rate / fps) as usize
}

/// Captured samples and their place on the wall clock. Pure: times are passed in.
#[derive(Debug, Default)]
pub(crate) struct AudioTimeline {
    /// Sample frames, interleaved s16le bytes; `buf[0]` is stream sample `base`.
    buf: VecDeque<u8>,
    /// Stream index of the first kept sample.
    base: u64,
    /// Stream samples received so far (index of the next one).
    received: u64,
    /// Recent bounds on `t0`: (arrival time, bound), a monotonic queue (bounds increasing).
    bounds: VecDeque<(f64, f64)>,
    /// Where the previous [`AudioTimeline::take`] ended: (stream index, wall time).
    cursor: Option<(u64, f64)>,
    /// A partial sample frame left over from the last chunk.
    partial: Vec<u8>,
    /// The block being received: (arrival of its last read, stream index of its first sample).
    block: Option<(f64, u64)>,
    /// Chunks received.
    chunks: u64,
}

impl AudioTimeline {
    /// An empty timeline.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether any audio has arrived.
    pub(crate) fn has_data(&self) -> bool {
        self.received > 0
    }

    /// The current estimate of the wall time of stream sample 0.
    pub(crate) fn t0(&self) -> Option<f64> {
        self.bounds.front().map(|&(_, b)| b)
    }

    /// Wall time at which the newest received sample was played, if any arrived.
    pub(crate) fn newest(&self) -> Option<f64> {
        Some(self.t0()? + self.received as f64 / f64::from(RATE))
    }

    /// Accepts a chunk of s16le stereo bytes that arrived at wall time `arrival`.
    pub(crate) fn push(&mut self, bytes: &[u8], arrival: f64) {
        if bytes.is_empty() {
            return;
        }
        self.chunks += 1;
        let first = match self.block {
            Some((last, first)) if arrival - last < SAME_BLOCK => first,
            _ => self.received,
        };
        self.block = Some((arrival, first));
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / FRAME_BYTES * FRAME_BYTES;
        self.buf.extend(self.partial.drain(..whole));
        self.received += (whole / FRAME_BYTES) as u64;

        let bound = arrival - first as f64 / f64::from(RATE);
        while self.bounds.back().is_some_and(|&(_, b)| b >= bound) {
            self.bounds.pop_back();
        }
        self.bounds.push_back((arrival, bound));
        while self.bounds.len() > 1
            && self
                .bounds
                .front()
                .is_some_and(|&(at, _)| at < arrival - ANCHOR_WINDOW)
        {
            self.bounds.pop_front();
        }

        let keep = (HISTORY * f64::from(RATE)) as u64;
        let excess = self.received.saturating_sub(keep).saturating_sub(self.base);
        if excess > 0 {
            self.buf.drain(..excess as usize * FRAME_BYTES);
            self.base += excess;
        }
    }

    /// Exactly `n` sample frames (s16le stereo bytes) played from wall time `start` on; silence
    /// where nothing was captured.
    pub(crate) fn take(&mut self, start: f64, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n * FRAME_BYTES];
        let Some(t0) = self.t0() else {
            return out;
        };
        let estimate = ((start - t0) * f64::from(RATE)).round() as i64;
        let from = match self.cursor {
            Some((index, at)) if (at - start).abs() <= CONTINUITY => slew(index as i64, estimate),
            _ => estimate,
        };
        let end = from + n as i64;
        self.cursor = Some((end.max(0) as u64, start + n as f64 / f64::from(RATE)));
        // The part of [from, end) that is in the buffer.
        let lo = from.max(self.base as i64);
        let hi = end.min(self.received as i64);
        if lo < hi {
            let src = ((lo - self.base as i64) as usize) * FRAME_BYTES;
            let dst = ((lo - from) as usize) * FRAME_BYTES;
            let len = ((hi - lo) as usize) * FRAME_BYTES;
            for (i, b) in self.buf.range(src..src + len).enumerate() {
                out[dst + i] = *b;
            }
        }
        out
    }

    /// Chunks received so far.
    pub(crate) fn chunks(&self) -> u64 {
        self.chunks
    }
}

/// Where a continuing request starts: where the previous one ended, moved by at most
/// [`SLEW_STEP`] samples toward `estimate` when it is more than [`SLEW_DEADBAND`] away.
fn slew(continued: i64, estimate: i64) -> i64 {
    let gap = estimate - continued;
    if gap.abs() > SLEW_DEADBAND {
        continued + gap.clamp(-SLEW_STEP, SLEW_STEP)
    } else {
        continued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_700_000_000.0;

    /// A chunk whose samples all carry the value `v` (left and right).
    fn chunk(samples: usize, v: i16) -> Vec<u8> {
        let mut c = Vec::with_capacity(samples * FRAME_BYTES);
        for _ in 0..samples {
            c.extend_from_slice(&v.to_le_bytes());
            c.extend_from_slice(&v.to_le_bytes());
        }
        c
    }

    fn values(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks(FRAME_BYTES)
            .map(|f| i16::from_le_bytes([f[0], f[1]]))
            .collect()
    }

    /// Feeds 10 ms blocks (value = block number) played from `start`, as a null sink renders
    /// them: each when its first sample falls due, arriving `delay(k)` after that.
    fn feed(tl: &mut AudioTimeline, start: f64, chunks: usize, delay: impl Fn(usize) -> f64) {
        for k in 0..chunks {
            let due = start + k as f64 * 0.010;
            tl.push(&chunk(480, k as i16), due + delay(k));
        }
    }

    #[test]
    fn slot_sample_counts_add_up() {
        assert_eq!(samples_for_slot(0, 30), 1600);
        let total: usize = (0..7 * 1000).map(|k| samples_for_slot(k, 7)).sum();
        assert_eq!(total, 48_000 * 1000);
        let total: usize = (0..59).map(|k| samples_for_slot(k, 59)).sum();
        assert_eq!(total, 48_000);
    }

    #[test]
    fn the_estimate_is_the_least_delayed_chunk() {
        let mut tl = AudioTimeline::new();
        assert!(
            tl.take(T0, 10).iter().all(|b| *b == 0),
            "silence before data"
        );
        // Delays between 3 and 40 ms; one chunk comes through in 3 ms.
        feed(&mut tl, T0, 100, |k| {
            if k == 37 {
                0.003
            } else {
                0.010 + (k % 4) as f64 * 0.01
            }
        });
        let t0 = tl.t0().unwrap();
        assert!((t0 - (T0 + 0.003)).abs() < 1e-6, "{}", t0 - T0);
        // The samples of chunk 50 are found at their wall time (within the 3 ms of estimate error).
        let got = values(&tl.take(T0 + 0.503, 480));
        assert!(got.iter().all(|v| *v == 50), "{:?}", &got[..4]);
    }

    #[test]
    fn a_late_start_and_a_backlog_are_both_placed_right() {
        // The stream's first data comes 1.8 s after connecting, then in real time.
        let mut tl = AudioTimeline::new();
        feed(&mut tl, T0 + 1.8, 50, |_| 0.002);
        assert_eq!(values(&tl.take(T0 + 1.8 + 0.1 + 0.002, 4)), vec![10; 4]);
        // A backlog of 170 ms arrives at once, then real time.
        let mut tl = AudioTimeline::new();
        tl.push(&chunk(17 * 480, 1), T0 + 0.170);
        for k in 0..20 {
            tl.push(&chunk(480, 2), T0 + 0.170 + k as f64 * 0.01 + 0.003);
        }
        assert!((tl.t0().unwrap() - T0 - 0.003).abs() < 1e-6);
        assert_eq!(values(&tl.take(T0 + 0.100, 2)), vec![1, 1]);
        assert_eq!(values(&tl.take(T0 + 0.300, 2)), vec![2, 2]);
    }

    #[test]
    fn consecutive_slots_have_no_seams_and_pauses_cut() {
        let mut tl = AudioTimeline::new();
        feed(&mut tl, T0, 400, |_| 0.005);
        let t0 = tl.t0().unwrap();
        let mut all = Vec::new();
        // 30 fps slots from 1 s to 2 s: 48000 samples, exactly the stream's 4800..52800.
        for k in 0..30u64 {
            let start = T0 + 1.0 + k as f64 / 30.0 + 0.0001 * (k % 3) as f64; // jitter < CONTINUITY
            all.extend(values(&tl.take(start + 0.005, samples_for_slot(k, 30))));
        }
        assert_eq!(all.len(), 48_000);
        let expected: Vec<i16> = (100..200).flat_map(|c| vec![c as i16; 480]).collect();
        assert_eq!(all, expected, "t0 {t0}");
        // A pause: the next slot's instant is 1 s later; it starts exactly there.
        let got = values(&tl.take(T0 + 3.005, 480));
        assert_eq!(got, vec![300; 480]);
    }

    #[test]
    fn what_never_arrived_is_silence() {
        let mut tl = AudioTimeline::new();
        feed(&mut tl, T0, 10, |_| 0.0); // 100 ms of audio
        let got = values(&tl.take(T0 + 0.095, 480)); // half in the data, half after it
        assert_eq!(&got[..240], &[9; 240][..]);
        assert!(got[240..].iter().all(|v| *v == 0));
        let got = values(&tl.take(T0 - 1.0, 480));
        assert!(got.iter().all(|v| *v == 0), "before the stream");
    }

    #[test]
    fn old_audio_is_forgotten() {
        let mut tl = AudioTimeline::new();
        feed(&mut tl, T0, 2000, |_| 0.001); // 20 s
        assert!(tl.buf.len() <= (HISTORY * f64::from(RATE)) as usize * FRAME_BYTES);
        assert!(values(&tl.take(T0 + 1.0, 10)).iter().all(|v| *v == 0));
        assert!(values(&tl.take(T0 + 19.0, 10)).iter().all(|v| *v == 1899));
    }

    #[test]
    fn partial_frames_are_joined() {
        let mut tl = AudioTimeline::new();
        let c = chunk(10, 7);
        tl.push(&c[..5], T0 + 0.0001);
        tl.push(&c[5..], T0 + 0.0001);
        assert_eq!(tl.received, 10);
        assert_eq!(values(&tl.take(T0 + 0.0001, 10)), vec![7; 10]);
    }

    #[test]
    fn a_block_read_in_parts_is_bounded_by_its_first_sample() {
        // Blocks of 10 ms rendered at T0 + k * 10 ms; block 3 is read in two parts 0.5 ms apart.
        // Bounding the second part by its own first sample would claim t0 = T0 - 4.5 ms.
        let mut tl = AudioTimeline::new();
        for k in 0..10usize {
            let due = T0 + k as f64 * 0.010;
            if k == 3 {
                tl.push(&chunk(240, 3), due + 0.002);
                tl.push(&chunk(240, 3), due + 0.0025);
            } else {
                tl.push(&chunk(480, k as i16), due + 0.002);
            }
        }
        assert!(
            (tl.t0().unwrap() - (T0 + 0.002)).abs() < 1e-6,
            "{}",
            tl.t0().unwrap() - T0
        );
    }

    #[test]
    fn slew_moves_toward_the_estimate_in_small_steps() {
        assert_eq!(slew(1000, 1000 + SLEW_DEADBAND), 1000);
        assert_eq!(slew(1000, 1000 - SLEW_DEADBAND), 1000);
        assert_eq!(slew(1000, 1000 + SLEW_DEADBAND + 1), 1000 + SLEW_STEP);
        assert_eq!(slew(1000, 1000 - SLEW_DEADBAND - 1), 1000 - SLEW_STEP);
    }

    #[test]
    fn a_stream_that_runs_fast_stays_in_place() {
        // A sink that renders 10 ms blocks (value = block number mod 1000) 600 ppm faster than
        // real time, each arriving 1 ms after it is rendered, recorded at 30 fps for 100 s.
        // Continuing from the first request alone would put the sound 60 ms late by the end.
        const PPM: f64 = 600e-6;
        let block = 0.010 * (1.0 - PPM);
        let mut tl = AudioTimeline::new();
        let mut next_block = 0usize;
        let mut worst_ms: f64 = 0.0;
        for slot in 0..3000u64 {
            let instant = T0 + 1.0 + slot as f64 / 30.0;
            // Everything rendered up to 200 ms after the slot's instant has arrived.
            while T0 + next_block as f64 * block < instant + 0.2 {
                let due = T0 + next_block as f64 * block;
                tl.push(&chunk(480, (next_block % 1000) as i16), due + 0.001);
                next_block += 1;
            }
            let got = values(&tl.take(instant, samples_for_slot(slot, 30)));
            // The block that was playing at the instant (the estimate is 1 ms late: the delivery).
            let playing = ((instant - 0.001 - T0) / block).floor() as i64;
            let blocks = (i64::from(got[0]) - playing).rem_euclid(1000);
            let off = if blocks > 500 { blocks - 1000 } else { blocks } as f64 * 10.0;
            if slot > 300 {
                worst_ms = worst_ms.max(off.abs());
            }
        }
        // One block either way: the first sample of a slot may sit on a block's edge.
        assert!(worst_ms <= 10.0, "sound off by {worst_ms} ms");
    }
}
