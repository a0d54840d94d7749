//! A private virtual X display for one recording, so that Chromium can run headful and paint
//! into a framebuffer that pagecast reads directly (see `recording::grab`).
//!
//! The server is Xvfb, whose displays paint at 60 Hz, or on request (`--display-server`) Xorg
//! with its dummy driver: its one mode refreshes at the recording's frame rate, and Chromium
//! paints at that rate (see `xorg`).
//!
//! The server chooses a free display number itself (`-displayfd`), so any number of recordings
//! on one machine never race for `:99`. The server is owned: killed and reaped when the display
//! is dropped, and its stderr tail is kept for error messages.
//!
//! Only the recording's own clients can connect: the server runs with access control (no
//! `-ac`) and a fresh MIT-MAGIC-COOKIE-1 per display, kept in an Xauthority file (mode 0600, in
//! a 0700 directory of its own) that the browser is pointed at (`XAUTHORITY`); pagecast's own
//! client presents the cookie directly. Another local user, who can reach the X socket in
//! `/tmp/.X11-unix`, is refused.

mod xorg;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Command;
use tracing::{debug, warn};

use super::BrowserError;
use crate::process::{OwnedChild, resolve_program};

/// How long the X server may take to report its display number.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The authorization protocol of the display's cookie.
const MIT_MAGIC_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";
/// Xauthority's family code matching any address.
const FAMILY_WILD: u16 = 0xffff;

/// A running X server with one screen of the recording's size.
#[derive(Debug)]
pub(crate) struct VirtualDisplay {
    child: OwnedChild,
    number: u32,
    server: &'static str,
    refresh: Option<f64>,
    cookie: [u8; 16],
    /// Holds the Xauthority file; removed with the display.
    auth_dir: crate::runtime_dir::RuntimeDir,
}

/// An Xauthority file granting `cookie` for any address and display number (one entry,
/// `FamilyWild`, empty display number: the server takes every cookie in its file, and clients
/// take a wildcard entry for whatever display they open).
fn xauthority(cookie: &[u8]) -> Vec<u8> {
    let mut out = FAMILY_WILD.to_be_bytes().to_vec();
    for field in [&b""[..], b"", MIT_MAGIC_COOKIE, cookie] {
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Writes the display's Xauthority file, readable by this user only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
}

/// Which X server provides recordings' displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum DisplayServerChoice {
    /// Xorg with its dummy driver, refreshing at the recording's frame rate; Xvfb (with a
    /// warning, once) where Xorg cannot start or the mode does not fit its driver.
    Auto,
    /// Xorg with its dummy driver only: a display it cannot provide fails the recording.
    Xorg,
    /// Xvfb only (displays paint at 60 Hz whatever the frame rate): the default, whose frame
    /// timing holds over long recordings (docs/configuration.md).
    #[default]
    Xvfb,
}

/// The X servers a recording's display may come from.
#[derive(Debug, Clone)]
pub(crate) struct DisplayServers {
    pub(crate) choice: DisplayServerChoice,
    /// The Xorg binary (not Debian's `/usr/bin/Xorg` wrapper, which admits console users only).
    pub(crate) xorg: PathBuf,
    pub(crate) xvfb: PathBuf,
}

/// Set once Xorg failed to start under `auto`: later displays of this process go straight to
/// Xvfb rather than paying for the same failure each time.
static XORG_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The server one display runs, with what it needs.
enum Server {
    Xorg { exe: PathBuf, mode: xorg::Mode },
    Xvfb { exe: PathBuf },
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Xorg { .. } => "Xorg",
            Server::Xvfb { .. } => "Xvfb",
        }
    }

    /// The refresh rate its display gives Chromium, where pagecast sets one.
    fn refresh(&self) -> Option<f64> {
        match self {
            Server::Xorg { mode, .. } => Some(mode.refresh()),
            Server::Xvfb { .. } => None,
        }
    }
}

