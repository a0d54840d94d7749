//! Private runtime directories (the display's Xauthority, the sound server's socket and
//! cookie): mode 0700 in the temp directory, named `<prefix><pid>-<random>`, removed when their
//! guard drops. A process killed by SIGKILL runs no destructors, so the first directory a
//! process creates for a prefix also removes that prefix's directories of processes that are
//! gone.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

/// Creates a fresh private directory.
pub fn create(prefix: &str) -> std::io::Result<tempfile::TempDir> {
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
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
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
        drop(d);
        assert!(!path.exists());
    }
}
