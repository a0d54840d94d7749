//! CPU cost of one snapshot picture (BENCHMARKS.md, "Snapshots"): pagecast's in-process
//! conversion (`pagecast::media::picture::convert`) of one recording frame, for each kind of
//! frame and picture a task can ask for, `--runs` times each. The frame is made from `--page`
//! (a screenshot of a page, any size: it is scaled to `--width`×`--height`), as the X11 grab
//! thread hands it over (I420) and as Chromium's screencast does (a JPEG, quality `--quality`).
//!
//! Prints one JSON line per kind: CPU-s (user+system of this thread) per picture, median and
//! mean, wall ms, and the picture's size.
//!
//! ```sh
//! cargo run --release --example snapshot_cost -- --page shot.png
//! ```

use std::time::Instant;

use clap::Parser;
use dcv_color_primitives::{ColorSpace, ImageFormat, PixelFormat, convert_image};
use pagecast::media::encoder::FrameFormat;
use pagecast::media::picture::convert;
use pagecast::media::snapshot::SnapshotFormat;

#[derive(Parser)]
struct Args {
    /// A screenshot of a page (PNG or JPEG).
    #[arg(long)]
    page: std::path::PathBuf,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// JPEG quality of the screencast frame.
    #[arg(long, default_value_t = 90)]
    quality: u8,
    /// Conversions of each kind.
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

/// A kind of picture: its name, the frame, the frame's format, the picture's format and width.
type Row<'a> = (&'a str, &'a [u8], FrameFormat, SnapshotFormat, Option<u32>);

/// CPU time (user + system) of the calling thread, seconds.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (w, h) = (args.width, args.height);
    let page = image::open(&args.page)?.into_rgba8();
    let page = image::imageops::resize(&page, w, h, image::imageops::FilterType::Triangle);
    // BGRX, as the X server holds a grab, then I420 as the grab thread converts it.
    let mut bgrx = page.into_raw();
    for px in bgrx.chunks_exact_mut(4) {
        px.swap(0, 2);
    }
    let luma = (w * h) as usize;
    let mut i420 = vec![0u8; luma * 3 / 2];
    {
        let (y, chroma) = i420.split_at_mut(luma);
        let (u, v) = chroma.split_at_mut(luma / 4);
        let src = ImageFormat {
            pixel_format: PixelFormat::Bgra,
            color_space: ColorSpace::Rgb,
            num_planes: 1,
        };
        let dst = ImageFormat {
            pixel_format: PixelFormat::I420,
            color_space: ColorSpace::Bt601,
            num_planes: 3,
        };
        convert_image(w, h, &src, None, &[&bgrx], &dst, None, &mut [y, u, v])
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let mut jpeg = Vec::new();
    {
        let mut rgb = Vec::with_capacity(luma * 3);
        for px in bgrx.chunks_exact(4) {
            rgb.extend([px[2], px[1], px[0]]);
        }
        use image::ImageEncoder;
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, args.quality).write_image(
            &rgb,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
    }
    let rows: [Row<'_>; 6] = [
        (
            "i420 -> jpg",
            &i420,
            FrameFormat::I420,
            SnapshotFormat::Jpg,
            None,
        ),
        (
            "i420 -> png",
            &i420,
            FrameFormat::I420,
            SnapshotFormat::Png,
            None,
        ),
        (
            "i420 -> jpg 640",
            &i420,
            FrameFormat::I420,
            SnapshotFormat::Jpg,
            Some(640),
        ),
        (
            "jpeg -> png 320",
            &jpeg,
            FrameFormat::Jpeg,
            SnapshotFormat::Png,
            Some(320),
        ),
        (
            "jpeg -> jpg 640",
            &jpeg,
            FrameFormat::Jpeg,
            SnapshotFormat::Jpg,
            Some(640),
        ),
        (
            "jpeg -> png",
            &jpeg,
            FrameFormat::Jpeg,
            SnapshotFormat::Png,
            None,
        ),
    ];
    for (name, frame, format, out, scale) in rows {
        let mut cpu = Vec::with_capacity(args.runs);
        let mut wall = Vec::with_capacity(args.runs);
        let mut bytes = 0;
        for _ in 0..args.runs {
            let (c0, t0) = (thread_cpu(), Instant::now());
            let pic = convert(frame, format, (w, h), out, scale)?;
            cpu.push(thread_cpu() - c0);
            wall.push(t0.elapsed().as_secs_f64());
            bytes = pic.len();
        }
        let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
        cpu.sort_by(f64::total_cmp);
        wall.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "kind": name,
                "runs": args.runs,
                "cpu_s_median": cpu[cpu.len() / 2],
                "cpu_s_mean": mean,
                "wall_ms_median": wall[wall.len() / 2] * 1000.0,
                "bytes": bytes,
                "frame_bytes": frame.len(),
            })
        );
    }
    Ok(())
}