impl VirtualDisplay {
    /// Starts a display with a `width`×`height`×24 screen for a recording at `fps` and waits
    /// until it accepts clients.
    pub(crate) async fn start(
        servers: &DisplayServers,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, BrowserError> {
        use std::sync::atomic::Ordering;
        let xvfb = || -> Result<Server, BrowserError> {
            Ok(Server::Xvfb {
                exe: resolve_program("Xvfb", &servers.xvfb)?,
            })
        };
        let xorg = || -> Result<Server, String> {
            let exe = resolve_program("Xorg", &servers.xorg).map_err(|e| e.to_string())?;
            let mode = xorg::Mode::new(width, height, xorg::refresh_for(fps))?;
            Ok(Server::Xorg { exe, mode })
        };
        let server = match servers.choice {
            DisplayServerChoice::Xvfb => xvfb()?,
            DisplayServerChoice::Xorg => xorg().map_err(|reason| BrowserError::Display {
                reason,
                tail: String::new(),
            })?,
            // Xorg where it can start; else, and from then on, Xvfb.
            DisplayServerChoice::Auto => {
                if !XORG_FAILED.load(Ordering::Relaxed) {
                    match xorg() {
                        Ok(server) => match Self::launch(server, width, height).await {
                            Ok(display) => return Ok(display),
                            Err(e) if !XORG_FAILED.swap(true, Ordering::Relaxed) => warn!(
                                error = %e,
                                "Xorg with the dummy driver could not start; displays come from Xvfb from now on, \
                                 and Chromium paints at 60 Hz there whatever the frame rate (more CPU). \
                                 Install xserver-xorg-core and xserver-xorg-video-dummy, or set PAGECAST_DISPLAY_SERVER=xvfb"
                            ),
                            Err(_) => {}
                        },
                        Err(why) => debug!(%why, "no Xorg display for this recording; using Xvfb"),
                    }
                }
                xvfb()?
            }
        };
        Self::launch(server, width, height).await
    }

    /// Runs `server` and waits for its display number.
    async fn launch(server: Server, width: u32, height: u32) -> Result<Self, BrowserError> {
        let setup = |reason: String| BrowserError::Display {
            reason,
            tail: String::new(),
        };
        let mut cookie = [0u8; 16];
        getrandom::fill(&mut cookie)
            .map_err(|e| setup(format!("no randomness for the display's cookie: {e}")))?;
        let auth_dir = crate::runtime_dir::create("pagecast-x11-").map_err(|e| {
            setup(format!(
                "cannot create the display's private directory: {e}"
            ))
        })?;
        let auth = auth_dir.path().join("Xauthority");
        write_private(&auth, &xauthority(&cookie))
            .map_err(|e| setup(format!("cannot write the display's Xauthority file: {e}")))?;
        let (name, refresh) = (server.name(), server.refresh());
        let mut cmd = match &server {
            Server::Xvfb { exe } => {
                let mut cmd = Command::new(exe);
                cmd.args(["-screen", "0"])
                    .arg(format!("{width}x{height}x24"))
                    // No GLX: Chromium runs without a GPU and paints with shared-memory images,
                    // and GLX's software renderer maps LLVM into the server (about 48 MB of its
                    // 66 MB PSS).
                    .args(["-extension", "GLX"]);
                cmd
            }
            Server::Xorg { exe, mode } => {
                let dir = auth_dir.path();
                let conf_d = dir.join("xorg.conf.d");
                std::fs::create_dir(&conf_d)
                    .and_then(|()| std::fs::write(conf_d.join("00-empty.conf"), "# none\n"))
                    .and_then(|()| std::fs::write(dir.join("xorg.conf"), xorg::config(mode)))
                    .map_err(|e| setup(format!("cannot write the display's xorg.conf: {e}")))?;
                let mut cmd = Command::new(exe);
                // Its own configuration only (no snippets from /etc/X11/xorg.conf.d), its log
                // in the private directory, and no console: it neither takes nor switches a VT.
                cmd.arg("-config")
                    .arg(dir.join("xorg.conf"))
                    .arg("-configdir")
                    .arg(&conf_d)
                    .arg("-logfile")
                    .arg(dir.join("Xorg.log"))
                    .args(["-novtswitch", "-sharevts"]);
                cmd
            }
        };
        // Clients need the cookie in `auth`.
        cmd.args(["-displayfd", "1", "-auth"])
            .arg(&auth)
            // No TCP, no screen saver, and no reset when the last client (a dying browser)
            // disconnects.
            .args(["-nolisten", "tcp", "-s", "0", "-dpms", "-noreset"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let mut child = OwnedChild::spawn(name, cmd, |_| {})?;
        let stdout = child.child_mut().stdout.take();
        let number = async {
            let mut lines = tokio::io::BufReader::new(stdout?).lines();
            let line = lines.next_line().await.ok()??;
            line.trim().parse::<u32>().ok()
        };
        match tokio::time::timeout(START_TIMEOUT, number).await {
            Ok(Some(number)) => Ok(Self {
                child,
                number,
                cookie,
                auth_dir,
                server: name,
                refresh,
            }),
            outcome => {
                let exited = child.try_wait();
                child.kill().await;
                let reason = match (outcome, exited) {
                    (Err(_), _) => format!(
                        "{name} gave no display number within {} s",
                        START_TIMEOUT.as_secs()
                    ),
                    (_, Some(status)) => format!("{name} exited ({status}) before it was ready"),
                    _ => format!("{name} did not report a display number"),
                };
                Err(BrowserError::Display {
                    reason,
                    tail: child.tail().text(),
                })
            }
        }
    }

    /// The X server running the display (`Xorg` or `Xvfb`).
    pub(crate) fn server(&self) -> &'static str {
        self.server
    }

    /// The display's refresh rate where pagecast chose it (Xorg); Xvfb's displays have none,
    /// and Chromium paints at 60 Hz on them.
    pub(crate) fn refresh(&self) -> Option<f64> {
        self.refresh
    }

    /// The display's name for `DISPLAY` (e.g. `:100`).
    pub(crate) fn name(&self) -> String {
        format!(":{}", self.number)
    }

    /// The Xauthority file a client of this display needs (for `XAUTHORITY`).
    pub(crate) fn xauthority(&self) -> PathBuf {
        self.auth_dir.path().join("Xauthority")
    }

    /// Opens a connection to the display with its cookie (pagecast's own client; its process
    /// environment is not touched).
    pub(crate) fn connect(
        &self,
    ) -> Result<(x11rb::rust_connection::RustConnection, usize), String> {
        use x11rb::reexports::x11rb_protocol::parse_display::parse_display;
        use x11rb::rust_connection::{DefaultStream, RustConnection};
        let name = self.name();
        let parsed = parse_display(Some(&name)).map_err(|e| format!("{name}: {e}"))?;
        let screen = usize::from(parsed.screen);
        let mut last = String::from("no address to connect to");
        for addr in parsed.connect_instruction() {
            match DefaultStream::connect(&addr) {
                Ok((stream, _)) => {
                    return RustConnection::connect_to_stream_with_auth_info(
                        stream,
                        screen,
                        MIT_MAGIC_COOKIE.to_vec(),
                        self.cookie.to_vec(),
                    )
                    .map(|c| (c, screen))
                    .map_err(|e| format!("cannot open X display {name}: {e}"));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("cannot open X display {name}: {last}"))
    }

    /// Stops the server and reaps it.
    pub(crate) async fn close(mut self) {
        self.child.kill().await;
        // Drop removes what the killed server left behind.
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        // Killed, the server cannot remove its lock file and socket; a later server would skip
        // (or have to clean up) this display number, so they go here.
        self.child.kill_now();
        let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.number));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{}", self.number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xauthority_entry_is_a_wildcard_cookie() {
        let cookie = [0xabu8; 16];
        let file = xauthority(&cookie);
        let mut want = vec![0xff, 0xff, 0, 0, 0, 0, 0, 18];
        want.extend_from_slice(b"MIT-MAGIC-COOKIE-1");
        want.extend_from_slice(&[0, 16]);
        want.extend_from_slice(&cookie);
        assert_eq!(file, want);
    }
}
