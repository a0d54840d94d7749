//! A running child owned by pagecast: its own process group, dying with the thread that
//! started it, its stderr drained into a tail, killed with its group and reaped when dropped.

use std::os::fd::{AsRawFd, RawFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{ProcessError, StderrTail, spawn_error};

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
        let mut child = super::reaper::spawn_owned(|| cmd.spawn(), Child::id)
            .map_err(|e| spawn_error(program, e))?;
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
    pub(crate) fn spawn_with_input<F>(
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
    pub(crate) fn take_stdin_file(&mut self) -> Option<std::io::Result<std::fs::File>> {
        let stdin = self.child.stdin.take()?;
        Some(stdin.into_owned_fd().map(std::fs::File::from))
    }

    /// The child's stdout as a blocking file, for a reader thread of its own (once; `None` if
    /// stdout was not piped or was taken).
    pub(crate) fn take_stdout_file(&mut self) -> Option<std::io::Result<std::fs::File>> {
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
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Mutable access to the child (to take stdin/stdout).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Returns the exit status if the child has exited.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
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
    pub(crate) async fn kill(&mut self) {
        self.signal_group();
        let _ = self.child.kill().await;
    }

    /// Sends SIGKILL to the whole process group without waiting (for `Drop` impls); the child is
    /// reaped in the background.
    pub(crate) fn kill_now(&self) {
        self.signal_group();
    }

    fn signal_group(&self) {
        if let Some(pid) = self.child.id() {
            // The child leads its own process group (see `spawn`), so this reaches its helpers
            // too (Chromium's renderer and GPU processes).
            kill_group(pid);
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

/// Sends SIGKILL to the process group that `pid` leads.
pub(super) fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid only sends a signal; no memory is touched.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// Makes the child receive SIGKILL when the thread that spawned it dies, so a pagecast process
/// killed with SIGKILL (which runs no destructors) cannot leave a browser or encoder behind.
/// Children are spawned from the runtime's long-lived worker threads, never from the blocking
/// pool, whose idle threads exit.
pub(super) fn die_with_parent(cmd: &mut std::process::Command) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
