//! `pagecast doctor`: checks the environment a worker needs and says how to fix what is wrong.
//!
//! Each check yields a [`Finding`]; the command prints them and exits non-zero when any
//! required one failed. The checks only look: they start no recording and write nothing but a
//! probe file in the work directory (removed at once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{StoreConfig, WorkerConfig};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but worth a look (or only needed by an optional feature).
    Warn,
    /// A worker cannot work like this.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What was checked: `chromium`, `ffmpeg`, `fonts`, `redis`, ...
    pub name: &'static str,
    /// How bad.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when nothing is wrong).
    pub fix: String,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        name,
        level: Level::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn bad(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        name,
        level,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Room above `PAGECAST_MIN_FREE_MB` below which the work directory gets a warning: a worker
/// still takes work, but a few hours of 720p video (about 1 GiB an hour) would stop it.
const DISK_WARN_MARGIN_BYTES: u64 = 4 << 30;

/// How the work directory's free space rates against the worker's own threshold: below
/// `PAGECAST_MIN_FREE_MB` a worker takes no recordings (fail), within a few GiB of it the
/// disk is short (warn).
fn disk_level(free: u64, min_free_mb: u64) -> Level {
    let min_free = min_free_mb.saturating_mul(1 << 20);
    if free < min_free {
        Level::Fail
    } else if free < min_free.saturating_add(DISK_WARN_MARGIN_BYTES) {
        Level::Warn
    } else {
        Level::Ok
    }
}
/// The family name of the bundled CJK font.
const BUNDLED_FONT: &str = "Pagecast Sans CJK";
/// How long one probe command may run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs every check.
pub async fn run(store: &StoreConfig, worker: &WorkerConfig) -> Vec<Finding> {
    let rec = &worker.recorder;
    let mut out = vec![
        binary(
            "chromium",
            &rec.chromium,
            &["--version"],
            true,
            "install Debian's chromium package (apt-get install chromium) or point PAGECAST_CHROMIUM at a Chromium binary",
        )
        .await,
        binary(
            "ffmpeg",
            &rec.ffmpeg,
            &["-hide_banner", "-version"],
            true,
            "install ffmpeg (apt-get install ffmpeg) or point PAGECAST_FFMPEG at an ffmpeg binary",
        )
        .await,
        binary(
            "ffprobe",
            &rec.ffprobe,
            &["-hide_banner", "-version"],
            true,
            "install ffmpeg, which contains ffprobe, or point PAGECAST_FFPROBE at it",
        )
        .await,
        binary(
            "pulseaudio",
            &rec.pulseaudio,
            &["--version"],
            // Sound is on by default: without it, default tasks fail.
            true,
            "install pulseaudio and pulseaudio-utils (apt-get install pulseaudio pulseaudio-utils) or point PAGECAST_PULSEAUDIO at it: without it, tasks with sound (the default) fail with AudioFailed and only \"Audio\": false records",
        )
        .await,
        xorg(rec).await,
        binary(
            "Xvfb",
            &rec.xvfb,
            // Xvfb prints its version on stderr; `-help` exits 0 and proves it runs.
            &["-help"],
            // Needed only where the x11 backend is the default and Xvfb its only display
            // server; tasks may still ask for x11, and `auto` falls back to Xvfb.
            rec.capture == crate::recording::CaptureBackend::X11
                && rec.display_server == crate::browser::DisplayServerChoice::Xvfb,
            "install xvfb (apt-get install xvfb) or point PAGECAST_XVFB at it: the x11 capture backend (PAGECAST_CAPTURE=x11, or a task's \"Capture\": \"x11\") runs on it where Xorg's dummy driver cannot",
        )
        .await,
        fonts(rec.fontconfig.as_deref()).await,
        redis(store).await,
        storage(worker).await,
    ];
    out.push(work_dir(&worker.work_root(), worker.min_free_mb));
    out
}

/// Whether any finding is a failure.
pub fn any_failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Fail)
}

/// The first line a binary prints for its version flag.
async fn binary(
    name: &'static str,
    path: &Path,
    version_args: &[&str],
    required: bool,
    fix: &str,
) -> Finding {
    let level = if required { Level::Fail } else { Level::Warn };
    let exe = match crate::process::resolve_program(name, path) {
        Ok(exe) => exe,
        Err(_) => {
            return bad(
                name,
                level,
                format!("{} was not found (PATH={})", path.display(), path_var()),
                fix,
            );
        }
    };
    match crate::process::run_capture(name, &exe, version_args, PROBE_TIMEOUT).await {
        Ok(stdout) => {
            let text = String::from_utf8_lossy(&stdout);
            let first = text.lines().next().unwrap_or("").trim();
            ok(name, format!("{} ({})", first, exe.display()))
        }
        Err(e) => bad(
            name,
            level,
            format!("{} does not run: {e}", exe.display()),
            fix,
        ),
    }
}

