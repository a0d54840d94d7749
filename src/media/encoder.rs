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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::MediaError;
use crate::process::{OwnedChild, ProcessError, StderrTail, resolve_program};

/// How far (in seconds of output) the encoder may fall behind capture before the recorder waits
/// for it.
const ENCODER_QUEUE_SECONDS: u32 = 15;

/// What the frames written to the encoder are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameFormat {
    /// JPEG images (Chromium's screencast).
    #[default]
    Jpeg,
    /// Raw 32-bit pixels, blue-green-red-unused, exactly width×height (an X framebuffer).
    Bgrx,
    /// Raw planar 4:2:0 YUV (Y, then U, then V; BT.601 standard range), exactly width×height,
    /// both even (X framebuffer grabs converted by the grab thread).
    I420,
}

impl FrameFormat {
    /// Memory the distinct pictures waiting for the encoder may take. JPEG frames are small, so
    /// 15 s of them fit far below this; raw frames are 1.5 or 4 bytes a pixel, so it bounds them.
    fn queue_bytes(self) -> usize {
        match self {
            FrameFormat::Jpeg => 256 << 20,
            FrameFormat::Bgrx | FrameFormat::I420 => 128 << 20,
        }
    }

    /// Bytes of one raw picture of `width`×`height` (0 for JPEG, whose size varies).
    pub fn picture_bytes(self, width: u32, height: u32) -> usize {
        let pixels = width as usize * height as usize;
        match self {
            FrameFormat::Jpeg => 0,
            FrameFormat::Bgrx => pixels * 4,
            FrameFormat::I420 => pixels + pixels / 2,
        }
    }
}

/// A picture on its way to ffmpeg, with the bytes it counts against the queue's memory (0 for a
/// repeat of the picture before it, which shares its buffer).
type QueuedImage = (Arc<[u8]>, usize);

/// Encoder settings.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// libx264 preset.
    pub preset: String,
    /// libx264 constant rate factor.
    pub crf: u8,
    /// Segment (and keyframe interval) length in seconds.
    pub segment_seconds: u32,
    /// Encode a sound track (fed with [`SegmentEncoder::send`]'s PCM).
    pub audio: bool,
    /// What the frames are.
    pub input: FrameFormat,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            preset: "veryfast".into(),
            crf: 23,
            segment_seconds: 2,
            audio: false,
            input: FrameFormat::Jpeg,
        }
    }
}

/// File name pattern of recorded segments in the work directory.
pub const SEGMENT_PATTERN: &str = "seg_%06d.ts";
/// The list of completed segments one ffmpeg instance maintains in the work directory; each
/// instance (a restart after ffmpeg died) writes its own, named after its first segment.
pub fn segment_list_name(first_segment: u64) -> String {
    format!("segments-{first_segment:06}.csv")
}

/// The first segment number of a segment list's path ([`segment_list_name`] read back).
pub fn segment_list_number(list: &Path) -> Option<u64> {
    list.file_name()?
        .to_str()?
        .strip_prefix("segments-")?
        .strip_suffix(".csv")?
        .parse()
        .ok()
}

/// The file descriptor ffmpeg reads PCM from.
const AUDIO_FD: i32 = 3;
/// AAC bit rate.
const AUDIO_BITRATE: &str = "128k";

/// One output frame and, with sound, the samples that play during it.
#[derive(Debug, Clone)]
pub struct SlotMedia {
    /// The image, in the encoder's [`FrameFormat`].
    pub image: Arc<[u8]>,
    /// s16le stereo 48 kHz samples (`samples_for_slot` of them), when recording sound.
    pub pcm: Option<Arc<[u8]>>,
}

