//! The I/O of `pagecast analyze`: ffprobe and ffmpeg run through the process core
//! (`pagecast::process`), their output handed to the analysis crate, which runs nothing itself.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow};
use pagecast::process::{OwnedChild, ProcessError, resolve_program, run_capture};
use pagecast_analysis::av_sync::{self, AvSyncReport, FrameSize};
use pagecast_analysis::decode::{ClockStrip, parse_probe, probe_args};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long one ffprobe run may take.
const PROBE_LIMIT: Duration = Duration::from_secs(120);
/// How long decoding a whole recording may take (a long recording on a loaded machine).
const DECODE_LIMIT: Duration = Duration::from_secs(3600);

/// Decodes the clock value of every frame of `video` and returns them with the video's frame
/// rate (from ffprobe's `avg_frame_rate`).
///
/// Each element is `Some(value)` when that frame's clock strip decoded and passed its check,
/// `None` otherwise. Frames are delivered exactly as stored (no frame-rate conversion). Fails
/// when ffprobe or ffmpeg cannot be run, when the video has no usable video stream, or when
/// ffmpeg exits unsuccessfully; the error then carries the tail of ffmpeg's stderr.
pub async fn clock_values(video: &Path) -> anyhow::Result<(Vec<Option<u32>>, f64)> {
    let probed = ffprobe(probe_args(video)).await?;
    let info = parse_probe(&String::from_utf8_lossy(&probed))
        .map_err(|msg| anyhow!("{}: {msg}", video.display()))?;
    let strip = ClockStrip::of(&info).map_err(|msg| anyhow!(msg))?;
    let exe = resolve_program("ffmpeg", Path::new("ffmpeg"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(strip.ffmpeg_args(video))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = OwnedChild::spawn("ffmpeg", cmd, |_| {})?;
    let mut out = child
        .child_mut()
        .stdout
        .take()
        .context("ffmpeg's output was not captured")?;
    let decode = async {
        let mut values = Vec::new();
        let mut frame = vec![0u8; strip.frame_len()];
        // Frame by frame: a long recording's strips would not all fit in memory.
        while read_full(&mut out, &mut frame)
            .await
            .context("reading decoded frames from ffmpeg")?
            == frame.len()
        {
            values.push(strip.decode(&frame));
        }
        // End of stream (a trailing partial frame is ignored).
        let status = child.wait_or_kill(PROBE_LIMIT).await?;
        if !status.success() {
            child.settle_tail(Duration::from_millis(100)).await;
            return Err(ProcessError::Failed {
                program: "ffmpeg".into(),
                status,
                tail: child.tail().text(),
            }
            .into());
        }
        anyhow::Ok(values)
    };
    // On a timeout, `child` is dropped on return, which kills it.
    let values = tokio::time::timeout(DECODE_LIMIT, decode)
        .await
        .map_err(|_| {
            anyhow!(
                "ffmpeg did not decode {} within {} s",
                video.display(),
                DECODE_LIMIT.as_secs()
            )
        })??;
    Ok((values, info.fps))
}

/// Measures a recording of `av_sync.html`. `pre` goes before `-i` (e.g. `-allowed_extensions
/// ALL` for HLS); `tones` are frequencies whose level is reported.
pub async fn av_sync(file: &Path, pre: &[&str], tones: &[f64]) -> anyhow::Result<AvSyncReport> {
    let probed = ffprobe(av_sync::probe_args(file, pre)).await?;
    let streams = av_sync::parse_streams(&probed).map_err(|msg| anyhow!(msg))?;
    let size = FrameSize::of(&streams);
    let frames = size.read_frames(&ffmpeg(size.ffmpeg_args(file, pre)).await?);
    let audio = if streams.has_audio() {
        av_sync::parse_audio(&ffmpeg(av_sync::audio_args(file, pre)).await?)
    } else {
        Vec::new()
    };
    // Without the packets' times, frames are timed by their count.
    let times = ffprobe(av_sync::frame_times_args(file, pre))
        .await
        .map(|out| av_sync::parse_frame_times(&String::from_utf8_lossy(&out)))
        .unwrap_or_default();
    Ok(av_sync::report(&streams, &frames, &audio, &times, tones))
}

async fn ffprobe(args: Vec<OsString>) -> Result<Vec<u8>, ProcessError> {
    run_capture("ffprobe", Path::new("ffprobe"), args, PROBE_LIMIT).await
}

async fn ffmpeg(args: Vec<OsString>) -> Result<Vec<u8>, ProcessError> {
    run_capture("ffmpeg", Path::new("ffmpeg"), args, DECODE_LIMIT).await
}

/// Reads into `buf` until it is full or the reader hits end of file; returns the bytes read.
async fn read_full(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_full_collects_short_reads() {
        // Arrives in pieces of 2 bytes.
        let mut r = tokio_test_reader(&[1, 2, 3, 4, 5]);
        let mut buf = [0u8; 3];
        assert_eq!(read_full(&mut r, &mut buf).await.unwrap(), 3);
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(read_full(&mut r, &mut buf).await.unwrap(), 2);
        assert_eq!(read_full(&mut r, &mut buf).await.unwrap(), 0);
    }

    fn tokio_test_reader(bytes: &[u8]) -> impl AsyncRead + Unpin {
        let (r, mut w) = tokio::io::simplex(2);
        let bytes = bytes.to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = w.write_all(&bytes).await;
            // The end of the input.
            let _ = w.shutdown().await;
        });
        r
    }
}
