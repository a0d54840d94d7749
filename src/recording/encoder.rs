//! The live encoder, restarted if ffmpeg dies (see [`ResilientEncoder`]).

use std::time::Duration;

use tracing::warn;

use super::{RecordError, RecordOptions};
use crate::error::ErrorCode;
use crate::media::encoder::{FrameFormat, SegmentEncoder, SlotMedia};
use crate::media::segments::next_segment_number;

use super::backlog::Backlog;

/// Encoder deaths a recording survives; one more ends it with `RecordFailed`.
const MAX_ENCODER_RESTARTS: u32 = 5;
/// Memory the encoder's replay backlog may hold (raw frames from `x11` capture, as kept by
/// `backlog`).
const RAW_BACKLOG_BYTES: usize = 48 << 20;

/// The live encoder, restarted if ffmpeg dies. The frames sent since the current instance's last
/// completed segment are kept (shared buffers, a few MB of JPEG) and replayed into the new
/// instance, which starts with the next segment number: the segment ffmpeg was writing when it
/// died is simply written again, so nothing is lost. Raw frames are kept as their differences
/// from the frame before (`backlog`), and only the newest [`RAW_BACKLOG_BYTES`] of them; older
/// ones are replaced by a repeat of the first kept frame (the video keeps its length; the loss
/// is reported).
pub(super) struct ResilientEncoder {
    opts: RecordOptions,
    fps: u32,
    current: Option<SegmentEncoder>,
    /// First segment number of the current instance.
    first_segment: u64,
    /// Frames sent to the current instance.
    sent: u64,
    /// Frames (with their samples) sent to the current instance that are not in a completed
    /// segment yet.
    backlog: Backlog,
    pub(super) restarts: u32,
    pub(super) lost_seconds: f64,
    failed: Option<(ErrorCode, String)>,
}

impl ResilientEncoder {
    pub(super) fn start(opts: &RecordOptions, fps: u32) -> Result<Self, RecordError> {
        let first_segment = next_segment_number(&opts.work_dir);
        let current = SegmentEncoder::start(
            &opts.encoder,
            opts.width,
            opts.height,
            fps,
            &opts.work_dir,
            first_segment,
        )?;
        if let Some(live) = &opts.live {
            // Pushes that carry the recording's own stream follow its segments from here.
            live.follow(crate::media::live::RelaySource {
                dir: opts.work_dir.clone(),
                first_segment,
                still: crate::media::live::StillSpec {
                    encoder: opts.encoder.clone(),
                    width: opts.width,
                    height: opts.height,
                    fps,
                },
            });
        }
        Ok(Self {
            opts: opts.clone(),
            fps,
            current: Some(current),
            first_segment,
            sent: 0,
            backlog: match opts.encoder.input {
                // JPEG pictures are small: the whole open segment is kept, as before.
                FrameFormat::Jpeg => Backlog::new(usize::MAX, false),
                FrameFormat::Bgrx | FrameFormat::I420 => Backlog::new(RAW_BACKLOG_BYTES, true),
            },
            restarts: 0,
            lost_seconds: 0.0,
            failed: None,
        })
    }

    /// Frames the current instance has not taken yet.
    pub(super) fn queued(&self) -> u64 {
        self.current.as_ref().map_or(0, |e| e.queued() as u64)
    }

    /// Why the encoder gave up, once it has.
    pub(super) fn failure(&self) -> Option<(ErrorCode, String)> {
        self.failed.clone()
    }

    fn frames_per_segment(&self) -> u64 {
        u64::from(self.fps * self.opts.encoder.segment_seconds.max(1))
    }

    /// Drops backlog frames that the current instance has written into completed segments, and
    /// returns how many frames sent since then the backlog no longer has.
    fn prune(&mut self) -> u64 {
        let list = crate::workdir::segment_list(&self.opts.work_dir, self.first_segment);
        let done = std::fs::read_to_string(list)
            .map(|l| crate::media::segments::parse_segment_list(&l).len() as u64)
            .unwrap_or(0);
        let safe = (done * self.frames_per_segment()).min(self.sent);
        let backlog_start = self.sent - self.backlog.len() as u64;
        self.backlog
            .drop_front(safe.saturating_sub(backlog_start) as usize);
        (self.sent - self.backlog.len() as u64).saturating_sub(safe)
    }

