//! Workers of one machine see each other die at once: each holds an exclusive lock (`flock`) on
//! `<work root>/.workers/<worker id>.lock` for as long as its process lives, and the kernel
//! releases it the instant the process is gone (killed, crashed). A worker whose lock another
//! worker of the machine can take is dead, so its recordings are taken over within a scan
//! (every 200 ms) instead of after its liveness period. A stalled worker (SIGSTOP, swapping)
//! still holds its lock and is judged by its beat, as before (`orphans`). Workers that share a
//! node id share the work root (the same machine or volume); where locks do not reach across
//! them (some network filesystems), a dead worker's lock looks held and the beat decides.
//!
//! std's file lock is used (no crate needed).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The directory of the workers' lock files in a work root.
fn dir(work_root: &Path) -> PathBuf {
    work_root.join(".workers")
}

/// A worker id as a file name (`/` and `%` escaped), and back.
fn file_name(worker: &str) -> String {
    format!("{}.lock", worker.replace('%', "%25").replace('/', "%2F"))
}

fn worker_of(name: &str) -> Option<String> {
    let id = name.strip_suffix(".lock")?;
    (!id.starts_with('.')).then(|| id.replace("%2F", "/").replace("%25", "%"))
}

/// This worker's lock, held until dropped (with the process, at the latest).
pub(crate) struct Registration {
    _file: File,
    path: PathBuf,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes `worker`'s lock in `work_root`. The file is locked under a temporary name and then
/// renamed into place, so no other worker ever finds it unlocked while this one lives.
pub(crate) fn register(work_root: &Path, worker: &str) -> std::io::Result<Registration> {
    let dir = dir(work_root);
    std::fs::create_dir_all(&dir)?;
    let name = file_name(worker);
    let fresh = dir.join(format!(".{name}.new"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&fresh)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(std::io::Error::other("a fresh lock file was locked"));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let path = dir.join(name);
    std::fs::rename(&fresh, &path)?;
    Ok(Registration { _file: file, path })
}

/// Workers of this work root, other than `me`, whose process is gone: with the path of their
/// lock file, to [`forget`] once their tasks are taken care of.
pub(crate) fn dead_workers(work_root: &Path, me: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(work_root)) else {
        return Vec::new();
    };
    let mut dead = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(worker) = worker_of(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        if worker == me {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // Taken: nobody holds it, its worker is gone (released at once when dropped here).
        if file.try_lock().is_ok() {
            dead.push((worker, path));
        }
    }
    dead
}

/// Removes a dead worker's lock file.
pub(crate) fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_dead_once_its_lock_is_released() {
        let root = std::env::temp_dir().join(format!("pagecast-watch-{}", uuid::Uuid::new_v4()));
        let a = register(&root, "node-a/12/ab%cd").unwrap();
        let _b = register(&root, "node-a/13/ef").unwrap();
        assert!(dead_workers(&root, "node-a/13/ef").is_empty(), "a lives");
        // Stopping cleanly removes the file.
        drop(a);
        assert!(dead_workers(&root, "node-a/13/ef").is_empty());
        // A killed worker leaves its file behind, with nobody holding its lock.
        let path = dir(&root).join(file_name("node-a/14/gh"));
        std::fs::write(&path, b"").unwrap();
        let dead = dead_workers(&root, "node-a/13/ef");
        assert_eq!(dead, vec![("node-a/14/gh".to_string(), path.clone())]);
        assert!(dead_workers(&root, "node-a/14/gh").is_empty(), "not itself");
        forget(&path);
        assert!(dead_workers(&root, "node-a/13/ef").is_empty());
        assert_eq!(worker_of(&file_name("n%/1/x")).as_deref(), Some("n%/1/x"));
        assert_eq!(worker_of(".n.lock.new"), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
