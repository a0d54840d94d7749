//! Keeping recordings from filling the work disk. A recording is ended while what it recorded
//! can still be made into its result: the space the result will take on this disk (an MP4 is
//! joined beside its segments, about as large as they are) and what the encoder still writes
//! after the stop (the frames waiting for it, which can be seconds of video when it is behind)
//! are counted, and half of `PAGECAST_MIN_FREE_MB` stays free besides.
//!
//! The decision is [`must_stop`] (pure); [`DiskWatch`] feeds it from `statvfs`, the work
//! directory and the recording's progress a few times a second.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::ErrorCode;

/// Seconds of video a stop still adds beyond the frames queued for the encoder: the capture
/// latency (0.5 s) and the time until the next look at the disk, with margin.
const STOP_HORIZON_S: f64 = 1.0;
/// Seconds of wall-clock time the disk may go on filling at its recent rate after a stop (for
/// the other writers on the disk).
const WALL_HORIZON_S: f64 = 2.0;
/// Seconds of video an HLS publisher may hold twice while it copies a segment out.
const SEGMENT_S: f64 = 2.0;
/// How far back the fill rate is measured.
const RATE_WINDOW_S: f64 = 2.0;
/// Seconds of filling a cut must come ahead of (the next look is a quarter second away).
const CUT_MARGIN_S: f64 = 0.75;
/// How often a recording looks at the disk.
pub(crate) const CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What the disk must still hold once a recording stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Needs {
    /// Bytes that stay free whatever happens (half of `PAGECAST_MIN_FREE_MB`).
    pub(crate) floor: u64,
    /// The result is an MP4 joined on this disk: it needs as much again as the media recorded.
    pub(crate) joins_here: bool,
    /// The result is HLS: a segment may be held twice while it is published.
    pub(crate) hls: bool,
}

/// Bytes the disk must have free now for the recording to be stopped and finished: the floor,
/// the `tail` the encoder still writes after the stop, and, when the result is joined here, the
/// recorded `media` plus the join's copy of the tail. `segment`: bytes of one segment.
pub(crate) fn required(media: u64, tail: u64, segment: u64, needs: Needs) -> u64 {
    let mut need = needs.floor.saturating_add(tail);
    if needs.joins_here {
        need = need.saturating_add(media).saturating_add(tail);
    }
    if needs.hls {
        need = need.saturating_add(segment);
    }
    need
}

/// Whether a recording must stop now to leave room for its result; `reclaimable` bytes are
/// removed before the result is made (the browser's profile).
pub(crate) fn must_stop(
    free: u64,
    reclaimable: u64,
    media: u64,
    tail: u64,
    segment: u64,
    needs: Needs,
) -> bool {
    free.saturating_add(reclaimable) < required(media, tail, segment, needs)
}

/// Whether the encoder must be killed now, its waiting frames dropped: the disk fills at `rate`
/// bytes/s, and in [`CUT_MARGIN_S`] the encoder would eat into the floor, or (when the result is
/// joined here) the disk, with the `reclaimable` bytes removed before the join, would no longer
/// hold the floor and a copy of the `media`. The last guard, whatever the estimate of the tail.
pub(crate) fn must_cut(free: u64, reclaimable: u64, media: u64, rate: f64, needs: Needs) -> bool {
    let coming = (rate.max(0.0) * CUT_MARGIN_S) as u64;
    // The encoder itself must not hit a full disk (half the floor is its to use)...
    if free < (needs.floor / 2).saturating_add(coming) {
        return true;
    }
    // ...and the join needs a copy of the media, with the floor kept.
    needs.joins_here
        && free.saturating_add(reclaimable)
            < needs.floor.saturating_add(coming).saturating_add(media)
}

/// How fast the disk fills: bytes/s over the last [`RATE_WINDOW_S`] of samples of free space
/// (0 while it does not shrink).
#[derive(Debug, Default)]
pub(crate) struct FillRate {
    samples: VecDeque<(f64, u64)>,
}

impl FillRate {
    /// Adds a sample (`at` seconds on any monotonic clock, `free` bytes) and returns the rate.
    pub(crate) fn push(&mut self, at: f64, free: u64) -> f64 {
        self.samples.push_back((at, free));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at - t > RATE_WINDOW_S)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, f0)), Some(&(t1, f1))) if t1 > t0 => {
                (f0 as f64 - f1 as f64).max(0.0) / (t1 - t0)
            }
            _ => 0.0,
        }
    }
}

/// Where the recording's encoder is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Encoding {
    /// Bytes of media in the task's work directory.
    pub(crate) media_bytes: u64,
    /// Frames handed to the encoder so far.
    pub(crate) frames_sent: u64,
    /// Frames of those still waiting for ffmpeg.
    pub(crate) queued: u64,
    /// Frames per second.
    pub(crate) fps: u32,
}

