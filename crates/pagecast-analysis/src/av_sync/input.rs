//! What A/V sync asks ffprobe and ffmpeg for (their arguments), and reading their answers: the
//! file's streams, its frames' times, its frames at the analysis size and its samples.

use std::ffi::OsString;
use std::path::Path;

use crate::frame_clock::{STRIP_CELLS, decode_clock};

/// Decoded width used for the analysis (cells of 10 px are plenty for the strip).
const ANALYSIS_WIDTH: usize = 320;

/// Frame facts of the first video and audio streams ([`parse_streams`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Streams {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) fps: f64,
    pub(super) video_start: f64,
    pub(super) audio_start: Option<f64>,
}

impl Streams {
    /// Whether the file has a sound track (whose samples [`audio_args`] decodes).
    pub fn has_audio(&self) -> bool {
        self.audio_start.is_some()
    }
}

/// `args`, then `pre` (input options), then `-i file`.
fn input_args(args: &[&str], pre: &[&str], file: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = args.iter().chain(pre).map(OsString::from).collect();
    out.push("-i".into());
    out.push(file.into());
    out
}

/// ffprobe's arguments for [`parse_streams`]. `pre` goes before the file (e.g.
/// `-allowed_extensions ALL` for HLS).
pub fn probe_args(file: &Path, pre: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-v", "error"]
        .iter()
        .chain(pre)
        .map(OsString::from)
        .collect();
    args.extend(
        [
            "-show_entries",
            "stream=codec_type,width,height,avg_frame_rate,start_time",
            "-of",
            "json",
        ]
        .map(OsString::from),
    );
    args.push(file.into());
    args
}

/// Reads ffprobe's JSON answer to [`probe_args`].
pub fn parse_streams(json: &[u8]) -> Result<Streams, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("ffprobe's answer: {e}"))?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let start = |s: &serde_json::Value| {
        s["start_time"]
            .as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or("no video stream")?;
    let fps = video["avg_frame_rate"]
        .as_str()
        .and_then(|r| {
            let (n, d) = r.split_once('/')?;
            let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
            (d > 0.0 && n > 0.0).then_some(n / d)
        })
        .ok_or("no frame rate")?;
    Ok(Streams {
        width: video["width"].as_u64().unwrap_or(0) as usize,
        height: video["height"].as_u64().unwrap_or(0) as usize,
        fps,
        video_start: start(video),
        audio_start: streams
            .iter()
            .find(|s| s["codec_type"] == "audio")
            .map(start),
    })
}

/// ffprobe's arguments for [`parse_frame_times`]: the video's packet timestamps (no decoding).
pub fn frame_times_args(file: &Path, pre: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-v", "error"]
        .iter()
        .chain(pre)
        .map(OsString::from)
        .collect();
    args.extend(
        [
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ]
        .map(OsString::from),
    );
    args.push(file.into());
    args
}

/// Presentation times of the video's frames, in order, from ffprobe's answer to
/// [`frame_times_args`] (lines that are not a time are skipped).
pub fn parse_frame_times(text: &str) -> Vec<f64> {
    let mut times: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    times
}

/// The size frames are decoded at for the analysis: [`ANALYSIS_WIDTH`] wide, the file's aspect,
/// an even height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    width: usize,
    height: usize,
}

impl FrameSize {
    /// The analysis size for a file's video.
    pub fn of(s: &Streams) -> Self {
        let width = ANALYSIS_WIDTH;
        let height =
            ((width as f64 * s.height as f64 / s.width.max(1) as f64 / 2.0).round() as usize * 2)
                .max(2);
        Self { width, height }
    }

    /// ffmpeg's arguments: every frame as stored, scaled to this size, raw 8-bit grayscale on
    /// stdout (read by [`FrameSize::read_frames`]).
    pub fn ffmpeg_args(&self, file: &Path, pre: &[&str]) -> Vec<OsString> {
        let mut args = input_args(&["-nostdin", "-v", "error"], pre, file);
        args.extend(
            [
                "-map",
                "0:v:0",
                "-fps_mode",
                "passthrough",
                "-vf",
                &format!(
                    "scale={}:{}:flags=area,format=gray",
                    self.width, self.height
                ),
                "-f",
                "rawvideo",
                "-",
            ]
            .map(OsString::from),
        );
        args
    }

