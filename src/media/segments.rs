//! The on-disk layout of recorded segments in a work directory: the MPEG-TS segment files every
//! encoder instance writes (`seg_000123.ts`) and the CSV list of completed segments each instance
//! keeps (`segments-000123.csv`, named after its first segment), and what is read back from them
//! (which segments are complete, how many seconds, where a restarted encoder continues).
//!
//! The names are the work directory's ([`crate::workdir`]); this module reads what is there.

use std::path::{Path, PathBuf};

use super::MediaError;
use crate::workdir::segment_number;

/// One line of an encoder instance's segment list: a completed segment and its video's span on
/// that instance's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// The segment's file name in the work directory.
    pub name: String,
    /// When its first frame is shown, in seconds.
    pub start: f64,
    /// When its last frame ends, in seconds.
    pub(crate) end: f64,
}

impl SegmentRecord {
    /// Seconds of video in the segment.
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// The completed segments of every encoder instance in `dir` as their lists name them, oldest
/// instance first, each instance's in order; their files may have gone since (a published HLS
/// segment leaves the work directory).
pub(crate) fn recorded_segments(dir: &Path) -> Result<Vec<Vec<SegmentRecord>>, MediaError> {
    let lists = segment_lists(dir).map_err(|e| MediaError::Io {
        context: "reading the work directory".into(),
        source: e,
    })?;
    let mut instances = Vec::with_capacity(lists.len());
    for list in lists {
        let text =
            std::fs::read_to_string(&list).map_err(MediaError::io("reading a segment list"))?;
        instances.push(parse_segment_list(&text));
    }
    Ok(instances)
}

/// Whether anything was recorded into `dir`: a completed segment in any encoder's list.
pub(crate) fn has_recorded_media(dir: &Path) -> bool {
    completed_segments(dir).is_ok_and(|s| !s.is_empty())
}

/// The segments ffmpeg has completed in `dir`, in order: every instance's list, oldest first
/// (a published HLS segment's file may have left the work directory since).
pub fn completed_segments(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    Ok(recorded_segments(dir)?
        .into_iter()
        .flatten()
        .map(|r| dir.join(r.name))
        .collect())
}

/// The number for the first segment of a restarted encoder: after every segment file present,
/// complete or not, and every segment listed (its file may have been published and removed), so
/// nothing is overwritten or named twice.
pub(crate) fn next_segment_number(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| segment_number(&e.file_name().to_string_lossy()))
                .max()
        })
        .ok()
        .flatten();
    let listed = recorded_segments(dir).ok().and_then(|i| {
        i.iter()
            .flatten()
            .filter_map(|r| segment_number(&r.name))
            .max()
    });
    files.max(listed).map_or(0, |n| n + 1)
}

/// Seconds of media in the completed segments in `dir` (every instance's list).
pub(crate) fn completed_seconds(dir: &Path) -> f64 {
    segment_lists(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|list| std::fs::read_to_string(list).ok())
        .flat_map(|text| parse_segment_list(&text))
        .map(|r| r.seconds())
        .sum()
}

/// When the newest completed segment was finished (its list's modification time), and when
/// anything in `dir` was last written (a segment in progress when its encoder died).
pub(crate) fn media_times(dir: &Path) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let completed = segment_lists(dir)
        .ok()?
        .iter()
        .filter_map(|p| mtime(p))
        .max()?;
    let last_write = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| mtime(&e.path()))
        .max()
        .unwrap_or(completed);
    Some((completed, last_write.max(completed)))
}

/// The segment lists of every encoder instance in `dir`, oldest first (zero-padded
/// first-segment numbers sort in recording order); none for a missing directory.
pub(crate) fn segment_lists(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let read_dir = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut lists: Vec<PathBuf> = read_dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(crate::workdir::is_segment_list)
        })
        .collect();
    lists.sort();
    Ok(lists)
}

/// Parses ffmpeg's CSV segment list (`name,start,end` per line). Lines that are not a plain
/// file name with two times (a line cut short by a crash, a path) are skipped.
pub(crate) fn parse_segment_list(text: &str) -> Vec<SegmentRecord> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let name = fields.next()?.trim_matches('"');
            let start = fields.next()?.parse::<f64>().ok()?;
            let end = fields.next()?.parse::<f64>().ok()?;
            (!name.is_empty() && !name.contains('/') && start.is_finite() && end.is_finite()).then(
                || SegmentRecord {
                    name: name.to_string(),
                    start,
                    end,
                },
            )
        })
        .collect()
}

/// Total size of the segments written so far in `dir` (for progress reports).
pub(crate) fn bytes_written(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_every_encoder_instance_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..5u64 {
            std::fs::write(dir.path().join(format!("seg_{n:06}.ts")), b"ts").unwrap();
        }
        // The first ffmpeg completed 0 and 1 and died while writing 2; its restart began at 3.
        std::fs::write(
            crate::workdir::segment_list(dir.path(), 0),
            "seg_000000.ts,0,2\nseg_000001.ts,2,4\n",
        )
        .unwrap();
        std::fs::write(
            crate::workdir::segment_list(dir.path(), 3),
            "seg_000003.ts,0,2\nseg_000004.ts,2,4\n",
        )
        .unwrap();
        let names: Vec<_> = completed_segments(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "seg_000000.ts",
                "seg_000001.ts",
                "seg_000003.ts",
                "seg_000004.ts"
            ]
        );
        assert_eq!(
            next_segment_number(dir.path()),
            5,
            "after every segment file, complete or not"
        );
        assert_eq!(next_segment_number(&dir.path().join("missing")), 0);
        // Published and removed: the lists still name them.
        for n in 0..5u64 {
            std::fs::remove_file(dir.path().join(format!("seg_{n:06}.ts"))).unwrap();
        }
        assert_eq!(next_segment_number(dir.path()), 5);
        assert_eq!(completed_segments(dir.path()).unwrap().len(), 4);
        assert!(has_recorded_media(dir.path()));
    }

    #[test]
    fn segment_list_parsing() {
        let records = parse_segment_list(
            "seg_000000.ts,0.000000,2.000000\nseg_000001.ts,2.000000,4.000000\n\n../x.ts,1,2\nseg_000002.ts,4.0",
        );
        let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["seg_000000.ts", "seg_000001.ts"],
            "paths and cut lines skipped"
        );
        assert_eq!(records[1].start, 2.0);
        assert_eq!(records[1].seconds(), 2.0);
    }
}
