//! A real S3-compatible server for integration tests: `s3s-fs` (installed by
//! `scripts/install-test-deps.sh`; it checks SigV4 signatures and implements multipart uploads) on its
//! own port over a temporary directory, killed on drop. Buckets are directories of that data
//! directory, so a test can also look at what was stored.
//!
//! A missing `s3s-fs` fails the test (never skips it).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Access key of the test server.
pub const ACCESS_KEY: &str = "pagecast-test";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "pagecast-test-secret";
/// The bucket created at start.
pub const BUCKET: &str = "results";

/// A running s3s-fs (stopped on drop).
pub struct TestS3 {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The s3s-fs binary: `PAGECAST_S3S_FS`, else where install-test-deps puts it.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PAGECAST_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let tools = std::env::var_os("PAGECAST_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/pagecast-tools"));
    tools.join("bin/s3s-fs")
}

impl TestS3 {
    /// Starts a server with the [`BUCKET`] bucket on a port it picks itself (port 0, read back
    /// from its log: no other process can take the port between choosing and binding it).
    pub fn start() -> TestS3 {
        let dir = tempfile::Builder::new()
            .prefix("pagecast-s3-")
            .tempdir()
            .expect("create a temporary directory for s3s-fs");
        let mut s3 = TestS3 {
            endpoint: String::new(),
            port: 0,
            child: None,
            dir,
        };
        s3.create_bucket(BUCKET);
        s3.resume();
        s3
    }

    /// Creates a bucket (s3s-fs keeps each bucket as a directory).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data().join(name)).expect("create the bucket directory");
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The stored bytes of `bucket/key`, if the object exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data().join(bucket).join(key)).ok()
    }

    /// Environment that points pagecast at this server with its credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PAGECAST_S3_ENDPOINT", self.endpoint.clone()),
            ("PAGECAST_S3_BUCKET", BUCKET.to_string()),
            ("PAGECAST_S3_REGION", "us-east-1".to_string()),
            ("PAGECAST_S3_PATH_STYLE", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ]
    }

    /// Kills the server (an outage); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port and data (the first time on a port of its choice),
    /// and waits until it reports that it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is already running");
        let bin = binary();
        assert!(
            bin.is_file(),
            "s3s-fs is not installed at {} (scripts/install-test-deps.sh installs it; \
             PAGECAST_S3S_FS may point elsewhere)",
            bin.display()
        );
        std::fs::create_dir_all(self.data()).expect("create the data directory");
        let log_path = self.dir.path().join("s3s.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.data())
            // Its "server is running at" line says which port it bound.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = bound_port(&text) {
                break port;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("s3s-fs exited with {status} before listening; its log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen within 10 s; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            self.port == 0 || self.port == port,
            "s3s-fs listens on {port}, not on its port {}",
            self.port
        );
        self.port = port;
        self.endpoint = format!("http://127.0.0.1:{port}");
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "s3s-fs reported port {port} but does not accept connections there"
        );
    }

    /// The server's directory (log, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The port in s3s-fs's "server is running at http://127.0.0.1:PORT" log line.
fn bound_port(log: &str) -> Option<u16> {
    let rest = log.split_once("server is running at http://127.0.0.1:")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    // The whole number only: the line may still be being written.
    if digits.len() == rest.len() {
        return None;
    }
    digits.parse().ok()
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
