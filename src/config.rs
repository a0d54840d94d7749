//! Configuration: typed settings with documented defaults, each a CLI flag and a `PAGECAST_*`
//! environment variable. Secrets (tokens, keys, the Redis password) are never printed.

use crate::error::{ConfigError, invalid};
use crate::secret::{Secret, read_secret_file};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::browser::BrowserSettings;
use crate::media::encoder::{DEFAULT_PRESET, EncoderSettings};
use crate::recording::CaptureSettings;

/// An absolute `http(s)://` URL, or why not.
fn check_http_url(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|e| invalid(setting, format!("{value:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            setting,
            format!("{value:?} must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(())
}

/// libx264 presets accepted by `--preset`.
pub(crate) const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// How pages are captured and encoded (shared by `record`, `serve` and `worker`).
#[derive(Debug, Clone, Args)]
pub struct RecorderConfig {
    /// The Chromium binary.
    #[arg(long, env = "PAGECAST_CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
    /// The ffmpeg binary.
    #[arg(long, env = "PAGECAST_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The ffprobe binary.
    #[arg(long, env = "PAGECAST_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: PathBuf,
    /// fontconfig file adding the project's fonts (default: fontconfig/fonts.conf found beside the binary).
    #[arg(long, env = "PAGECAST_FONTCONFIG")]
    pub(crate) fontconfig: Option<PathBuf>,
    /// How frames are captured: `screencast` (headless Chromium sends a JPEG per paint) or `x11`
    /// (headful Chromium on a private Xvfb display, read directly; cheaper and steadier).
    #[arg(long, env = "PAGECAST_CAPTURE", value_enum, default_value_t = crate::recording::CaptureBackend::default())]
    pub(crate) capture: crate::recording::CaptureBackend,
    /// The X server of `--capture x11` displays: `xvfb` (Chromium paints at 60 Hz), or Xorg's
    /// dummy driver, whose display refreshes at the recording's frame rate so Chromium paints no
    /// frames the video drops (about a fifth less CPU; see docs/configuration.md for what it
    /// costs in timing): `xorg`, or `auto` (Xorg, Xvfb where Xorg cannot start).
    #[arg(long, env = "PAGECAST_DISPLAY_SERVER", value_enum, default_value_t = crate::browser::DisplayServerChoice::Xvfb)]
    pub(crate) display_server: crate::browser::DisplayServerChoice,
    /// The Xorg binary (with the `dummy` video driver installed).
    #[arg(long, env = "PAGECAST_XORG", default_value = "/usr/lib/xorg/Xorg")]
    pub(crate) xorg: PathBuf,
    /// The Xvfb binary.
    #[arg(long, env = "PAGECAST_XVFB", default_value = "Xvfb")]
    pub(crate) xvfb: PathBuf,
    /// JPEG quality of screencast frames (1-100).
    #[arg(long, env = "PAGECAST_JPEG_QUALITY", default_value_t = crate::recording::DEFAULT_JPEG_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(crate) jpeg_quality: u8,
    /// Capture every n-th frame Chromium paints (1 = all).
    #[arg(long, env = "PAGECAST_EVERY_NTH_FRAME", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub(crate) every_nth_frame: u32,
    /// libx264 preset.
    #[arg(long, env = "PAGECAST_X264_PRESET", default_value = DEFAULT_PRESET, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    pub(crate) preset: String,
    /// libx264 constant rate factor (0-51, lower is better).
    #[arg(long, env = "PAGECAST_X264_CRF", default_value_t = 23, value_parser = clap::value_parser!(u8).range(0..=51))]
    pub(crate) crf: u8,
    /// libx264 preset of live pushes that encode a stream of their own (`Output.Live` with a bit
    /// rate); pushes without one carry the recording's stream and encode nothing (docs/live.md).
    #[arg(long, env = "PAGECAST_LIVE_X264_PRESET", default_value = DEFAULT_PRESET, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    pub live_preset: String,
    /// Seconds a page may take to load (60, as the source product waits for the load event).
    #[arg(long, env = "PAGECAST_NAVIGATION_TIMEOUT", default_value_t = 60)]
    pub navigation_timeout: u64,
    /// Seconds a page's main thread may stay unresponsive before the page counts as hung and is
    /// reopened (0 = never).
    #[arg(long, env = "PAGECAST_HANG_TIMEOUT", default_value_t = 10)]
    pub(crate) hang_timeout: u64,
    /// Extra Chromium flags, space-separated (e.g. `--lang=zh-CN`), added after pagecast's own.
    #[arg(
        long,
        env = "PAGECAST_CHROMIUM_ARGS",
        allow_hyphen_values = true,
        value_delimiter = ' '
    )]
    pub(crate) chromium_args: Vec<String>,
    /// Chromium's sandbox: `auto` (on unless running as root; if it cannot start here, off with
    /// a warning), `on` (a browser without it fails) or `off`.
    #[arg(long, env = "PAGECAST_CHROMIUM_SANDBOX", value_enum, default_value_t = crate::browser::SandboxMode::Auto)]
    pub(crate) chromium_sandbox: crate::browser::SandboxMode,
    /// The pulseaudio binary (pactl and parec are taken from the same directory when this is a
    /// path). pagecast starts its own private PulseAudio server with it on first use.
    #[arg(long, env = "PAGECAST_PULSEAUDIO", default_value = "pulseaudio")]
    pub(crate) pulseaudio: PathBuf,
    /// Use this running PulseAudio server (e.g. `unix:/run/pagecast/pulse/native`) instead of a
    /// private one; sinks that crashed pagecast processes left there are removed on connect.
    #[arg(long, env = "PAGECAST_PULSE_SERVER")]
    pub(crate) pulse_server: Option<String>,
    /// MiB of memory one recording's browser may use (0 = no cap). A page that takes more ends
    /// its recording with PageOutOfMemory (what was recorded is delivered). Enforced by a
    /// cgroup v2 memory.max where pagecast may create cgroups, else by V8's heap limit plus a
    /// watchdog on the browser's memory.
    #[arg(long, env = "PAGECAST_PAGE_MEMORY_MB", default_value_t = 2048)]
    pub(crate) page_memory_mb: u64,
}

impl RecorderConfig {
    /// Browser settings for a recording of the given size.
    pub fn browser(&self, width: u32, height: u32) -> BrowserSettings {
        BrowserSettings {
            executable: self.chromium.clone(),
            width,
            height,
            fontconfig_file: crate::fonts::find_fontconfig(self.fontconfig.as_deref()),
            extra_args: self
                .chromium_args
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            env: Vec::new(),
            launch_timeout: Duration::from_secs(30),
            sandbox: self.chromium_sandbox,
            display: None,
            display_servers: crate::browser::DisplayServers {
                choice: self.display_server,
                xorg: self.xorg.clone(),
                xvfb: self.xvfb.clone(),
            },
            memory_limit_mb: self.page_memory_mb,
        }
    }

    /// Sound capture settings.
    pub fn audio(&self) -> crate::audio::AudioSettings {
        crate::audio::AudioSettings {
            pulseaudio: self.pulseaudio.clone(),
            server: self.pulse_server.clone().filter(|s| !s.trim().is_empty()),
        }
    }

    /// Capture settings.
    pub fn capture(&self) -> CaptureSettings {
        CaptureSettings {
            jpeg_quality: self.jpeg_quality,
            every_nth_frame: self.every_nth_frame,
            hang_timeout: (self.hang_timeout > 0).then(|| Duration::from_secs(self.hang_timeout)),
            backend: self.capture,
            ..CaptureSettings::default()
        }
    }

    /// Encoder settings.
    pub fn encoder(&self) -> EncoderSettings {
        EncoderSettings {
            ffmpeg: self.ffmpeg.clone(),
            preset: self.preset.clone(),
            crf: self.crf,
            ..EncoderSettings::default()
        }
    }
}

/// Where task state lives (shared by `serve` and `worker`).
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Redis URL (may contain a password; never logged).
    #[arg(
        long,
        env = "PAGECAST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "PAGECAST_KEY_PREFIX", default_value = "pagecast:")]
    pub key_prefix: String,
    /// Seconds a finished task stays queryable.
    #[arg(long, env = "PAGECAST_TASK_RETENTION", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub task_retention: u64,
    /// How Redis is deployed: `standalone` (one server or a managed primary endpoint),
    /// `cluster` (PAGECAST_REDIS_URL lists seed nodes, comma-separated) or `sentinel`
    /// (PAGECAST_REDIS_URL lists sentinels; PAGECAST_REDIS_SENTINEL_MASTER names the master).
    #[arg(long, env = "PAGECAST_REDIS_MODE", value_enum, default_value_t = crate::task::store::RedisMode::Standalone)]
    pub redis_mode: crate::task::store::RedisMode,
    /// Sentinel mode: the name the sentinels know the master by.
    #[arg(long, env = "PAGECAST_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// Sentinel mode: the sentinels' own password, when they require one (the credentials in
    /// PAGECAST_REDIS_URL are the master's). Never logged.
    #[arg(long, env = "PAGECAST_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<Secret>,
    /// With rediss://: a PEM file of the CA certificates that sign the server's certificate,
    /// trusted instead of the system's roots (for a private CA).
    #[arg(long, env = "PAGECAST_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// With rediss://: a PEM client certificate, for servers that require mutual TLS (with
    /// PAGECAST_REDIS_CLIENT_KEY).
    #[arg(long, env = "PAGECAST_REDIS_CLIENT_CERT")]
    pub redis_client_cert: Option<PathBuf>,
    /// With rediss://: the PEM private key of PAGECAST_REDIS_CLIENT_CERT.
    #[arg(long, env = "PAGECAST_REDIS_CLIENT_KEY")]
    pub redis_client_key: Option<PathBuf>,
}

