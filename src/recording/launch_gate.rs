//! Recordings of one machine that start together begin together.
//!
//! Launching a browser and loading a page take a burst of CPU (about a core-second each). When
//! several recordings start at the same instant (classes that all begin on the hour), the first
//! one loaded would begin recording while the others are still launching, and on a small machine
//! their bursts hold back its first seconds (2026-12 measurements: every repeated frame of three
//! recordings started together on 2 cores lay in their first 2.2 s). So each recording holds a
//! shared lock on one file while it launches and loads, and once loaded it waits until no
//! recording of the machine holds that lock any more (it can then take the lock exclusively) or
//! [`MAX_WAIT`] has passed, whichever comes first; then it begins.
//!
//! The file is `launching.lock` in a directory of the user's own (`pagecast-<uid>` in the temp
//! directory, mode 0700). Where that directory cannot be made or is not private, recordings
//! begin without waiting: the gate never fails a recording. std's file lock (`flock`) is used:
//! the kernel drops a killed process's lock, so a crash never holds the others back.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{debug, info};

/// The longest a loaded recording waits for others still launching (a stream of starts must not
/// hold one back for long).
pub(super) const MAX_WAIT: Duration = Duration::from_secs(4);
/// How often a waiting recording looks again.
const POLL: Duration = Duration::from_millis(20);

/// The gate's directory: `pagecast-<uid>` in the temp directory.
fn default_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("pagecast-{uid}"))
}

/// Whether `dir` is a directory only its owner, this user, can enter.
fn private(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0
}

/// The lock file, opened in `dir` (created 0700 if missing), or why not.
fn open(dir: &Path) -> Result<File, String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !private(&meta) {
        return Err(format!("{} is not a private directory", dir.display()));
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join("launching.lock"))
        .map_err(|e| e.to_string())
}

/// A recording that is launching: holds the shared lock until [`Launching::begin`].
pub(super) struct Launching(Option<File>);

impl Launching {
    /// Marks this recording as launching (in the default directory).
    pub(super) fn enter() -> Self {
        Self::enter_in(&default_dir())
    }

    fn enter_in(dir: &Path) -> Self {
        let file = open(dir).and_then(|f| f.lock_shared().map(|()| f).map_err(|e| e.to_string()));
        match file {
            Ok(f) => Launching(Some(f)),
            Err(why) => {
                debug!(%why, "recordings starting together are not lined up");
                Launching(None)
            }
        }
    }

    /// Done launching: waits until no recording of the machine is launching any more, at most
    /// `max_wait`. Returns how long it waited.
    pub(super) async fn begin(mut self, max_wait: Duration) -> Duration {
        let Some(file) = self.0.take() else {
            return Duration::ZERO;
        };
        let since = Instant::now();
        if file.unlock().is_err() {
            return Duration::ZERO;
        }
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if since.elapsed() < max_wait => {
                    tokio::time::sleep(POLL).await;
                }
                Err(_) => break,
            }
        }
        // Dropping the file releases the exclusive lock at once.
        drop(file);
        let waited = since.elapsed();
        if waited >= POLL {
            info!(
                waited_ms = waited.as_millis() as u64,
                "waited for recordings launching beside this one"
            );
        }
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loaded_recording_begins_when_the_others_have_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        let a = Launching::enter_in(&gate);
        let b = Launching::enter_in(&gate);
        assert!(a.0.is_some() && b.0.is_some());
        // `b` is still launching: `a` waits for it.
        let release_b = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.begin(MAX_WAIT).await
        });
        let waited = a.begin(MAX_WAIT).await;
        assert!(
            waited >= Duration::from_millis(250) && waited < MAX_WAIT,
            "{waited:?}"
        );
        // `b`, the last one, began at once.
        assert!(release_b.await.unwrap() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn the_wait_is_bounded_and_a_lone_recording_does_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        let _stuck = Launching::enter_in(&gate);
        let waited = Launching::enter_in(&gate)
            .begin(Duration::from_millis(200))
            .await;
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        drop(_stuck);
        let alone = Launching::enter_in(&gate).begin(MAX_WAIT).await;
        assert!(alone < Duration::from_millis(100), "{alone:?}");
    }

    #[test]
    fn a_directory_others_can_enter_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("shared");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Launching::enter_in(&open_dir).0.is_none());
        assert!(!open_dir.join("launching.lock").exists());
        // A symlink in the directory's place is not followed either.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("gate"), &link).unwrap();
        std::fs::create_dir(dir.path().join("gate")).unwrap();
        assert!(Launching::enter_in(&link).0.is_none());
        // The directory pagecast makes is private.
        let made = dir.path().join("made");
        assert!(Launching::enter_in(&made).0.is_some());
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
