//! The PulseAudio server and the per-recording null sinks.
//!
//! By default pagecast runs its own server: started on first use, once per pagecast process, in a
//! private runtime directory, as an owned child (killed with pagecast, even by SIGKILL, so its
//! sinks can never outlive the process). Only this user's processes reach it: its socket lies in
//! a directory of mode 0700 (removed when pagecast exits), and it takes no anonymous clients,
//! only ones with this user's credentials or its random cookie (which pagecast's `pactl`,
//! `parec` and the browser are given in `PULSE_COOKIE`). It needs no system mode, D-Bus or session, and works as
//! root and as an ordinary user. An operator may point pagecast at a server of their own instead
//! (`--pulse-server`); sinks that a crashed pagecast left there are removed the next time a
//! pagecast process connects.
//!
//! Each recording gets a null sink named `pagecast-<pid>-<n>`; Chromium plays into it
//! (`PULSE_SINK`) and the capture reads its monitor, so recordings never hear each other. The
//! [`Sink`] guard unloads it on every exit path.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::AudioError;
use crate::process::{OwnedChild, resolve_program, run_blocking, run_command};

/// Where the page's sound goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSettings {
    /// The `pulseaudio` binary; `pactl` and `parec` are taken from the same directory when it is
    /// given as a path, otherwise from PATH.
    pub(crate) pulseaudio: PathBuf,
    /// An existing PulseAudio server to use (e.g. `unix:/run/pulse/native`) instead of a private
    /// one.
    pub(crate) server: Option<String>,
}

impl Default for AudioSettings {
    fn default() -> Self {
        Self {
            pulseaudio: PathBuf::from("pulseaudio"),
            server: None,
        }
    }
}

/// Prefix of the sinks pagecast creates.
pub(crate) const SINK_PREFIX: &str = "pagecast-";
/// How long one `pactl` call may take.
const PACTL_LIMIT: Duration = Duration::from_secs(10);
/// How long the private server may take to accept clients. It is ready in well under 0.2 s even
/// with both cores busy; the margin is for a machine stalled by something else (a CI host once
/// took over 10 s), where waiting is better than failing the recording.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one readiness probe may take: a probe stuck on a stalled server is given up and
/// tried again rather than spending the whole start limit.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// A start slower than this is logged as a warning: ten times the slowest start measured on a
/// busy 2-core machine, so a host stalled by something else shows in the log.
const SLOW_START: Duration = Duration::from_secs(2);

/// A PulseAudio server pagecast talks to.
#[derive(Debug)]
pub(crate) struct PulseServer {
    address: String,
    pactl: PathBuf,
    parec: PathBuf,
    settings: AudioSettings,
    /// The private server process (None for an operator's server).
    child: Option<Mutex<OwnedChild>>,
    /// The private server's authentication cookie file (None for an operator's server).
    cookie: Option<PathBuf>,
    /// The private runtime directory (removed when the server is dropped or pagecast exits).
    _dir: Option<crate::runtime_dir::RuntimeDir>,
}

/// Bytes in a PulseAudio authentication cookie.
const COOKIE_BYTES: usize = 256;

/// The process's server, started on first use.
static SERVER: tokio::sync::Mutex<Option<Arc<PulseServer>>> = tokio::sync::Mutex::const_new(None);

/// The server for `settings`: the running one, or a new one if none runs (or it died).
pub(crate) async fn server(settings: &AudioSettings) -> Result<Arc<PulseServer>, AudioError> {
    let mut slot = SERVER.lock().await;
    if let Some(s) = slot.as_ref()
        && s.settings == *settings
        && s.is_alive()
    {
        return Ok(s.clone());
    }
    if let Some(old) = slot.take() {
        warn!(address = %old.address, "the PulseAudio server is gone or reconfigured; starting again");
    }
    let s = Arc::new(PulseServer::start(settings).await?);
    s.remove_stale_sinks().await;
    *slot = Some(s.clone());
    Ok(s)
}