/// The ffmpeg arguments for a live encoder (public for tests and documentation).
pub fn encoder_args(
    s: &EncoderSettings,
    width: u32,
    height: u32,
    fps: u32,
    dir: &Path,
    first_segment: u64,
) -> Vec<String> {
    let gop = (fps * s.segment_seconds.max(1)).to_string();
    // Only warnings and errors, each line tagged with its level (`[error]`): the tail an error
    // message quotes (the recorder looks there for a full disk).
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostats",
        "-nostdin",
        "-loglevel",
        "level+warning",
        "-y",
    ]
    .map(String::from)
    .to_vec();
    // ffmpeg's own input queue: raw frames are 4 bytes a pixel, so only a few may wait there
    // (pagecast's queue in front of the pipe is the one sized for falling behind).
    let input_queue = match s.input {
        FrameFormat::Jpeg => "64",
        FrameFormat::Bgrx | FrameFormat::I420 => "4",
    };
    args.extend(["-thread_queue_size", input_queue].map(String::from));
    let raw = |pix_fmt: &str| {
        vec![
            "-f".to_string(),
            "rawvideo".into(),
            "-pix_fmt".into(),
            pix_fmt.into(),
            "-video_size".into(),
            format!("{width}x{height}"),
        ]
    };
    match s.input {
        FrameFormat::Jpeg => args.extend(["-f", "mjpeg"].map(String::from)),
        FrameFormat::Bgrx => args.extend(raw("bgr0")),
        FrameFormat::I420 => args.extend(raw("yuv420p")),
    }
    args.push("-framerate".into());
    args.push(fps.to_string());
    args.extend(["-i", "-"].map(String::from));
    if s.audio {
        args.extend(
            [
                "-thread_queue_size",
                "64",
                "-f",
                "s16le",
                "-ar",
                "48000",
                "-ac",
                "2",
                "-i",
            ]
            .map(String::from),
        );
        args.push(format!("pipe:{AUDIO_FD}"));
        args.extend(["-map", "0:v:0", "-map", "1:a:0"].map(String::from));
    }
    // Frames are scaled to the exact viewport (a no-op unless Chromium sent another size) and padded
    // to even dimensions, which yuv420p needs; odd viewports therefore never break the encoder.
    // I420 input is already exactly that: no filter, no conversion.
    if s.input != FrameFormat::I420 {
        args.push("-vf".into());
        args.push(format!(
            "scale={width}:{height}:flags=bicubic,pad=ceil(iw/2)*2:ceil(ih/2)*2,format=yuv420p"
        ));
    }
    // One encoding thread: a 720p30 picture takes x264 `veryfast` a few ms, and every frame
    // thread keeps its own pictures in memory (BENCHMARKS.md: 11 MB per recording).
    args.extend(["-threads", "1", "-c:v", "libx264", "-preset"].map(String::from));
    args.push(s.preset.clone());
    args.push("-crf".into());
    args.push(s.crf.to_string());
    args.extend(["-pix_fmt", "yuv420p", "-g"].map(String::from));
    args.push(gop.clone());
    args.push("-keyint_min".into());
    args.push(gop);
    // No B-frames: every packet's dts equals its pts, so a segment cut at a keyframe holds no
    // audio from before its first frame, and the segment list's times are the frames' times
    // (finalize relies on both to join segments without shifting either stream).
    args.extend(["-bf", "0"].map(String::from));
    if s.audio {
        args.extend(
            [
                "-c:a",
                "aac",
                "-b:a",
                AUDIO_BITRATE,
                "-ar",
                "48000",
                "-ac",
                "2",
            ]
            .map(String::from),
        );
    }
    args.extend(
        [
            "-sc_threshold",
            "0",
            "-f",
            "segment",
            "-segment_format",
            "mpegts",
            // Every packet reaches the segment file as soon as it is encoded, instead of in
            // 32 KiB writes (many seconds of a quiet page): if the worker is killed, the segment
            // in progress is on disk up to the last frame and is salvaged (media/salvage.rs).
            "-segment_format_options",
            "flush_packets=1",
            "-segment_time",
        ]
        .map(String::from),
    );
    args.push(s.segment_seconds.max(1).to_string());
    args.push("-segment_start_number".into());
    args.push(first_segment.to_string());
    args.push("-segment_list".into());
    args.push(
        dir.join(segment_list_name(first_segment))
            .display()
            .to_string(),
    );
    args.extend(
        [
            "-segment_list_type",
            "csv",
            "-segment_list_flags",
            "+live",
            "-reset_timestamps",
            "0",
        ]
        .map(String::from),
    );
    args.push(dir.join(SEGMENT_PATTERN).display().to_string());
    args
}

