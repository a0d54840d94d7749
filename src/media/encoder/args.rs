//! The live encoder's ffmpeg command line: a pure function of its settings, the picture size and
//! rate, the work directory and the first segment number.

use std::path::{Path, PathBuf};

use crate::workdir::{segment_list, segment_pattern};

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
    pub(super) fn queue_bytes(self) -> usize {
        match self {
            FrameFormat::Jpeg => 256 << 20,
            FrameFormat::Bgrx | FrameFormat::I420 => 128 << 20,
        }
    }

    /// Bytes of one raw picture of `width`×`height` (0 for JPEG, whose size varies).
    pub(crate) fn picture_bytes(self, width: u32, height: u32) -> usize {
        let pixels = width as usize * height as usize;
        match self {
            FrameFormat::Jpeg => 0,
            FrameFormat::Bgrx => pixels * 4,
            FrameFormat::I420 => pixels + pixels / 2,
        }
    }
}

/// Encoder settings.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    /// The ffmpeg binary.
    pub(crate) ffmpeg: PathBuf,
    /// libx264 preset.
    pub(crate) preset: String,
    /// libx264 constant rate factor.
    pub(crate) crf: u8,
    /// Segment (and keyframe interval) length in seconds.
    pub(crate) segment_seconds: u32,
    /// Encode a sound track (fed with [`SegmentEncoder::send`]'s PCM).
    pub(crate) audio: bool,
    /// What the frames are.
    pub(crate) input: FrameFormat,
}

/// The x264 preset recordings use unless told otherwise (`--preset`, `PAGECAST_X264_PRESET`).
pub(crate) const DEFAULT_PRESET: &str = "veryfast";

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            preset: DEFAULT_PRESET.into(),
            crf: 23,
            segment_seconds: 2,
            audio: false,
            input: FrameFormat::Jpeg,
        }
    }
}

/// The file descriptor ffmpeg reads PCM from.
pub(super) const AUDIO_FD: i32 = 3;
/// AAC bit rate.
const AUDIO_BITRATE: &str = "128k";
/// The sound's sample rate, in and out (stereo, like the capture's sink).
pub(crate) const SAMPLE_RATE: u32 = 48_000;
/// Samples in one AAC frame; the encoder primes its sound with one frame before the first.
pub(crate) const AAC_FRAME: u32 = 1024;

/// ffmpeg's output arguments for the sound track every encoder of a recording writes (the live
/// encoder, the still clips of a live pause, a salvaged segment's silence), so they all join.
pub(crate) fn aac_output_args() -> Vec<String> {
    let rate = SAMPLE_RATE.to_string();
    [
        "-c:a",
        "aac",
        "-b:a",
        AUDIO_BITRATE,
        "-ar",
        &rate,
        "-ac",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// An ffmpeg lavfi source of silence in the sound's format.
pub(crate) fn silence_source() -> String {
    format!("anullsrc=r={SAMPLE_RATE}:cl=stereo")
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
    // Raw inputs say everything about themselves on the command line, so ffmpeg need not read
    // ahead to learn it. It otherwise read a second of frames before it began to encode (1.0 s
    // from the first frame to the inputs opened, against 3 ms without), and pagecast held
    // those 30 raw pictures, 40 MB at 720p, at every start (BENCHMARKS.md, PSS).
    let no_probe = ["-probesize", "32", "-analyzeduration", "0"].map(String::from);
    let raw = |pix_fmt: &str| {
        let mut v = no_probe.to_vec();
        v.extend([
            "-f".to_string(),
            "rawvideo".into(),
            "-pix_fmt".into(),
            pix_fmt.into(),
            "-video_size".into(),
            format!("{width}x{height}"),
        ]);
        v
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
        args.extend(["-thread_queue_size", "64"].map(String::from));
        args.extend(no_probe);
        args.extend(["-f", "s16le", "-ar"].map(String::from));
        args.push(SAMPLE_RATE.to_string());
        args.extend(["-ac", "2", "-i"].map(String::from));
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
    // The default preset plans its rate over 5 frames instead of x264's 10: every frame in the
    // lookahead is held with its half-size copies, and the five fewer are 15 MB at 720p (peak
    // RSS 124 -> 109 MB). SSIM against a lossless capture of the demo page: 0.99795 -> 0.99758,
    // of the clock page 0.99979 -> 0.99978 (BENCHMARKS.md, PSS). Other presets are as chosen.
    if s.preset == DEFAULT_PRESET {
        args.extend(["-rc-lookahead", "5"].map(String::from));
    }
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
        args.extend(aac_output_args());
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
    args.push(segment_list(dir, first_segment).display().to_string());
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
    args.push(segment_pattern(dir).display().to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

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
                .contains("-thread_queue_size 4 -probesize 32 -analyzeduration 0 -f rawvideo -pix_fmt yuv420p -video_size 1280x720"),
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
            joined.contains(
                "-probesize 32 -analyzeduration 0 -f s16le -ar 48000 -ac 2 -i pipe:3 -map 0:v:0"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("-c:a aac -b:a 128k -ar 48000 -ac 2"),
            "{joined}"
        );
    }
}