/// The tool beside `pulseaudio` (same directory) when that was given as a path.
fn sibling(pulseaudio: &Path, tool: &str) -> PathBuf {
    match pulseaudio.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tool),
        _ => PathBuf::from(tool),
    }
}

impl PulseServer {
    async fn start(settings: &AudioSettings) -> Result<Self, AudioError> {
        if settings.server.is_none() {
            resolve_program("pulseaudio", &settings.pulseaudio)?;
        }
        let pactl = resolve_program("pactl", &sibling(&settings.pulseaudio, "pactl"))?;
        let parec = resolve_program("parec", &sibling(&settings.pulseaudio, "parec"))?;
        if let Some(address) = &settings.server {
            let s = Self {
                address: address.clone(),
                pactl,
                parec,
                settings: settings.clone(),
                child: None,
                cookie: None,
                _dir: None,
            };
            s.pactl(&["info"]).await.map_err(|e| {
                AudioError::Server(format!(
                    "the PulseAudio server {address} does not answer: {e}"
                ))
            })?;
            info!(%address, "using the configured PulseAudio server");
            return Ok(s);
        }

        let exe = resolve_program("pulseaudio", &settings.pulseaudio)?;
        let dir = crate::runtime_dir::create("pagecast-pulse-")
            .map_err(|e| AudioError::Server(format!("runtime directory: {e}")))?;
        let socket = dir.path().join("native");
        let cookie = dir.path().join("cookie");
        write_cookie(&cookie)
            .map_err(|e| AudioError::Server(format!("authentication cookie: {e}")))?;
        let mut cmd = tokio::process::Command::new(exe);
        // -n: none of the system's default.pa (no hardware, no suspend-on-idle, no D-Bus); the
        // one protocol module pagecast needs, reachable only through the private socket, for
        // clients of this user or holding the cookie (no anonymous ones).
        cmd.args([
            "-n",
            "--daemonize=no",
            "--system=no",
            "--exit-idle-time=-1",
            "--disallow-exit=yes",
            "--use-pid-file=no",
            "--realtime=no",
            "--high-priority=no",
            "--log-target=stderr",
            "--log-level=warning",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix socket={} auth-anonymous=0 auth-cookie-enabled=1 auth-cookie={}",
            socket.display(),
            cookie.display()
        ))
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env_remove("PULSE_SERVER")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        let child = OwnedChild::spawn("pulseaudio", cmd, |line| {
            debug!(target: "pagecast::pulseaudio", "{line}");
        })?;
        let s = Self {
            address: format!("unix:{}", socket.display()),
            pactl,
            parec,
            settings: settings.clone(),
            child: Some(Mutex::new(child)),
            cookie: Some(cookie),
            _dir: Some(dir),
        };
        let started = Instant::now();
        let mut last = String::from("its socket was never created");
        loop {
            if !s.is_alive() {
                return Err(AudioError::Server(format!(
                    "pulseaudio exited at start: {}",
                    s.stderr_tail()
                )));
            }
            if socket.exists() {
                match s.pactl_within(&["info"], PROBE_LIMIT).await {
                    Ok(_) => break,
                    Err(e) => last = e.to_string(),
                }
            }
            if started.elapsed() > START_LIMIT {
                return Err(AudioError::Server(format!(
                    "pulseaudio did not accept clients within {} s (last probe: {last}): {}",
                    START_LIMIT.as_secs(),
                    s.stderr_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        if took > SLOW_START {
            warn!(address = %s.address, took_ms = took.as_millis() as u64, "the private PulseAudio server was slow to start");
        }
        info!(address = %s.address, "started a private PulseAudio server");
        Ok(s)
    }

    /// The server address (`unix:/path`), as `PULSE_SERVER` wants it.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The `parec` binary.
    pub(crate) fn parec(&self) -> &Path {
        &self.parec
    }

    /// Environment a client of this server needs besides its address (the cookie).
    pub(crate) fn client_env(&self) -> Vec<(String, String)> {
        self.cookie
            .iter()
            .map(|c| ("PULSE_COOKIE".to_string(), c.display().to_string()))
            .collect()
    }

    fn stderr_tail(&self) -> String {
        self.child
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.tail().text()))
            .unwrap_or_default()
    }

    /// Whether the server is still there (an operator's server is assumed to be).
    pub(crate) fn is_alive(&self) -> bool {
        match &self.child {
            None => true,
            Some(c) => c
                .lock()
                .map(|mut c| c.try_wait().is_none())
                .unwrap_or(false),
        }
    }

    /// Runs `pactl` against this server; returns its stdout.
    pub(crate) async fn pactl(&self, args: &[&str]) -> Result<String, AudioError> {
        self.pactl_within(args, PACTL_LIMIT).await
    }

    /// Runs `pactl` with its own time limit.
    async fn pactl_within(&self, args: &[&str], limit: Duration) -> Result<String, AudioError> {
        let mut cmd = tokio::process::Command::new(&self.pactl);
        cmd.arg(format!("--server={}", self.address))
            .args(args)
            .envs(self.client_env());
        let out = run_command("pactl", cmd, limit).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Unloads the sinks of pagecast processes that no longer exist and whose monitor nobody
    /// records (left by a crash: a SIGKILL runs no destructors).
    pub(crate) async fn remove_stale_sinks(&self) {
        let (Ok(modules), Ok(sources), Ok(outputs)) = (
            self.pactl(&["list", "short", "modules"]).await,
            self.pactl(&["list", "short", "sources"]).await,
            self.pactl(&["list", "short", "source-outputs"]).await,
        ) else {
            warn!("could not list the PulseAudio server's sinks; stale ones are not removed");
            return;
        };
        for (module, sink) in stale_sinks(&modules, &sources, &outputs, std::process::id()) {
            match self.pactl(&["unload-module", &module.to_string()]).await {
                Ok(_) => info!(%sink, "removed a sink left by a pagecast process that is gone"),
                Err(e) => warn!(%sink, error = %e, "could not remove a stale sink"),
            }
        }
    }
}

/// Writes a fresh random cookie, readable by this user only.
fn write_cookie(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut cookie = [0u8; COOKIE_BYTES];
    getrandom::fill(&mut cookie).map_err(std::io::Error::other)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(&cookie)
}

/// The null sinks (module index, sink name) that `modules` lists for pagecast processes other
/// than `own_pid` which are not running here and whose monitor has no recording stream.
pub(crate) fn stale_sinks(
    modules: &str,
    sources: &str,
    source_outputs: &str,
    own_pid: u32,
) -> Vec<(u32, String)> {
    // Source index -> name, and the indices of sources something records from.
    let source_name = |index: &str| {
        sources.lines().find_map(|l| {
            let mut f = l.split('\t');
            (f.next()? == index).then(|| f.next().map(str::to_string))?
        })
    };
    let recorded: Vec<String> = source_outputs
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .filter_map(source_name)
        .collect();
    modules
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let index: u32 = f.next()?.trim().parse().ok()?;
            if f.next()?.trim() != "module-null-sink" {
                return None;
            }
            let sink = f
                .next()?
                .split_whitespace()
                .find_map(|a| a.strip_prefix("sink_name="))?
                .trim_matches('"')
                .to_string();
            let pid: u32 = sink
                .strip_prefix(SINK_PREFIX)?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            let alive = pid == own_pid || Path::new(&format!("/proc/{pid}")).exists();
            let monitored = recorded.iter().any(|s| *s == format!("{sink}.monitor"));
            (!alive && !monitored).then_some((index, sink))
        })
        .collect()
}

static NEXT_SINK: AtomicU64 = AtomicU64::new(1);

/// One recording's null sink; unloaded when dropped.
#[derive(Debug)]
pub(crate) struct Sink {
    server: Arc<PulseServer>,
    module: u32,
    name: String,
}

impl Sink {
    /// Creates a fresh null sink (48 kHz stereo) on `server`.
    pub(crate) async fn create(server: Arc<PulseServer>) -> Result<Sink, AudioError> {
        let name = format!(
            "{SINK_PREFIX}{}-{}",
            std::process::id(),
            NEXT_SINK.fetch_add(1, Ordering::Relaxed)
        );
        let out = server
            .pactl(&[
                "load-module",
                "module-null-sink",
                &format!("sink_name={name}"),
                "rate=48000",
                "channels=2",
                "format=s16le",
                &format!("sink_properties=device.description={name}"),
            ])
            .await
            .map_err(|e| AudioError::Sink(format!("creating the sink {name}: {e}")))?;
        let module = out.trim().parse().map_err(|_| {
            AudioError::Sink(format!(
                "pactl load-module answered {:?}, not a module index",
                out.trim()
            ))
        })?;
        debug!(%name, module, "created a sink");
        Ok(Sink {
            server,
            module,
            name,
        })
    }

    /// The sink's name (for `PULSE_SINK`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The server it lives on.
    pub(crate) fn server(&self) -> &Arc<PulseServer> {
        &self.server
    }

    /// Suspends and resumes the sink. A fresh null sink runs on a 2-second timer until its
    /// latency is renegotiated on that timer's next tick, so a new monitor stream would get its
    /// first data up to 2 s late; a resume restarts the timer with the stream's latency at once.
    pub(crate) async fn kick(&self) -> Result<(), AudioError> {
        self.server
            .pactl(&["suspend-sink", &self.name, "1"])
            .await?;
        self.server
            .pactl(&["suspend-sink", &self.name, "0"])
            .await?;
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Synchronous on purpose: it must happen even when the runtime is shutting down. One pactl
        // call takes a few milliseconds; a hung server is given two seconds.
        let mut cmd = std::process::Command::new(&self.server.pactl);
        cmd.envs(self.server.client_env())
            .arg(format!("--server={}", self.server.address))
            .args(["unload-module", &self.module.to_string()]);
        match run_blocking("pactl", cmd, Duration::from_secs(2)) {
            Ok(()) => debug!(name = %self.name, "removed the sink"),
            Err(error) if self.server.is_alive() => {
                warn!(name = %self.name, %error, "could not remove the sink; the next pagecast process removes it");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sinks_are_those_of_dead_processes_nobody_records() {
        let dead = 999_999_999u32; // beyond pid_max: never a live process
        let own = std::process::id();
        let modules = format!(
            "0\tmodule-native-protocol-unix\tsocket=/x auth-anonymous=1\n\
             3\tmodule-null-sink\tsink_name=pagecast-{dead}-1 rate=48000\n\
             4\tmodule-null-sink\tsink_name=pagecast-{dead}-2 rate=48000\n\
             5\tmodule-null-sink\tsink_name=pagecast-{own}-1\n\
             6\tmodule-null-sink\tsink_name=other\n\
             7\tmodule-null-sink\tsink_name=pagecast-1-1\n"
        );
        // pagecast-<dead>-2's monitor is still recorded (source 9 has an output).
        let sources = format!(
            "8\tpagecast-{dead}-1.monitor\tmodule-null-sink.c\ts16le 2ch 48000Hz\tIDLE\n\
             9\tpagecast-{dead}-2.monitor\tmodule-null-sink.c\ts16le 2ch 48000Hz\tRUNNING\n"
        );
        let outputs = "12\t9\t4\tprotocol-native.c\ts16le 2ch 48000Hz\n";
        let stale = stale_sinks(&modules, &sources, outputs, own);
        // pid 1 is alive; own sinks are never stale; foreign names are not ours to touch.
        assert_eq!(stale, vec![(3, format!("pagecast-{dead}-1"))]);
    }

    #[test]
    fn tools_beside_the_given_binary() {
        assert_eq!(
            sibling(Path::new("/opt/pa/bin/pulseaudio"), "pactl"),
            PathBuf::from("/opt/pa/bin/pactl")
        );
        assert_eq!(
            sibling(Path::new("pulseaudio"), "parec"),
            PathBuf::from("parec")
        );
    }
}