    pub(super) async fn send(&mut self, slot: SlotMedia) {
        if let Some(live) = &self.opts.live {
            live.offer(&slot, self.opts.encoder.input);
        }
        let Some(enc) = self.current.as_ref() else {
            return;
        };
        if enc.send(slot.clone()).await.is_ok() {
            self.sent += 1;
            self.backlog.push(&slot);
            if self.sent.is_multiple_of(self.frames_per_segment()) {
                let _ = self.prune();
            }
            return;
        }
        let tail = enc.tail();
        let missing = self.prune();
        if missing > 0 {
            self.lost_seconds += missing as f64 / f64::from(self.fps);
        }
        let first = self.backlog.front().unwrap_or_else(|| slot.clone());
        let total = missing as usize + self.backlog.len() + 1;
        // Pictures are made whole one at a time as the new instance takes them.
        let replay = std::iter::repeat_n(first, missing as usize)
            .chain(self.backlog.take())
            .chain(std::iter::once(slot));
        self.current = None; // dropping kills and reaps what is left of it
        if disk_full(&tail) {
            // A new encoder would die the same way, writing more into the full disk: the
            // recording ends with the segments completed so far.
            warn!(ffmpeg = %tail, "the encoder ran out of disk space; ending the recording");
            self.lost_seconds += total as f64 / f64::from(self.fps);
            self.failed = Some((
                ErrorCode::DiskFull,
                "the work disk filled up; the recording was ended there and what it recorded \
                 is delivered"
                    .into(),
            ));
            return;
        }
        self.restarts += 1;
        warn!(restarts = self.restarts, replayed = total, ffmpeg = %tail, "the encoder died; restarting it");
        if self.restarts > MAX_ENCODER_RESTARTS {
            self.lost_seconds += total as f64 / f64::from(self.fps);
            self.failed = Some((
                ErrorCode::RecordFailed,
                format!(
                    "the encoder (ffmpeg) died {} times; last: {tail}",
                    self.restarts
                ),
            ));
            return;
        }
        self.first_segment = next_segment_number(&self.opts.work_dir);
        self.sent = 0;
        match SegmentEncoder::start(
            &self.opts.encoder,
            self.opts.width,
            self.opts.height,
            self.fps,
            &self.opts.work_dir,
            self.first_segment,
        ) {
            Ok(enc) => {
                self.current = Some(enc);
                // Replay; should the new instance die too, the next send restarts again.
                for (i, frame) in replay.enumerate() {
                    let Some(enc) = self.current.as_ref() else {
                        break;
                    };
                    if enc.send(frame.clone()).await.is_err() {
                        self.lost_seconds += (total - i) as f64 / f64::from(self.fps);
                        break;
                    }
                    self.sent += 1;
                    self.backlog.push(&frame);
                }
            }
            Err(e) => {
                self.lost_seconds += total as f64 / f64::from(self.fps);
                self.failed = Some((
                    ErrorCode::RecordFailed,
                    format!("the encoder could not be restarted: {e}"),
                ));
            }
        }
    }

    /// Finishes the current instance and returns every completed segment, in order.
    pub(super) async fn finish(mut self) -> Result<Vec<std::path::PathBuf>, RecordError> {
        if let Some(enc) = self.current.as_ref()
            && enc.held_back() > 0
        {
            warn!(
                held_back = enc.held_back(),
                "the encoder fell behind; new pictures were shown as repeats to bound memory"
            );
        }
        if let Some(enc) = self.current.take()
            && let Err(e) = enc.finish(Duration::from_secs(60)).await
        {
            // Whatever segments are complete are still delivered.
            warn!(error = %e, "the encoder did not finish cleanly");
        }
        Ok(crate::media::segments::completed_segments(
            &self.opts.work_dir,
        )?)
    }
}

/// Whether an encoder's last words say it could not write for lack of space (ENOSPC).
fn disk_full(ffmpeg_tail: &str) -> bool {
    ffmpeg_tail.contains("No space left on device")
}
