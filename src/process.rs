//! The one subprocess core: every external program (Chromium, ffmpeg, ffprobe) is spawned here.
//!
//! What it guarantees: a missing binary is a named error; stderr is drained continuously into a
//! bounded tail that error messages quote; a running child is killed together with its whole
//! process group and reaped when its owner is dropped; one-shot runs are bounded by a timeout.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How many stderr lines an error message quotes.
const TAIL_LINES: usize = 20;

/// Errors of running an external program. Each names the program.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The binary does not exist or is not executable.
    #[error(
        "{program} not found ({path}); install it with scripts/install-deps.sh or point pagecast at it"
    )]
    NotFound {
        /// Short program name, e.g. "ffmpeg".
        program: String,
        /// The path or name that was tried.
        path: String,
    },
    /// The OS refused to start it.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// Short program name.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("{program} did not finish within {seconds} s and was killed{}", fmt_tail(.tail))]
    Timeout {
        /// Short program name.
        program: String,
        /// The limit.
        seconds: u64,
        /// Last stderr lines.
        tail: String,
    },
    /// It exited unsuccessfully.
    #[error("{program} failed ({status}){}", fmt_tail(.tail))]
    Failed {
        /// Short program name.
        program: String,
        /// Exit status.
        status: ExitStatus,
        /// Last stderr lines.
        tail: String,
    },
    /// Reading its output failed.
    #[error("I/O error talking to {program}: {source}")]
    Io {
        /// Short program name.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn fmt_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", tail.trim())
    }
}

/// A bounded, shared tail of a child's stderr lines.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Appends one line, forgetting the oldest beyond the bound.
    pub fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The kept lines joined with " | " (one line, fit for an error message).
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|l| {
                l.iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default()
    }

    /// Drains `reader` line by line into the tail until EOF; `on_line` sees every line first.
    pub fn drain<R, F>(&self, reader: R, mut on_line: F) -> tokio::task::JoinHandle<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
        F: FnMut(&str) + Send + 'static,
    {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(&line);
                tail.push(line);
            }
        })
    }
}

/// Resolves a program name or path to an executable file, or says it is missing.
pub fn resolve_program(program: &str, path: &Path) -> Result<PathBuf, ProcessError> {
    let not_found = || ProcessError::NotFound {
        program: program.to_string(),
        path: path.display().to_string(),
    };
    if path.components().count() > 1 || path.is_absolute() {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(not_found())
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(path))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A running child that is killed (with its whole process group) and reaped when dropped.
#[derive(Debug)]
pub struct OwnedChild {
    program: String,
    child: Child,
    tail: StderrTail,
}

impl OwnedChild {
    /// Spawns `cmd` in its own process group with stderr drained into a tail.
    /// `on_stderr` sees every stderr line (e.g. to spot Chromium's DevTools address).
    pub fn spawn<F>(program: &str, mut cmd: Command, on_stderr: F) -> Result<Self, ProcessError>
    where
        F: FnMut(&str) + Send + 'static,
    {
        cmd.stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(cmd.as_std_mut());
        let mut child = cmd.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ProcessError::NotFound {
                program: program.to_string(),
                path: program.to_string(),
            },
            _ => ProcessError::Spawn {
                program: program.to_string(),
                source,
            },
        })?;
        let tail = StderrTail::default();
        if let Some(stderr) = child.stderr.take() {
            tail.drain(stderr, on_stderr);
        }
        Ok(Self {
            program: program.to_string(),
            child,
            tail,
        })
    }

    /// The child's stderr tail.
    pub fn tail(&self) -> &StderrTail {
        &self.tail
    }

    /// The OS process id, while the child runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Mutable access to the child (to take stdin/stdout).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Returns the exit status if the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the child to exit by itself; kills it after that.
    pub async fn wait_or_kill(&mut self, limit: Duration) -> Result<ExitStatus, ProcessError> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(ProcessError::Io {
                program: self.program.clone(),
                source,
            }),
            Err(_) => {
                self.kill().await;
                Err(ProcessError::Timeout {
                    program: self.program.clone(),
                    seconds: limit.as_secs(),
                    tail: self.tail.text(),
                })
            }
        }
    }

    /// Kills the whole process group and reaps the child.
    pub async fn kill(&mut self) {
        self.signal_group();
        let _ = self.child.kill().await;
    }

    /// Sends SIGKILL to the whole process group without waiting (for `Drop` impls); the child is
    /// reaped in the background.
    pub fn kill_now(&self) {
        self.signal_group();
    }

    fn signal_group(&self) {
        if let Some(pid) = self.child.id() {
            // The child leads its own process group (see `spawn`), so this reaches its helpers
            // too (Chromium's renderer and GPU processes).
            // SAFETY: kill(2) with a negative pid only sends a signal; no memory is touched.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group();
            // kill_on_drop(true) makes tokio reap it in the background.
        }
    }
}

/// Makes the child receive SIGKILL when the thread that spawned it dies, so a pagecast process
/// killed with SIGKILL (which runs no destructors) cannot leave a browser or encoder behind.
/// Children are spawned from the runtime's long-lived worker threads, never from the blocking
/// pool, whose idle threads exit.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a program to completion with a timeout; returns its stdout.
pub async fn run_capture<I, S>(
    program: &str,
    path: &Path,
    args: I,
    limit: Duration,
) -> Result<Vec<u8>, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = resolve_program(program, path)?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    run_command(program, cmd, limit).await
}

/// [`run_capture`] for a command prepared by the caller (its environment, say); returns its
/// stdout.
pub async fn run_command(
    program: &str,
    mut cmd: Command,
    limit: Duration,
) -> Result<Vec<u8>, ProcessError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = OwnedChild::spawn(program, cmd, |_| {})?;
    let mut stdout = child.child_mut().stdout.take();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(out) = stdout.as_mut() {
            use tokio::io::AsyncReadExt;
            let _ = out.read_to_end(&mut buf).await;
        }
        buf
    });
    let status = child.wait_or_kill(limit).await?;
    let out = reader.await.unwrap_or_default();
    if !status.success() {
        // Give the stderr drain a moment to collect the last lines.
        tokio::time::sleep(Duration::from_millis(20)).await;
        return Err(ProcessError::Failed {
            program: program.to_string(),
            status,
            tail: child.tail().text(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded() {
        let tail = StderrTail::default();
        for i in 0..100 {
            tail.push(format!("line {i}"));
        }
        let text = tail.text();
        assert!(text.starts_with("line 80"), "{text}");
        assert!(text.ends_with("line 99"));
    }

    #[test]
    fn missing_binary_is_named() {
        let err = resolve_program("chromium", Path::new("/nonexistent/chromium")).unwrap_err();
        assert!(err.to_string().contains("chromium not found"), "{err}");
        let err = resolve_program("nothere", Path::new("definitely-not-a-binary-xyz")).unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }));
    }

    #[tokio::test]
    async fn failure_carries_stderr_tail() {
        let err = run_capture(
            "sh",
            Path::new("sh"),
            ["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom") && msg.contains("sh failed"), "{msg}");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let start = std::time::Instant::now();
        let err = run_capture(
            "sleep",
            Path::new("sleep"),
            ["30"],
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
