//! Command-line interface: `pagecast record`, `serve`, `worker`, `doctor`, `healthcheck`,
//! `analyze`.

mod analyze;
mod demo;
mod doctor;
mod env_errors;
mod public_url;
mod record;
mod service;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Records web pages as video.
#[derive(Debug, Parser)]
#[command(name = "pagecast", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug). PAGECAST_LOG (a tracing filter) overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format: `text` (human, coloured on a terminal) or `json` (one object per line, with
    /// the task_id/request_id of the spans it belongs to).
    #[arg(long, env = "PAGECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Record a page to an MP4 or HLS file (one-shot; needs no Redis or storage).
    Record(Box<record::RecordArgs>),
    /// Run the HTTP API and a worker (tasks in Redis).
    Serve(Box<service::ServeArgs>),
    /// Run a worker only; start as many as you like against the same Redis.
    Worker(Box<service::WorkerArgs>),
    /// Check the environment a worker needs and say how to fix what is wrong.
    Doctor(Box<doctor::DoctorArgs>),
    /// Probe a running pagecast's /healthz (exit 0 when healthy): for container HEALTHCHECKs.
    Healthcheck(doctor::HealthcheckArgs),
    /// Measure frame timing in a recording of tests/fixtures/clock.html, or A/V sync in one of
    /// tests/fixtures/av_sync*.html (--av-sync): the benchmark tools.
    Analyze(analyze::AnalyzeArgs),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: aligned text, coloured when stderr is a terminal.
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

/// Parses the command line; a usage error exits with status 2, and a bad value that came from
/// an environment variable names that variable rather than the flag.
pub fn parse() -> Cli {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => match env_errors::blame_env(&e, &Cli::command(), &argv) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    }
}

/// Sets up logging to stderr.
pub fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // chromiumoxide logs protocol messages it does not know as warnings: noise for users.
        0 => "warn,chromiumoxide=off",
        1 => "info,chromiumoxide=off",
        _ => "info,pagecast=debug,chromiumoxide=warn",
    };
    let filter = std::env::var("PAGECAST_LOG").unwrap_or_else(|_| default.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::run(*args).await,
        Command::Serve(args) => service::serve(*args).await,
        Command::Worker(args) => service::worker(*args).await,
        Command::Analyze(args) => analyze::run(args).await,
        Command::Doctor(args) => doctor::run(*args).await,
        Command::Healthcheck(args) => doctor::healthcheck(args).await,
    }
}
