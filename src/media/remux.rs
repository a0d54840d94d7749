//! A live remux: ffmpeg reading one encoder's MPEG-TS segments on its stdin, as they complete,
//! and writing an MP4 file (index last) with the same packets. Consecutive segments of one
//! encoder are cuts of one MPEG-TS stream, so their bytes back to back are that stream. The MP4's
//! samples are on disk, final, while the recording goes on (see [`super::faststart`]).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};

use super::MediaError;
use crate::process::{OwnedChild, ProcessError};

/// A running live remux.
pub struct LiveRemux {
    child: OwnedChild,
    stdin: Option<ChildStdin>,
}

impl LiveRemux {
    /// Starts ffmpeg writing `output` (replaced if it exists).
    pub fn start(ffmpeg: &Path, output: &Path) -> Result<Self, MediaError> {
        let mut cmd = Command::new(ffmpeg);
        cmd.args([
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "mpegts",
            "-i",
            "pipe:0",
            "-map",
            "0",
            "-c",
            "copy",
            "-bsf:a",
            "aac_adtstoasc",
            "-f",
            "mp4",
        ])
        .arg(output)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
        let mut child = OwnedChild::spawn("ffmpeg", cmd, |_| {})?;
        let stdin = child.child_mut().stdin.take();
        Ok(Self { child, stdin })
    }

    /// Sends one completed segment.
    pub async fn feed(&mut self, segment: &Path) -> Result<(), MediaError> {
        let bytes = tokio::fs::read(segment)
            .await
            .map_err(MediaError::io(format!("reading {}", segment.display())))?;
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(MediaError::Unexpected(
                "the remux was already finished".into(),
            ));
        };
        if let Err(e) = stdin.write_all(&bytes).await {
            return Err(self.died(e).await);
        }
        Ok(())
    }

    /// Ends the input and waits up to `limit` for ffmpeg to write the index.
    pub async fn finish(mut self, limit: Duration) -> Result<(), MediaError> {
        if let Some(mut stdin) = self.stdin.take()
            && let Err(e) = stdin.shutdown().await
        {
            return Err(self.died(e).await);
        }
        let status = self.child.wait_or_kill(limit).await?;
        if status.success() {
            Ok(())
        } else {
            Err(ProcessError::Failed {
                program: "ffmpeg".into(),
                status,
                tail: self.child.tail().text(),
            }
            .into())
        }
    }

    /// The error for a failed write: ffmpeg's own words when it has exited.
    async fn died(&mut self, e: std::io::Error) -> MediaError {
        // Its stderr drains in the background; give the last lines a moment to arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tail = self.child.tail().text();
        MediaError::Unexpected(format!(
            "the live MP4 remux (ffmpeg) stopped reading: {e}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ))
    }
}
