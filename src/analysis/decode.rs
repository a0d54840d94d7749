//! Reads the clock values painted by `tests/fixtures/clock.html` out of a recorded video.
//!
//! `ffprobe` supplies the frame size and frame rate; `ffmpeg` (5.1 or newer) decodes every
//! frame, crops it to the clock strip along the top edge and pipes it as 8-bit grayscale,
//! which [`decode_clock`] then reads frame by frame.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::frame_clock::{STRIP_CELLS, decode_clock};

/// How many trailing bytes of ffmpeg's or ffprobe's stderr go into an error message.
const STDERR_TAIL_BYTES: usize = 2000;

/// Frame size and rate of a video's first video stream, as reported by ffprobe.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StreamInfo {
    width: usize,
    height: usize,
    fps: f64,
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
fn parse_probe(output: &str) -> Result<StreamInfo, String> {
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

/// The last [`STDERR_TAIL_BYTES`] bytes of a tool's stderr, as trimmed text.
fn stderr_tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&stderr[start..]).trim().to_string()
}

/// Reads into `buf` until it is full or the reader hits end of file; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Runs ffprobe on `video` and returns the first video stream's size and frame rate.
fn probe(video: &Path) -> io::Result<StreamInfo> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height,avg_frame_rate"])
        .args(["-of", "csv=p=0"])
        .arg(video)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run ffprobe: {e}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "ffprobe failed on {} ({}): {}",
            video.display(),
            output.status,
            stderr_tail(&output.stderr)
        )));
    }
    parse_probe(&String::from_utf8_lossy(&output.stdout)).map_err(|msg| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {msg}", video.display()),
        )
    })
}

/// Decodes the clock value of every frame of `video` and returns them with the video's frame
/// rate (from ffprobe's `avg_frame_rate`).
///
/// Each element is `Some(value)` when that frame's clock strip decoded and passed its check,
/// `None` otherwise. Frames are delivered exactly as stored (no frame-rate conversion). Fails
/// when ffprobe or ffmpeg cannot be run, when the video has no usable video stream, or when
/// ffmpeg exits unsuccessfully; the error then carries the tail of ffmpeg's stderr.
pub fn read_clock_values(video: &Path) -> io::Result<(Vec<Option<u32>>, f64)> {
    let info = probe(video)?;
    let crop_h = strip_height(info.width, info.height);
    let frame_len = info
        .width
        .checked_mul(crop_h)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unusable frame size {}x{}", info.width, info.height),
            )
        })?;

    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(video)
        .args(["-map", "0:v:0", "-an", "-sn", "-dn"])
        .args(["-vf", &format!("crop=iw:{crop_h}:0:0")])
        .args(["-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run ffmpeg: {e}")))?;

    // Drain stderr on its own thread so a chatty ffmpeg cannot block on a full pipe.
    let stderr_reader = child.stderr.take().map(|mut err| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            // A failed stderr read only loses diagnostics.
            let _ = err.read_to_end(&mut buf);
            buf
        })
    });

    let mut values = Vec::new();
    let read_result = match child.stdout.take() {
        Some(mut out) => {
            let mut frame = vec![0u8; frame_len];
            loop {
                match read_full(&mut out, &mut frame) {
                    Ok(n) if n == frame_len => {
                        values.push(decode_clock(&frame, info.width, crop_h));
                    }
                    // End of stream (a trailing partial frame is ignored).
                    Ok(_) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        }
        None => Err(io::Error::other("ffmpeg stdout was not captured")),
    };

    if read_result.is_err() {
        // Best effort: the read error below is the one worth reporting.
        let _ = child.kill();
    }
    let status = child.wait()?;
    let stderr = stderr_reader
        .and_then(|h| h.join().ok())
        .unwrap_or_default();
    read_result.map_err(|e| {
        io::Error::new(e.kind(), format!("reading decoded frames from ffmpeg: {e}"))
    })?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "ffmpeg failed on {} ({status}): {}",
            video.display(),
            stderr_tail(&stderr)
        )));
    }
    Ok((values, info.fps))
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
    fn stderr_tail_keeps_the_end() {
        let long: Vec<u8> = std::iter::repeat_n(b'x', 5000).chain(*b"boom\n").collect();
        let tail = stderr_tail(&long);
        assert!(tail.ends_with("boom"));
        assert!(tail.len() <= STDERR_TAIL_BYTES);
    }

    #[test]
    fn read_full_collects_short_reads() {
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0.remove(0);
                Ok(1)
            }
        }
        let mut r = Trickle(vec![1, 2, 3, 4, 5]);
        let mut buf = [0u8; 3];
        assert_eq!(read_full(&mut r, &mut buf).ok(), Some(3));
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(read_full(&mut r, &mut buf).ok(), Some(2));
        assert_eq!(read_full(&mut r, &mut buf).ok(), Some(0));
    }
}
