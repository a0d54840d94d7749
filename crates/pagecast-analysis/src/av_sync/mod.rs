//! A/V sync of a recording of `tests/fixtures/av_sync.html`: for every flash, the offset between
//! its first white frame and its beep's onset, as a viewer of the file experiences it.
//!
//! The page flashes white and starts a beep at every whole second of wall-clock time, and paints
//! its clock strip (see `frame_clock`) into every frame. From the file:
//! - each flash is the first frame whose area below the strip is bright after a dark one; its
//!   time is its presentation timestamp;
//! - each beep onset is the first sample whose magnitude exceeds a third of the loudest sample
//!   after at least 300 ms below it; its time is `audio start + index / rate`;
//! - offset = onset − flash (positive: sound late), pairing each flash with the nearest onset
//!   within 400 ms.
//!
//! The clock strip of the flash frame says when the page painted it, and so how many ms after the
//! intended instant that was ([`lateness_ms`]; a loaded machine paints late). A perfect recorder
//! shows such a flash that much later than its beep, so `recorder error = offset + lateness` is
//! what the recorder itself got wrong; `offset` is what a viewer sees. Both are reported. Either
//! includes the frame grid's quantisation (±half a frame: ±16.7 ms at 30 fps).

mod input;

pub use self::input::{
    FrameSize, Streams, audio_args, frame_times_args, parse_audio, parse_frame_times,
    parse_streams, probe_args,
};

/// Audio is decoded at this rate, mono.
const RATE: f64 = 48_000.0;
/// An onset needs this much quiet before it (seconds).
const QUIET_BEFORE: f64 = 0.3;
/// A flash and an onset further apart than this are not a pair (seconds).
const MAX_PAIR_DISTANCE: f64 = 0.4;

/// One flash with its beep.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pair {
    /// Time of the flash's first white frame in the file, seconds.
    pub flash_s: f64,
    /// Time of the beep's onset in the file, seconds.
    pub beep_s: f64,
    /// beep − flash, ms (positive: sound late).
    pub offset_ms: f64,
    /// How late the page painted the flash, ms (from its clock strip), when readable.
    pub lateness_ms: Option<f64>,
    /// offset + lateness (the offset when the lateness is unknown), ms: the recorder's own
    /// error, the page's own lead taken out.
    pub recorder_error_ms: f64,
}

/// Everything measured in one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AvSyncReport {
    /// Flashes seen in the video.
    pub flashes: usize,
    /// Beep onsets heard in the audio.
    pub beeps: usize,
    /// The flash/beep pairs.
    pub pairs: Vec<Pair>,
    /// Mean offset (signed), ms.
    pub mean_offset_ms: f64,
    /// Mean |offset|, ms.
    pub mean_abs_offset_ms: f64,
    /// Largest |offset|, ms.
    pub max_abs_offset_ms: f64,
    /// Median |offset|, ms (robust against a flash the page itself played late).
    pub median_abs_offset_ms: f64,
    /// Mean offset + lateness (the recorder's own error, signed), ms.
    pub mean_recorder_error_ms: f64,
    /// Mean |offset + lateness| (the recorder's own error), ms.
    pub mean_abs_recorder_error_ms: f64,
    /// Largest |offset + lateness|, ms.
    pub max_abs_recorder_error_ms: f64,
    /// Video length, seconds.
    pub video_s: f64,
    /// Audio length, seconds (0 when there is no audio track).
    pub audio_s: f64,
    /// Audio track start minus video track start, seconds.
    pub audio_start_minus_video_start_s: f64,
    /// Median beep frequency (from zero crossings), Hz.
    pub tone_hz: Option<f64>,
    /// Level of each requested frequency over the whole track, dBFS (RMS of that component).
    pub tone_levels_db: Vec<(f64, f64)>,
    /// Loudest sample, dBFS.
    pub peak_db: f64,
}

/// Indices of the first bright frame of each flash.
pub fn flash_frames(brightness: &[f64]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut dark_before = false;
    for (i, &b) in brightness.iter().enumerate() {
        if b > 128.0 {
            if dark_before {
                out.push(i);
            }
            dark_before = false;
        } else {
            dark_before = true;
        }
    }
    out
}

