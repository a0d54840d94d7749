//! `pagecast record`: one page to one file, in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pagecast::command::Command;
use pagecast::config::RecorderConfig;
use pagecast::error::{ErrorCode, HasErrorCode};
use pagecast::media::finalize::{OutputFormat, finalize};
use pagecast::media::hls::HlsKey;
use pagecast::media::probe::probe;
use pagecast::recording::{
    DEFAULT_HEIGHT, DEFAULT_WIDTH, Outcome, RecordOptions, Recording, RecordingState, dimension,
    frame_rate, page_url,
};

use super::demo;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The page to record (http or https), or `demo` for the bundled demo page.
    url: String,
    /// Output file: `.mp4` for MP4, `.m3u8` for HLS (segments are written beside it).
    #[arg(short, long, default_value = "pagecast.mp4")]
    output: PathBuf,
    /// Viewport and video width: 16 to 2560, or 0 for 1280.
    #[arg(long, default_value_t = DEFAULT_WIDTH)]
    width: u32,
    /// Viewport and video height: 16 to 2560, or 0 for 720.
    #[arg(long, default_value_t = DEFAULT_HEIGHT)]
    height: u32,
    /// Output frames per second: 1 to 60, or 0 for 30.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Stop after this many seconds of recording (above 0, at most 36000; pauses excluded).
    /// Without it, record until Ctrl-C / SIGTERM or until the page calls window.stopRecord().
    #[arg(long)]
    duration: Option<f64>,
    /// Wait for the page to call window.startRecord() before recording.
    #[arg(long)]
    manual_start: bool,
    /// With --manual-start: fail if the page has not called window.startRecord() after this many seconds.
    #[arg(long, default_value_t = 300)]
    start_timeout: u64,
    /// HLS only: AES-128 key as 32 hex characters; every segment is encrypted with it. From the
    /// environment it applies to `.m3u8` outputs and is ignored for MP4.
    #[arg(long, env = "PAGECAST_HLS_KEY", hide_env_values = true)]
    hls_key: Option<String>,
    /// The key URI written into the playlist (where players fetch the key); needed with
    /// --hls-key.
    #[arg(long, env = "PAGECAST_HLS_KEY_URI")]
    hls_key_uri: Option<String>,
    /// Where per-recording work directories are created (default: the system temp dir).
    #[arg(long, env = "PAGECAST_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (segments, browser profile) after finishing.
    #[arg(long)]
    keep_work_dir: bool,
    /// Record without sound (no PulseAudio needed; the file has no audio track).
    #[arg(long)]
    no_audio: bool,
    /// Push the recording live to this rtmp://, rtmps:// or srt:// URL while recording (up to 3
    /// times; 2500 kbit/s video, 128 kbit/s audio). See docs/live.md.
    #[arg(long = "live", value_name = "URL")]
    live: Vec<String>,
    #[command(flatten)]
    recorder: RecorderConfig,
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
}

/// A failure with its stable code, printed as `error [Code]: message`.
fn fail(code: ErrorCode, message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error [{code}]: {message}");
    Ok(ExitCode::from(
        if code.fault() == pagecast::error::Fault::Client {
            2
        } else {
            1
        },
    ))
}

fn validate(args: &RecordArgs) -> Result<(u32, u32, u32, Option<Duration>, OutputFormat), String> {
    let width = dimension(args.width, DEFAULT_WIDTH, "--width")?;
    let height = dimension(args.height, DEFAULT_HEIGHT, "--height")?;
    let fps = frame_rate(args.fps).map_err(|e| format!("--{e}"))?;
    let duration = match args.duration {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && d <= 36_000.0 => Some(Duration::from_secs_f64(d)),
        Some(d) => {
            return Err(format!(
                "--duration must be between 0 and 36000 seconds (got {d})"
            ));
        }
    };
    let typed = key_typed(&std::env::args_os().collect::<Vec<_>>());
    let key = hls_key(
        args.hls_key.as_deref(),
        args.hls_key_uri.as_deref(),
        is_hls(&args.output),
        typed,
    )?;
    let format =
        OutputFormat::from_path(&args.output, key).map_err(|e| format!("--output: {e}"))?;
    Ok((width, height, fps, duration, format))
}

