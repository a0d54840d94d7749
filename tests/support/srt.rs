//! An SRT listener (ffmpeg) on a free loopback port that writes what a push sends it to a
//! transport stream file: the live push tests' SRT target.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::free_udp_port;

pub struct SrtListener {
    pub port: u16,
    /// Where the received stream is written.
    pub received: PathBuf,
    child: Child,
}

impl SrtListener {
    /// Listens on a free port; its files (the stream, its log) in `dir`.
    pub fn start(dir: &Path) -> SrtListener {
        let port = free_udp_port();
        let received = dir.join("received.ts");
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostats", "-loglevel", "warning", "-y"])
            .arg("-i")
            .arg(format!("srt://127.0.0.1:{port}?mode=listener"))
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(&received)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("listener.log")).unwrap())
            .spawn()
            .expect("ffmpeg");
        std::thread::sleep(Duration::from_millis(500));
        SrtListener {
            port,
            received,
            child,
        }
    }

    /// Waits up to 30 s for the listener to see the end of its input (the push ended) and exit
    /// (killed after that); returns the file it wrote.
    pub fn finish(mut self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.received.clone()
    }
}

impl Drop for SrtListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
