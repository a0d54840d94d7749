//! What a result is reported as in `Result.Videos`: one entry per file a client fetches, as in
//! the source product. An MP4 is one entry; an HLS result is its playlist alone, with the number
//! of segments beside it (`SegmentCount`), so that a ten-hour recording's Describe stays small.
//! Every entry has its duration (`FileDuration`): ffprobe's for an MP4 on this machine, the sum
//! of the playlist's segment durations for HLS, and otherwise (an MP4 assembled in the bucket)
//! the recorded duration, as the source product falls back to its stop minus start time.
//!
//! The upload stage still needs every file of an HLS result: the transcode stage leaves their
//! list in the task's deliver directory ([`note_files`]), beside the files themselves.

use std::path::Path;
use std::time::Duration;

use tracing::warn;

use crate::delivery::ResultFile;
use crate::task::{Muxer, TaskRecord};

/// A result file as it is listed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Listed {
    /// The file (for HLS, the playlist).
    pub(super) file: ResultFile,
    /// Seconds of media.
    pub(super) seconds: f64,
    /// HLS: its segments.
    pub(super) segments: Option<u64>,
}

/// The entries of `Result.Videos` for `files` (an MP4, or an HLS playlist first and then its
/// segments), made below `out_root`.
pub(super) async fn listed(
    ffprobe: &Path,
    task: &TaskRecord,
    files: Vec<ResultFile>,
    out_root: &Path,
) -> Vec<Listed> {
    let recorded = task.stats.as_ref().map_or(0.0, |s| s.recorded_duration);
    if task.spec.muxer == Muxer::Hls {
        let mut files = files.into_iter();
        let Some(playlist) = files.next() else {
            return Vec::new();
        };
        let segments = files.count() as u64;
        let seconds = std::fs::read_to_string(out_root.join(&playlist.key))
            .map(|text| playlist_seconds(&text))
            .unwrap_or(recorded);
        return vec![Listed {
            file: playlist,
            seconds,
            segments: Some(segments),
        }];
    }
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let local = out_root.join(&file.key);
        let seconds = match local.is_file() {
            true => probe_seconds(ffprobe, &local).await,
            false => None,
        };
        out.push(Listed {
            file,
            seconds: seconds.unwrap_or(recorded),
            segments: None,
        });
    }
    out
}

/// The duration ffprobe reads from a file; `None` (logged) if it cannot.
async fn probe_seconds(ffprobe: &Path, file: &Path) -> Option<f64> {
    let args = [
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file.display().to_string()])
    .collect::<Vec<_>>();
    match crate::process::run_capture("ffprobe", ffprobe, &args, Duration::from_secs(60)).await {
        Ok(out) => String::from_utf8_lossy(&out)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0),
        Err(e) => {
            warn!(error = %e, "could not read the result's duration; the recorded one is reported");
            None
        }
    }
}

/// The sum of a media playlist's `#EXTINF` durations.
fn playlist_seconds(text: &str) -> f64 {
    let total: f64 = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#EXTINF:"))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .sum();
    (total * 1000.0).round() / 1000.0
}

/// Leaves the list of every file of a result in `deliver_dir` for the upload stage.
pub(super) fn note_files(deliver_dir: &Path, files: &[ResultFile]) -> std::io::Result<()> {
    let list: String = files
        .iter()
        .map(|f| format!("{},{}\n", f.size, f.key))
        .collect();
    std::fs::create_dir_all(deliver_dir)?;
    std::fs::write(crate::workdir::result_files_list(deliver_dir), list)
}

/// Every file of the result in `deliver_dir` (key, size), if the transcode stage listed them.
pub(super) fn noted_files(deliver_dir: &Path) -> Option<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(crate::workdir::result_files_list(deliver_dir)).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (size, key) = l.split_once(',')?;
                Some((key.to_string(), size.parse().ok()?))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_duration_is_the_sum_of_its_segments() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.000000,\na_000000.ts\n\
                    #EXT-X-DISCONTINUITY\n#EXTINF:1.533333,\na_000001.ts\n#EXTINF:bad,\nx.ts\n\
                    #EXT-X-ENDLIST\n";
        assert_eq!(playlist_seconds(text), 3.533);
        assert_eq!(playlist_seconds("#EXTM3U\n"), 0.0);
    }

    #[test]
    fn file_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(noted_files(dir.path()), None);
        let files = [
            ResultFile {
                key: "t/a,b.m3u8".into(),
                size: 120,
                stored: false,
            },
            ResultFile {
                key: "t/a,b_000000.ts".into(),
                size: 9000,
                stored: true,
            },
        ];
        note_files(&dir.path().join("d"), &files).unwrap();
        assert_eq!(
            noted_files(&dir.path().join("d")).unwrap(),
            vec![
                ("t/a,b.m3u8".to_string(), 120),
                ("t/a,b_000000.ts".to_string(), 9000)
            ]
        );
    }
}
