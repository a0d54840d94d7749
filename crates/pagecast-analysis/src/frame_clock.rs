//! Frame-timing analysis for recordings of the clock test page (`tests/fixtures/clock.html`).
//!
//! The clock page paints, on every animation frame, a strip of 32 square cells along the top
//! edge of the viewport. Cells 0..24 carry the low 24 bits of the page's wall-clock time in
//! milliseconds (most significant bit first, white = 1, black = 0); cells 24..32 carry an
//! 8-bit check: the bitwise NOT of the XOR of the three value bytes. [`decode_clock`] reads
//! that strip back from one grayscale video frame, and [`analyze`] turns the per-frame values
//! of a whole recording into a [`TimingReport`].

/// Number of square cells in the clock strip; the cell size is `width / STRIP_CELLS`.
pub const STRIP_CELLS: usize = 32;
/// Number of value bits painted into the strip.
const VALUE_BITS: usize = 24;
/// Number of check bits painted after the value bits.
const CHECK_BITS: usize = 8;
/// The painted value wraps modulo this (2^24 milliseconds, about 4.66 hours).
const MODULUS: i64 = 1 << VALUE_BITS;
/// A forward jump in painted time larger than this (beyond the frame spacing) starts a new run.
const GAP_THRESHOLD_MS: f64 = 1000.0;
/// Runs shorter than this contribute nothing to the drift figure.
const MIN_DRIFT_RUN_MS: f64 = 2000.0;

/// Computes the 8-bit check painted after a 24-bit clock value:
/// the bitwise NOT of the XOR of its three bytes.
fn check_byte(value: u32) -> u8 {
    let b0 = (value & 0xff) as u8;
    let b1 = ((value >> 8) & 0xff) as u8;
    let b2 = ((value >> 16) & 0xff) as u8;
    !(b0 ^ b1 ^ b2)
}

/// Decodes the clock value painted in one 8-bit grayscale frame (row-major, `width`×`height`, stride = width).
///
/// The cell size is `c = width / 32`. For every cell the central half of the cell (in both
/// axes) is averaged; a mean above 128 reads as a 1 bit. Returns `None` when the frame is too
/// small to hold the strip (`c < 2`, `height < c`, or a buffer shorter than `width * height`)
/// or when the 8-bit check does not match the 24 value bits.
pub fn decode_clock(gray: &[u8], width: usize, height: usize) -> Option<u32> {
    let cell = width / STRIP_CELLS;
    if cell < 2 || height < cell {
        return None;
    }
    let needed = width.checked_mul(height)?;
    if gray.len() < needed {
        return None;
    }
    // Central half: skip a quarter of the cell on each side, keeping at least one pixel.
    let margin = cell / 4;
    let inner = (cell - 2 * margin).max(1);

    let mut bits: u64 = 0;
    for k in 0..STRIP_CELLS {
        let x0 = k * cell + margin;
        let mut sum: u64 = 0;
        for y in margin..margin + inner {
            let row = y * width + x0;
            let line = gray.get(row..row + inner)?;
            sum += line.iter().map(|&p| u64::from(p)).sum::<u64>();
        }
        let count = (inner * inner) as u64;
        // mean > 128  <=>  sum > 128 * count (exact, no rounding).
        let bit = u64::from(sum > 128 * count);
        bits = (bits << 1) | bit;
    }

    let value = (bits >> CHECK_BITS) as u32 & ((1u32 << VALUE_BITS) - 1);
    let check = (bits & ((1u64 << CHECK_BITS) - 1)) as u8;
    (check == check_byte(value)).then_some(value)
}

/// A discontinuity in painted page time between two consecutive decoded frames, such as the one
/// left by pausing and resuming a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Index (in the full frame sequence) of the first decoded frame after the jump.
    pub at_frame: usize,
    /// How far painted time jumped beyond what the frame spacing predicts, in milliseconds.
    pub jump_ms: f64,
}

