//! Shared helpers for the end-to-end tests: a fixture web server, running the real `pagecast`
//! binary, and looking at what it produced with ffprobe and decoded frames.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Serves `tests/fixtures` on a loopback port from a background thread; returns the base URL.
pub fn fixture_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let app = Router::new().route("/{file}", get(serve_fixture));
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("fixture server address");
    format!("http://{addr}")
}

async fn serve_fixture(UrlPath(file): UrlPath<String>) -> impl IntoResponse {
    // A page that sends its visitor to the cloud metadata service (SSRF by redirect).
    if file == "redirect-to-metadata" {
        return (
            StatusCode::FOUND,
            [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
            Vec::new(),
        );
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(&file);
    if file.contains("..") || !path.is_file() {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            b"not found".to_vec(),
        );
    }
    let body = std::fs::read(&path).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
}

/// The binary under test.
pub fn pagecast() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pagecast"));
    c.stdin(Stdio::null());
    c
}

/// How many files directly in `dir` have names ending in `suffix` (0 for a missing directory).
pub fn count_files_ending(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// Runs a command with a hard time limit; panics (with its output) if it hangs.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pagecast");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command hung for {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records `url` with extra args into `out`; asserts success and returns the output.
pub fn record_ok(url: &str, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(url)
        .arg("-o")
        .arg(out)
        .arg("-q")
        .args(extra);
    let o = run(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "pagecast record failed ({})\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// ffprobe facts about a file.
#[derive(Debug)]
pub struct Probe {
    /// Video duration (the video stream's, else the file's), seconds.
    pub duration: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub pix_fmt: String,
    pub frames: u64,
}

pub fn probe(path: &Path, pre: &[&str]) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(pre)
        .args(["-count_frames", "-select_streams", "v:0", "-show_entries"])
        .arg("format=duration:stream=width,height,codec_name,pix_fmt,nb_read_frames,duration")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let s = &v["streams"][0];
    Probe {
        // The video stream's own duration where the container has one: the file's duration also
        // covers the sound track, which starts with the AAC encoder's priming (21 ms) and ends
        // with its last frame.
        duration: s["duration"]
            .as_str()
            .or(v["format"]["duration"].as_str())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        width: s["width"].as_u64().unwrap_or(0) as u32,
        height: s["height"].as_u64().unwrap_or(0) as u32,
        codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
        pix_fmt: s["pix_fmt"].as_str().unwrap_or_default().to_string(),
        frames: s["nb_read_frames"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
    }
}

/// One decoded frame as RGB24.
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Mean colour of a rectangle.
    pub fn mean(&self, x0: usize, y0: usize, w: usize, h: usize) -> [f64; 3] {
        let mut sum = [0f64; 3];
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let p = self.pixel(x, y);
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
            }
        }
        let n = (w * h) as f64;
        sum.map(|s| s / n)
    }

    /// Which load of tests/fixtures/clock.html this frame shows (1, 2, 3 = third or later),
    /// from the marker square in its bottom-left corner; `None` when the marker is not there.
    pub fn clock_page_load(&self) -> Option<u32> {
        let [r, g, b] = self.mean(8, self.height - 40, 32, 32);
        match (r > 160.0, g > 130.0, b > 160.0) {
            (true, false, false) if g < 60.0 && b < 60.0 => Some(1),
            (false, true, false) if r < 60.0 && b < 60.0 => Some(2),
            (false, false, true) if r < 60.0 && g < 60.0 => Some(3),
            _ => None,
        }
    }

    /// Binarised (dark = true) rectangle.
    pub fn ink(&self, x0: usize, y0: usize, w: usize, h: usize) -> Vec<bool> {
        let mut v = Vec::with_capacity(w * h);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let p = self.pixel(x, y);
                v.push((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3 < 128);
            }
        }
        v
    }
}

