//! Launching Chromium as an owned child process.
//!
//! pagecast spawns Chromium itself (rather than through `Browser::launch`) so that it owns the
//! process group, keeps draining stderr for error messages for the browser's whole life, and can
//! kill every helper process on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::oneshot;

use super::BrowserError;
use crate::process::{OwnedChild, resolve_program};

/// How to start Chromium for one recording.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// The Chromium binary (default `/usr/bin/chromium`).
    pub(crate) executable: PathBuf,
    /// Viewport width in CSS pixels.
    pub(crate) width: u32,
    /// Viewport height in CSS pixels.
    pub(crate) height: u32,
    /// A fontconfig file that adds the project's fonts (set as FONTCONFIG_FILE for the browser only).
    pub fontconfig_file: Option<PathBuf>,
    /// Extra command-line flags, added after pagecast's own.
    pub(crate) extra_args: Vec<String>,
    /// Extra environment for the browser process (e.g. PULSE_SINK).
    pub(crate) env: Vec<(String, String)>,
    /// How long Chromium may take to offer its DevTools endpoint.
    pub(crate) launch_timeout: Duration,
    /// Whether Chromium runs its sandbox.
    pub(crate) sandbox: SandboxMode,
    /// Run headful on this X display (e.g. `:100`); `None` runs headless.
    pub(crate) display: Option<String>,
    /// The X servers that provide such displays.
    pub(crate) display_servers: super::DisplayServers,
    /// MiB of memory the browser may use (0: no cap); see `browser::memory`.
    pub(crate) memory_limit_mb: u64,
}

/// Chromium's sandbox: on where the environment allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum SandboxMode {
    /// On unless pagecast runs as root (Chromium refuses its sandbox as root); if it cannot
    /// start (no user namespaces, e.g. a container's default seccomp profile), Chromium runs
    /// without it and a warning says so.
    #[default]
    Auto,
    /// Always on: a browser that cannot start its sandbox fails the recording.
    On,
    /// Always off (`--no-sandbox`).
    Off,
}

impl SandboxMode {
    /// Whether to ask for the sandbox, for a process whose effective uid is `euid`.
    pub(crate) fn wanted(self, euid: u32) -> bool {
        match self {
            SandboxMode::On => true,
            SandboxMode::Off => false,
            SandboxMode::Auto => euid != 0,
        }
    }
}

/// Set once the sandbox failed to start in `auto` mode: later browsers go without it at once.
static SANDBOX_UNAVAILABLE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Flags this machine needs (closed network, no GPU, root in a container) plus what recording
/// needs (autoplay with sound, no throttling of an unfocused page, no scrollbars, sRGB colours).
const CHROMIUM_FLAGS: &[&str] = &[
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    // Besides the services a recording has no use for: the omnibox popup, a WebUI page that
    // Chromium preloads in a renderer of its own (about 70 MB) even in kiosk mode, where there is
    // no omnibox; and the spare renderer kept warm for the next navigation (about 20 MB), which
    // a recording makes once or twice.
    "--disable-features=Translate,MediaRouter,OptimizationHints,InterestFeedContentSuggestions,\
     WebUIOmniboxPopup,WebUIOmniboxFullPopup,WebUIOmniboxAimPopup,SpareRendererForSitePerProcess",
    "--remote-debugging-port=0",
];

/// A headful browser on a recording's own X display: one borderless window filling the screen,
/// with no browser interface, info bars, crash bubbles or error dialogs in the picture.
const HEADFUL_FLAGS: &[&str] = &[
    "--kiosk",
    "--window-position=0,0",
    "--test-type",
    "--noerrdialogs",
    "--disable-infobars",
    "--hide-crash-restore-bubble",
    "--disable-session-crashed-bubble",
    "--disable-translate",
];

/// A running Chromium with its DevTools WebSocket address. Killed (whole process group) on drop.
#[derive(Debug)]
pub(crate) struct ChromiumProcess {
    child: OwnedChild,
    ws_url: String,
    /// Lines on its stderr saying a process ran out of memory.
    oom_lines: Arc<AtomicU64>,
    /// Its memory cgroup, where there is one (after `child`: removed once the browser is gone).
    cgroup: Option<super::memory::MemoryCgroup>,
}

/// Preferences a recording's profile starts with. Chromium 156 offers to translate a page in
/// another language (a bar over the page's top right corner, recorded with it) whatever
/// `--disable-translate` and `--disable-features=Translate` say; the profile's own setting is
/// what it obeys. Printing is off: a page's `print()` (its own, or a fresh iframe's, which
/// escapes any replaced `window.print`) otherwise covers the rest of the recording with the
/// print preview.
const PROFILE_PREFERENCES: &str = r#"{"translate":{"enabled":false},"printing":{"enabled":false}}"#;

/// Writes [`PROFILE_PREFERENCES`] into the profile before Chromium reads it.
fn seed_profile(profile_dir: &Path) -> Result<(), BrowserError> {
    let default = profile_dir.join("Default");
    std::fs::create_dir_all(&default)
        .and_then(|()| std::fs::write(default.join("Preferences"), PROFILE_PREFERENCES))
        .map_err(|e| BrowserError::Launch {
            reason: format!(
                "cannot prepare the browser profile in {}: {e}",
                profile_dir.display()
            ),
            tail: String::new(),
        })
}

