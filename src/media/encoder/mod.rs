//! The live encoder: JPEG frames in (one per output slot), H.264 MPEG-TS segments out.
//!
//! Frames arrive already paced to a constant rate (see `pacer`), so ffmpeg is told a fixed input
//! frame rate and never stamps anything by its own clock. The output is cut into short segments
//! on disk so that a crash of ffmpeg or of pagecast loses at most the segment being written;
//! `finalize` joins them without re-encoding.
//!
//! With sound, the same ffmpeg gets a second input: raw PCM (s16le, 48 kHz, stereo) on file
//! descriptor 3, exactly `samples_for_slot` samples per frame, so both inputs are timed by
//! counting and audio stays on the video's timeline by construction (across pauses, refreshes
//! and restarts of ffmpeg). Every segment carries AAC 48 kHz stereo.
//!
//! ffmpeg runs under the process core (`crate::process`): its own process group, killed and
//! reaped with its owner, its warnings and errors kept in a bounded tail. Frames and samples are
//! written on dedicated threads (one per input, so neither pipe can stall the other) fed by
//! bounded channels.
//!
//! Its command line is built by [`encoder_args`] (pure, in `args`); the files it writes are
//! described by `media::segments`.

mod args;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use self::args::AUDIO_FD;
pub(crate) use self::args::{
    AAC_FRAME, DEFAULT_PRESET, SAMPLE_RATE, aac_output_args, silence_source,
};
pub use self::args::{EncoderSettings, FrameFormat, encoder_args};
use super::MediaError;
use super::segments::completed_segments;
use crate::process::{OwnedChild, ProcessError, StderrTail, resolve_program};

/// How far (in seconds of output) the encoder may fall behind capture before the recorder waits
/// for it.
const ENCODER_QUEUE_SECONDS: u32 = 15;

/// A picture on its way to ffmpeg, with the bytes it counts against the queue's memory (0 for a
/// repeat of the picture before it, which shares its buffer).
type QueuedImage = (Arc<[u8]>, usize);

/// One output frame and, with sound, the samples that play during it.
#[derive(Debug, Clone)]
pub(crate) struct SlotMedia {
    /// The image, in the encoder's [`FrameFormat`].
    pub(crate) image: Arc<[u8]>,
    /// s16le stereo 48 kHz samples (`samples_for_slot` of them), when recording sound.
    pub(crate) pcm: Option<Arc<[u8]>>,
}

/// What [`SegmentEncoder::send`] queues for a slot's picture.
#[derive(Debug, PartialEq)]
enum Admission {
    /// The picture queued last, again: it shares that buffer and costs no memory.
    Repeat,
    /// A new picture would overrun the queue's memory: this one (queued last) is shown again.
    HoldBack(Arc<[u8]>),
    /// A new picture, counted against the queue's memory until it is written.
    Take,
}

/// Decides what to queue for `image`, given the picture queued last and the bytes of distinct
/// pictures waiting (`queued`) against the queue's `budget`. The first picture is always taken.
fn admission(
    last: Option<&Arc<[u8]>>,
    image: &Arc<[u8]>,
    queued: usize,
    budget: usize,
) -> Admission {
    match last {
        Some(prev) if Arc::ptr_eq(prev, image) => Admission::Repeat,
        Some(prev) if queued + image.len() > budget => Admission::HoldBack(prev.clone()),
        _ => Admission::Take,
    }
}

/// A running live encoder. Killed and reaped if dropped before [`SegmentEncoder::finish`].
pub(crate) struct SegmentEncoder {
    frames: Option<mpsc::Sender<QueuedImage>>,
    /// Bytes of distinct pictures queued for ffmpeg and not yet written.
    queued_bytes: Arc<AtomicUsize>,
    queue_budget: usize,
    /// The last picture queued (a repeat of it costs no memory).
    last_queued: Mutex<Option<Arc<[u8]>>>,
    /// New pictures replaced by the previous one because the queue was full.
    held_back: AtomicU64,
    writer: Option<std::thread::JoinHandle<()>>,
    samples: Option<mpsc::Sender<Arc<[u8]>>>,
    audio_writer: Option<std::thread::JoinHandle<()>>,
    child: OwnedChild,
    tail: StderrTail,
    dir: PathBuf,
}