/// What a worker does with its running recordings when it is told to stop (SIGTERM, Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShutdownMode {
    /// Stop each recording at once (its segments complete) and queue the task for another
    /// worker of the same node (sharing the work directory), which reopens the page and records
    /// on into the same output. For rolling restarts.
    Handover,
    /// Keep recording until each recording ends by itself (Stop, MaxDurationLimit, the page),
    /// deliver, then exit. Takes as long as the longest recording.
    Finish,
    /// End each recording now and deliver what was recorded.
    Stop,
}

impl StoreConfig {
    /// Checks what clap cannot: the Redis URL list's form for the mode, the TLS files, and the
    /// key prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Parsed only: reaching the server is retried at start (Redis may come up later).
        self.redis_options()
            .check()
            .map_err(|(setting, why)| invalid(setting, why))?;
        if self.key_prefix.trim().is_empty() {
            return Err(invalid("PAGECAST_KEY_PREFIX", "must not be empty"));
        }
        Ok(())
    }

    /// How to reach Redis.
    pub(crate) fn redis_options(&self) -> crate::task::store::RedisOptions {
        crate::task::store::RedisOptions {
            url: self.redis_url.clone(),
            mode: self.redis_mode,
            sentinel_master: self.redis_sentinel_master.clone(),
            sentinel_password: self
                .redis_sentinel_password
                .as_ref()
                .map(|s| s.expose().to_string()),
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
        }
    }

    /// Connects the task store (once; callers retry).
    pub async fn connect(
        &self,
    ) -> Result<crate::task::store::TaskStore, crate::task::store::StoreError> {
        crate::task::store::TaskStore::open(&self.redis_options(), &self.key_prefix)
            .await
            .map(|s| s.with_retention(self.task_retention))
    }
}

