//! Figures of the recordings running in this process, exported as aggregates only: a metric
//! label per task would give every scraper the list of running task ids (and make a series per
//! task). Per-task figures are in Describe (`Stats`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics;

/// The latest figures of one running recording.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Figures {
    /// Frames per second captured since the previous update (`None` before the second).
    pub(crate) capture_fps: Option<f64>,
    /// Output frames that repeated the previous one, so far.
    pub(crate) frames_duplicated: u64,
    /// Captured frames skipped, so far.
    pub(crate) frames_dropped: u64,
}

/// The aggregates exported for a set of running recordings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Aggregate {
    /// Sum of the capture rates (divide by the recordings running for the mean).
    pub(crate) capture_fps_sum: f64,
    /// Lowest capture rate (`None` while no recording has one).
    pub(crate) capture_fps_lowest: Option<f64>,
    /// Sum of duplicated frames.
    pub(crate) frames_duplicated: u64,
    /// Sum of dropped frames.
    pub(crate) frames_dropped: u64,
}

/// The aggregate of `figures`.
pub(crate) fn aggregate<'a>(figures: impl IntoIterator<Item = &'a Figures>) -> Aggregate {
    let mut a = Aggregate::default();
    for f in figures {
        if let Some(fps) = f.capture_fps {
            a.capture_fps_sum += fps;
            a.capture_fps_lowest = Some(a.capture_fps_lowest.map_or(fps, |l: f64| l.min(fps)));
        }
        a.frames_duplicated += f.frames_duplicated;
        a.frames_dropped += f.frames_dropped;
    }
    a
}

fn table() -> &'static Mutex<HashMap<u64, Figures>> {
    static TABLE: std::sync::OnceLock<Mutex<HashMap<u64, Figures>>> = std::sync::OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// One running recording's entry; removed from the aggregates when dropped.
#[derive(Debug)]
pub(crate) struct LiveRecording(u64);

impl LiveRecording {
    /// A new entry (without figures yet).
    pub(crate) fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LiveRecording(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Sets this recording's latest figures.
    pub(crate) fn update(&self, figures: Figures) {
        let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
        t.insert(self.0, figures);
        export(&t);
    }
}

impl Drop for LiveRecording {
    fn drop(&mut self) {
        let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
        t.remove(&self.0);
        export(&t);
    }
}

fn export(t: &HashMap<u64, Figures>) {
    let a = aggregate(t.values());
    metrics::set(
        &metrics::CAPTURE_FPS,
        &[],
        (a.capture_fps_sum * 10.0).round() / 10.0,
    );
    let reg = metrics::registry();
    match a.capture_fps_lowest {
        Some(l) => reg.set(&metrics::CAPTURE_FPS_LOWEST, &[], (l * 10.0).round() / 10.0),
        None => reg.remove(&metrics::CAPTURE_FPS_LOWEST, &[]),
    }
    metrics::set(
        &metrics::RECORDING_DUPLICATED,
        &[],
        a.frames_duplicated as f64,
    );
    metrics::set(&metrics::RECORDING_DROPPED, &[], a.frames_dropped as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates() {
        assert_eq!(aggregate(&[]), Aggregate::default());
        let a = aggregate(&[
            Figures {
                capture_fps: Some(30.0),
                frames_duplicated: 5,
                frames_dropped: 1,
            },
            Figures {
                capture_fps: Some(12.5),
                frames_duplicated: 2,
                frames_dropped: 0,
            },
            Figures::default(),
        ]);
        assert_eq!(
            a,
            Aggregate {
                capture_fps_sum: 42.5,
                capture_fps_lowest: Some(12.5),
                frames_duplicated: 7,
                frames_dropped: 1,
            }
        );
    }
}
