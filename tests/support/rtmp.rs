//! nginx with its RTMP module (Debian's), started by a test on a free loopback port: the live
//! push tests' RTMP server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::scratch;
use super::service_support::free_port;

/// The stream key the tests publish with; it must never reach a log or an answer.
pub const KEY: &str = "sekr3t-stream-key-4711";
const NGINX_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx with the RTMP module on `127.0.0.1:port`, its files in `dir`. Stopped when dropped.
pub struct TestRtmp {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl TestRtmp {
    pub fn start(name: &str) -> TestRtmp {
        let mut t = TestRtmp {
            dir: scratch(name),
            port: free_port(),
            child: None,
        };
        t.spawn();
        t
    }

    pub fn spawn(&mut self) {
        assert!(
            Path::new(NGINX_RTMP_MODULE).is_file(),
            "nginx's RTMP module is needed: run scripts/install-test-deps.sh"
        );
        let conf = self.dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module {NGINX_RTMP_MODULE};\ndaemon off;\nmaster_process off;\n\
                 pid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; \
                 application live {{ live on; record off; }} }} }}\n",
                dir = self.dir.display(),
                port = self.port
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("nginx.out")).unwrap())
            .spawn()
            .expect("nginx is needed: run scripts/install-test-deps.sh");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops (`STOP`) or continues (`CONT`) the server: a target that hangs without closing.
    // Used by tests/live.rs only (each test file compiles this module on its own).
    #[allow(dead_code)]
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live/{KEY}", self.port)
    }
}

impl Drop for TestRtmp {
    fn drop(&mut self) {
        self.kill();
    }
}
