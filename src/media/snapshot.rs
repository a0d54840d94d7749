//! Snapshots: pictures taken from the recording's own output frames every so often, without a
//! screenshot round trip to the browser.
//!
//! The recording offers every output frame with its recorded time ([`SnapshotFeed::offer`]);
//! the feed keeps the first frame at or after each multiple of the interval and hands it, without
//! waiting, to whoever stores the pictures. Paused time is not recorded, so no picture is taken
//! while paused. A frame that is already a JPEG (Chromium's screencast) is kept as it is when a
//! JPEG of the recording's size is asked for; anything else is decoded, scaled and encoded in
//! process ([`super::picture`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::MediaError;
use super::encoder::FrameFormat;

/// Pictures waiting to be stored; more are dropped (a storage that falls behind loses
/// pictures, never recording time).
const QUEUE: usize = 4;

/// One picture to store.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// Recorded time of the frame, milliseconds (pauses excluded).
    pub(crate) time_ms: u64,
    /// The frame, in `format`.
    pub(crate) image: Arc<[u8]>,
    /// What `image` is.
    pub(crate) format: FrameFormat,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("time_ms", &self.time_ms)
            .field("bytes", &self.image.len())
            .finish()
    }
}

/// The recording's side of the snapshots. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SnapshotFeed {
    interval_ms: u64,
    next_due: Arc<Mutex<Option<u64>>>,
    tx: mpsc::Sender<Snapshot>,
}

/// Whether a frame at `time_ms` is the next picture, given when the next is due (`None`: none
/// taken yet, the first frame is). Returns when the one after is due.
pub(crate) fn take(time_ms: u64, next_due: Option<u64>, interval_ms: u64) -> Option<u64> {
    let interval = interval_ms.max(1);
    match next_due {
        Some(due) if time_ms < due => None,
        _ => Some((time_ms / interval + 1) * interval),
    }
}

impl SnapshotFeed {
    /// A feed that takes a picture every `interval_ms` of recorded time, and the receiving end
    /// of its pictures. `last_ms`: the recorded time of the last picture an earlier worker took
    /// (a continued task goes on at the next multiple of the interval).
    pub(crate) fn new(interval_ms: u64, last_ms: Option<u64>) -> (Self, mpsc::Receiver<Snapshot>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let next_due = last_ms.and_then(|last| take(last, None, interval_ms));
        (
            Self {
                interval_ms,
                next_due: Arc::new(Mutex::new(next_due)),
                tx,
            },
            rx,
        )
    }

    /// Offers the output frame at recorded time `time_ms`. Never waits.
    pub(crate) fn offer(&self, time_ms: u64, image: &Arc<[u8]>, format: FrameFormat) {
        let Ok(mut due) = self.next_due.lock() else {
            return;
        };
        let Some(next) = take(time_ms, *due, self.interval_ms) else {
            return;
        };
        *due = Some(next);
        let snap = Snapshot {
            time_ms,
            image: image.clone(),
            format,
        };
        if self.tx.try_send(snap).is_err() {
            tracing::warn!(
                time_ms,
                "snapshot dropped: the previous ones are still being stored"
            );
        }
    }
}

/// Writes `snap` as a picture of `out` format at `output`. `size` is the recording's frame
/// size (raw frames have no header); `scale_to` a width to scale to. The conversion runs on a
/// blocking thread, off the async workers. Returns the picture's size in bytes.
pub(crate) async fn write_picture(
    snap: &Snapshot,
    size: (u32, u32),
    out: SnapshotFormat,
    scale_to: Option<u32>,
    output: &Path,
) -> Result<u64, MediaError> {
    if let Some(dir) = output.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(MediaError::io("creating the snapshots' directory"))?;
    }
    // The screencast's frame is a JPEG already: kept as it is.
    let picture: Arc<[u8]> =
        if snap.format == FrameFormat::Jpeg && out == SnapshotFormat::Jpg && scale_to.is_none() {
            snap.image.clone()
        } else {
            let (image, format) = (snap.image.clone(), snap.format);
            tokio::task::spawn_blocking(move || {
                super::picture::convert(&image, format, size, out, scale_to)
            })
            .await
            .map_err(|e| MediaError::Unexpected(format!("the snapshot conversion stopped: {e}")))?
            .map_err(|e| MediaError::Unexpected(e.to_string()))?
            .into()
        };
    tokio::fs::write(output, &picture)
        .await
        .map_err(MediaError::io("writing a snapshot"))?;
    Ok(picture.len() as u64)
}

/// The image format of snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotFormat {
    /// JPEG.
    Jpg,
    /// PNG.
    Png,
}

impl SnapshotFormat {
    /// The file extension (and the name in `Output.Snapshots.Format`).
    pub(crate) fn ext(self) -> &'static str {
        match self {
            SnapshotFormat::Jpg => "jpg",
            SnapshotFormat::Png => "png",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_picture_per_interval_of_recorded_time() {
        // 30 fps, every second: the frames at 0, 1000, 2000 ms.
        let mut due = None;
        let mut taken = Vec::new();
        for slot in 0..95u64 {
            let t = (slot as f64 * 1000.0 / 30.0).round() as u64;
            if let Some(next) = take(t, due, 1000) {
                taken.push(t);
                due = Some(next);
            }
        }
        assert_eq!(taken, vec![0, 1000, 2000, 3000]);
        // 7 fps (frames at 0, 143, …, 857, 1000 …) every 2 s.
        assert_eq!(take(857, Some(2000), 2000), None);
        assert_eq!(take(2000, Some(2000), 2000), Some(4000));
        // The first frame is taken, and the next is due at the following multiple.
        assert_eq!(take(10_500, None, 1000), Some(11_000));
        // A continued task whose last picture was at 10 s: nothing before 11 s.
        let (feed, _rx) = SnapshotFeed::new(1000, Some(10_000));
        assert_eq!(*feed.next_due.lock().unwrap(), Some(11_000));
        let (feed, _rx) = SnapshotFeed::new(1000, None);
        assert_eq!(*feed.next_due.lock().unwrap(), None);
        // Frames missed (a stall): the next picture is the first frame after, and the
        // schedule stays on the multiples.
        assert_eq!(take(5_040, Some(3000), 1000), Some(6000));
    }
}
