//! The one subprocess core: every external program (Chromium, Xvfb, ffmpeg, ffprobe, PulseAudio
//! and its tools, fc-list) is spawned here.
//!
//! What it guarantees: a missing binary is a named error; stderr is drained continuously into a
//! bounded tail that error messages quote; a running child leads its own process group, dies with
//! the thread that started it (`PR_SET_PDEATHSIG`), and is killed together with its whole process
//! group and reaped when its owner is dropped; one-shot runs are bounded by a timeout that kills.
//!
//! Here: the errors, the stderr tail and finding a binary; `child`: a running [`OwnedChild`]
//! (with a second input pipe for ffmpeg's sound); `run`: one-shot runs, async ([`run_capture`],
//! [`run_command`]) and, for `Drop` impls, blocking ([`run_blocking`]); `reaper`: orphaned
//! grandchildren adopted (child subreaper) and reaped without touching the core's own children.

mod child;
pub mod reaper;
mod run;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

pub use self::child::OwnedChild;
pub(crate) use self::run::run_blocking;
pub use self::run::{run_capture, run_command};

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
    pub(crate) fn push(&self, line: String) {
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
    pub(crate) fn drain<R, F>(&self, reader: R, mut on_line: F) -> tokio::task::JoinHandle<()>
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
}
