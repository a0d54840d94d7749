//! A TCP forwarder standing in for a managed Redis endpoint's name (part of `redis_deploy.rs`).

/// A TCP forwarder in front of a Redis, standing in for a managed endpoint's DNS name: new
/// connections go to the current target ([`Forwarder::point_at`] moves it, as a failover
/// moves the name), established ones stay where they are. With `old_major`, the major digit of
/// `redis_version:` in the server's answers is shown as that digit (a server too old, whose
/// other answers are real).
pub struct Forwarder {
    pub port: u16,
    target: std::sync::Arc<std::sync::Mutex<u16>>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Forwarder {
    pub fn start(target_port: u16, old_major: Option<u8>) -> Forwarder {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let target = std::sync::Arc::new(std::sync::Mutex::new(target_port));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, o, st) = (target.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let to = *t.lock().unwrap();
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                {
                    let mut o = o.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                let pump = |mut from: std::net::TcpStream,
                            mut to: std::net::TcpStream,
                            rewrite: Option<u8>| {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if let Some(major) = rewrite {
                                let key = b"redis_version:";
                                let mut i = 0;
                                while i + key.len() < n {
                                    if &buf[i..i + key.len()] == key {
                                        buf[i + key.len()] = b'0' + major;
                                    }
                                    i += 1;
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pump(server, client, old_major);
            }
        });
        Forwarder {
            port,
            target,
            open,
            stop,
        }
    }

    /// New connections go to `port` from now on.
    pub fn point_at(&self, port: u16) {
        *self.target.lock().unwrap() = port;
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}
