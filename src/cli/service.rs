//! `pagecast serve` (API + worker) and `pagecast worker` (worker only).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use pagecast::api::guard::Tokens;
use pagecast::api::routes::{ApiState, app, starting_app};
use pagecast::api::server::{AppHandle, ServerLimits};
use pagecast::api::settings::ApiConfig;
use pagecast::api::signing_key::UrlSigningConfig;
use pagecast::api::start::StartLimits;
use pagecast::config::{ShutdownMode, StoreConfig, WorkerConfig};
use pagecast::delivery::signed_url::UrlSigner;
use pagecast::error::ConfigError;
use pagecast::ops::health::Readiness;
use pagecast::ops::starting::{self, ConnectState};
use pagecast::pipeline::{WorkerContext, run_worker};
use pagecast::task::store::{StoreError, TaskStore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::public_url;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    store: StoreConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    signing: UrlSigningConfig,
    /// Run only the API, no in-process worker.
    #[arg(long, env = "PAGECAST_NO_WORKER")]
    no_worker: bool,
    /// Also serve /healthz, /readyz and /metrics on this address (e.g. 0.0.0.0:9090), without
    /// a token: for the monitoring network. Off by default.
    #[arg(long, env = "PAGECAST_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Serve /healthz, /readyz and /metrics of this worker on this address (e.g. 0.0.0.0:9090);
    /// off by default.
    #[arg(long, env = "PAGECAST_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Seconds a worker with local results and no PAGECAST_PUBLIC_URL waits at start for an API
    /// server to publish its URL through Redis (a worker may start before `serve`).
    #[arg(long, env = "PAGECAST_PUBLIC_URL_WAIT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    public_url_wait: u64,
    #[command(flatten)]
    store: StoreConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    signing: UrlSigningConfig,
}

/// Reports a setting that cannot work; exit status 2, like other usage errors.
fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken, mode: ShutdownMode) {
    tokio::spawn(async move {
        super::shutdown_signal().await;
        let what = match mode {
            ShutdownMode::Handover => "running recordings are handed over to other workers",
            ShutdownMode::Finish => {
                "running recordings continue until they end, then are delivered"
            }
            ShutdownMode::Stop => "running recordings are ended now and delivered",
        };
        info!("shutting down: no new work is taken; {what}");
        token.cancel();
    });
}