/// The worker (recording and delivery).
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// This machine's name; work directories and local results belong to it (default: the host name).
    #[arg(long, env = "PAGECAST_NODE_ID")]
    pub(crate) node_id: Option<String>,
    /// Recordings this worker runs at once (default: half the CPU cores, at least 1).
    #[arg(long, env = "PAGECAST_WORKER_CAPACITY", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) capacity: Option<u64>,
    /// Where per-task work directories are created (default: <temp>/pagecast-work).
    #[arg(long, env = "PAGECAST_WORK_DIR")]
    pub(crate) work_dir: Option<PathBuf>,
    /// Where results are written when no object storage is configured.
    #[arg(long, env = "PAGECAST_OUTPUT_DIR", default_value = "pagecast-output")]
    pub output_dir: PathBuf,
    /// Base URL of local result files in Describe: where clients reach `serve`'s /files/. By
    /// default `serve` derives it from a loopback or specific listen address and publishes it in
    /// Redis, and a `worker` uses the published one; with a wildcard listen address and no
    /// bucket it must be set.
    #[arg(long, env = "PAGECAST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Milliseconds a worker's lease on a task lasts without a heartbeat.
    #[arg(long, env = "PAGECAST_LEASE_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    pub(crate) lease_ms: u64,
    /// Milliseconds after its last beat at which a worker counts as stopped: the tasks it holds
    /// are then taken over without waiting for their leases to expire. It beats every quarter
    /// of this period.
    #[arg(long, env = "PAGECAST_LIVENESS_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(500..=60_000))]
    pub(crate) liveness_ms: u64,
    /// Most callback attempts per task (0 = as many as the retry period allows).
    #[arg(long, env = "PAGECAST_CALLBACK_ATTEMPTS", default_value_t = 0)]
    pub(crate) callback_attempts: u32,
    /// Seconds, from the first attempt, during which a failed callback is retried; after that
    /// the task's result says CallbackFailed.
    #[arg(long, env = "PAGECAST_CALLBACK_RETRY_SECONDS", default_value_t = 6 * 3600)]
    pub(crate) callback_retry_seconds: u64,
    /// Milliseconds before the first retry; each further retry waits twice as long (with
    /// random jitter), up to PAGECAST_CALLBACK_MAX_BACKOFF_SECONDS.
    #[arg(long, env = "PAGECAST_CALLBACK_BACKOFF_MS", default_value_t = 2_000)]
    pub(crate) callback_backoff_ms: u64,
    /// Longest wait between two callback attempts, seconds.
    #[arg(
        long,
        env = "PAGECAST_CALLBACK_MAX_BACKOFF_SECONDS",
        default_value_t = 600
    )]
    pub(crate) callback_max_backoff_seconds: u64,
    /// Callbacks this worker delivers at once (a slow receiver holds only one of them).
    #[arg(long, env = "PAGECAST_CALLBACK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) callback_concurrency: u64,
    /// Secret for signing callbacks: each request carries `X-Pagecast-Signature: sha256=<hex>`,
    /// the HMAC-SHA256 of the body under this secret. Never logged.
    #[arg(long, env = "PAGECAST_CALLBACK_SECRET", hide_env_values = true)]
    pub(crate) callback_secret: Option<Secret>,
    /// A file holding the callback signing secret (instead of PAGECAST_CALLBACK_SECRET; e.g. a
    /// mounted container secret).
    #[arg(
        long,
        env = "PAGECAST_CALLBACK_SECRET_FILE",
        conflicts_with = "callback_secret"
    )]
    pub(crate) callback_secret_file: Option<PathBuf>,
    /// Seconds one callback request may take.
    #[arg(long, env = "PAGECAST_CALLBACK_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) callback_timeout: u64,
    /// Allow recording pages and calling back to private addresses (off by default: such URLs
    /// are refused at Start and checked again before use, and a recorded page's own requests to
    /// them are refused by the worker's egress proxy). This machine's own addresses (loopback,
    /// its interfaces') stay refused unless PAGECAST_ALLOWED_PRIVATE_NETWORKS names them.
    #[arg(long, env = "PAGECAST_ALLOW_PRIVATE_URLS")]
    pub(crate) allow_private_urls: bool,
    /// Allow link-local addresses too (169.254.0.0/16, fe80::/10, fd00:ec2::254), where cloud
    /// providers serve instance metadata and credentials. Off by default, also when private
    /// addresses are allowed.
    #[arg(long, env = "PAGECAST_ALLOW_LINK_LOCAL_URLS")]
    pub(crate) allow_link_local_urls: bool,
    /// Private networks and hosts that RecordURL, CallbackURL and a recorded page's own requests
    /// may reach although private addresses are refused: comma-separated CIDR networks or
    /// addresses (`10.0.0.0/8`, `fd00::/8`), host names (`intranet.example`) and domain
    /// suffixes (`.corp.example`). Link-local addresses stay behind
    /// PAGECAST_ALLOW_LINK_LOCAL_URLS. The only way to open this machine's own addresses
    /// (`127.0.0.0/8,::1` for loopback), PAGECAST_ALLOW_PRIVATE_URLS or not.
    #[arg(long, env = "PAGECAST_ALLOWED_PRIVATE_NETWORKS")]
    pub(crate) allowed_private_networks: Option<String>,
    /// MiB that must stay free on the work directory's disk: below it a worker takes no new
    /// recordings, and below half of it running recordings end (what they recorded is delivered)
    /// before the disk fills up.
    #[arg(long, env = "PAGECAST_MIN_FREE_MB", default_value_t = 1024)]
    pub min_free_mb: u64,
    /// MiB of recorded media one task may keep in its work directory (0: no limit). A recording
    /// that reaches it ends and what it recorded is delivered. HLS segments leave the work
    /// directory once published, so an HLS recording stays far below it however long it runs.
    #[arg(long, env = "PAGECAST_TASK_DISK_MB", default_value_t = 20480)]
    pub(crate) task_disk_mb: u64,
    /// What happens to running recordings on SIGTERM: `handover` (another worker of this node
    /// continues them), `finish` (record on until they end, deliver, exit) or `stop` (end them
    /// now and deliver what was recorded).
    #[arg(long, env = "PAGECAST_SHUTDOWN", value_enum, default_value_t = ShutdownMode::Handover)]
    pub shutdown: ShutdownMode,
    /// Seconds a handed-over task may wait for a worker of this node to continue it; after that
    /// it is ended (a worker of this node delivers what was recorded).
    #[arg(long, env = "PAGECAST_HANDOVER_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) handover_timeout: u64,
    /// A PEM file of certificate authorities trusted, besides the system's roots, for the
    /// https connections pagecast makes: callbacks, object storage and its credential
    /// endpoints (a private CA in front of MinIO or a callback receiver). Not for the pages
    /// Chromium records, nor Redis (PAGECAST_REDIS_CA_FILE).
    #[arg(long, env = "PAGECAST_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// The addresses this process's API and metrics listeners are bound to (see
    /// [`WorkerConfig::note_listeners`]): no task may reach them.
    #[arg(skip)]
    pub(crate) service_listeners: Vec<std::net::SocketAddr>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: crate::storage::StorageConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub recorder: RecorderConfig,
}

