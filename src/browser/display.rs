//! A private virtual X display (Xvfb) for one recording, so that Chromium can run headful and
//! paint into a framebuffer that pagecast reads directly (see `recording::grab`).
//!
//! Xvfb chooses a free display number itself (`-displayfd`), so any number of recordings on one
//! machine never race for `:99`. The server is owned: killed and reaped when the display is
//! dropped, and its stderr tail is kept for error messages.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

use super::BrowserError;
use crate::process::{OwnedChild, resolve_program};

/// How long Xvfb may take to report its display number.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Xvfb server with one screen of the recording's size.
#[derive(Debug)]
pub struct VirtualDisplay {
    child: OwnedChild,
    number: u32,
}

impl VirtualDisplay {
    /// Starts `xvfb` with a `width`×`height`×24 screen and waits until it accepts clients.
    pub async fn start(xvfb: &Path, width: u32, height: u32) -> Result<Self, BrowserError> {
        let exe = resolve_program("Xvfb", xvfb)?;
        let mut cmd = Command::new(exe);
        cmd.args(["-displayfd", "1", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            // No TCP, no access control beyond the local socket's permissions, no screen saver,
            // and no reset when the last client (a dying browser) disconnects.
            .args(["-nolisten", "tcp", "-ac", "-s", "0", "-dpms", "-noreset"])
            // No GLX: Chromium runs without a GPU and paints with shared-memory images, and
            // GLX's software renderer maps LLVM into the server (about 48 MB of its 66 MB PSS).
            .args(["-extension", "GLX"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let mut child = OwnedChild::spawn("Xvfb", cmd, |_| {})?;
        let stdout = child.child_mut().stdout.take();
        let number = async {
            let mut lines = tokio::io::BufReader::new(stdout?).lines();
            let line = lines.next_line().await.ok()??;
            line.trim().parse::<u32>().ok()
        };
        match tokio::time::timeout(START_TIMEOUT, number).await {
            Ok(Some(number)) => Ok(Self { child, number }),
            outcome => {
                let exited = child.try_wait();
                child.kill().await;
                let reason = match (outcome, exited) {
                    (Err(_), _) => format!(
                        "Xvfb gave no display number within {} s",
                        START_TIMEOUT.as_secs()
                    ),
                    (_, Some(status)) => format!("Xvfb exited ({status}) before it was ready"),
                    _ => "Xvfb did not report a display number".to_string(),
                };
                Err(BrowserError::Display {
                    reason,
                    tail: child.tail().text(),
                })
            }
        }
    }

    /// The display's name for `DISPLAY` (e.g. `:100`).
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }

    /// Stops the server and reaps it.
    pub async fn close(mut self) {
        self.child.kill().await;
        // Drop removes what the killed server left behind.
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        // Killed, Xvfb cannot remove its lock file and socket; a later server would skip (or have
        // to clean up) this display number, so they go here.
        self.child.kill_now();
        let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.number));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{}", self.number));
    }
}