/// The live pushes `--live` asks for (checked like the API's `Output.Live`, without the egress
/// rules: the one-shot command is the operator's own tool).
fn live_feed(
    urls: &[String],
    rec: &RecorderConfig,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<pagecast::media::live::LiveFeed, String> {
    use pagecast::media::live::target::{MAX_TARGETS, parse_live_url, redacted_url};
    use pagecast::media::live::{LiveFeed, LiveSettings, LiveTarget};
    if urls.len() > MAX_TARGETS {
        return Err(format!("--live may be given at most {MAX_TARGETS} times"));
    }
    let mut targets = Vec::new();
    for url in urls {
        parse_live_url(url).map_err(|e| format!("--live {} {e}", redacted_url(url)))?;
        targets.push(LiveTarget {
            url: url.trim().to_owned(),
            video_kbps: None,
            audio_kbps: None,
        });
    }
    let settings = LiveSettings {
        ffmpeg: rec.ffmpeg.clone(),
        preset: rec.live_preset.clone(),
        width,
        height,
        fps,
        input: pagecast::media::encoder::FrameFormat::Jpeg,
        // Set from the recording's encoder.
        sound: true,
        // The operator records what they choose.
        egress: pagecast::url_guard::UrlPolicy::OPEN,
        ca_file: None,
    };
    Ok(LiveFeed::start(settings, targets))
}

fn is_hls(output: &std::path::Path) -> bool {
    output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u8"))
}

/// Whether `--hls-key` was typed on the command line (rather than set as PAGECAST_HLS_KEY).
fn key_typed(argv: &[std::ffi::OsString]) -> bool {
    argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == "--hls-key" || a.starts_with("--hls-key="))
    })
}

/// The encryption key of the output. A key exported in the environment is meant for HLS
/// outputs and does not stop an MP4 recording; one typed for an MP4 output is a mistake.
fn hls_key(
    key: Option<&str>,
    uri: Option<&str>,
    hls: bool,
    typed: bool,
) -> Result<Option<HlsKey>, String> {
    match (key, uri) {
        (Some(_), _) if !hls && !typed => Ok(None),
        (Some(_), _) if !hls => {
            Err("--hls-key: encryption is only available for HLS (.m3u8) output".into())
        }
        (Some(k), Some(uri)) => HlsKey::from_hex(k, uri)
            .map(Some)
            .map_err(|e| format!("--hls-key: {e}")),
        (Some(_), None) => Err(
            "--hls-key needs --hls-key-uri (or PAGECAST_HLS_KEY_URI): the key URI players \
             fetch the key from"
                .into(),
        ),
        (None, Some(_)) if hls => Err(
            "--hls-key-uri needs --hls-key (or PAGECAST_HLS_KEY): the key to encrypt with".into(),
        ),
        (None, _) => Ok(None),
    }
}