/// Connects to Redis, retrying until it answers (a worker may start before Redis does). Each
/// failure is logged by its kind and kept in `state` for the starting `/readyz`.
async fn connect(
    cfg: &StoreConfig,
    shutdown: &CancellationToken,
    state: &ConnectState,
) -> anyhow::Result<TaskStore> {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match cfg.connect().await {
            Ok(s) => return Ok(s),
            Err(e) => {
                state.failed(&e);
                match &e {
                    StoreError::Misconfigured { problem, .. } => {
                        warn!(problem = %problem, error = %e, "{}", starting::log_message(&e));
                    }
                    _ => warn!(error = %e, "{}", starting::log_message(&e)),
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("stopped before Redis was reachable"),
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// What `/readyz` checks in a process running a worker (or, with `worker` false, only the API).
fn readiness(
    store: &TaskStore,
    cfg: &WorkerConfig,
    worker: bool,
    shutdown: &CancellationToken,
) -> Readiness {
    let mut r = Readiness::redis_only(store.clone());
    r.shutdown = Some(shutdown.clone());
    if worker {
        r.worker = Some(cfg.capacity());
        r.work_disk = Some((cfg.work_root(), cfg.min_free_mb));
        r.storage = cfg.storage.enabled().then(|| cfg.storage.clone());
        r.binaries = vec![
            ("chromium", cfg.recorder.chromium.clone()),
            ("ffmpeg", cfg.recorder.ffmpeg.clone()),
        ];
    }
    r
}

/// The URL signer: the configured key, or the one shared through Redis (retried until Redis
/// answers, like the store's connection).
async fn url_signer(
    configured: Option<Vec<u8>>,
    cfg: &UrlSigningConfig,
    store: &TaskStore,
    shutdown: &CancellationToken,
) -> anyhow::Result<UrlSigner> {
    if let Some(key) = configured {
        return Ok(UrlSigner::new(&key, cfg.expiry()));
    }
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match pagecast::api::signing_key::shared_key(store).await {
            Ok(key) => return Ok(UrlSigner::new(&key, cfg.expiry())),
            Err(e) => {
                warn!(error = %e, "the URL signing key is not available yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("stopped before Redis was reachable"),
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// Binds a listen address; one that cannot be bound (in use, not on this machine, no
/// permission) is a configuration error naming its setting.
async fn bind(addr: &str, setting: &'static str) -> Result<tokio::net::TcpListener, ConfigError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError {
            setting,
            why: format!("cannot listen on {addr}: {e}"),
        })
}

/// Binds the operations listener (`PAGECAST_METRICS_LISTEN`) and serves what `router` is set
/// to, until the process exits (so probes see a drain while it lasts).
/// Its bound address is noted in `worker`: no task may reach it.
async fn ops_listener(
    addr: &Option<String>,
    worker: &mut WorkerConfig,
    connect: &ConnectState,
) -> Result<Option<AppHandle>, ConfigError> {
    const SETTING: &str = "PAGECAST_METRICS_LISTEN";
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = bind(addr, SETTING).await?;
    let bound = listener.local_addr().map_err(|e| ConfigError {
        setting: SETTING,
        why: format!("{addr}: {e}"),
    })?;
    worker.note_listeners(&[bound]);
    info!(addr = %bound, "health and metrics listening");
    let handle = AppHandle::new(pagecast::ops::starting_router(connect.clone()));
    tokio::spawn(pagecast::api::server::serve(
        listener,
        handle.clone(),
        ServerLimits::default(),
        std::future::pending(),
    ));
    Ok(Some(handle))
}

pub async fn serve(mut args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Chromium's helpers orphaned by a killed Chromium become ours and are reaped (PID 1 or not).
    pagecast::process::reaper::start();
    if let Err(e) = args
        .api
        .validate()
        .and_then(|()| args.store.validate())
        .and_then(|()| args.worker.validate(!args.no_worker))
    {
        return Ok(config_error(&e));
    }
    if let Err(e) = args
        .api
        .load_token_file()
        .and_then(|()| args.worker.load_secret_file())
    {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let checked = args.api.tokens().and_then(|tokens| {
        Ok((
            tokens,
            args.api.http_policy()?,
            args.signing.configured_key()?,
        ))
    });
    let (tokens, policy, signing_key) = match checked {
        Ok(c) => c,
        Err(e) => return Ok(config_error(&e)),
    };
    let tokens = Tokens(Arc::new(tokens));
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone(), args.worker.shutdown);
    // Bound and answering before Redis is reached: /healthz says alive, /readyz and the API
    // say 503 until Redis answers (it may start after pagecast).
    let listener = match bind(&args.api.listen, "PAGECAST_LISTEN").await {
        Ok(l) => l,
        Err(e) => return Ok(config_error(&e)),
    };
    let addr = listener.local_addr()?;
    let local_delivery = !args.worker.storage.enabled();
    let public_url =
        match public_url::for_serve(args.worker.public_url.as_deref(), addr, local_delivery) {
            Ok(url) => url,
            Err(why) => {
                return Ok(config_error(&ConfigError {
                    setting: "PAGECAST_PUBLIC_URL",
                    why: format!("{why} (PAGECAST_LISTEN {addr} names no host clients can reach)"),
                }));
            }
        };
    // No task (its page, its URLs) may reach this service's own listeners.
    args.worker.note_listeners(&[addr]);
    let connect_state = ConnectState::default();
    let handle = AppHandle::new(starting_app(&tokens, &policy, connect_state.clone()));
    let ops = match ops_listener(&args.metrics_listen, &mut args.worker, &connect_state).await {
        Ok(o) => o,
        Err(e) => return Ok(config_error(&e)),
    };
    let api_stop = CancellationToken::new();
    let server = {
        let stop = api_stop.clone();
        tokio::spawn(pagecast::api::server::serve(
            listener,
            handle.clone(),
            args.api.server_limits(),
            async move { stop.cancelled().await },
        ))
    };
    info!(%addr, "API listening");
    // For people at a terminal; log collectors get the line above (JSON when asked).
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("pagecast API listening on http://{addr}");
    }
    let connected = async {
        let store = connect(&args.store, &shutdown, &connect_state).await?;
        let signer = url_signer(signing_key, &args.signing, &store, &shutdown).await?;
        anyhow::Ok((store, signer))
    };
    let (store, signer) = match connected.await {
        Ok(c) => c,
        Err(e) => {
            api_stop.cancel();
            let _ = server.await;
            return Err(e);
        }
    };
    if let Some(url) = &public_url
        && let Err(e) = store.publish_public_url(url).await
    {
        // Workers started with PAGECAST_PUBLIC_URL do not need it; the others say so at start.
        warn!(error = %e, "could not publish the results' base URL for other workers");
    }
    let readiness = readiness(&store, &args.worker, !args.no_worker, &shutdown);
    let state = ApiState {
        store: store.clone(),
        tokens,
        max_queued: args.api.max_queued,
        limits: StartLimits::for_server(&args.worker),
        output_dir: args.worker.output_dir.clone(),
        url_policy: args.worker.url_policy(),
        readiness: readiness.clone(),
        signer: signer.clone(),
        http: policy,
    };
    handle.set(app(state));
    if let Some(ops) = ops {
        ops.set(pagecast::ops::router(pagecast::ops::OpsState {
            readiness,
            service_metrics: true,
        }));
    }
    info!("connected to Redis; serving the API");
    let worker = if args.no_worker {
        None
    } else {
        let base = public_url.unwrap_or_default();
        let ctx = WorkerContext::new(store, args.worker.clone(), base, shutdown.clone())
            .with_url_signer(signer);
        Some(tokio::spawn(run_worker(ctx)))
    };
    // The API keeps answering while the in-process worker drains (in `finish` mode that can
    // take a while, and clients still need Stop and Describe); /readyz says 503 meanwhile, so
    // load balancers move new requests elsewhere. It stops once the worker is done.
    {
        let (signal, api_stop) = (shutdown.clone(), api_stop.clone());
        tokio::spawn(async move {
            signal.cancelled().await;
            if let Some(w) = worker {
                let _ = w.await;
            }
            api_stop.cancel();
        });
    }
    server.await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(mut args: WorkerArgs) -> anyhow::Result<ExitCode> {
    pagecast::process::reaper::start();
    if let Err(e) = args
        .store
        .validate()
        .and_then(|()| args.worker.validate(true))
    {
        return Ok(config_error(&e));
    }
    if let Err(e) = args.worker.load_secret_file() {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let signing_key = match args.signing.configured_key() {
        Ok(k) => k,
        Err(e) => return Ok(config_error(&e)),
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone(), args.worker.shutdown);
    // Bound before Redis is reached, so a bad address fails at once and probes can connect.
    let connect_state = ConnectState::default();
    let ops = match ops_listener(&args.metrics_listen, &mut args.worker, &connect_state).await {
        Ok(o) => o,
        Err(e) => return Ok(config_error(&e)),
    };
    let store = connect(&args.store, &shutdown, &connect_state).await?;
    let signer = url_signer(signing_key, &args.signing, &store, &shutdown).await?;
    if let Some(ops) = ops {
        ops.set(pagecast::ops::router(pagecast::ops::OpsState {
            readiness: readiness(&store, &args.worker, true, &shutdown),
            service_metrics: false,
        }));
    }
    // A result kept locally is served by an API server: its URL is where that server is
    // reached, set here or published by an API server through Redis.
    let local_delivery = !args.worker.storage.enabled();
    let published = match args.worker.public_url {
        Some(_) => None,
        None if local_delivery => {
            let wait = std::time::Duration::from_secs(args.public_url_wait);
            public_url::published(&store, wait, &shutdown).await
        }
        None => None,
    };
    if shutdown.is_cancelled() {
        // Stopped while it waited for the URL: nothing was taken on, nothing is wrong.
        return Ok(ExitCode::SUCCESS);
    }
    let public_url = match public_url::for_worker(
        args.worker.public_url.as_deref(),
        published.as_deref(),
        local_delivery,
    ) {
        Ok(url) => url.unwrap_or_default(),
        Err(why) => {
            return Ok(config_error(&ConfigError {
                setting: "PAGECAST_PUBLIC_URL",
                why: format!(
                    "{why}; no API server published one through Redis within \
                     PAGECAST_PUBLIC_URL_WAIT ({} s)",
                    args.public_url_wait
                ),
            }));
        }
    };
    let ctx = WorkerContext::new(store, args.worker, public_url, shutdown).with_url_signer(signer);
    run_worker(ctx).await;
    Ok(ExitCode::SUCCESS)
}