/// The size of an encoded frame, learnt as the recording goes: the largest average seen (a
/// page may get harder to encode; it rarely gets easier for long).
#[derive(Debug, Default)]
pub(crate) struct FrameSize {
    bytes: f64,
}

impl FrameSize {
    /// Learns from `e` and returns the bytes a stop now still adds: the frames waiting for the
    /// encoder, the half second ffmpeg holds in its lookahead, and [`STOP_HORIZON_S`] more.
    pub(crate) fn tail(&mut self, e: Encoding) -> f64 {
        let fps = f64::from(e.fps.max(1));
        // ffmpeg holds about half a second of frames (lookahead, frame threads) before it
        // writes them: those are not in `media_bytes` yet.
        let held = fps / 2.0;
        let written = e.frames_sent.saturating_sub(e.queued) as f64 - held;
        if written >= fps && e.media_bytes > 0 {
            self.bytes = self.bytes.max(e.media_bytes as f64 / written);
        }
        (e.queued as f64 + held + fps * STOP_HORIZON_S) * self.bytes
    }

    /// Bytes of one segment (`seconds` of video) at the learnt size.
    fn segment(&self, fps: u32, seconds: f64) -> f64 {
        self.bytes * f64::from(fps.max(1)) * seconds
    }
}

/// Looks at the work disk for one recording.
pub(crate) struct DiskWatch {
    work_root: PathBuf,
    needs: Needs,
    rate: FillRate,
    frame: FrameSize,
    began: Instant,
}

impl DiskWatch {
    /// For a recording in `work_root` whose result is assembled below `result_root`.
    pub(crate) fn new(work_root: &Path, result_root: &Path, min_free_mb: u64, mp4: bool) -> Self {
        DiskWatch {
            work_root: work_root.to_path_buf(),
            needs: Needs {
                floor: (min_free_mb << 20) / 2,
                joins_here: mp4 && same_disk(work_root, result_root),
                hls: !mp4,
            },
            rate: FillRate::default(),
            frame: FrameSize::default(),
            began: Instant::now(),
        }
    }

    /// What the recording must do now to leave room for its result; `reclaimable` bytes of its
    /// work directory are removed before the result is made.
    pub(crate) fn check(&mut self, e: Encoding, reclaimable: u64) -> Verdict {
        let Some(free) = crate::ops::doctor::free_bytes(&self.work_root) else {
            return Verdict::default();
        };
        let rate = self.rate.push(self.began.elapsed().as_secs_f64(), free);
        let tail = self.frame.tail(e).max(rate * WALL_HORIZON_S) as u64;
        let segment = self.frame.segment(e.fps, SEGMENT_S) as u64;
        // Every recording's media on this disk waits for its join here.
        let media = if self.needs.joins_here {
            media_below(&self.work_root)
        } else {
            0
        };
        let stop = must_stop(free, reclaimable, media, tail, segment, self.needs).then(|| {
            let need = required(media, tail, segment, self.needs);
            let why = format!(
                "the work disk is almost full ({} MiB free, {} MiB needed to finish the result \
                 and keep half of PAGECAST_MIN_FREE_MB free); the recording was ended there and \
                 what it recorded is delivered",
                (free + reclaimable) >> 20,
                need.div_ceil(1 << 20)
            );
            (ErrorCode::DiskFull, why)
        });
        Verdict {
            stop,
            cut: must_cut(free, reclaimable, media, rate, self.needs),
        }
    }
}

/// What a recording must do for the disk.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Stop (the encoder writes what waits for it), with the code and reason.
    pub(crate) stop: Option<(ErrorCode, String)>,
    /// Kill the encoder now: what waits for it would not fit.
    pub(crate) cut: bool,
}

