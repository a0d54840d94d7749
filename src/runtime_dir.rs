//! Private runtime directories (the display's Xauthority, the sound server's socket and
//! cookie): mode 0700 in the temp directory, named `<prefix><pid>-<random>`, removed when their
//! guard drops, and at the latest when the process exits (statics are never dropped, so an
//! `atexit` handler removes what is left). A process killed by SIGKILL runs neither, so the
//! first directory a process creates for a prefix also removes that prefix's directories of
//! processes that are gone.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// A private directory, removed when dropped or at exit.
#[derive(Debug)]
pub(crate) struct RuntimeDir(Option<tempfile::TempDir>);

impl RuntimeDir {
    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.0.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            forget_at_exit(d.path());
            // TempDir's own drop removes it.
        }
    }
}

/// Directories to remove when the process exits.
static AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_at_exit() {
    // try_lock: exit may come from a thread that holds the lock (it then leaves them to the
    // next process's sweep rather than deadlock).
    if let Ok(mut dirs) = AT_EXIT.try_lock() {
        for d in dirs.drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn remove_at_exit_later(path: &Path) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: atexit only records the function pointer; `remove_at_exit` is a plain
        // extern "C" function that touches only statics and the file system.
        unsafe {
            libc::atexit(remove_at_exit);
        }
    });
    if let Ok(mut dirs) = AT_EXIT.lock() {
        dirs.push(path.to_path_buf());
    }
}

fn forget_at_exit(path: &Path) {
    if let Ok(mut dirs) = AT_EXIT.lock() {
        dirs.retain(|d| d != path);
    }
}

/// Creates a fresh private directory.
pub(crate) fn create(prefix: &str) -> std::io::Result<RuntimeDir> {
    static SWEPT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = SWEPT
        .lock()
        .map(|mut s| {
            s.get_or_insert_with(HashSet::new)
                .insert(prefix.to_string())
        })
        .unwrap_or(false);
    if first {
        sweep(&std::env::temp_dir(), prefix);
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?;
    remove_at_exit_later(dir.path());
    Ok(RuntimeDir(Some(dir)))
}

/// Removes the `prefix` directories in `dir` that belong to this user and to processes that no
/// longer run.
fn sweep(dir: &Path, prefix: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry
            .metadata()
            .map(|m| m.is_dir() && m.uid() == uid)
            .unwrap_or(false);
        if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::debug!(dir = %entry.path().display(), "removed a runtime directory left by a process that is gone")
                }
                Err(e) => {
                    tracing::debug!(dir = %entry.path().display(), error = %e, "could not remove a stale runtime directory")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_private_and_those_of_dead_processes_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dead = 999_999_999u32; // beyond pid_max: never a live process
        let stale = root.path().join(format!("pagecast-t-{dead}-abc"));
        let live = root
            .path()
            .join(format!("pagecast-t-{}-abc", std::process::id()));
        let foreign = root.path().join("pagecast-t-notapid");
        for d in [&stale, &live, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        sweep(root.path(), "pagecast-t-");
        assert!(!stale.exists());
        assert!(live.exists() && foreign.exists());

        let d = create("pagecast-unit-").unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let path = d.path().to_path_buf();
        assert!(AT_EXIT.lock().unwrap().contains(&path));
        drop(d);
        assert!(!path.exists());
        assert!(!AT_EXIT.lock().unwrap().contains(&path));
    }
}