/// Sample indices of beep onsets: the first sample above a third of the loudest after at least
/// [`QUIET_BEFORE`] below it.
pub fn onsets(samples: &[f32]) -> Vec<usize> {
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak < 0.01 {
        return Vec::new();
    }
    let threshold = peak / 3.0;
    let quiet = (QUIET_BEFORE * RATE) as usize;
    let mut out = Vec::new();
    let mut last_loud: Option<usize> = None;
    for (i, s) in samples.iter().enumerate() {
        if s.abs() > threshold {
            if last_loud.is_none_or(|l| i - l >= quiet) {
                out.push(i);
            }
            last_loud = Some(i);
        }
    }
    out
}

/// Frequency from zero crossings of `samples` (a pure tone), Hz.
fn zero_crossing_hz(samples: &[f32]) -> Option<f64> {
    let crossings: Vec<usize> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (crossings.first()?, crossings.last()?);
    (crossings.len() >= 3).then(|| (crossings.len() - 1) as f64 * RATE / (last - first) as f64)
}

/// Level of the `hz` component of `samples` in dBFS (RMS of a full-scale sine is -3 dBFS),
/// by the Goertzel algorithm over 50 ms blocks.
pub fn tone_level_db(samples: &[f32], hz: f64) -> f64 {
    let block = (0.05 * RATE) as usize;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / RATE).cos();
    let mut energy = 0.0;
    let mut n = 0usize;
    for chunk in samples.chunks(block) {
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in chunk {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // |X(k)|^2 = (N A / 2)^2 for a sine of amplitude A: the component's mean square is
        // A^2 / 2 = 2 |X|^2 / N^2.
        energy += 2.0 * power / (chunk.len() as f64).powi(2) * chunk.len() as f64;
        n += chunk.len();
    }
    let mean_square = energy / n.max(1) as f64;
    10.0 * mean_square.max(1e-20).log10()
}