/// Decodes the frame with the given index (0-based) of a video.
pub fn frame_at(path: &Path, index: usize, pre: &[&str]) -> Rgb {
    let p = probe(path, pre);
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(pre)
        .arg("-i")
        .arg(path)
        .args([
            "-vf",
            &format!("select=eq(n\\,{index})"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h) = (p.width as usize, p.height as usize);
    assert_eq!(
        out.stdout.len(),
        w * h * 3,
        "frame {index} of {} not decoded",
        path.display()
    );
    Rgb {
        width: w,
        height: h,
        data: out.stdout,
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pagecast-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

/// Parent pid of every process.
pub fn parents() -> Vec<(u32, u32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Every process below `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let all = parents();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

/// The command line of a process (empty once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The wall clock (ms since the epoch, mod 2^24) that `clock.html` painted into frame `index`.
pub fn frame_clock_at(path: &Path, index: usize) -> Option<u32> {
    let f = frame_at(path, index, &[]);
    let gray: Vec<u8> = f
        .data
        .chunks(3)
        .map(|px| ((u32::from(px[0]) + u32::from(px[1]) + u32::from(px[2])) / 3) as u8)
        .collect();
    pagecast_analysis::frame_clock::decode_clock(&gray, f.width, f.height)
}

/// Whether frame `index` of a recording of `clock.html` shows the page's clock (the page is
/// visible, not blank or crashed).
pub fn frame_clock_decodes_at(path: &Path, index: usize) -> bool {
    frame_clock_at(path, index).is_some()
}

/// Seconds of the page's wall clock between the first and the last of a recording's `frames`
/// frames (of `clock.html`).
pub fn page_clock_span(path: &Path, frames: u64) -> f64 {
    let first = frame_clock_at(path, 0).expect("clock in the first frame");
    let last = frame_clock_at(path, frames as usize - 1).expect("clock in the last frame");
    f64::from(last.wrapping_sub(first) & 0xFF_FFFF) / 1000.0
}

/// `pagecast analyze --json` of a recording of `clock.html`: frame timing, freezes, jumps.
pub fn analyze(path: &Path) -> serde_json::Value {
    let o = run(
        {
            let mut c = pagecast();
            c.arg("analyze").arg(path).arg("--json");
            c
        },
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "analyze failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("analyze json")
}

/// A running pagecast command whose log (stderr, at info level) is collected as it is written,
/// so a test can wait for what the log says happened instead of sleeping.
pub struct Watched {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Spawns `cmd` with its log at info level (its own `PAGECAST_LOG` wins) collected by a thread.
pub fn spawn_watched(mut cmd: Command) -> Watched {
    use std::io::BufRead;
    if !cmd.get_envs().any(|(k, _)| k == "PAGECAST_LOG") {
        cmd.env("PAGECAST_LOG", "info,chromiumoxide=off");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pagecast");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Watched {
        child,
        log,
        reader: Some(reader),
    }
}

impl Watched {
    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `what`; panics (with the log) after `limit` or when the
    /// process exits first.
    pub fn wait_for_log(&mut self, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().lines().any(|l| l.contains(what)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The reader may still hold the last lines.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                if self.log().lines().any(|l| l.contains(what)) {
                    return;
                }
                panic!(
                    "exited with {status} before logging {what:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (up to `limit`, then kills it and panics); returns its
    /// status and whole log.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("hung for {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.log())
    }
}

/// The log line a recording writes when its first frame is captured.
pub const RECORDING_STARTED: &str = "recording started";

/// One lock per test binary for tests whose bounds are timing figures (freezes, lost time, A/V
/// offsets, takeover gaps, capture rates): such a test takes it [alone](alone), every other test
/// of its file that runs a recording takes it [beside others](beside_others). Under
/// `cargo test -- --test-threads=2` a timing test then never shares the 2 cores with another
/// recording of its binary (the binaries themselves run one after another), so its bounds can
/// stay near the figures BENCHMARKS.md measures instead of widening for load the suite itself
/// makes. `scripts/run-tests.py` (the test command) runs each test as a process of its own, two
/// at a time across binaries, and every test that begins with `let _machine = alone();` in a
/// phase of its own with nothing else running (it finds them by that statement and refuses any
/// other call of `alone()`).
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a timing-sensitive test: no other test of this binary runs while the guard lives.
pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// For a test that records beside the timing-sensitive tests of its binary: it runs with any
/// other such test, never with one that runs [`alone`].
pub fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

/// A UDP port free on loopback (for an SRT listener).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
