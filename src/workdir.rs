//! The work directory's layout: every name pagecast gives a file or directory below
//! `PAGECAST_WORK_DIR`, in one place. Everything else asks here; no path in the work directory
//! is built by hand elsewhere.
//!
//! ```text
//! <work root>/                        PAGECAST_WORK_DIR, default <tmp>/pagecast-work
//!   <task id>/                        a task's work directory (the CLI: its --work-dir)
//!     seg_000001.ts ...               recorded MPEG-TS segments, numbered on across encoders
//!     segments-000001.csv ...         each encoder instance's list of completed segments,
//!                                     named after its first segment
//!     timeline.csv                    recorded second -> wall clock, for a takeover's gap
//!     browser-profile[-N]/            the browser's profile (N: the Nth relaunched browser)
//!     published.csv                   HLS segments already published during the recording
//!     live-mp4.json, live.mp4         the live MP4 upload's state and its growing file
//!     parts-000001.txt ...            ffmpeg concat lists while the result is joined
//!     <segment>.salvage               scratch copy while an unfinished segment is kept
//!   <task id>.deliver/                the result assembled for upload to object storage
//!     result-files.csv                every file of the result (for the upload stage)
//!     stored.csv                      the result's files already in the bucket
//! ```
//!
//! A `StorageType: s3` task's work directory is copied to its bucket under
//! [`mirror_prefix`].

use std::path::{Path, PathBuf};

/// The work root's name below the system's temporary directory when `PAGECAST_WORK_DIR` is
/// not set.
const DEFAULT_ROOT: &str = "pagecast-work";
/// ffmpeg's pattern for recorded segments (see [`segment_file_name`]).
pub(crate) const SEGMENT_PATTERN: &str = "seg_%06d.ts";
const SEGMENT_PREFIX: &str = "seg_";
const SEGMENT_SUFFIX: &str = ".ts";
const SEGMENT_LIST_PREFIX: &str = "segments-";
const SEGMENT_LIST_SUFFIX: &str = ".csv";
const TIMELINE: &str = "timeline.csv";
const PROFILE_PREFIX: &str = "browser-profile";
const PUBLISHED: &str = "published.csv";
const LIVE_MP4_STATE: &str = "live-mp4.json";
const LIVE_MP4: &str = "live.mp4";
const PARTS_PREFIX: &str = "parts-";
const SALVAGE_SUFFIX: &str = ".salvage";
const DELIVER_SUFFIX: &str = ".deliver";
const RESULT_FILES: &str = "result-files.csv";
const STORED: &str = "stored.csv";
/// Where a task's work directory is copied in its bucket (`StorageType: s3`).
const MIRROR_PREFIX: &str = "pagecast-work";

/// The work root when `PAGECAST_WORK_DIR` is not set.
pub(crate) fn default_root() -> PathBuf {
    std::env::temp_dir().join(DEFAULT_ROOT)
}

/// Task `task_id`'s work directory below `root`.
pub(crate) fn task_dir(root: &Path, task_id: &str) -> PathBuf {
    root.join(task_id)
}

/// Where task `task_id`'s result is assembled below `root` before upload to object storage.
pub(crate) fn deliver_dir(root: &Path, task_id: &str) -> PathBuf {
    root.join(format!("{task_id}{DELIVER_SUFFIX}"))
}

/// A recorded segment's file name ([`SEGMENT_PATTERN`]: 123 -> `seg_000123.ts`).
pub(crate) fn segment_file_name(number: u64) -> String {
    format!("{SEGMENT_PREFIX}{number:06}{SEGMENT_SUFFIX}")
}

/// The number of a recorded segment's file name (`seg_000123.ts` -> 123).
pub(crate) fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}

/// ffmpeg's output pattern for the segments in `dir`.
pub(crate) fn segment_pattern(dir: &Path) -> PathBuf {
    dir.join(SEGMENT_PATTERN)
}

/// The list of completed segments one ffmpeg instance keeps; each instance (a restart after
/// ffmpeg died) writes its own, named after its first segment.
pub(crate) fn segment_list_name(first_segment: u64) -> String {
    format!("{SEGMENT_LIST_PREFIX}{first_segment:06}{SEGMENT_LIST_SUFFIX}")
}

/// The segment list of the encoder instance whose first segment is `first_segment`, in `dir`.
pub(crate) fn segment_list(dir: &Path, first_segment: u64) -> PathBuf {
    dir.join(segment_list_name(first_segment))
}

/// The first segment number of a segment list's path ([`segment_list_name`] read back).
pub(crate) fn segment_list_number(list: &Path) -> Option<u64> {
    list.file_name()?
        .to_str()?
        .strip_prefix(SEGMENT_LIST_PREFIX)?
        .strip_suffix(SEGMENT_LIST_SUFFIX)?
        .parse()
        .ok()
}

/// Whether an entry named `name` is an encoder instance's segment list.
pub(crate) fn is_segment_list(name: &str) -> bool {
    name.starts_with(SEGMENT_LIST_PREFIX) && name.ends_with(SEGMENT_LIST_SUFFIX)
}

/// The recording's timeline in `dir`.
pub(crate) fn timeline(dir: &Path) -> PathBuf {
    dir.join(TIMELINE)
}

/// The browser profile's directory in `dir`: the first browser's, or (`Some(n)`) that of the
/// browser started after the nth death.
pub(crate) fn profile_dir(dir: &Path, relaunch: Option<u32>) -> PathBuf {
    match relaunch {
        None => dir.join(PROFILE_PREFIX),
        Some(n) => dir.join(format!("{PROFILE_PREFIX}-{n}")),
    }
}