pub async fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let (width, height, fps, duration, format) = match validate(&args) {
        Ok(v) => v,
        Err(e) => return fail(ErrorCode::InvalidParam, e),
    };
    // `demo` records the bundled page from a loopback server that lives as long as the recording.
    let (url, _demo_server) = if args.url == "demo" {
        let (url, server) = demo::serve().await?;
        (url, Some(server))
    } else {
        match page_url(&args.url) {
            Ok(u) => (u.to_string(), None),
            Err(e) => return fail(ErrorCode::InvalidParam, format!("URL: {e}")),
        }
    };

    let work_root = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root)?;
    let work = tempfile::Builder::new()
        .prefix("pagecast-")
        .tempdir_in(&work_root)?;
    let rec = &args.recorder;
    let browser = rec.browser(width, height);
    if browser.fontconfig_file.is_none() {
        tracing::warn!(
            "fontconfig/fonts.conf not found: the bundled fonts are unavailable (set PAGECAST_FONTCONFIG)"
        );
    }
    let mut opts = RecordOptions {
        url,
        width,
        height,
        fps,
        max_duration: duration,
        wall_limit: None,
        manual_start: args.manual_start,
        start_timeout: Duration::from_secs(args.start_timeout),
        ends_at: None,
        start_paused: false,
        navigation_timeout: Duration::from_secs(rec.navigation_timeout),
        browser,
        capture: rec.capture(),
        encoder: rec.encoder(),
        audio: (!args.no_audio).then(|| rec.audio()),
        // The one-shot command is the operator's own tool: any page they can reach is allowed.
        url_policy: pagecast::url_guard::UrlPolicy::OPEN,
        guard_egress: false,
        work_dir: work.path().to_path_buf(),
        live: None,
        snapshots: None,
    };
    if !args.live.is_empty() {
        match live_feed(&args.live, rec, width, height, fps) {
            Ok(feed) => opts.live = Some(feed),
            Err(why) => return fail(ErrorCode::InvalidParam, why),
        }
    }
    let live = opts.live.clone();

    // ffmpeg is needed only after the page loads; check it first so a missing one fails fast.
    if let Err(e) = pagecast::process::resolve_program("ffmpeg", &rec.ffmpeg) {
        return fail(ErrorCode::RecordFailed, e);
    }

    let recording = match Recording::start(opts).await {
        Ok(r) => r,
        Err(e) => return fail(e.code(), e),
    };

    let bar = progress_bar(args.quiet);
    let mut progress = recording.progress();
    let waiter = tokio::spawn(recording_waiter(recording, super::shutdown_signal()));
    let mut waiter = std::pin::pin!(waiter);
    let outcome = loop {
        tokio::select! {
            r = &mut waiter => break r,
            changed = progress.changed() => {
                if changed.is_err() { continue; }
                let p = progress.borrow().clone();
                let state = match p.state {
                    RecordingState::WaitingForStart => "waiting for window.startRecord()",
                    RecordingState::Recording => "recording",
                    RecordingState::Paused => "paused",
                    RecordingState::Stopping => "stopping",
                    RecordingState::Finished => "finishing",
                };
                bar.set_message(format!(
                    "{state:<10} {:>8.1} s | frames {} captured, {} written, {} duplicated | {:.1} MB",
                    p.recorded_seconds, p.stats.frames_captured, p.stats.frames_written,
                    p.stats.frames_duplicated, p.bytes_written as f64 / 1e6
                ));
            }
        }
    };
    bar.finish_and_clear();

    let media = match outcome {
        Ok(Ok(Outcome::Recorded(media))) => media,
        Ok(Ok(Outcome::CanceledBeforeStart)) => {
            eprintln!("stopped before recording began: no file written");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Err(e)) => return fail(e.code(), e),
        Err(e) => {
            return fail(
                ErrorCode::InternalError,
                format!("the recording task failed: {e}"),
            );
        }
    };

    if let Some(live) = &live {
        live.finish().await;
        for t in live.stats() {
            eprintln!(
                "live push to {}: {} connection attempt(s){}",
                t.url,
                t.attempts,
                t.last_error
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    let files = match finalize(
        &rec.ffmpeg,
        &media.segments,
        work.path(),
        &args.output,
        &format,
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return fail(ErrorCode::TranscodeFailed, e),
    };
    if args.keep_work_dir {
        let kept = work.keep();
        eprintln!("work directory kept: {}", kept.display());
    }

    let pre: &[&str] = if matches!(format, OutputFormat::Hls { .. }) {
        &["-allowed_extensions", "ALL"]
    } else {
        &[]
    };
    let info = probe(&rec.ffprobe, &args.output, pre).await.ok();
    let size: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let s = media.stats;
    println!(
        "wrote {} ({} file{}, {:.2} MB)",
        args.output.display(),
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        size as f64 / 1e6
    );
    println!(
        "recorded {:.2} s at {} fps{}",
        media.recorded_seconds,
        media.fps,
        info.map(|i| format!(
            " ({}x{} {}, {:.2} s in the file)",
            i.width, i.height, i.video_codec, i.duration
        ))
        .unwrap_or_default()
    );
    println!(
        "frames: {} captured, {} written, {} duplicated, {} skipped, {} late",
        s.frames_captured, s.frames_written, s.frames_duplicated, s.frames_skipped, s.frames_late
    );
    if media.page_crashes > 0
        || media.page_hangs > 0
        || media.browser_restarts > 0
        || media.encoder_restarts > 0
    {
        println!(
            "survived: {} page crash(es), {} page hang(s), {} browser restart(s), {} encoder restart(s), {:.2} s lost",
            media.page_crashes,
            media.page_hangs,
            media.browser_restarts,
            media.encoder_restarts,
            media.lost_seconds
        );
    }
    // The file holds what was recorded; the failure that ended the recording early still counts.
    if let Some((code, message)) = &media.error {
        return fail(
            *code,
            format!("the recording ended early: {message} (what was recorded was written)"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the recording until it ends; a stop signal ends it cleanly (the file is finished).
async fn recording_waiter(
    recording: Recording,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Outcome, pagecast::recording::RecordError> {
    let controls = recording.controls_handle();
    tokio::spawn(async move {
        stop.await;
        eprintln!("\nstopping: finishing the file (press Ctrl-C again to abort)");
        controls.send(Command::Stop);
        super::shutdown_signal().await;
        eprintln!("aborted");
        std::process::exit(130);
    });
    recording.wait().await
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn an_exported_key_applies_to_hls_only() {
        assert!(hls_key(Some(KEY), None, false, false).unwrap().is_none());
        assert!(
            hls_key(Some(KEY), Some("k"), false, false)
                .unwrap()
                .is_none()
        );
        assert!(
            hls_key(Some(KEY), Some("k"), true, false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_typed_key_for_mp4_and_half_a_key_are_refused() {
        assert!(hls_key(Some(KEY), Some("k"), false, true).is_err());
        assert!(hls_key(Some(KEY), None, true, true).is_err());
        assert!(hls_key(None, Some("k"), true, false).is_err());
        assert!(hls_key(None, Some("k"), false, false).unwrap().is_none());
        assert!(hls_key(None, None, true, false).unwrap().is_none());
    }

    #[test]
    fn the_typed_flag_is_found_in_either_form() {
        let words = |w: &[&str]| w.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(key_typed(&words(&["pagecast", "record", "--hls-key", KEY])));
        assert!(key_typed(&words(&["pagecast", "record", "--hls-key=x"])));
        assert!(!key_typed(&words(&[
            "pagecast",
            "record",
            "--hls-key-uri",
            "u"
        ])));
    }
}