/// Xorg and its dummy driver: the x11 backend's display server at the recording's frame rate.
async fn xorg(rec: &crate::config::RecorderConfig) -> Finding {
    use crate::browser::DisplayServerChoice;
    const FIX: &str = "install xserver-xorg-core and xserver-xorg-video-dummy (apt-get install xserver-xorg-core xserver-xorg-video-dummy) or point PAGECAST_XORG at /usr/lib/xorg/Xorg: without them Chromium paints at 60 Hz on Xvfb, which costs about a fifth more CPU";
    let required = rec.display_server == DisplayServerChoice::Xorg
        && rec.capture == crate::recording::CaptureBackend::X11;
    if rec.display_server == DisplayServerChoice::Xvfb {
        return ok("Xorg", "not used (PAGECAST_DISPLAY_SERVER=xvfb)");
    }
    let found = binary("Xorg", &rec.xorg, &["-version"], required, FIX).await;
    if found.level != Level::Ok {
        return found;
    }
    // Xorg looks for its drivers beside itself (/usr/lib/xorg/modules/drivers).
    let driver = rec
        .xorg
        .parent()
        .map(|dir| dir.join("modules/drivers/dummy_drv.so"));
    match driver {
        Some(d) if d.is_file() => found,
        _ => bad(
            "Xorg",
            if required { Level::Fail } else { Level::Warn },
            "the dummy video driver (dummy_drv.so) is not installed beside Xorg",
            FIX,
        ),
    }
}

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_default()
}

/// The bundled CJK font, as fontconfig sees it through the project's fontconfig file.
async fn fonts(explicit: Option<&Path>) -> Finding {
    const FIX: &str = "ship fontconfig/ and fonts/ beside the binary (or in <prefix>/share/pagecast/), or set PAGECAST_FONTCONFIG to the path of fontconfig/fonts.conf";
    let Some(conf) = crate::fonts::find_fontconfig(explicit) else {
        return bad(
            "fonts",
            Level::Fail,
            "fontconfig/fonts.conf was not found",
            FIX,
        );
    };
    if !conf.is_file() {
        return bad(
            "fonts",
            Level::Fail,
            format!("{} does not exist", conf.display()),
            FIX,
        );
    }
    let Ok(fc_list) = crate::process::resolve_program("fc-list", Path::new("fc-list")) else {
        return bad(
            "fonts",
            Level::Fail,
            "fc-list was not found",
            "install fontconfig (apt-get install fontconfig)",
        );
    };
    let cache = std::env::temp_dir().join("pagecast-doctor-fontcache");
    let mut cmd = tokio::process::Command::new(&fc_list);
    cmd.args([":", "family"])
        .env("FONTCONFIG_FILE", &conf)
        .env("XDG_CACHE_HOME", &cache);
    let stdout = match crate::process::run_command("fc-list", cmd, PROBE_TIMEOUT).await {
        Ok(stdout) => stdout,
        // It lists nothing (and says so with its status) when no font matches.
        Err(crate::process::ProcessError::Failed { .. }) => Vec::new(),
        Err(crate::process::ProcessError::Timeout { .. }) => {
            return bad(
                "fonts",
                Level::Fail,
                "fc-list took too long",
                "check the font directories",
            );
        }
        Err(e) => {
            return bad(
                "fonts",
                Level::Fail,
                format!("fc-list did not run: {e}"),
                "install fontconfig",
            );
        }
    };
    let text = String::from_utf8_lossy(&stdout);
    let families = text.lines().filter(|l| !l.trim().is_empty()).count();
    if text.contains(BUNDLED_FONT) {
        ok(
            "fonts",
            format!(
                "{families} font families with {}, including the bundled {BUNDLED_FONT}",
                conf.display()
            ),
        )
    } else {
        bad(
            "fonts",
            Level::Fail,
            format!(
                "fontconfig with {} lists {families} families but not the bundled {BUNDLED_FONT}: CJK text would render as boxes",
                conf.display()
            ),
            FIX,
        )
    }
}