impl SegmentEncoder {
    /// Starts ffmpeg writing segments into `dir`, numbering them from `first_segment`.
    pub(crate) fn start(
        s: &EncoderSettings,
        width: u32,
        height: u32,
        fps: u32,
        dir: &Path,
        first_segment: u64,
    ) -> Result<Self, MediaError> {
        let exe = resolve_program("ffmpeg", &s.ffmpeg)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(encoder_args(s, width, height, fps, dir, first_segment))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let log = |line: &str| tracing::debug!(target: "pagecast::ffmpeg", "{line}");
        let (mut child, audio_out) = if s.audio {
            let (child, pcm) = OwnedChild::spawn_with_input("ffmpeg", cmd, AUDIO_FD, log)?;
            (child, Some(pcm))
        } else {
            (OwnedChild::spawn("ffmpeg", cmd, log)?, None)
        };
        let tail = child.tail().clone();
        let stdin = match child.take_stdin_file() {
            Some(Ok(stdin)) => Some(stdin),
            Some(Err(e)) => return Err(MediaError::io("ffmpeg's input")(e)),
            None => None,
        };

        // An encoder that falls behind (the machine is overloaded) must not hold capture back:
        // while the recorder waits here it cannot take new frames, and the page would freeze in
        // the video. So 15 s of slots may wait. Their memory is that of their distinct pictures
        // (a repeat shares its buffer); beyond `queue_bytes`, `send` repeats the last queued
        // picture instead of adding one, so an encoder that cannot keep up shows the page at a
        // lower rate rather than freezing it.
        let queue = (fps * ENCODER_QUEUE_SECONDS).max(8) as usize;
        let (tx, mut rx) = mpsc::channel::<QueuedImage>(queue);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer_tail = tail.clone();
        let released = queued_bytes.clone();
        let writer = std::thread::Builder::new()
            .name("ffmpeg-stdin".into())
            .spawn(move || {
                let Some(mut stdin) = stdin else { return };
                while let Some((frame, counted)) = rx.blocking_recv() {
                    let written = stdin.write_all(&frame);
                    released.fetch_sub(counted, Ordering::Relaxed);
                    if let Err(e) = written {
                        writer_tail.push(format!("writing a frame to ffmpeg failed: {e}"));
                        return;
                    }
                }
                // Dropping stdin closes the pipe: ffmpeg finishes the last segment and exits.
            })
            .map_err(MediaError::io("could not start the ffmpeg writer thread"))?;

        let (samples, audio_writer) = match audio_out {
            None => (None, None),
            Some(mut out) => {
                let (atx, mut arx) = mpsc::channel::<Arc<[u8]>>(queue);
                let writer_tail = tail.clone();
                let handle = std::thread::Builder::new()
                    .name("ffmpeg-audio".into())
                    .spawn(move || {
                        while let Some(pcm) = arx.blocking_recv() {
                            if let Err(e) = out.write_all(&pcm) {
                                writer_tail.push(format!("writing samples to ffmpeg failed: {e}"));
                                return;
                            }
                        }
                        // Dropping `out` closes the audio input: ffmpeg sees its end.
                    })
                    .map_err(MediaError::io("could not start the ffmpeg audio thread"))?;
                (Some(atx), Some(handle))
            }
        };

        Ok(Self {
            frames: Some(tx),
            queued_bytes,
            queue_budget: s.input.queue_bytes(),
            last_queued: Mutex::new(None),
            held_back: AtomicU64::new(0),
            writer: Some(writer),
            samples,
            audio_writer,
            child,
            tail,
            dir: dir.to_path_buf(),
        })
    }

    /// Queues one output frame and its samples. Fails if ffmpeg has stopped.
    pub(crate) async fn send(&self, slot: SlotMedia) -> Result<(), MediaError> {
        let tx = self
            .frames
            .as_ref()
            .ok_or_else(|| MediaError::EncoderDied("already finished".into()))?;
        let item = self.admit(slot.image);
        tx.send(item)
            .await
            .map_err(|_| MediaError::EncoderDied(self.tail.text()))?;
        if let Some(atx) = &self.samples {
            // An encoder with sound gets samples for every frame (silence if the caller has none).
            let pcm = slot.pcm.unwrap_or_else(|| Arc::from(Vec::new()));
            atx.send(pcm)
                .await
                .map_err(|_| MediaError::EncoderDied(self.tail.text()))?;
        }
        Ok(())
    }

    /// What to queue for a slot showing `image`: the image, or the last queued picture again when
    /// the queue's memory is spent.
    fn admit(&self, image: Arc<[u8]>) -> QueuedImage {
        let Ok(mut last) = self.last_queued.lock() else {
            return (image, 0);
        };
        let queued = self.queued_bytes.load(Ordering::Relaxed);
        match admission(last.as_ref(), &image, queued, self.queue_budget) {
            Admission::Repeat => (image, 0),
            Admission::HoldBack(prev) => {
                self.held_back.fetch_add(1, Ordering::Relaxed);
                (prev, 0)
            }
            Admission::Take => {
                self.queued_bytes.fetch_add(image.len(), Ordering::Relaxed);
                *last = Some(image.clone());
                let n = image.len();
                (image, n)
            }
        }
    }

