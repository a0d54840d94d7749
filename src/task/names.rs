//! The names of a task's result, shared by the API (which checks them at Start), the store and
//! the pipeline (which writes the files).
//!
//! A result is `<dir>/<name>.<ext>` below the output directory (local delivery) or in the
//! bucket: `dir` is `TargetDir` or the TaskID, `name` is `TargetName` or the default. An HLS
//! result's segments lie beside its playlist as `<name>_NNNNNN.ts`. Files written locally are
//! first written under a temporary name beside the final one (`.partial` appended) and then
//! renamed, so a name must leave room for that suffix.

use super::{Muxer, OutputTarget, TaskRecord};

/// Longest file name (one path segment) Linux file systems store, in bytes.
pub(crate) const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest local path, in bytes (`PATH_MAX` less its terminating NUL).
pub(crate) const MAX_LOCAL_PATH_BYTES: usize = 4095;
/// Longest S3 object key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// Digits of an HLS segment's number in its name.
const SEGMENT_DIGITS: usize = 6;
/// Appended to a file's name while it is written.
const PARTIAL_SUFFIX: &str = ".partial";
/// Length of a TaskID (a hyphenated UUID).
const TASK_ID_LEN: usize = 36;
/// Digits of a millisecond Unix timestamp (until the year 2286).
const MILLIS_DIGITS: usize = 13;

/// The result's file extension.
pub(crate) fn extension(muxer: Muxer) -> &'static str {
    match muxer {
        // A snapshot-only task writes no result file; its segments are named as an MP4's.
        Muxer::Mp4 | Muxer::None => "mp4",
        Muxer::Hls => "m3u8",
    }
}

/// The result's directory: `TargetDir`, or the TaskID.
pub(crate) fn result_dir<'a>(id: &'a str, output: &'a OutputTarget) -> &'a str {
    output
        .target_dir
        .as_deref()
        .map(|d| d.trim_matches('/'))
        .unwrap_or(id)
}

/// The name of an HLS result without `TargetName`, as the source product names it.
pub(crate) const DEFAULT_HLS_NAME: &str = "playlist";

/// The result's name without extension, when it is known before the recording ends:
/// `TargetName`, else for HLS [`DEFAULT_HLS_NAME`]. (An MP4 without `TargetName` is named after
/// its stop time.)
pub(crate) fn known_name(output: &OutputTarget, muxer: Muxer) -> Option<&str> {
    match (&output.target_name, muxer) {
        (Some(name), _) => Some(name),
        (None, Muxer::Hls) => Some(DEFAULT_HLS_NAME),
        (None, Muxer::Mp4 | Muxer::None) => None,
    }
}

/// The result's name without extension: [`known_name`], else the stop time in milliseconds
/// (tasks stopped before the milliseconds were kept: the stop second's start).
pub(crate) fn result_name(task: &TaskRecord) -> String {
    match known_name(&task.spec.output, task.spec.muxer) {
        Some(name) => name.to_string(),
        None => task
            .stop_time_ms
            .or(task.stop_time.map(|s| s * 1000))
            .unwrap_or(task.create_time * 1000)
            .to_string(),
    }
}

/// The result's path below the output root (or its key in the bucket): `<dir>/<name>.<ext>`.
pub(crate) fn rel_path(task: &TaskRecord) -> String {
    format!(
        "{}/{}.{}",
        result_dir(&task.id, &task.spec.output),
        result_name(task),
        extension(task.spec.muxer)
    )
}

/// A place a task's result occupies while the task is in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    /// Storage location and path, one string (what the reservation is keyed on).
    pub(crate) key: String,
    /// The path, for messages.
    pub(crate) shown: String,
}

/// What a new task must reserve and what it must find free, so that two tasks in progress never
/// write the same files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Places {
    /// Held by the task until it finishes: its result's file (`<dir>/<name>.<ext>`, when the name
    /// is known at Start), or its whole directory when that is its TaskID.
    pub(crate) reserve: Vec<Place>,
    /// Must not be held by a task in progress: the TaskID directory the task's `TargetDir` lies
    /// in, if it is another task's.
    pub(crate) free: Vec<Place>,
}