impl WorkerConfig {
    /// How long one callback request may take (PAGECAST_CALLBACK_TIMEOUT, at least 1 s).
    pub fn callback_attempt_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.callback_timeout.max(1))
    }

    /// Reads `callback_secret_file`, if set. Call once at start.
    pub fn load_secret_file(&mut self) -> Result<(), String> {
        if let Some(path) = &self.callback_secret_file {
            let secret = read_secret_file(path, "PAGECAST_CALLBACK_SECRET_FILE")?;
            if secret.is_empty() {
                return Err(format!(
                    "PAGECAST_CALLBACK_SECRET_FILE: {} is empty",
                    path.display()
                ));
            }
            self.callback_secret = Some(Secret::from(secret));
        }
        Ok(())
    }

    /// Checks the settings clap cannot, and that the binaries a worker runs are there: a
    /// worker that could not record should not start.
    pub fn validate(&self, runs_worker: bool) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            check_http_url("PAGECAST_PUBLIC_URL", url)?;
        }
        if let Some(url) = &self.storage.s3_endpoint {
            check_http_url("PAGECAST_S3_ENDPOINT", url)?;
        }
        if let Some(url) = &self.storage.s3_public_url
            && url.contains("://")
        {
            check_http_url("PAGECAST_S3_PUBLIC_URL", url)?;
        }
        if self
            .storage
            .s3_bucket
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            return Err(invalid("PAGECAST_S3_BUCKET", "must not be empty when set"));
        }
        self.storage.validate()?;
        if let Some(path) = &self.tls_ca_file {
            // Loaded here, once: every TLS client built after this trusts it too.
            crate::tls::use_extra_roots(path)
                .map_err(|why| invalid("PAGECAST_TLS_CA_FILE", why))?;
        }
        if let Some(list) = &self.allowed_private_networks
            && let Err(why) = crate::url_guard::PrivateAllowList::parse(list)
        {
            return Err(invalid("PAGECAST_ALLOWED_PRIVATE_NETWORKS", why));
        }
        if let Some(node) = &self.node_id
            && node.contains(char::is_whitespace)
        {
            return Err(invalid(
                "PAGECAST_NODE_ID",
                format!("{node:?} contains whitespace"),
            ));
        }
        if !runs_worker {
            return Ok(());
        }
        for (setting, name, path) in [
            ("PAGECAST_CHROMIUM", "chromium", &self.recorder.chromium),
            ("PAGECAST_FFMPEG", "ffmpeg", &self.recorder.ffmpeg),
            ("PAGECAST_FFPROBE", "ffprobe", &self.recorder.ffprobe),
        ] {
            if let Err(e) = crate::process::resolve_program(name, path) {
                return Err(invalid(
                    setting,
                    format!("{e}; `pagecast doctor` checks the whole environment"),
                ));
            }
        }
        let root = self.work_root();
        if let Err(e) = std::fs::create_dir_all(&root) {
            return Err(invalid(
                "PAGECAST_WORK_DIR",
                format!("cannot create {}: {e}", root.display()),
            ));
        }
        Ok(())
    }

    /// The node id: configured, or the host name.
    pub(crate) fn node(&self) -> String {
        self.node_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "localhost".into())
            })
    }

    /// Concurrent recordings.
    pub fn capacity(&self) -> usize {
        self.capacity
            .map(|c| c as usize)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get() / 2)
                    .unwrap_or(1)
            })
            .max(1)
    }

    /// The SSRF policy.
    pub fn url_policy(&self) -> crate::url_guard::UrlPolicy {
        crate::url_guard::UrlPolicy {
            allow_private: self.allow_private_urls,
            allow_link_local: self.allow_link_local_urls,
            // Checked by `validate` at start.
            allowed_private: self
                .allowed_private_networks
                .as_deref()
                .and_then(|l| crate::url_guard::PrivateAllowList::parse(l).ok())
                .unwrap_or_default(),
            service_ports: (!self.service_listeners.is_empty())
                .then(|| self.service_listeners.iter().map(|a| a.port()).collect()),
            allow_own_addresses: false,
        }
    }

    /// Records the listeners of this service that tasks must not reach: those this process
    /// bound (`bound`), plus `PAGECAST_LISTEN` and `PAGECAST_METRICS_LISTEN` when set (a
    /// separate `worker` on the API's machine knows the API's address only from them).
    pub fn note_listeners(&mut self, bound: &[std::net::SocketAddr]) {
        use std::net::ToSocketAddrs;
        let mut all = bound.to_vec();
        for var in ["PAGECAST_LISTEN", "PAGECAST_METRICS_LISTEN"] {
            if let Ok(value) = std::env::var(var)
                && let Ok(addrs) = value.trim().to_socket_addrs()
            {
                all.extend(addrs);
            }
        }
        all.sort();
        all.dedup();
        self.service_listeners = all;
    }

    /// Where a task's deliverable is assembled before upload to object storage.
    pub(crate) fn deliver_dir(&self, task_id: &str) -> PathBuf {
        crate::workdir::deliver_dir(&self.work_root(), task_id)
    }

    /// A task's work directory.
    pub(crate) fn task_dir(&self, task_id: &str) -> PathBuf {
        crate::workdir::task_dir(&self.work_root(), task_id)
    }

    /// Root of per-task work directories.
    pub fn work_root(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(crate::workdir::default_root)
    }
}

#[cfg(test)]
mod tests;