    /// Frames queued for ffmpeg that it has not taken yet (how far the encoder is behind).
    pub(crate) fn queued(&self) -> usize {
        self.frames
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// New pictures that were replaced by the previous one because ffmpeg was behind.
    pub(crate) fn held_back(&self) -> u64 {
        self.held_back.load(Ordering::Relaxed)
    }

    /// ffmpeg's recent warnings and errors.
    pub(crate) fn tail(&self) -> String {
        self.tail.text()
    }

    /// Closes the input and waits (up to `limit`) for ffmpeg to write the last segment.
    pub(crate) async fn finish(mut self, limit: Duration) -> Result<Vec<PathBuf>, MediaError> {
        self.frames.take();
        self.samples.take();
        let writer = self.writer.take();
        let audio_writer = self.audio_writer.take();
        // The writers end once they have handed ffmpeg everything queued (or it stopped reading).
        tokio::task::spawn_blocking(move || {
            if let Some(w) = writer {
                let _ = w.join();
            }
            if let Some(w) = audio_writer {
                let _ = w.join();
            }
        })
        .await
        .map_err(|e| MediaError::EncoderDied(e.to_string()))?;
        let status = self.child.wait_or_kill(limit).await.map_err(|e| match e {
            ProcessError::Timeout { seconds, tail, .. } => MediaError::EncoderDied(format!(
                "ffmpeg did not finish within {seconds} s and was killed; {tail}"
            )),
            e => MediaError::EncoderDied(format!("{e}; {}", self.tail.text())),
        })?;
        if !status.success() {
            self.child.settle_tail(Duration::from_millis(100)).await;
            return Err(MediaError::EncoderDied(format!(
                "ffmpeg exited with {status}; {}",
                self.tail.text()
            )));
        }
        completed_segments(&self.dir)
    }
}

impl Drop for SegmentEncoder {
    fn drop(&mut self) {
        // Closing the queues ends the writer threads; `child` (dropped after) kills and reaps
        // what is left of ffmpeg.
        self.frames.take();
        self.samples.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_held_back_only_beyond_the_memory_budget() {
        let a: Arc<[u8]> = Arc::from(vec![1u8; 100]);
        let b: Arc<[u8]> = Arc::from(vec![2u8; 100]);
        // The first picture is taken whatever the queue holds.
        assert_eq!(admission(None, &a, 10_000, 150), Admission::Take);
        // A repeat shares the buffer queued last (same allocation, not merely equal bytes).
        assert_eq!(admission(Some(&a), &a, 10_000, 150), Admission::Repeat);
        let a_copy: Arc<[u8]> = Arc::from(vec![1u8; 100]);
        assert_eq!(admission(Some(&a), &a_copy, 0, 150), Admission::Take);
        // A new picture fits exactly up to the budget, and beyond it the last one is shown.
        assert_eq!(admission(Some(&a), &b, 50, 150), Admission::Take);
        match admission(Some(&a), &b, 51, 150) {
            Admission::HoldBack(shown) => assert!(Arc::ptr_eq(&shown, &a)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_encoder_that_fails_is_reported_in_its_own_words() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let enc =
            SegmentEncoder::start(&EncoderSettings::default(), 64, 64, 10, &missing, 0).unwrap();
        // Not a JPEG: ffmpeg cannot decode it, and it cannot write into a missing directory.
        let junk: Arc<[u8]> = Arc::from(vec![0u8; 1000]);
        for _ in 0..5 {
            if enc
                .send(SlotMedia {
                    image: junk.clone(),
                    pcm: None,
                })
                .await
                .is_err()
            {
                break;
            }
        }
        let err = enc.finish(Duration::from_secs(30)).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ffmpeg exited with"), "{msg}");
        assert!(
            msg.contains("[error]"),
            "ffmpeg's error lines are quoted: {msg}"
        );
    }

    #[tokio::test]
    async fn samples_reach_ffmpeg_through_the_second_pipe() {
        assert!(
            resolve_program("ffmpeg", Path::new("ffmpeg")).is_ok(),
            "ffmpeg is needed: run scripts/install-deps.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let s = EncoderSettings {
            audio: true,
            ..EncoderSettings::default()
        };
        let enc = SegmentEncoder::start(&s, 64, 64, 10, dir.path(), 0).unwrap();
        // A 64x64 grey JPEG from ffmpeg itself, then 3 s of frames with a 1 kHz square wave.
        let jpeg = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "color=gray:s=64x64",
                "-frames:v",
                "1",
            ])
            .args(["-f", "mjpeg", "-"])
            .output()
            .unwrap()
            .stdout;
        let jpeg: Arc<[u8]> = Arc::from(jpeg);
        for k in 0..30u64 {
            let n = crate::audio::timeline::samples_for_slot(k, 10);
            let mut pcm = Vec::with_capacity(n * 4);
            for i in 0..n {
                let v: i16 = if (i / 24) % 2 == 0 { 8000 } else { -8000 };
                pcm.extend_from_slice(&v.to_le_bytes());
                pcm.extend_from_slice(&v.to_le_bytes());
            }
            enc.send(SlotMedia {
                image: jpeg.clone(),
                pcm: Some(Arc::from(pcm)),
            })
            .await
            .unwrap();
        }
        let segments = enc.finish(Duration::from_secs(30)).await.unwrap();
        assert_eq!(segments.len(), 2, "{segments:?}");
        let probe = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,sample_rate,channels",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&segments[0])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&probe.stdout);
        assert!(text.contains("aac,48000,2"), "{text}");
    }
}