/// Frame-timing quality figures of one recording, as computed by [`analyze`].
///
/// Figures that are undefined for the input (for example timing errors when no frame could be
/// decoded, or drift when no run lasts 2 s) are `f64::NAN`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimingReport {
    /// Total number of frames examined.
    pub frames: usize,
    /// Number of frames whose clock strip decoded successfully.
    pub decoded: usize,
    /// Among consecutive frame pairs that both decoded, the fraction showing different values
    /// (1.0 means every frame shows a fresh paint).
    pub distinct_ratio: f64,
    /// 95th percentile (nearest rank) of the absolute timing error, in milliseconds.
    pub p95_error_ms: f64,
    /// Largest absolute timing error, in milliseconds.
    pub max_error_ms: f64,
    /// Frame-count-weighted mean least-squares slope of painted time against frame time over
    /// runs of at least 2 s (1.0 is ideal; above 1 means the video plays page time too fast).
    pub drift: f64,
    /// Longest stretch of consecutive decoded frames showing the same value, as
    /// `run_length * 1000 / fps` milliseconds (one frame period at best).
    pub longest_freeze_ms: f64,
    /// Forward jumps in painted time that split the recording into separately aligned runs.
    pub gaps: Vec<Gap>,
    /// Indices of the frames that show the same value as the decoded frame before them (where
    /// the distinct ratio's misses are).
    pub repeated_frames: Vec<usize>,
    /// For each second of video (frames `k * fps .. (k + 1) * fps`), the median signed error of
    /// its decoded frames in milliseconds (painted time less its aligned frame time; above zero,
    /// the pictures show later page time than their place in the video). NaN for a second with
    /// no decoded frame. Its walk shows what the p95 pools: a slow saw-tooth is the paints
    /// drifting past the frame grid, a lasting step is the page's pictures changing their
    /// latency.
    pub error_by_second_ms: Vec<f64>,
}

/// One decoded frame: its index in the full sequence and its unwrapped painted time in ms.
#[derive(Debug, Clone, Copy)]
struct Sample {
    index: usize,
    time_ms: i64,
}

/// Unwraps the 24-bit painted values of the decoded frames into a continuous millisecond
/// sequence. Each consecutive difference is taken modulo 2^24 and read as backward when it
/// would otherwise exceed 2^23.
fn unwrap_samples(values: &[Option<u32>]) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut prev: Option<(u32, i64)> = None;
    for (index, value) in values.iter().enumerate() {
        let Some(v) = *value else { continue };
        let v = v & ((1u32 << VALUE_BITS) - 1);
        let time_ms = match prev {
            None => i64::from(v),
            Some((pv, pt)) => {
                let mut d = (i64::from(v) - i64::from(pv)).rem_euclid(MODULUS);
                if d > MODULUS / 2 {
                    d -= MODULUS;
                }
                pt + d
            }
        };
        prev = Some((v, time_ms));
        out.push(Sample { index, time_ms });
    }
    out
}

