//! A small tmpfs for tests that need a disk that really fills up (ENOSPC). Mounting needs root:
//! the test says so and fails (never skips) without it.

#![allow(dead_code)]

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a small tmpfs as the work disk and must run as root"
        );
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t tmpfs at {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// MiB free on it.
    pub fn free_mb(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-Pk"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("df output")
            / 1024
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
