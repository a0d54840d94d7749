//! `pagecast analyze`: frame-timing figures of a recording of the clock page, or (`--av-sync`)
//! A/V offsets of a recording of the flash-and-beep page. The figures come from the
//! `pagecast-analysis` crate; ffprobe and ffmpeg run in [`media`].

mod media;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pagecast_analysis::frame_clock::analyze;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The recorded video (MP4 or HLS playlist).
    video: PathBuf,
    /// Output frame rate to judge against (default: the file's).
    #[arg(long)]
    fps: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure A/V sync of a recording of tests/fixtures/av_sync.html instead: the offset
    /// between each flash and its beep.
    #[arg(long)]
    av_sync: bool,
    /// With --av-sync: also report the level of this frequency (Hz) in the sound; repeatable.
    #[arg(long = "tone", requires = "av_sync")]
    tones: Vec<f64>,
}

async fn run_av_sync(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let hls = args
        .video
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u8"));
    let pre: &[&str] = if hls {
        &["-allowed_extensions", "ALL"]
    } else {
        &[]
    };
    let r = media::av_sync(&args.video, pre, &args.tones)
        .await
        .with_context(|| format!("could not analyse {}", args.video.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "video {:.3} s, audio {:.3} s (audio starts {:+.1} ms after video)",
        r.video_s,
        r.audio_s,
        r.audio_start_minus_video_start_s * 1000.0
    );
    println!(
        "flashes {}, beeps {}, pairs {}",
        r.flashes,
        r.beeps,
        r.pairs.len()
    );
    for p in &r.pairs {
        println!(
            "  flash {:8.3} s  beep {:8.3} s  offset {:+7.1} ms{}",
            p.flash_s,
            p.beep_s,
            p.offset_ms,
            p.lateness_ms
                .map(|l| format!("  (page painted it {l:.0} ms late)"))
                .unwrap_or_default()
        );
    }
    println!(
        "A/V offset        mean {:+.1} ms, mean |offset| {:.1} ms, median |offset| {:.1} ms, max |offset| {:.1} ms",
        r.mean_offset_ms, r.mean_abs_offset_ms, r.median_abs_offset_ms, r.max_abs_offset_ms
    );
    println!(
        "recorder error    mean {:+.1} ms, mean |error| {:.1} ms, max |error| {:.1} ms (offset + page lateness)",
        r.mean_recorder_error_ms, r.mean_abs_recorder_error_ms, r.max_abs_recorder_error_ms
    );
    if let Some(hz) = r.tone_hz {
        println!("tone              {hz:.1} Hz");
    }
    for (hz, db) in &r.tone_levels_db {
        println!("level at {hz:.0} Hz  {db:.1} dBFS");
    }
    println!("peak              {:.1} dBFS", r.peak_db);
    Ok(ExitCode::SUCCESS)
}

fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    if args.av_sync {
        return run_av_sync(args).await;
    }
    let (values, file_fps) = media::clock_values(&args.video)
        .await
        .with_context(|| format!("could not decode {}", args.video.display()))?;
    let fps = args.fps.unwrap_or(file_fps);
    let r = analyze(&values, fps);
    let duration_s = if fps > 0.0 {
        r.frames as f64 / fps
    } else {
        f64::NAN
    };
    if args.json {
        let gaps: Vec<_> = r
            .gaps
            .iter()
            .map(|g| serde_json::json!({"at_frame": g.at_frame, "jump_ms": num(g.jump_ms)}))
            .collect();
        let out = serde_json::json!({
            "frames": r.frames,
            "decoded": r.decoded,
            "distinct_ratio": num(r.distinct_ratio),
            "p95_error_ms": num(r.p95_error_ms),
            "max_error_ms": num(r.max_error_ms),
            "drift": num(r.drift),
            "longest_freeze_ms": num(r.longest_freeze_ms),
            "gaps": gaps,
            "repeated_frames": r.repeated_frames,
            "error_by_second_ms": r.error_by_second_ms.iter().map(|&e| num(e)).collect::<Vec<_>>(),
            "duration_s": num(duration_s),
            "fps": num(fps),
        });
        println!("{out}");
    } else {
        println!(
            "frames            {} ({} decoded) at {fps:.3} fps = {duration_s:.3} s",
            r.frames, r.decoded
        );
        println!("distinct ratio    {:.4}", r.distinct_ratio);
        println!(
            "timing error      p95 {:.1} ms, max {:.1} ms",
            r.p95_error_ms, r.max_error_ms
        );
        println!("drift             {:.5}", r.drift);
        println!("longest freeze    {:.1} ms", r.longest_freeze_ms);
        for g in &r.gaps {
            println!(
                "gap               at frame {}: page time jumps {:.0} ms",
                g.at_frame, g.jump_ms
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