/// The places task `id` with this output occupies (see [`Places`]). An MP4 without `TargetName`
/// reserves no file: it is named after its stop time in milliseconds, which no other task shares.
pub(crate) fn places(id: &str, output: &OutputTarget, muxer: Muxer) -> Places {
    let location = output.location.as_deref().unwrap_or("local");
    let place = |path: String| Place {
        key: format!("{location}\n{path}"),
        shown: path,
    };
    match output.target_dir.as_deref().map(|d| d.trim_matches('/')) {
        None => Places {
            reserve: vec![place(format!("{id}/"))],
            free: Vec::new(),
        },
        Some(dir) => {
            let first = dir.split('/').next().unwrap_or(dir);
            Places {
                reserve: known_name(output, muxer)
                    .map(|name| place(format!("{dir}/{name}.{}", extension(muxer))))
                    .into_iter()
                    .collect(),
                free: vec![place(format!("{first}/"))],
            }
        }
    }
}

/// A result name that cannot be stored, with the limit it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameProblem {
    /// A segment of `TargetDir` is longer than a file name may be.
    #[error(
        "has a path segment of {bytes} bytes; each segment may have at most {MAX_FILE_NAME_BYTES} bytes"
    )]
    DirSegment {
        /// Bytes of the longest segment.
        bytes: usize,
    },
    /// `TargetName` with what pagecast appends is longer than a file name may be.
    #[error(
        "must be at most {max} bytes for {what} (got {bytes}): file names may have \
         {MAX_FILE_NAME_BYTES} bytes, and pagecast appends {appended}"
    )]
    Name {
        /// Bytes of the name.
        bytes: usize,
        /// Its limit.
        max: usize,
        /// The result type.
        what: &'static str,
        /// What pagecast appends, for the message.
        appended: &'static str,
    },
    /// The whole local path would be too long.
    #[error(
        "is too long: the result's local path below the server's output directory would have \
         {bytes} bytes, more than the {MAX_LOCAL_PATH_BYTES} bytes a path may have"
    )]
    LocalPath {
        /// Bytes of the longest path written.
        bytes: usize,
    },
    /// An object key would be too long.
    #[error(
        "is too long: the result's object keys would have up to {bytes} bytes, more than the \
         {MAX_KEY_BYTES} bytes object storage allows"
    )]
    Key {
        /// Bytes of the longest key.
        bytes: usize,
    },
}

/// Where a result is written, for [`check_lengths`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roots {
    /// Bytes of the local directory the result's files are written below (the output
    /// directory, or for object storage a task's staging directory), without a trailing `/`.
    pub(crate) local_bytes: usize,
    /// The result goes to object storage (its keys count too).
    pub(crate) to_bucket: bool,
}