/// Median of a non-empty slice (sorts it in place); NaN for an empty slice.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Least-squares slope of `y` against `x`; `None` with fewer than two points or no spread in `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Computes frame-timing figures from the per-frame clock values of a recording made at `fps`
/// frames per second (`None` marks a frame whose strip did not decode).
///
/// The decoded values are unwrapped across the 2^24 ms wraparound, then split into runs at
/// every [`Gap`]: a place where painted time between consecutive decoded frames jumps forward
/// by more than 1000 ms beyond the frame spacing (a pause in recording). Each run is aligned to
/// the ideal frame clock `i * 1000 / fps` by its own median offset, and the errors of all runs
/// are pooled; drift is the frame-count-weighted mean per-run slope over runs lasting at least
/// 2 s. An undecodable frame ends a freeze. If `fps` is not a positive finite number, every
/// time-based figure is NaN and no gaps are reported.
pub fn analyze(values: &[Option<u32>], fps: f64) -> TimingReport {
    let frames = values.len();
    let samples = unwrap_samples(values);
    let decoded = samples.len();

    // Distinct ratio over adjacent decoded pairs.
    let mut pairs = 0usize;
    let mut repeated_frames = Vec::new();
    for (i, w) in values.windows(2).enumerate() {
        if let [Some(a), Some(b)] = w {
            pairs += 1;
            if a == b {
                repeated_frames.push(i + 1);
            }
        }
    }
    let differing = pairs - repeated_frames.len();
    let distinct_ratio = if pairs == 0 {
        f64::NAN
    } else {
        differing as f64 / pairs as f64
    };

    let valid_fps = fps.is_finite() && fps > 0.0;
    if !valid_fps {
        return TimingReport {
            frames,
            decoded,
            distinct_ratio,
            p95_error_ms: f64::NAN,
            max_error_ms: f64::NAN,
            drift: f64::NAN,
            longest_freeze_ms: f64::NAN,
            error_by_second_ms: Vec::new(),
            gaps: Vec::new(),
            repeated_frames,
        };
    }
    let period = 1000.0 / fps;

    // Longest freeze: longest run of adjacent decoded frames with the same value.
    let mut longest_run = 0usize;
    let mut current = 0usize;
    let mut last: Option<u32> = None;
    for value in values {
        match (*value, last) {
            (Some(v), Some(l)) if v == l => current += 1,
            (Some(_), _) => current = 1,
            (None, _) => current = 0,
        }
        last = *value;
        longest_run = longest_run.max(current);
    }
    let longest_freeze_ms = longest_run as f64 * period;

    // Split into runs at forward jumps.
    let mut gaps = Vec::new();
    let mut runs: Vec<&[Sample]> = Vec::new();
    let mut start = 0usize;
    for k in 1..samples.len() {
        let (a, b) = (samples[k - 1], samples[k]);
        let expected = (b.index - a.index) as f64 * period;
        let jump = (b.time_ms - a.time_ms) as f64 - expected;
        if jump > GAP_THRESHOLD_MS {
            gaps.push(Gap {
                at_frame: b.index,
                jump_ms: jump,
            });
            runs.push(&samples[start..k]);
            start = k;
        }
    }
    if start < samples.len() {
        runs.push(&samples[start..]);
    }

    // Per-run alignment, pooled errors, weighted drift.
    let mut errors: Vec<f64> = Vec::with_capacity(decoded);
    let seconds = (frames as f64 / fps).ceil() as usize;
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    let (mut slope_sum, mut weight_sum) = (0.0, 0.0);
    for run in &runs {
        // Times are taken relative to the run's first sample to keep f64 precision.
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let points: Vec<(f64, f64)> = run
            .iter()
            .map(|s| (s.index as f64 * period, (s.time_ms - first.time_ms) as f64))
            .collect();
        let mut offsets: Vec<f64> = points.iter().map(|&(x, y)| y - x).collect();
        let offset = median(&mut offsets);
        for (s, &(x, y)) in run.iter().zip(&points) {
            let error = y - (offset + x);
            errors.push(error.abs());
            if let Some(second) = by_second.get_mut((s.index as f64 / fps) as usize) {
                second.push(error);
            }
        }

        let span_ms = (last.index - first.index + 1) as f64 * period;
        if span_ms >= MIN_DRIFT_RUN_MS
            && let Some(s) = slope(&points)
        {
            let w = run.len() as f64;
            slope_sum += w * s;
            weight_sum += w;
        }
    }

    let (p95_error_ms, max_error_ms) = if errors.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        errors.sort_by(f64::total_cmp);
        let n = errors.len();
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        (errors[rank - 1], errors[n - 1])
    };
    let drift = if weight_sum > 0.0 {
        slope_sum / weight_sum
    } else {
        f64::NAN
    };

    TimingReport {
        frames,
        decoded,
        distinct_ratio,
        p95_error_ms,
        max_error_ms,
        drift,
        longest_freeze_ms,
        gaps,
        repeated_frames,
        error_by_second_ms: by_second.iter_mut().map(|v| median(v)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paints `value` into a gray frame the way clock.html does: 32 cells of `width / 32`
    /// pixels along the top edge on a mid-grey background.
    fn encode(value: u32, width: usize, height: usize) -> Vec<u8> {
        let mut buf = vec![0x80u8; width * height];
        let cell = width / STRIP_CELLS;
        let value = value & ((1 << VALUE_BITS) - 1);
        let word = (u64::from(value) << CHECK_BITS) | u64::from(check_byte(value));
        for k in 0..STRIP_CELLS {
            let bit = (word >> (STRIP_CELLS - 1 - k)) & 1;
            let px = if bit == 1 { 0xff } else { 0x00 };
            for y in 0..cell.min(height) {
                let row = y * width + k * cell;
                buf[row..row + cell].fill(px);
            }
        }
        buf
    }

    /// Painted times (ms since the epoch, low 24 bits) seen by frames captured at `fps` from a
    /// page painting at `hz`: each frame shows the latest paint at or before its capture time.
    fn captured(start_ms: f64, frames: usize, fps: f64, hz: f64) -> Vec<Option<u32>> {
        let paint = 1000.0 / hz;
        (0..frames)
            .map(|i| {
                let t = start_ms + i as f64 * 1000.0 / fps;
                let painted = (t / paint).floor() * paint;
                Some((painted.floor() as i64).rem_euclid(MODULUS) as u32)
            })
            .collect()
    }

    #[test]
    fn a_lasting_step_in_the_pictures_latency_shows_second_by_second() {
        // 10 s at 30 fps on time, then the pictures show page time 17 ms later from second 6
        // on; second 8 does not decode.
        let values: Vec<Option<u32>> = (0..300)
            .map(|k| {
                let late = if k >= 180 { 17.0 } else { 0.0 };
                (!(240..270).contains(&k))
                    .then(|| (5000.0 + k as f64 * 1000.0 / 30.0 + late).floor() as u32)
            })
            .collect();
        let r = analyze(&values, 30.0);
        let by = &r.error_by_second_ms;
        assert_eq!(by.len(), 10);
        for (second, &e) in by.iter().enumerate() {
            match second {
                0..=5 => assert!(e.abs() <= 1.0, "second {second}: {e}"),
                8 => assert!(e.is_nan(), "second 8 has no decoded frame: {e}"),
                _ => assert!((e - 17.0).abs() <= 1.0, "second {second}: {e}"),
            }
        }
        // The pooled p95 sees only that some frames are 17 ms off.
        assert!(r.p95_error_ms >= 16.0, "p95 {}", r.p95_error_ms);
    }

    #[test]
    fn decode_roundtrip() {
        for &v in &[0u32, 1, 0x00ff_ffff, 0x00a5_5a3c, 1_234_567] {
            let frame = encode(v, 1280, 720);
            assert_eq!(decode_clock(&frame, 1280, 720), Some(v));
        }
        // Cropped strip only, odd width not a multiple of 32.
        let frame = encode(777_777, 1000, 32);
        assert_eq!(decode_clock(&frame, 1000, 32), Some(777_777));
    }

    #[test]
    fn decode_tolerates_noise_and_soft_edges() {
        let (w, h) = (1280, 720);
        let mut frame = encode(0x00c0_ffee & 0xff_ffff, w, h);
        // Blur-like damage confined to cell borders and mild noise everywhere.
        for (i, p) in frame.iter_mut().enumerate() {
            let x = i % w;
            if x % 40 < 3 || x % 40 > 37 {
                *p = 128;
            }
            *p = p.saturating_add((i % 7) as u8).saturating_sub(3);
        }
        assert_eq!(decode_clock(&frame, w, h), Some(0x00c0_ffee & 0xff_ffff));
    }

    #[test]
    fn decode_rejects_corruption_and_small_frames() {
        let (w, h) = (1280, 720);
        let v = 4_242_424;
        let mut frame = encode(v, w, h);
        // Flip value bit in cell 5 (fill its whole cell with the opposite colour).
        let cell = w / STRIP_CELLS;
        let current = frame[cell / 2 * w + 5 * cell + cell / 2];
        let flipped = if current > 128 { 0 } else { 255 };
        for y in 0..cell {
            let row = y * w + 5 * cell;
            frame[row..row + cell].fill(flipped);
        }
        assert_eq!(decode_clock(&frame, w, h), None);

        // A uniformly grey frame has no valid check.
        assert_eq!(decode_clock(&vec![0x80; w * h], w, h), None);
        // Too narrow, too short, or truncated buffer.
        assert_eq!(decode_clock(&[0u8; 40], 40, 1), None);
        let frame = encode(v, w, h);
        assert_eq!(decode_clock(&frame, w, 10), None);
        assert_eq!(decode_clock(&frame[..w * 20], w, h), None);
        assert_eq!(decode_clock(&[], 0, 0), None);
    }

    #[test]
    fn perfect_30fps_from_60hz() {
        let values = captured(1_700_000_000_123.0 % MODULUS as f64, 900, 30.0, 60.0);
        let r = analyze(&values, 30.0);
        assert_eq!(r.frames, 900);
        assert_eq!(r.decoded, 900);
        assert_eq!(r.distinct_ratio, 1.0);
        assert!(r.p95_error_ms <= 17.0, "p95 {}", r.p95_error_ms);
        assert!(r.max_error_ms <= 17.0, "max {}", r.max_error_ms);
        assert!((r.drift - 1.0).abs() < 1e-3, "drift {}", r.drift);
        assert!((r.longest_freeze_ms - 1000.0 / 30.0).abs() < 1e-9);
        assert!(r.gaps.is_empty());
    }

    #[test]
    fn repeated_value_is_a_freeze() {
        let mut values = captured(5_000.0, 300, 30.0, 60.0);
        // Frames 100..=104 all show the paint of frame 100 (a 5-frame stall), as do undecodable
        // frames elsewhere, which must not count as a freeze.
        let stuck = values[100];
        for v in &mut values[101..105] {
            *v = stuck;
        }
        values[200] = None;
        values[201] = None;
        let r = analyze(&values, 30.0);
        assert_eq!(r.decoded, 298);
        assert!((r.longest_freeze_ms - 5.0 * 1000.0 / 30.0).abs() < 1e-9);
        assert!(r.distinct_ratio < 1.0);
        // 4 repeated pairs among 296 adjacent decoded pairs.
        assert!((r.distinct_ratio - 292.0 / 296.0).abs() < 1e-12);
        assert_eq!(r.repeated_frames, vec![101, 102, 103, 104]);
        // The stall shows up as timing error of up to four frame periods.
        assert!(r.max_error_ms >= 4.0 * 1000.0 / 30.0 - 17.0);
        assert!(r.gaps.is_empty());
    }

    #[test]
    fn forward_jump_is_a_gap() {
        let fps = 30.0;
        let mut values = captured(10_000.0, 300, fps, 60.0);
        // Recording paused for 2 s after frame 150: page time jumps forward by 2000 ms.
        let later = captured(10_000.0 + 150.0 * 1000.0 / fps + 2000.0, 150, fps, 60.0);
        values.truncate(150);
        values.extend(later);
        let r = analyze(&values, fps);
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.gaps[0].at_frame, 150);
        assert!((r.gaps[0].jump_ms - 2000.0).abs() <= 17.0, "{:?}", r.gaps);
        assert!(r.p95_error_ms <= 17.0, "p95 {}", r.p95_error_ms);
        assert!(r.max_error_ms <= 17.0, "max {}", r.max_error_ms);
        assert!((r.drift - 1.0).abs() < 2e-3, "drift {}", r.drift);
        assert_eq!(r.distinct_ratio, 1.0);
    }

    #[test]
    fn reload_gap_of_undecodable_frames_is_not_a_gap() {
        // A reload makes a few frames undecodable but page time keeps pace with frame time.
        let mut values = captured(10_000.0, 300, 30.0, 60.0);
        for v in &mut values[120..130] {
            *v = None;
        }
        let r = analyze(&values, 30.0);
        assert!(r.gaps.is_empty());
        assert_eq!(r.decoded, 290);
        assert!(r.max_error_ms <= 17.0);
    }

    #[test]
    fn short_runs_do_not_contribute_to_drift() {
        // 1.5 s of frames only: too short for drift.
        let values = captured(0.0, 45, 30.0, 60.0);
        let r = analyze(&values, 30.0);
        assert!(r.drift.is_nan());
        assert!(r.p95_error_ms <= 17.0);
    }

    #[test]
    fn drift_detects_fast_page_time() {
        // Page time advancing 10% faster than frame time.
        let values: Vec<Option<u32>> = (0..300)
            .map(|i| Some((f64::from(i) * 1000.0 / 30.0 * 1.1).floor() as u32))
            .collect();
        let r = analyze(&values, 30.0);
        assert!((r.drift - 1.1).abs() < 1e-3, "drift {}", r.drift);
    }

    #[test]
    fn wraparound_at_2_pow_24() {
        let start = MODULUS as f64 - 3000.0;
        let values = captured(start, 300, 30.0, 60.0);
        assert!(values.iter().flatten().any(|&v| v < 10_000));
        assert!(values.iter().flatten().any(|&v| v > 16_000_000));
        let r = analyze(&values, 30.0);
        assert!(r.gaps.is_empty(), "{:?}", r.gaps);
        assert!(r.p95_error_ms <= 17.0);
        assert!((r.drift - 1.0).abs() < 1e-3, "drift {}", r.drift);
        assert_eq!(r.distinct_ratio, 1.0);
    }

    #[test]
    fn degenerate_inputs() {
        let r = analyze(&[], 30.0);
        assert_eq!((r.frames, r.decoded), (0, 0));
        assert!(r.distinct_ratio.is_nan() && r.p95_error_ms.is_nan() && r.drift.is_nan());
        assert_eq!(r.longest_freeze_ms, 0.0);

        let r = analyze(&[None, None, None], 30.0);
        assert_eq!((r.frames, r.decoded), (3, 0));
        assert_eq!(r.longest_freeze_ms, 0.0);

        let r = analyze(&[Some(1), Some(2)], 0.0);
        assert!(r.p95_error_ms.is_nan() && r.longest_freeze_ms.is_nan());
        assert_eq!(r.distinct_ratio, 1.0);

        let r = analyze(&[Some(5)], 30.0);
        assert_eq!(r.p95_error_ms, 0.0);
        assert!(r.distinct_ratio.is_nan());
    }
}