/// A running live encoder. Killed and reaped if dropped before [`SegmentEncoder::finish`].
pub struct SegmentEncoder {
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
    pub fn start(
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
    pub async fn send(&self, slot: SlotMedia) -> Result<(), MediaError> {
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
        if let Some(prev) = last.as_ref() {
            if Arc::ptr_eq(prev, &image) {
                return (image, 0);
            }
            if self.queued_bytes.load(Ordering::Relaxed) + image.len() > self.queue_budget {
                self.held_back.fetch_add(1, Ordering::Relaxed);
                return (prev.clone(), 0);
            }
        }
        self.queued_bytes.fetch_add(image.len(), Ordering::Relaxed);
        *last = Some(image.clone());
        let n = image.len();
        (image, n)
    }

    /// Frames queued for ffmpeg that it has not taken yet (how far the encoder is behind).
    pub fn queued(&self) -> usize {
        self.frames
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// New pictures that were replaced by the previous one because ffmpeg was behind.
    pub fn held_back(&self) -> u64 {
        self.held_back.load(Ordering::Relaxed)
    }

    /// ffmpeg's recent warnings and errors.
    pub fn tail(&self) -> String {
        self.tail.text()
    }

    /// Closes the input and waits (up to `limit`) for ffmpeg to write the last segment.
    pub async fn finish(mut self, limit: Duration) -> Result<Vec<PathBuf>, MediaError> {
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

/// One line of an encoder instance's segment list: a completed segment and its video's span on
/// that instance's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// The segment's file name in the work directory.
    pub name: String,
    /// When its first frame is shown, in seconds.
    pub start: f64,
    /// When its last frame ends, in seconds.
    pub end: f64,
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
pub fn recorded_segments(dir: &Path) -> Result<Vec<Vec<SegmentRecord>>, MediaError> {
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
pub fn has_recorded_media(dir: &Path) -> bool {
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

/// A recorded segment's file name ([`SEGMENT_PATTERN`]: 123 → `seg_000123.ts`).
pub fn segment_file_name(number: u64) -> String {
    format!("seg_{number:06}.ts")
}

/// The number of a recorded segment's file name ([`SEGMENT_PATTERN`]: `seg_000123.ts` → 123).
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("seg_")?.strip_suffix(".ts")?.parse().ok()
}

/// The number for the first segment of a restarted encoder: after every segment file present,
/// complete or not, and every segment listed (its file may have been published and removed), so
/// nothing is overwritten or named twice.
pub fn next_segment_number(dir: &Path) -> u64 {
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
pub fn completed_seconds(dir: &Path) -> f64 {
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
pub fn media_times(dir: &Path) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
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
pub fn segment_lists(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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
                .is_some_and(|n| n.starts_with("segments-") && n.ends_with(".csv"))
        })
        .collect();
    lists.sort();
    Ok(lists)
}

/// Parses ffmpeg's CSV segment list (`name,start,end` per line). Lines that are not a plain
/// file name with two times (a line cut short by a crash, a path) are skipped.
pub fn parse_segment_list(text: &str) -> Vec<SegmentRecord> {
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
pub fn bytes_written(dir: &Path) -> u64 {
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
            dir.path().join(segment_list_name(0)),
            "seg_000000.ts,0,2\nseg_000001.ts,2,4\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(segment_list_name(3)),
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

    #[test]
    fn args_keep_keyframes_on_segment_boundaries() {
        let args = encoder_args(
            &EncoderSettings::default(),
            1279,
            721,
            30,
            Path::new("/w"),
            5,
        );
        let joined = args.join(" ");
        assert!(
            joined.contains("-g 60 -keyint_min 60 -bf 0 -sc_threshold 0"),
            "{joined}"
        );
        assert!(joined.contains("-threads 1 -c:v libx264"));
        assert!(joined.contains("-segment_time 2"));
        assert!(joined.contains("-segment_format_options flush_packets=1"));
        assert!(joined.contains("-segment_start_number 5"));
        assert!(joined.contains("scale=1279:721"));
        assert!(joined.contains("pad=ceil(iw/2)*2:ceil(ih/2)*2"));
        assert!(joined.contains("-framerate 30"));
        assert!(
            !joined.contains("pipe:3") && !joined.contains("aac"),
            "no sound unless asked"
        );
    }

    #[test]
    fn i420_input_is_read_as_it_is() {
        let s = EncoderSettings {
            input: FrameFormat::I420,
            ..EncoderSettings::default()
        };
        let joined = encoder_args(&s, 1280, 720, 30, Path::new("/w"), 0).join(" ");
        assert!(
            joined
                .contains("-thread_queue_size 4 -f rawvideo -pix_fmt yuv420p -video_size 1280x720"),
            "{joined}"
        );
        assert!(!joined.contains("-vf"), "no conversion: {joined}");
        assert_eq!(
            FrameFormat::I420.picture_bytes(1280, 720),
            1280 * 720 * 3 / 2
        );
        assert_eq!(FrameFormat::Bgrx.picture_bytes(1280, 720), 1280 * 720 * 4);
    }

    #[test]
    fn sound_is_a_second_input_encoded_to_aac() {
        let s = EncoderSettings {
            audio: true,
            ..EncoderSettings::default()
        };
        let joined = encoder_args(&s, 1280, 720, 30, Path::new("/w"), 0).join(" ");
        assert!(
            joined.contains("-f s16le -ar 48000 -ac 2 -i pipe:3 -map 0:v:0 -map 1:a:0"),
            "{joined}"
        );
        assert!(
            joined.contains("-c:a aac -b:a 128k -ar 48000 -ac 2"),
            "{joined}"
        );
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