/// Checks that every file of a result in `dir` named `name` (`None`: the default) can be
/// stored: each path segment, the whole local path and, for a bucket, every object key.
pub(crate) fn check_lengths(
    dir: &str,
    name: Option<&str>,
    muxer: Muxer,
    roots: Roots,
) -> Result<(), NameProblem> {
    if let Some(bytes) = dir
        .split('/')
        .map(str::len)
        .filter(|&b| b > MAX_FILE_NAME_BYTES)
        .max()
    {
        return Err(NameProblem::DirSegment { bytes });
    }
    // The longest file name written locally, and the longest object key's last segment.
    let (local_file, key_file) = match (muxer, name) {
        // `<name>.mp4`, written in place by ffmpeg.
        // (A snapshot-only task writes no result: checked as an MP4's, its longest.)
        (Muxer::Mp4 | Muxer::None, Some(n)) => (n.len() + 4, n.len() + 4),
        // `<stop ms>.mp4`; in a bucket the parts first go to `<TaskID>.mp4.part`.
        (Muxer::Mp4 | Muxer::None, None) => (MILLIS_DIGITS + 4, TASK_ID_LEN + ".mp4.part".len()),
        // `<name>_NNNNNN.ts.partial` (longer than `<name>.m3u8.partial`).
        (Muxer::Hls, n) => {
            let n = n.map_or(DEFAULT_HLS_NAME.len(), str::len);
            let segment = n + 1 + SEGMENT_DIGITS + ".ts".len();
            (segment + PARTIAL_SUFFIX.len(), segment)
        }
    };
    if let Some(n) = name {
        let max_extra = local_file - n.len();
        if local_file > MAX_FILE_NAME_BYTES {
            let (what, appended) = match muxer {
                Muxer::Mp4 | Muxer::None => ("an MP4", "\".mp4\""),
                Muxer::Hls => (
                    "HLS",
                    "\"_NNNNNN.ts.partial\" to segment files while they are written",
                ),
            };
            return Err(NameProblem::Name {
                bytes: n.len(),
                max: MAX_FILE_NAME_BYTES - max_extra,
                what,
                appended,
            });
        }
    }
    let local = roots.local_bytes + 1 + dir.len() + 1 + local_file;
    if local > MAX_LOCAL_PATH_BYTES {
        return Err(NameProblem::LocalPath { bytes: local });
    }
    let key = dir.len() + 1 + key_file;
    if roots.to_bucket && key > MAX_KEY_BYTES {
        return Err(NameProblem::Key { bytes: key });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Roots = Roots {
        local_bytes: 40,
        to_bucket: false,
    };
    const BUCKET: Roots = Roots {
        local_bytes: 40,
        to_bucket: true,
    };

    fn task(muxer: Muxer, output: OutputTarget) -> TaskRecord {
        TaskRecord {
            id: "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f".into(),
            status: crate::task::Status::Transcode,
            create_time: 1_700_000_000,
            start_time: Some(1_700_000_001),
            cancel_time: None,
            stop_time: Some(1_700_000_042),
            stop_time_ms: Some(1_700_000_042_317),
            finish_time: None,
            spec: crate::task::StartSpec {
                record_url: "https://example.org/".into(),
                manual_start: false,
                width: 1280,
                height: 720,
                fps: 30,
                max_duration_secs: 60,
                callback_url: None,
                storage_type: crate::task::StorageType::Local,
                muxer,
                auth_url: None,
                output,
                start_timeout_secs: 300,
                user_context: None,
                audio: true,
                capture: None,
                user_agent: None,
            },
            result: None,
            stats: None,
            owner: None,
            fence: 0,
            node: None,
            restarts: 0,
            callback: None,
        }
    }

    #[test]
    fn tasks_reserve_their_file_or_their_own_directory() {
        let id = "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f";
        let keys = |p: Vec<Place>| p.into_iter().map(|p| p.key).collect::<Vec<_>>();
        let own = places(id, &OutputTarget::default(), Muxer::Mp4);
        assert_eq!(keys(own.reserve), [format!("local\n{id}/")]);
        assert!(own.free.is_empty());
        let named = OutputTarget {
            target_dir: Some(format!("{id}/sub")),
            target_name: Some("lesson".into()),
            location: Some("s3 http://h:1 b".into()),
            ..OutputTarget::default()
        };
        let p = places("other", &named, Muxer::Hls);
        assert_eq!(
            keys(p.reserve),
            [format!("s3 http://h:1 b\n{id}/sub/lesson.m3u8")]
        );
        assert_eq!(keys(p.free), [format!("s3 http://h:1 b\n{id}/")]);
        assert_eq!(
            p_shown(&places("x", &named, Muxer::Mp4)),
            format!("{id}/sub/lesson.mp4")
        );
        // HLS without TargetName: playlist.m3u8; MP4 without: nothing to reserve.
        let dir_only = OutputTarget {
            target_dir: Some("room".into()),
            ..OutputTarget::default()
        };
        assert_eq!(
            p_shown(&places("x", &dir_only, Muxer::Hls)),
            "room/playlist.m3u8"
        );
        assert!(places("x", &dir_only, Muxer::Mp4).reserve.is_empty());
    }

    fn p_shown(p: &Places) -> String {
        p.reserve[0].shown.clone()
    }

    #[test]
    fn default_names_are_the_source_products() {
        let id = "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f";
        let mp4 = task(Muxer::Mp4, OutputTarget::default());
        assert_eq!(rel_path(&mp4), format!("{id}/1700000042317.mp4"));
        let hls = task(Muxer::Hls, OutputTarget::default());
        assert_eq!(rel_path(&hls), format!("{id}/playlist.m3u8"));
        let named = OutputTarget {
            target_dir: Some("class/7".into()),
            target_name: Some("lesson".into()),
            ..OutputTarget::default()
        };
        assert_eq!(
            rel_path(&task(Muxer::Hls, named.clone())),
            "class/7/lesson.m3u8"
        );
        assert_eq!(rel_path(&task(Muxer::Mp4, named)), "class/7/lesson.mp4");
        // Stopped before the milliseconds were kept: the stop second.
        let mut old = task(Muxer::Mp4, OutputTarget::default());
        old.stop_time_ms = None;
        assert_eq!(result_name(&old), "1700000042000");
        assert_eq!(known_name(&old.spec.output, Muxer::Mp4), None);
        assert_eq!(known_name(&old.spec.output, Muxer::Hls), Some("playlist"));
    }

    #[test]
    fn names_at_the_limit_fit_and_one_byte_more_does_not() {
        let mp4 = "a".repeat(251);
        assert_eq!(check_lengths("d", Some(&mp4), Muxer::Mp4, LOCAL), Ok(()));
        let too_long = "a".repeat(252);
        assert_eq!(
            check_lengths("d", Some(&too_long), Muxer::Mp4, LOCAL),
            Err(NameProblem::Name {
                bytes: 252,
                max: 251,
                what: "an MP4",
                appended: "\".mp4\"",
            })
        );
        let hls = "a".repeat(237);
        assert_eq!(check_lengths("d", Some(&hls), Muxer::Hls, BUCKET), Ok(()));
        let e = check_lengths("d", Some(&"a".repeat(238)), Muxer::Hls, BUCKET).unwrap_err();
        assert!(matches!(e, NameProblem::Name { max: 237, .. }), "{e:?}");
        assert!(e.to_string().contains("at most 237 bytes"), "{e}");
    }

    #[test]
    fn lengths_are_counted_in_bytes() {
        // 100 CJK characters are 300 bytes.
        let cjk = "录".repeat(100);
        assert!(check_lengths("d", Some(&cjk), Muxer::Mp4, LOCAL).is_err());
        let fits = "录".repeat(83);
        assert_eq!(check_lengths("d", Some(&fits), Muxer::Mp4, LOCAL), Ok(()));
    }

    #[test]
    fn every_directory_segment_is_a_file_name() {
        let dir = format!("ok/{}/ok", "b".repeat(256));
        assert_eq!(
            check_lengths(&dir, None, Muxer::Mp4, LOCAL),
            Err(NameProblem::DirSegment { bytes: 256 })
        );
        let dir = format!("ok/{}/ok", "b".repeat(255));
        assert_eq!(check_lengths(&dir, None, Muxer::Mp4, LOCAL), Ok(()));
    }

    #[test]
    fn object_keys_and_local_paths_have_their_own_limits() {
        // 4 segments of 250 bytes: a 1003-byte directory.
        let dir = vec!["c".repeat(250); 4].join("/");
        assert_eq!(check_lengths(&dir, Some("x"), Muxer::Mp4, LOCAL), Ok(()));
        assert_eq!(
            check_lengths(&dir, Some("name-of-20-bytes-xx"), Muxer::Mp4, BUCKET),
            Err(NameProblem::Key { bytes: 1027 })
        );
        let deep = vec!["c".repeat(250); 17].join("/");
        let e = check_lengths(&deep, Some("x"), Muxer::Mp4, LOCAL).unwrap_err();
        assert!(matches!(e, NameProblem::LocalPath { .. }), "{e:?}");
        let roots = Roots {
            local_bytes: 4000,
            to_bucket: false,
        };
        assert!(check_lengths(&"d".repeat(90), Some("x"), Muxer::Hls, roots).is_err());
    }
}
