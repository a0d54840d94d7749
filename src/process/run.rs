//! One-shot runs: a program run to completion, bounded by a timeout that kills it, its stdout
//! returned and its failure quoting its stderr.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::child::{OwnedChild, die_with_parent, kill_group};
use super::{ProcessError, StderrTail, resolve_program, spawn_error};

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
pub(crate) fn run_blocking(
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
    let mut child = super::reaper::spawn_owned(|| cmd.spawn(), |c| Some(c.id()))
        .map_err(|e| spawn_error(program, e))?;
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
        kill_group(child.id());
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