/// Removes the browser profiles a recording left in its work directory (a profile holds
/// megabytes of cache), so the result is made with that room too.
pub(crate) fn remove_browser_profiles(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if crate::workdir::is_profile_dir(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Bytes of the browser profiles in a recording's work directory (removed before its result is
/// made, see [`remove_browser_profiles`]).
pub(crate) fn profile_bytes(work_dir: &Path) -> u64 {
    fn size(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| d.filter_map(Result::ok).map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    std::fs::read_dir(work_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| crate::workdir::is_profile_dir(&e.file_name().to_string_lossy()))
                .map(|e| size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Recorded media (segment bytes) in every task directory below `work_root`.
fn media_below(work_root: &Path) -> u64 {
    std::fs::read_dir(work_root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| crate::media::segments::bytes_written(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Whether `b` (or, when it does not exist yet, its nearest existing ancestor) is on the
/// filesystem of `a`. Unknown counts as the same (the careful answer).
pub(crate) fn same_disk(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        p.ancestors()
            .find_map(|d| std::fs::metadata(d).ok())
            .map(|m| m.dev())
    };
    match (dev(a), dev(b)) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn an_mp4_joined_here_needs_its_media_again_plus_the_tail_twice() {
        let needs = Needs {
            floor: 4 * MB,
            joins_here: true,
            hls: false,
        };
        // 10 MiB recorded, 6 MiB still to come: floor 4 + media 10 + 2 × 6 = 26 MiB.
        assert_eq!(required(10 * MB, 6 * MB, MB, needs), 26 * MB);
        assert!(!must_stop(26 * MB, 0, 10 * MB, 6 * MB, MB, needs));
        assert!(must_stop(26 * MB - 1, 0, 10 * MB, 6 * MB, MB, needs));
        // The browser's profile is removed before the join: its room counts.
        assert!(!must_stop(20 * MB, 6 * MB, 10 * MB, 6 * MB, MB, needs));
    }

    #[test]
    fn a_result_made_elsewhere_needs_only_the_tail_and_the_floor() {
        let needs = Needs {
            floor: 4 * MB,
            joins_here: false,
            hls: false,
        };
        assert_eq!(required(500 * MB, 2 * MB, 3 * MB, needs), 6 * MB);
        let hls = Needs { hls: true, ..needs };
        assert_eq!(required(500 * MB, 2 * MB, 3 * MB, hls), 9 * MB);
    }

    #[test]
    fn the_encoder_is_cut_before_the_join_would_not_fit() {
        let needs = Needs {
            floor: 4 * MB,
            joins_here: true,
            hls: false,
        };
        let rate = 4.0 * MB as f64;
        // floor 4 + media 10 + 0.75 s × 4 MiB/s = 17 MiB, of which 5 may come from the profile.
        assert!(!must_cut(17 * MB, 0, 10 * MB, rate, needs));
        assert!(must_cut(17 * MB - 1, 0, 10 * MB, rate, needs));
        assert!(!must_cut(12 * MB, 5 * MB, 10 * MB, rate, needs));
        // But the encoder needs room to write now: half the floor plus the next moments.
        assert!(must_cut(5 * MB - 1, 50 * MB, 0, rate, needs));
        // Made elsewhere: only the encoder's own room counts.
        let elsewhere = Needs {
            joins_here: false,
            ..needs
        };
        assert!(!must_cut(5 * MB, 0, 500 * MB, rate, elsewhere));
        assert!(must_cut(5 * MB - 1, 0, 500 * MB, rate, elsewhere));
    }

    #[test]
    fn the_tail_counts_the_frames_waiting_for_the_encoder() {
        let mut f = FrameSize::default();
        let e = |media_bytes, frames_sent, queued| Encoding {
            media_bytes,
            frames_sent,
            queued,
            fps: 30,
        };
        // Nothing learnt before a second of frames is written.
        assert_eq!(f.tail(e(MB, 40, 0)), 0.0);
        // 75 sent, 0 waiting, 15 held by ffmpeg: 60 frames made 6 MiB, 0.1 MiB each. A stop
        // adds the 15 held and 30 more.
        let tail = f.tail(e(6 * MB, 75, 0));
        assert!((tail - 4.5 * MB as f64).abs() < 1.0, "{tail}");
        // The encoder falls 60 frames behind: they come too.
        let tail = f.tail(e(6 * MB, 135, 60));
        assert!((tail - 10.5 * MB as f64).abs() < 1.0, "{tail}");
        // An easier stretch does not lower the frame size learnt.
        let tail = f.tail(e(7 * MB, 1000, 0));
        assert!((tail - 4.5 * MB as f64).abs() < 1.0, "{tail}");
        assert!((f.segment(30, 2.0) - 6.0 * MB as f64).abs() < 1.0);
    }

    #[test]
    fn the_fill_rate_is_taken_over_the_last_two_seconds() {
        let mut r = FillRate::default();
        assert_eq!(r.push(0.0, 100 * MB), 0.0);
        assert_eq!(r.push(1.0, 90 * MB), 10.0 * MB as f64);
        assert_eq!(r.push(2.0, 80 * MB), 10.0 * MB as f64);
        // Older samples leave the window: the rate follows the disk.
        assert_eq!(r.push(3.0, 79 * MB), 5.5 * MB as f64);
        assert_eq!(r.push(4.0, 78 * MB), 1.0 * MB as f64);
        // Space coming back is no negative rate.
        assert_eq!(r.push(5.0, 200 * MB), 0.0);
    }

    #[test]
    fn disks_are_told_apart_and_missing_paths_use_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(same_disk(dir.path(), &dir.path().join("not/yet/made")));
        // /proc is never the temp dir's filesystem.
        assert!(!same_disk(dir.path(), Path::new("/proc/self")));
    }
}
