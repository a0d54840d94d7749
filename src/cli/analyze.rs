//! `pagecast analyze`: frame-timing figures of a recording of the clock page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pagecast::analysis::{decode::read_clock_values, frame_clock::analyze};

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
}

fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let video = args.video.clone();
    let (values, file_fps) = tokio::task::spawn_blocking(move || read_clock_values(&video))
        .await
        .context("the analysis task failed")?
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