    /// Per frame of ffmpeg's output: (flash area brightness 0-255, clock value). A trailing
    /// partial frame is ignored.
    pub fn read_frames(&self, raw: &[u8]) -> Vec<(f64, Option<u32>)> {
        let (w, h) = (self.width, self.height);
        let cell = w / STRIP_CELLS;
        let strip_h = cell.min(h);
        let below = (2 * cell).min(h.saturating_sub(1));
        raw.chunks_exact(w * h)
            .map(|f| {
                let area = &f[below * w..];
                let mean =
                    area.iter().map(|&p| f64::from(p)).sum::<f64>() / area.len().max(1) as f64;
                (mean, decode_clock(&f[..w * strip_h], w, strip_h))
            })
            .collect()
    }
}

/// ffmpeg's arguments for [`parse_audio`]: the sound track as mono 32-bit float samples at
/// 48 kHz on stdout.
pub fn audio_args(file: &Path, pre: &[&str]) -> Vec<OsString> {
    let mut args = input_args(&["-nostdin", "-v", "error"], pre, file);
    args.extend(
        [
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "f32le", "-",
        ]
        .map(OsString::from),
    );
    args
}

/// The samples of ffmpeg's answer to [`audio_args`].
pub fn parse_audio(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffprobe_answers_are_read() {
        let json = br#"{"streams":[
            {"codec_type":"video","width":1280,"height":720,"avg_frame_rate":"30/1","start_time":"1.400000"},
            {"codec_type":"audio","start_time":"1.421000"}]}"#;
        let s = parse_streams(json).unwrap();
        assert_eq!((s.width, s.height, s.fps), (1280, 720, 30.0));
        assert!((s.video_start - 1.4).abs() < 1e-9);
        assert!(s.has_audio());
        let silent = parse_streams(
            br#"{"streams":[{"codec_type":"video","width":64,"height":64,"avg_frame_rate":"25/1"}]}"#,
        )
        .unwrap();
        assert!(!silent.has_audio());
        assert_eq!(silent.video_start, 0.0);
        assert!(parse_streams(br#"{"streams":[{"codec_type":"audio"}]}"#).is_err());
        assert!(
            parse_streams(br#"{"streams":[{"codec_type":"video","avg_frame_rate":"0/0"}]}"#)
                .is_err()
        );
        assert!(parse_streams(b"not json").is_err());
        assert_eq!(
            parse_frame_times("0.066667,\n0.000000\n0.033333\nN/A\n"),
            vec![0.0, 0.033333, 0.066667]
        );
        assert_eq!(parse_audio(&[0, 0, 128, 63, 0, 0, 0]), vec![1.0]);
    }

    #[test]
    fn frames_are_decoded_at_the_analysis_size() {
        let s = parse_streams(
            br#"{"streams":[{"codec_type":"video","width":1280,"height":720,"avg_frame_rate":"30/1"}]}"#,
        )
        .unwrap();
        let size = FrameSize::of(&s);
        assert_eq!((size.width, size.height), (320, 180));
        let joined: Vec<String> = size
            .ffmpeg_args(Path::new("p.m3u8"), &["-allowed_extensions", "ALL"])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            joined
                .join(" ")
                .starts_with("-nostdin -v error -allowed_extensions ALL -i p.m3u8 -map 0:v:0"),
            "{joined:?}"
        );
        assert!(
            joined
                .join(" ")
                .contains("scale=320:180:flags=area,format=gray")
        );
        // A white frame and a black one, then half a frame (ignored).
        let mut raw = vec![255u8; 320 * 180];
        raw.extend(vec![0u8; 320 * 180]);
        raw.extend(vec![0u8; 100]);
        let frames = size.read_frames(&raw);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, 255.0);
        assert_eq!(frames[1].0, 0.0);
        assert_eq!(frames[1].1, None, "a black strip has no valid check");
    }
}
