//! The one subprocess core: every external program (Chromium, Xvfb, ffmpeg, ffprobe, PulseAudio
//! and its tools, fc-list) is spawned here.
//!
//! What it guarantees: a missing binary is a named error; stderr is drained continuously into a
//! bounded tail that error messages quote; a running child leads its own process group, dies with
//! the thread that started it (`PR_SET_PDEATHSIG`), and is killed together with its whole process
//! group and reaped when its owner is dropped; one-shot runs are bounded by a timeout that kills.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, RawFd};
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

/// The error for a program the OS did not start.
fn spawn_error(program: &str, source: std::io::Error) -> ProcessError {
    match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.to_string(),
            path: program.to_string(),
        },
        _ => ProcessError::Spawn {
            program: program.to_string(),
            source,
        },
    }
}

/// A running child that is killed (with its whole process group) and reaped when dropped.
#[derive(Debug)]
pub struct OwnedChild {
    program: String,
    child: Child,
    tail: StderrTail,
    /// The task draining stderr into `tail`; it ends when stderr closes.
    drain: Option<tokio::task::JoinHandle<()>>,
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
        let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
        let tail = StderrTail::default();
        let drain = child
            .stderr
            .take()
            .map(|stderr| tail.drain(stderr, on_stderr));
        Ok(Self {
            program: program.to_string(),
            child,
            tail,
            drain,
        })
    }

    /// [`OwnedChild::spawn`] with one more input besides stdin: a pipe the child reads as file
    /// descriptor `fd` (3 or above), whose write end is returned (closing it is the end of that
    /// input). ffmpeg reads a second stream this way (`-i pipe:3`).
    pub fn spawn_with_input<F>(
        program: &str,
        mut cmd: Command,
        fd: RawFd,
        on_stderr: F,
    ) -> Result<(Self, std::io::PipeWriter), ProcessError>
    where
        F: FnMut(&str) + Send + 'static,
    {
        let spawn_error = |source| ProcessError::Spawn {
            program: program.to_string(),
            source,
        };
        if fd <= 2 {
            return Err(spawn_error(std::io::Error::other(format!(
                "descriptor {fd} is one of stdin, stdout and stderr"
            ))));
        }
        // Both ends are close-on-exec; only the child's copy of the read end, moved to `fd`, is not.
        let (read, write) = std::io::pipe().map_err(spawn_error)?;
        give_as_fd(cmd.as_std_mut(), read.as_raw_fd(), fd);
        let child = Self::spawn(program, cmd, on_stderr)?;
        // The child has its copy; ours would keep the pipe from ever reporting end of file.
        drop(read);
        Ok((child, write))
    }

    /// The child's stdin as a blocking file, for a writer thread of its own (once; `None` if
    /// stdin was not piped or was taken).
    pub fn take_stdin_file(&mut self) -> Option<std::io::Result<std::fs::File>> {
        let stdin = self.child.stdin.take()?;
        Some(stdin.into_owned_fd().map(std::fs::File::from))
    }

    /// The child's stdout as a blocking file, for a reader thread of its own (once; `None` if
    /// stdout was not piped or was taken).
    pub fn take_stdout_file(&mut self) -> Option<std::io::Result<std::fs::File>> {
        let stdout = self.child.stdout.take()?;
        Some(stdout.into_owned_fd().map(std::fs::File::from))
    }

    /// The child's stderr tail.
    pub fn tail(&self) -> &StderrTail {
        &self.tail
    }

    /// Waits (up to `limit`) until the tail holds the child's last stderr lines: once it has
    /// exited, they arrive when stderr closes (at once, unless a helper of it keeps it open).
    pub async fn settle_tail(&mut self, limit: Duration) {
        if let Some(drain) = self.drain.as_mut()
            && tokio::time::timeout(limit, drain).await.is_ok()
        {
            self.drain = None;
        }
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

/// Makes `raw` (a descriptor of this process, kept open until the spawn) appear as descriptor
/// `target` in the child, and only there.
fn give_as_fd(cmd: &mut std::process::Command, raw: RawFd, target: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls dup2(2) and fcntl(2), which
    // are async-signal-safe; it allocates nothing and takes no locks. `raw` stays open in the
    // parent until `spawn` has returned (the caller drops it after).
    unsafe {
        cmd.pre_exec(move || {
            if raw == target {
                // Already in place: only the close-on-exec flag has to go.
                if libc::fcntl(raw, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, target) == -1 {
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
        child.settle_tail(Duration::from_millis(100)).await;
        return Err(ProcessError::Failed {
            program: program.to_string(),
            status,
            tail: child.tail().text(),
        });
    }
    Ok(out)
}

/// Runs a prepared command to completion without an async runtime, for `Drop` impls (which
/// cannot await, and must work while the runtime shuts down): stdin and stdout closed, its own
/// process group, killed with it after `limit`; a failure quotes its stderr's tail.
///
/// std has no wait with a timeout, so this polls every 5 ms: meant for programs that take a few
/// milliseconds (one `pactl` call), not for long runs.
pub fn run_blocking(
    program: &str,
    mut cmd: std::process::Command,
    limit: Duration,
) -> Result<(), ProcessError> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // The calling thread waits here for the child's whole life, so the child cannot outlive it
    // through this signal, whichever thread it is.
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
    let tail = StderrTail::default();
    let (drained_tx, drained) = std::sync::mpsc::channel::<()>();
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        // A drain that cannot start only loses diagnostics.
        let _ = std::thread::Builder::new()
            .name("stderr-drain".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    match line {
                        Ok(line) => tail.push(line),
                        Err(_) => break,
                    }
                }
                let _ = drained_tx.send(());
            });
    }
    let kill = |child: &mut std::process::Child| {
        // SAFETY: kill(2) with a negative pid only sends a signal; no memory is touched.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                kill(&mut child);
                let _ = drained.recv_timeout(Duration::from_millis(100));
                return Err(ProcessError::Timeout {
                    program: program.to_string(),
                    seconds: limit.as_secs(),
                    tail: tail.text(),
                });
            }
            Err(source) => {
                kill(&mut child);
                return Err(ProcessError::Io {
                    program: program.to_string(),
                    source,
                });
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    // The last lines arrive once stderr closes (at once, unless a helper of it keeps it open).
    let _ = drained.recv_timeout(Duration::from_millis(100));
    Err(ProcessError::Failed {
        program: program.to_string(),
        status,
        tail: tail.text(),
    })
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

    #[test]
    fn a_blocking_run_is_bounded_and_quotes_stderr() {
        let mut ok = std::process::Command::new("sh");
        ok.args(["-c", "exit 0"]);
        run_blocking("sh", ok, Duration::from_secs(5)).unwrap();

        let mut failing = std::process::Command::new("sh");
        failing.args(["-c", "echo boom >&2; exit 3"]);
        let msg = run_blocking("sh", failing, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sh failed") && msg.contains("boom"), "{msg}");

        let start = std::time::Instant::now();
        let mut slow = std::process::Command::new("sleep");
        slow.arg("30");
        let err = run_blocking("sleep", slow, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));

        let missing = std::process::Command::new("/nonexistent/pactl");
        let err = run_blocking("pactl", missing, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_second_input_reaches_the_child_as_its_descriptor() {
        use std::io::Write;
        use tokio::io::AsyncReadExt;
        let mut cmd = Command::new("sh");
        // Reads descriptor 3 to its end, then says what it got.
        cmd.args(["-c", "cat <&3"]).stdout(Stdio::piped());
        let (mut child, mut input) = OwnedChild::spawn_with_input("sh", cmd, 3, |_| {}).unwrap();
        input.write_all(b"through fd 3").unwrap();
        // Closing our end is the end of the input: the child sees EOF and exits.
        drop(input);
        let mut out = String::new();
        let mut stdout = child.child_mut().stdout.take().unwrap();
        stdout.read_to_string(&mut out).await.unwrap();
        let status = child.wait_or_kill(Duration::from_secs(5)).await.unwrap();
        assert!(status.success());
        assert_eq!(out, "through fd 3");

        let err = OwnedChild::spawn_with_input("sh", Command::new("sh"), 1, |_| {}).unwrap_err();
        assert!(err.to_string().contains("could not start sh"), "{err}");
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
