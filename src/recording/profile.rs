//! A recording's browser profile directory: cookies, storage and crash dumps of the page it
//! showed (Chromium's minidumps carry the page's origin). It lives only as long as its browser:
//! removed when the recording ends, however it ends, and one a dead process left in the work
//! directory is removed before a new browser starts there.

use std::path::{Path, PathBuf};

use super::RecordError;

/// A fresh, empty profile directory; removed when dropped (after its browser: keep it in a
/// field declared after the browser session, or a local declared before it).
#[derive(Debug)]
pub(crate) struct ProfileDir(PathBuf);

impl ProfileDir {
    /// Creates `<work_dir>/browser-profile[-<n>]`, removing what a previous process left there.
    pub(crate) fn create(work_dir: &Path, n: Option<u32>) -> Result<Self, RecordError> {
        let path = crate::workdir::profile_dir(work_dir, n);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|source| RecordError::WorkDir {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ProfileDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove the browser profile");
        }
    }
}

/// Removes every profile directory in `work_dir` (left by a process that was killed).
pub(crate) fn remove_stale(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if crate::workdir::is_profile_dir(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_fresh_and_removed_with_their_guard() {
        let work = tempfile::tempdir().unwrap();
        let stale = work.path().join("browser-profile-2");
        std::fs::create_dir_all(stale.join("Default")).unwrap();
        std::fs::write(work.path().join("seg_000000.ts"), b"x").unwrap();
        remove_stale(work.path());
        assert!(!stale.exists());
        assert!(work.path().join("seg_000000.ts").exists());
        let p = ProfileDir::create(work.path(), None).unwrap();
        std::fs::write(p.path().join("Cookies"), b"secret").unwrap();
        let again = ProfileDir::create(work.path(), Some(1)).unwrap();
        assert!(again.path().ends_with("browser-profile-1"));
        let path = p.path().to_path_buf();
        drop(p);
        assert!(!path.exists());
    }
}