/// The median |offset| of `pairs`, ms (0 without pairs).
pub fn median_abs(pairs: &[Pair]) -> f64 {
    let mut v: Vec<f64> = pairs.iter().map(|p| p.offset_ms.abs()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// How many ms after its flash's instant the page drew the frame whose clock strip says `value`.
///
/// `av_sync.html` writes the time each frame is drawn for, in epoch ms mod 16,000,000 (a multiple
/// of 10 s), and flashes at `k * 1000 + (k mod 10) * 10/3` ms of epoch second `k`: `value mod
/// 10000` is the epoch time's, so the second's step and the ms past it are both in the value.
pub fn lateness_ms(value: u32) -> f64 {
    let step = f64::from((value / 1000) % 10) * 10.0 / 3.0;
    f64::from(value % 1000) - step
}

/// The figures over all pairs of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The flash/beep pairs.
    pub pairs: Vec<Pair>,
    /// Mean offset (signed), ms.
    pub mean: f64,
    /// Mean |offset|, ms.
    pub mean_abs: f64,
    /// Largest |offset|, ms.
    pub max_abs: f64,
    /// Mean offset + lateness (signed), ms.
    pub err_mean: f64,
    /// Mean |offset + lateness|, ms.
    pub err_mean_abs: f64,
    /// Largest |offset + lateness|, ms.
    pub err_max: f64,
}

/// Pairs flashes with onsets and summarises the offsets.
pub fn summarise(flashes: &[(f64, Option<f64>)], beeps: &[f64]) -> Summary {
    let pairs: Vec<Pair> = flashes
        .iter()
        .filter_map(|&(flash_s, lateness_ms)| {
            let beep_s = *beeps.iter().min_by(|a, b| {
                (*a - flash_s)
                    .abs()
                    .partial_cmp(&(*b - flash_s).abs())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })?;
            let offset_ms = (beep_s - flash_s) * 1000.0;
            ((beep_s - flash_s).abs() <= MAX_PAIR_DISTANCE).then_some(Pair {
                flash_s,
                beep_s,
                offset_ms,
                lateness_ms,
                recorder_error_ms: offset_ms + lateness_ms.unwrap_or(0.0),
            })
        })
        .collect();
    let n = pairs.len().max(1) as f64;
    let mean = pairs.iter().map(|p| p.offset_ms).sum::<f64>() / n;
    let mean_abs = pairs.iter().map(|p| p.offset_ms.abs()).sum::<f64>() / n;
    let max_abs = pairs.iter().map(|p| p.offset_ms.abs()).fold(0.0, f64::max);
    let errors: Vec<f64> = pairs.iter().map(|p| p.recorder_error_ms).collect();
    Summary {
        err_mean: errors.iter().sum::<f64>() / n,
        err_mean_abs: errors.iter().map(|e| e.abs()).sum::<f64>() / n,
        err_max: errors.iter().map(|e| e.abs()).fold(0.0, f64::max),
        pairs,
        mean,
        mean_abs,
        max_abs,
    }
}

/// Measures a recording of `av_sync.html` from what ffprobe and ffmpeg said about it: its
/// streams, its frames ([`FrameSize::read_frames`]), its samples ([`parse_audio`]; none without a
/// sound track) and its frames' times ([`parse_frame_times`]). `tones` are frequencies whose
/// level is reported.
pub fn report(
    s: &Streams,
    frames: &[(f64, Option<u32>)],
    audio: &[f32],
    times: &[f64],
    tones: &[f64],
) -> AvSyncReport {
    let audio_start = s.audio_start.unwrap_or(0.0);
    let brightness: Vec<f64> = frames.iter().map(|f| f.0).collect();
    let flashes: Vec<(f64, Option<f64>)> = flash_frames(&brightness)
        .into_iter()
        .map(|i| {
            let lateness = frames[i].1.map(lateness_ms);
            // The frame's own timestamp; by count only if the packets did not match the frames.
            let at = match times.len() == frames.len() {
                true => times[i],
                false => s.video_start + i as f64 / s.fps,
            };
            (at, lateness)
        })
        .collect();
    let onset_idx = onsets(audio);
    let beeps: Vec<f64> = onset_idx
        .iter()
        .map(|&i| audio_start + i as f64 / RATE)
        .collect();
    let sum = summarise(&flashes, &beeps);
    let median = median_abs(&sum.pairs);
    let mut freqs: Vec<f64> = onset_idx
        .iter()
        .filter_map(|&i| {
            let from = i + (0.005 * RATE) as usize;
            let to = (i + (0.045 * RATE) as usize).min(audio.len());
            (from < to).then(|| zero_crossing_hz(&audio[from..to]))?
        })
        .collect();
    freqs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let peak = audio.iter().fold(0f32, |m, x| m.max(x.abs()));
    AvSyncReport {
        flashes: flashes.len(),
        beeps: beeps.len(),
        mean_offset_ms: sum.mean,
        mean_abs_offset_ms: sum.mean_abs,
        max_abs_offset_ms: sum.max_abs,
        median_abs_offset_ms: median,
        mean_recorder_error_ms: sum.err_mean,
        mean_abs_recorder_error_ms: sum.err_mean_abs,
        max_abs_recorder_error_ms: sum.err_max,
        pairs: sum.pairs,
        video_s: match (times.first(), times.last()) {
            (Some(a), Some(b)) if times.len() > 1 => b - a + 1.0 / s.fps,
            _ => frames.len() as f64 / s.fps,
        },
        audio_s: audio.len() as f64 / RATE,
        audio_start_minus_video_start_s: audio_start - s.video_start,
        tone_hz: freqs.get(freqs.len() / 2).copied(),
        tone_levels_db: tones
            .iter()
            .map(|&hz| (hz, tone_level_db(audio, hz)))
            .collect(),
        peak_db: 20.0 * f64::from(peak.max(1e-10)).log10(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, amp: f32, seconds: f64) -> Vec<f32> {
        (0..(seconds * RATE) as usize)
            .map(|i| amp * (2.0 * std::f64::consts::PI * hz * i as f64 / RATE).sin() as f32)
            .collect()
    }

    #[test]
    fn onsets_and_flashes_are_found() {
        let mut audio = vec![0f32; 48_000];
        for start in [10_000usize, 30_000] {
            for (i, s) in tone(1000.0, 0.6, 0.06).into_iter().enumerate() {
                audio[start + i] = s;
            }
        }
        let found = onsets(&audio);
        assert_eq!(found.len(), 2);
        assert!(found[0] >= 10_000 && found[0] < 10_010, "{found:?}");
        assert!(found[1] >= 30_000 && found[1] < 30_010);
        assert_eq!(
            flash_frames(&[0.0, 255.0, 255.0, 0.0, 0.0, 250.0, 10.0]),
            vec![1, 5]
        );
        assert!(onsets(&[0.0; 100]).is_empty());
    }

    #[test]
    fn tone_levels_tell_frequencies_apart() {
        let a = tone(700.0, 0.5, 1.0);
        let own = tone_level_db(&a, 700.0);
        let other = tone_level_db(&a, 1500.0);
        // A sine of amplitude 0.5: RMS 0.354 = -9 dBFS.
        assert!((own + 9.03).abs() < 0.5, "{own}");
        assert!(other < own - 40.0, "{other}");
        let hz = zero_crossing_hz(&a[..2000]).unwrap();
        assert!((hz - 700.0).abs() < 2.0, "{hz}");
    }

    #[test]
    fn a_report_pairs_the_flashes_with_their_beeps() {
        let s = Streams {
            width: 320,
            height: 180,
            fps: 10.0,
            video_start: 0.0,
            audio_start: Some(0.0),
        };
        // 3 s at 10 fps: flashes at frames 10 and 20 (1.0 s and 2.0 s).
        let frames: Vec<(f64, Option<u32>)> = (0..30)
            .map(|i| (if i == 10 || i == 20 { 255.0 } else { 0.0 }, None))
            .collect();
        // Beeps 20 ms after each flash.
        let mut audio = vec![0f32; 3 * 48_000];
        for start in [49_000usize, 97_000] {
            for (i, x) in tone(1000.0, 0.5, 0.05).into_iter().enumerate() {
                audio[start + i] = x;
            }
        }
        let times: Vec<f64> = (0..30).map(|i| f64::from(i) / 10.0).collect();
        let r = report(&s, &frames, &audio, &times, &[1000.0]);
        assert_eq!((r.flashes, r.beeps, r.pairs.len()), (2, 2, 2));
        assert!(
            (r.mean_offset_ms - 20.8).abs() < 0.5,
            "{}",
            r.mean_offset_ms
        );
        assert!((r.video_s - 3.0).abs() < 1e-9);
        assert!((r.audio_s - 3.0).abs() < 1e-9);
        assert!(
            r.tone_hz.is_some_and(|hz| (hz - 1000.0).abs() < 30.0),
            "{:?}",
            r.tone_hz
        );
        assert_eq!(r.tone_levels_db.len(), 1);
    }

    #[test]
    fn pairs_and_figures() {
        let flashes = [
            (1.0, Some(10.0)),
            (2.0, Some(0.0)),
            (3.0, None),
            (9.0, None),
        ];
        let beeps = [0.99, 2.02, 3.0];
        let s = summarise(&flashes, &beeps);
        assert_eq!(s.pairs.len(), 3, "the flash at 9 s has no beep");
        assert!((median_abs(&s.pairs) - 10.0).abs() < 1e-6);
        assert!((s.mean - (-10.0 + 20.0 + 0.0) / 3.0).abs() < 1e-6);
        assert!((s.mean_abs - 10.0).abs() < 1e-6);
        assert!((s.max_abs - 20.0).abs() < 1e-6);
        // Recorder error: -10 + 10 late = 0; 20; 0.
        assert!((s.err_mean - 20.0 / 3.0).abs() < 1e-6);
        assert!((s.err_mean_abs - 20.0 / 3.0).abs() < 1e-6);
        assert!((s.err_max - 20.0).abs() < 1e-6);
        let early = summarise(&[(1.0, Some(5.0))], &[0.98]);
        assert!((early.err_mean + 15.0).abs() < 1e-6, "{early:?}");
        assert!((early.err_mean_abs - 15.0).abs() < 1e-6);
    }

    #[test]
    fn lateness_is_counted_from_the_seconds_own_instant() {
        // Epoch 1_765_000_003_012 ms: second ...003 (step 10 ms); mod 16e6 keeps the last 4 digits.
        let value = (1_765_000_003_012u64 % 16_000_000) as u32;
        assert!(
            (lateness_ms(value) - 2.0).abs() < 1e-9,
            "{}",
            lateness_ms(value)
        );
        // Second ...000: no step; drawn 16 ms after the whole second.
        assert!((lateness_ms(7_000_016) - 16.0).abs() < 1e-9);
        // Second ...009: step 30 ms; a frame drawn 29 ms after the second is 1 ms early.
        assert!((lateness_ms(7_009_029) + 1.0).abs() < 1e-9);
        // 16e6 and 2^24 differ: clock.html's modulus would put this value 777 ms off.
        assert_ne!(16_000_000 % 1000, 16_777_216 % 1000);
    }
}