/// Whether an entry of a work directory named `name` is a browser profile.
pub(crate) fn is_profile_dir(name: &str) -> bool {
    name.starts_with(PROFILE_PREFIX)
}

/// The list of HLS segments published during the recording, in `dir`.
pub(crate) fn published_list(dir: &Path) -> PathBuf {
    dir.join(PUBLISHED)
}

/// The live MP4 upload's state in `dir`.
pub(crate) fn live_mp4_state(dir: &Path) -> PathBuf {
    dir.join(LIVE_MP4_STATE)
}

/// Where the live MP4 upload's state is written before it replaces [`live_mp4_state`].
pub(crate) fn live_mp4_state_tmp(dir: &Path) -> PathBuf {
    dir.join(format!("{LIVE_MP4_STATE}.tmp"))
}

/// The live MP4 upload's growing file in `dir`.
pub(crate) fn live_mp4(dir: &Path) -> PathBuf {
    dir.join(LIVE_MP4)
}

/// The nth concat list of a join, in `scratch`.
pub(crate) fn parts_list(scratch: &Path, n: usize) -> PathBuf {
    scratch.join(format!("{PARTS_PREFIX}{n:06}.txt"))
}

/// Whether an entry named `name` is a join's concat list (or its padding part).
pub(crate) fn is_parts_list(name: &str) -> bool {
    name.starts_with(PARTS_PREFIX)
}

/// The MPEG-TS null packets a join appends to a tiny input, in `scratch` (see
/// `media::finalize`); named as a part list, so it goes with them.
pub(crate) fn parts_padding(scratch: &Path) -> PathBuf {
    scratch.join(format!("{PARTS_PREFIX}padding.ts"))
}

/// The scratch file an unfinished segment named `segment` is kept through, in `dir`.
pub(crate) fn salvage_scratch(dir: &Path, segment: &str) -> PathBuf {
    dir.join(format!("{segment}{SALVAGE_SUFFIX}"))
}

/// The list of every file of the result, in its deliver directory.
pub(crate) fn result_files_list(deliver_dir: &Path) -> PathBuf {
    deliver_dir.join(RESULT_FILES)
}

/// The list of the result's files already in the bucket, in its deliver directory.
pub(crate) fn stored_list(deliver_dir: &Path) -> PathBuf {
    deliver_dir.join(STORED)
}

/// The key prefix of task `task_id`'s work directory copy in its bucket.
pub(crate) fn mirror_prefix(task_id: &str) -> String {
    format!("{MIRROR_PREFIX}/{task_id}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are read back by workers of other versions during a rolling upgrade, and
    /// found in work directories a stopped worker left: they must not change.
    #[test]
    fn the_layout_is_fixed() {
        let d = Path::new("/w/t1");
        let root = Path::new("/w");
        assert_eq!(task_dir(root, "t1"), d);
        assert_eq!(deliver_dir(root, "t1"), Path::new("/w/t1.deliver"));
        assert_eq!(default_root(), std::env::temp_dir().join("pagecast-work"));
        assert_eq!(segment_file_name(123), "seg_000123.ts");
        assert_eq!(segment_pattern(d), Path::new("/w/t1/seg_%06d.ts"));
        assert_eq!(segment_list(d, 7), Path::new("/w/t1/segments-000007.csv"));
        assert_eq!(timeline(d), Path::new("/w/t1/timeline.csv"));
        assert_eq!(profile_dir(d, None), Path::new("/w/t1/browser-profile"));
        assert_eq!(
            profile_dir(d, Some(2)),
            Path::new("/w/t1/browser-profile-2")
        );
        assert_eq!(published_list(d), Path::new("/w/t1/published.csv"));
        assert_eq!(live_mp4_state(d), Path::new("/w/t1/live-mp4.json"));
        assert_eq!(live_mp4_state_tmp(d), Path::new("/w/t1/live-mp4.json.tmp"));
        assert_eq!(live_mp4(d), Path::new("/w/t1/live.mp4"));
        assert_eq!(parts_list(d, 3), Path::new("/w/t1/parts-000003.txt"));
        assert_eq!(
            salvage_scratch(d, "seg_000004.ts"),
            Path::new("/w/t1/seg_000004.ts.salvage")
        );
        let out = Path::new("/w/t1.deliver");
        assert_eq!(
            result_files_list(out),
            Path::new("/w/t1.deliver/result-files.csv")
        );
        assert_eq!(stored_list(out), Path::new("/w/t1.deliver/stored.csv"));
        assert_eq!(mirror_prefix("t1"), "pagecast-work/t1/");
    }

    #[test]
    fn names_read_back() {
        for n in [0, 1, 123, 999_999, 1_000_000] {
            assert_eq!(segment_number(&segment_file_name(n)), Some(n));
            assert_eq!(
                segment_list_number(&segment_list(Path::new("/w"), n)),
                Some(n)
            );
        }
        assert_eq!(segment_number("seg_x.ts"), None);
        assert_eq!(segment_number("seg_000001.ts.salvage"), None);
        assert_eq!(segment_list_number(Path::new("/w/segments-x.csv")), None);
        assert!(is_segment_list("segments-000001.csv") && !is_segment_list("seg_000001.ts"));
        assert!(is_profile_dir("browser-profile") && is_profile_dir("browser-profile-3"));
        assert!(!is_profile_dir("seg_000001.ts"));
        assert!(is_parts_list("parts-000001.txt") && !is_parts_list("timeline.csv"));
        let padding = parts_padding(Path::new("/w/t1"));
        assert!(is_parts_list(
            &padding.file_name().unwrap().to_string_lossy()
        ));
        assert_eq!(
            segment_number(&padding.file_name().unwrap().to_string_lossy()),
            None
        );
    }
}
