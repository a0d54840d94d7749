//! The wall-clock timeline of a task's media, kept beside its segments in the work directory.
//!
//! Once per recorded second the engine appends `media_seconds,unix_seconds`: where in the task's
//! media (counting every earlier attempt's completed segments) the frame captured at that instant
//! lands. When a worker stops and another takes the task over, the timeline tells at which wall
//! instant the media that survived ends, so the gap reported to the client is what is really
//! missing, not an estimate from file times (which lag the content by the encoder's latency).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends timeline points; errors only cost precision of a later gap report, so they are
/// logged once and otherwise ignored.
pub(crate) struct TimelineWriter {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl TimelineWriter {
    /// Opens (or continues) the work directory's timeline.
    pub(crate) fn open(dir: &Path) -> Self {
        let path = path(dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot write the media timeline"))
            .ok();
        Self { file, path }
    }

    /// Media position `media_seconds` shows the page as it was at `unix_seconds`.
    pub(crate) fn point(&mut self, media_seconds: f64, unix_seconds: f64) {
        if let Some(f) = self.file.as_mut()
            && let Err(e) = writeln!(f, "{media_seconds:.3},{unix_seconds:.3}")
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the media timeline");
            self.file = None;
        }
    }
}

/// The timeline's file in the work directory `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    crate::workdir::timeline(dir)
}

/// The points written so far, in media order.
pub(crate) fn read(dir: &Path) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(path(dir)) else {
        return Vec::new();
    };
    parse(&text)
}

fn parse(text: &str) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let (m, w) = l.split_once(',')?;
            let (m, w) = (m.trim().parse::<f64>().ok()?, w.trim().parse::<f64>().ok()?);
            (m.is_finite() && w.is_finite()).then_some((m, w))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The wall instant shown at media position `media`: from the last point at or before it
/// (points are a second apart and a pause starts a new one, so no pause lies in between).
pub(crate) fn wall_at(points: &[(f64, f64)], media: f64) -> Option<f64> {
    let (m, w) = points.iter().rev().find(|(m, _)| *m <= media + 1e-6)?;
    Some(w + (media - m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_interpolates() {
        let p = parse("0.000,100.000\n1.000,101.000\nbad\n2.000,110.500\n");
        assert_eq!(p.len(), 3);
        assert_eq!(wall_at(&p, 0.5), Some(100.5));
        // After a pause (media 1 -> 2 took 9.5 s of wall time) the later point wins.
        assert_eq!(wall_at(&p, 2.25), Some(110.75));
        assert_eq!(wall_at(&p, -1.0), None);
    }

    #[test]
    fn writes_points_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimelineWriter::open(dir.path());
        w.point(0.0, 5.0);
        w.point(1.0, 6.0);
        drop(w);
        let mut w = TimelineWriter::open(dir.path());
        w.point(2.0, 9.0);
        assert_eq!(read(dir.path()), vec![(0.0, 5.0), (1.0, 6.0), (2.0, 9.0)]);
    }
}