impl ChromiumProcess {
    /// Starts Chromium with a fresh profile in `profile_dir` and waits for its DevTools endpoint.
    pub(crate) async fn launch(
        settings: &BrowserSettings,
        profile_dir: &Path,
    ) -> Result<Self, BrowserError> {
        use std::sync::atomic::Ordering;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let sandbox = settings.sandbox.wanted(euid)
            && !(settings.sandbox == SandboxMode::Auto
                && SANDBOX_UNAVAILABLE.load(Ordering::Relaxed));
        match Self::launch_once(settings, profile_dir, sandbox).await {
            Err(e) if sandbox && settings.sandbox == SandboxMode::Auto => {
                tracing::warn!(error = %e, "Chromium could not start with its sandbox (no user namespaces here?); running it without (PAGECAST_CHROMIUM_SANDBOX=off silences this, =on makes it an error)");
                SANDBOX_UNAVAILABLE.store(true, Ordering::Relaxed);
                let _ = std::fs::remove_dir_all(profile_dir);
                let _ = std::fs::create_dir_all(profile_dir);
                Self::launch_once(settings, profile_dir, false).await
            }
            other => other,
        }
    }

    async fn launch_once(
        settings: &BrowserSettings,
        profile_dir: &Path,
        sandbox: bool,
    ) -> Result<Self, BrowserError> {
        let exe = resolve_program("chromium", &settings.executable)?;
        seed_profile(profile_dir)?;
        let mut cmd = Command::new(exe);
        if !sandbox {
            cmd.arg("--no-sandbox");
        }
        match &settings.display {
            Some(display) => {
                cmd.args(HEADFUL_FLAGS).env("DISPLAY", display);
            }
            None => {
                cmd.arg("--headless");
            }
        }
        cmd.args(CHROMIUM_FLAGS)
            .args(super::lockdown::FLAGS)
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg(format!(
                "--window-size={},{}",
                settings.width, settings.height
            ))
            // V8's share of the memory cap.
            .args(super::memory::js_flags(settings.memory_limit_mb))
            // The operator's flags and the recording's own (egress proxy, sound), after ours.
            .args(&settings.extra_args)
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        if let Some(fc) = &settings.fontconfig_file {
            cmd.env("FONTCONFIG_FILE", fc);
        }
        // Chromium keeps its crash database (minidumps that carry the page's origin) and other
        // per-user state under ~/.config, outside --user-data-dir: keep them in the profile,
        // which is removed with the recording.
        cmd.env("BREAKPAD_DUMP_LOCATION", profile_dir.join("Crash Reports"))
            .env("XDG_CONFIG_HOME", profile_dir.join("config"));
        for (k, v) in &settings.env {
            cmd.env(k, v);
        }

        let cgroup = super::memory::MemoryCgroup::create(settings.memory_limit_mb);
        if let Some(cg) = &cgroup {
            cg.enter_on_exec(cmd.as_std_mut());
        }

        let (tx, rx) = oneshot::channel::<String>();
        let mut tx = Some(tx);
        let oom_lines = Arc::new(AtomicU64::new(0));
        let oom = oom_lines.clone();
        let mut child = OwnedChild::spawn("chromium", cmd, move |line| {
            if let Some(rest) = line.split("DevTools listening on ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.trim().to_string());
            }
            if super::memory::is_oom_line(line) {
                oom.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })?;

        let ws_url = tokio::select! {
            url = rx => url.ok(),
            _ = tokio::time::sleep(settings.launch_timeout) => None,
        };
        match ws_url {
            Some(ws_url) => Ok(Self {
                child,
                ws_url,
                oom_lines,
                cgroup,
            }),
            None => {
                // Either it exited (the sender was dropped at EOF) or it hung: make sure it is gone
                // and quote what it printed.
                let exited = child.try_wait();
                child.kill().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let reason = match exited {
                    Some(status) => {
                        format!("it exited ({status}) before offering its DevTools endpoint")
                    }
                    None => format!(
                        "no DevTools endpoint within {} s",
                        settings.launch_timeout.as_secs()
                    ),
                };
                Err(BrowserError::Launch {
                    reason,
                    tail: child.tail().text(),
                })
            }
        }
    }

    /// The DevTools WebSocket URL.
    pub(crate) fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// Chromium's recent stderr, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        self.child.tail().text()
    }

    /// The browser's main process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// How many of its processes ran out of memory so far: V8's reports on stderr plus the
    /// kernel's kills in its memory cgroup.
    pub(crate) fn memory_failures(&self) -> u64 {
        self.oom_lines.load(std::sync::atomic::Ordering::Relaxed)
            + self.cgroup.as_ref().map_or(0, |c| c.oom_kills())
    }

    /// Kills the browser and its helpers and reaps it.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxMode;

    #[test]
    fn the_sandbox_is_wanted_unless_root_or_off() {
        assert!(!SandboxMode::Auto.wanted(0));
        assert!(SandboxMode::Auto.wanted(1000));
        assert!(SandboxMode::On.wanted(0));
        assert!(!SandboxMode::Off.wanted(1000));
    }
}