/// Redis: reachable with the settings, 6.2 or later, and `maxmemory-policy noeviction`.
pub async fn redis(cfg: &StoreConfig) -> Finding {
    const FIX: &str = "start Redis 6.2 or later and set PAGECAST_REDIS_URL (redis://[user:password@]host:port[/db], rediss:// for TLS) and, for a cluster or sentinels, PAGECAST_REDIS_MODE";
    let store = match cfg.connect().await {
        Ok(store) => store,
        Err(e) => return bad("redis", Level::Fail, e.to_string(), FIX),
    };
    let facts = match store.server_facts().await {
        Ok(facts) => facts,
        Err(e) => {
            return bad(
                "redis",
                Level::Warn,
                format!(
                    "{} answers, but does not show its INFO, so its version and maxmemory-policy cannot be checked: {e}",
                    store.shown_url()
                ),
                "allow the INFO command for pagecast's user, or check by hand that Redis is 6.2 or later with maxmemory-policy noeviction",
            );
        }
    };
    if let Err(e) = facts.check_version() {
        return bad(
            "redis",
            Level::Fail,
            e.to_string(),
            "upgrade Redis to 6.2 or later",
        );
    }
    let detail = format!(
        "{} answers ({} mode): {}",
        store.shown_url(),
        store.mode().as_str(),
        facts.summary()
    );
    match facts.eviction_warning() {
        Some(warning) => bad(
            "redis",
            Level::Fail,
            format!("{detail}; {warning}"),
            "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction and CONFIG REWRITE, or the managed service's parameter)",
        ),
        None => ok("redis", detail),
    }
}

async fn storage(worker: &WorkerConfig) -> Finding {
    let cfg = &worker.storage;
    if !cfg.enabled() {
        return ok(
            "storage",
            format!(
                "no bucket configured: results go to {} (set PAGECAST_S3_BUCKET for object storage)",
                worker.output_dir.display()
            ),
        );
    }
    match tokio::time::timeout(PROBE_TIMEOUT, super::health::check_storage(cfg)).await {
        Ok(Ok(detail)) => ok("storage", detail),
        Ok(Err(e)) => bad(
            "storage",
            Level::Fail,
            e,
            "check PAGECAST_S3_BUCKET/ENDPOINT/REGION/PATH_STYLE and the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
        ),
        Err(_) => bad(
            "storage",
            Level::Fail,
            "the storage endpoint did not answer within 15 s",
            "check PAGECAST_S3_ENDPOINT and the network path to it",
        ),
    }
}

/// The work directory exists (or can be made), is writable and has room.
fn work_dir(dir: &Path, min_free_mb: u64) -> Finding {
    const FIX: &str = "point PAGECAST_WORK_DIR at a writable directory on a volume with free space";
    if let Err(e) = std::fs::create_dir_all(dir) {
        return bad(
            "disk",
            Level::Fail,
            format!("cannot create {}: {e}", dir.display()),
            FIX,
        );
    }
    let probe: PathBuf = dir.join(format!(".pagecast-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        return bad(
            "disk",
            Level::Fail,
            format!("cannot write in {}: {e}", dir.display()),
            FIX,
        );
    }
    let _ = std::fs::remove_file(&probe);
    match free_bytes(dir) {
        Some(free) => match disk_level(free, min_free_mb) {
            Level::Fail => bad(
                "disk",
                Level::Fail,
                format!(
                    "{} has {} free, below PAGECAST_MIN_FREE_MB ({min_free_mb} MiB): a worker \
                     would take no recordings",
                    dir.display(),
                    gib(free)
                ),
                FIX,
            ),
            Level::Warn => bad(
                "disk",
                Level::Warn,
                format!(
                    "{} has {} free, close to PAGECAST_MIN_FREE_MB ({min_free_mb} MiB; an hour \
                     of 720p video takes about 1 GiB)",
                    dir.display(),
                    gib(free)
                ),
                FIX,
            ),
            Level::Ok => ok("disk", format!("{} has {} free", dir.display(), gib(free))),
        },
        None => bad(
            "disk",
            Level::Warn,
            format!("could not read the free space of {}", dir.display()),
            FIX,
        ),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Bytes available to unprivileged users on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; all zeroes is a valid value of it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_space_of_the_temp_dir_is_readable() {
        assert!(super::free_bytes(&std::env::temp_dir()).is_some_and(|b| b > 0));
        assert!(super::free_bytes(std::path::Path::new("/nonexistent/dir")).is_none());
    }

    #[test]
    fn disk_thresholds_follow_the_worker_s_minimum() {
        use super::{Level, disk_level};
        const MIB: u64 = 1 << 20;
        // The default minimum: 1 GiB fails below it, warns within 4 GiB above it.
        assert_eq!(disk_level(1023 * MIB, 1024), Level::Fail);
        assert_eq!(disk_level(1024 * MIB, 1024), Level::Warn);
        assert_eq!(disk_level(5 * 1024 * MIB, 1024), Level::Ok);
        // A small worker disk with a small minimum is fine, a large minimum is not.
        assert_eq!(disk_level(6 * 1024 * MIB, 8), Level::Ok);
        assert_eq!(disk_level(6 * 1024 * MIB, 8 * 1024), Level::Fail);
        assert_eq!(disk_level(0, 0), Level::Warn);
    }
}
