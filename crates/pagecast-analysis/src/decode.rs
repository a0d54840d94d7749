//! Reads the clock values painted by `tests/fixtures/clock.html` out of a recorded video.
//!
//! ffprobe supplies the frame size and frame rate ([`probe_args`], read by [`parse_probe`]);
//! ffmpeg (5.1 or newer) decodes every frame, crops it to the clock strip along the top edge and
//! pipes it as 8-bit grayscale ([`ClockStrip::ffmpeg_args`]), which [`ClockStrip::decode`] then
//! reads frame by frame.

use std::ffi::OsString;
use std::path::Path;

use crate::frame_clock::{STRIP_CELLS, decode_clock};

/// Frame size and rate of a video's first video stream, as reported by ffprobe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamInfo {
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Average frame rate.
    pub fps: f64,
}

/// ffprobe's arguments for [`parse_probe`]: the size and frame rate of `video`'s first video
/// stream.
pub fn probe_args(video: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=width,height,avg_frame_rate",
        "-of",
        "csv=p=0",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(video.into());
    args
}

/// Parses an ffprobe rational such as `30/1` or `30000/1001` (or a plain number);
/// `None` for `0/0`, zero, negative or malformed rates.
fn parse_rate(text: &str) -> Option<f64> {
    let text = text.trim();
    let rate = match text.split_once('/') {
        Some((num, den)) => {
            let num: f64 = num.trim().parse().ok()?;
            let den: f64 = den.trim().parse().ok()?;
            if den == 0.0 {
                return None;
            }
            num / den
        }
        None => text.parse().ok()?,
    };
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// Parses the output of
/// `ffprobe -show_entries stream=width,height,avg_frame_rate -of csv=p=0`,
/// i.e. a line `width,height,rate` (the first non-empty line is used).
pub fn parse_probe(output: &str) -> Result<StreamInfo, String> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| "ffprobe found no video stream".to_string())?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [w, h, rate] = fields.as_slice() else {
        return Err(format!("unexpected ffprobe output: {line:?}"));
    };
    let width: usize = w
        .parse()
        .map_err(|_| format!("bad width in ffprobe output: {line:?}"))?;
    let height: usize = h
        .parse()
        .map_err(|_| format!("bad height in ffprobe output: {line:?}"))?;
    if width == 0 || height == 0 {
        return Err(format!("empty frame size in ffprobe output: {line:?}"));
    }
    let fps = parse_rate(rate)
        .ok_or_else(|| format!("no usable frame rate in ffprobe output: {line:?}"))?;
    Ok(StreamInfo { width, height, fps })
}

/// Height of the crop that holds the clock strip: the cell size `width / 32`, rounded up to an
/// even number (chroma-subsampled video crops cleanly at even sizes), but never more than the
/// frame height.
fn strip_height(width: usize, height: usize) -> usize {
    let cell = width / STRIP_CELLS;
    let even = cell + (cell & 1);
    even.min(height)
}

/// How the clock strip of every frame is decoded: the crop ffmpeg delivers (the full width, one
/// cell high).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStrip {
    width: usize,
    height: usize,
}

impl ClockStrip {
    /// The strip of a video of `info`'s size; an error for a frame too small to hold one.
    pub fn of(info: &StreamInfo) -> Result<Self, String> {
        let height = strip_height(info.width, info.height);
        match info.width.checked_mul(height) {
            Some(n) if n > 0 => Ok(Self {
                width: info.width,
                height,
            }),
            _ => Err(format!(
                "unusable frame size {}x{}",
                info.width, info.height
            )),
        }
    }

    /// Bytes of one decoded strip: what ffmpeg writes per frame.
    pub fn frame_len(&self) -> usize {
        self.width * self.height
    }

    /// ffmpeg's arguments: every frame of `video` exactly as stored (no frame-rate conversion),
    /// cropped to the strip, as raw 8-bit grayscale on stdout.
    pub fn ffmpeg_args(&self, video: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["-nostdin", "-v", "error", "-i"]
            .map(OsString::from)
            .to_vec();
        args.push(video.into());
        args.extend(
            [
                "-map",
                "0:v:0",
                "-an",
                "-sn",
                "-dn",
                "-vf",
                &format!("crop=iw:{}:0:0", self.height),
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ]
            .map(OsString::from),
        );
        args
    }

    /// The clock value of one decoded strip ([`ClockStrip::frame_len`] bytes): `Some` when it
    /// decoded and passed its check, `None` otherwise.
    pub fn decode(&self, strip: &[u8]) -> Option<u32> {
        decode_clock(strip, self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_line() {
        let info = parse_probe("1280,720,30/1\n").ok();
        assert_eq!(
            info,
            Some(StreamInfo {
                width: 1280,
                height: 720,
                fps: 30.0
            })
        );
        let info = parse_probe("\n 1920,1080,30000/1001 \n\n").ok();
        assert!(info.is_some_and(|i| (i.fps - 29.97).abs() < 0.001 && i.width == 1920));
    }

    #[test]
    fn rejects_bad_probe_output() {
        assert!(parse_probe("").is_err());
        assert!(parse_probe("\n\n").is_err());
        assert!(parse_probe("1280,720").is_err());
        assert!(parse_probe("1280,720,0/0").is_err());
        assert!(parse_probe("wide,720,30/1").is_err());
        assert!(parse_probe("0,720,30/1").is_err());
        assert!(parse_probe("1280,720,30/1,extra").is_err());
    }

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("25/1"), Some(25.0));
        assert_eq!(parse_rate("60"), Some(60.0));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(parse_rate("30/0"), None);
        assert_eq!(parse_rate("-30/1"), None);
        assert_eq!(parse_rate("N/A"), None);
    }

    #[test]
    fn strip_height_is_even_and_bounded() {
        assert_eq!(strip_height(1280, 720), 40);
        assert_eq!(strip_height(1000, 720), 32); // cell 31 rounds up
        assert_eq!(strip_height(1366, 768), 42);
        assert_eq!(strip_height(1280, 30), 30);
        assert_eq!(strip_height(16, 16), 0);
    }

    #[test]
    fn the_strip_is_cropped_and_read_back() {
        let info = StreamInfo {
            width: 1280,
            height: 720,
            fps: 30.0,
        };
        let strip = ClockStrip::of(&info).unwrap();
        assert_eq!(strip.frame_len(), 1280 * 40);
        let args: Vec<String> = strip
            .ffmpeg_args(Path::new("/r/v.mp4"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-i /r/v.mp4 -map 0:v:0"), "{joined}");
        assert!(joined.contains("-vf crop=iw:40:0:0 -fps_mode passthrough"));
        assert!(joined.ends_with("-f rawvideo -pix_fmt gray -"));
        // A grey strip has no valid check.
        assert_eq!(strip.decode(&vec![0x80; strip.frame_len()]), None);
        let tiny = StreamInfo {
            width: 16,
            height: 16,
            fps: 30.0,
        };
        assert!(ClockStrip::of(&tiny).is_err());
        let probe: Vec<_> = probe_args(Path::new("v.mp4"));
        assert_eq!(
            probe.last().map(|a| a.to_string_lossy().into_owned()),
            Some("v.mp4".into())
        );
    }
}
