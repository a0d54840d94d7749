//! A throwaway `redis-server` for integration tests: its own port, no persistence, a temporary
//! directory, killed on drop.
//!
//! Use it from a test file with:
//! ```ignore
//! #[path = "support/redis.rs"]
//! mod redis_support;
//! let redis = redis_support::TestRedis::start();
//! let store = TaskStore::connect(&redis.url, "test:").await?;
//! ```
//! A missing `redis-server` fails the test (never skips it).

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer PING after it was spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `redis-server` (stopped on drop).
pub struct TestRedis {
    /// `redis://127.0.0.1:<port>/`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// redis-server cannot be told to pick a port itself (`--port 0` turns TCP off), so the port
    /// is chosen here and released before redis binds it; when another process takes it in that
    /// window, redis exits with "Address already in use" and the start is retried on a new port.
    pub fn start() -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("pagecast-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut redis = TestRedis {
            url: String::new(),
            port: 0,
            child: None,
            dir,
        };
        for attempt in 1.. {
            redis.port = free_port();
            redis.url = format!("redis://127.0.0.1:{}/", redis.port);
            match redis.try_spawn() {
                Ok(()) => return redis,
                Err(log) if attempt < BIND_ATTEMPTS && lost_port(&log) => continue,
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (an outage). Data is lost: there is no persistence.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a frozen (stopped) server.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Suspends the server (SIGSTOP): connections stay open but nothing is answered.
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a [frozen](Self::freeze) server (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which has not been reaped (we hold its Child).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "signal {sig} to redis-server: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Stops the server and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the server on [`Self::port`] (its clients know that port); panics when it cannot.
    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// Starts the server on [`Self::port`] and waits until it answers PING; on failure, why
    /// (with the server's log).
    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("redis-server not found: run scripts/install-test-deps.sh")
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);

        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let pid = self.child.as_ref().map(Child::id);
        let started = Instant::now();
        loop {
            // Up means: the server on the port is this child (not another test's server that
            // took the port first).
            if server_pid(addr).is_some() && server_pid(addr) == pid {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status} before answering PING; its log:\n{}",
                    read_log(&log)
                ));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                self.stop();
                return Err(format!(
                    "redis-server did not answer PING on port {} within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    read_log(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How often [`TestRedis::start`] tries a new port when another process took the chosen one.
const BIND_ATTEMPTS: u32 = 5;

/// Whether a failed start's report says the port was taken by someone else.
fn lost_port(report: &str) -> bool {
    report.contains("Address already in use")
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The process id of the Redis server answering at `addr` (`INFO server`), if one answers.
fn server_pid(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        // A whole line only: a read may end in the middle of the number.
        if let Some((pid, _)) = text
            .split_once("process_id:")
            .and_then(|(_, rest)| rest.split_once("\r\n"))
        {
            return pid.trim().parse().ok();
        }
    }
    None
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}
