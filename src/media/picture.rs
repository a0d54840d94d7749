//! One snapshot picture made in process: a recording frame (a screencast JPEG, or a raw X11
//! grab as I420 or BGRX) decoded to RGB (`image`'s JPEG decoder; `dcv-color-primitives` for raw
//! frames), scaled to a width keeping the aspect (`fast_image_resize`), and encoded as JPEG
//! (`jpeg-encoder`) or PNG (`image`).
//!
//! This replaced one ffmpeg run per picture, which cost ~0.08 CPU-s each, nearly all of it
//! ffmpeg's start-up (BENCHMARKS.md, "Snapshots"). The work is CPU-bound and takes milliseconds:
//! callers run it off the async threads (`tokio::task::spawn_blocking`).

use dcv_color_primitives::{ColorSpace, ImageFormat as DcvFormat, PixelFormat, convert_image};
use fast_image_resize as fir;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{ImageEncoder, RgbImage};

use super::encoder::FrameFormat;
use super::snapshot::SnapshotFormat;

/// JPEG quality of snapshots (ffmpeg's `-q:v 3`, which the pictures were made with before, is
/// about the same).
const JPEG_QUALITY: u8 = 85;

/// Why a frame could not become a picture.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// The frame is not what its format says (a short raw frame, a broken JPEG).
    #[error("the frame cannot be read: {0}")]
    Frame(String),
    /// The picture could not be encoded.
    #[error("the picture cannot be encoded: {0}")]
    Encode(String),
}

/// The size of a picture `to` pixels wide from a `width`×`height` frame: the aspect kept, the
/// height rounded to the nearest even number (at least 2), as ffmpeg's `scale=W:-2` did.
pub(crate) fn scaled_size((width, height): (u32, u32), to: u32) -> (u32, u32) {
    let exact = f64::from(height) * f64::from(to) / f64::from(width.max(1));
    let even = ((exact / 2.0).round() as u32 * 2).max(2);
    (to, even)
}

/// Converts `frame` (a `size` frame in `format`; a JPEG carries its own size) into one picture
/// of `out` format, `scale_to` pixels wide when given. Returns the encoded picture.
pub fn convert(
    frame: &[u8],
    format: FrameFormat,
    size: (u32, u32),
    out: SnapshotFormat,
    scale_to: Option<u32>,
) -> Result<Vec<u8>, PictureError> {
    let rgb = to_rgb(frame, format, size)?;
    let rgb = match scale_to {
        Some(to) if to != rgb.width() => scale(&rgb, scaled_size(rgb.dimensions(), to))?,
        _ => rgb,
    };
    encode(&rgb, out)
}

/// `rgb` scaled to `(w, h)`: bilinear, its support widened when shrinking (no aliasing).
fn scale(rgb: &RgbImage, (w, h): (u32, u32)) -> Result<RgbImage, PictureError> {
    let fail = |e: &dyn std::fmt::Display| PictureError::Encode(format!("scaling: {e}"));
    let src = fir::images::ImageRef::new(
        rgb.width(),
        rgb.height(),
        rgb.as_raw(),
        fir::PixelType::U8x3,
    )
    .map_err(|e| fail(&e))?;
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    RgbImage::from_raw(w, h, dst.into_vec()).ok_or_else(|| fail(&"buffer size"))
}

/// The frame as 8-bit RGB.
fn to_rgb(frame: &[u8], format: FrameFormat, (w, h): (u32, u32)) -> Result<RgbImage, PictureError> {
    let (pixel_format, color_space, planes) = match format {
        FrameFormat::Jpeg => {
            let img = image::load_from_memory_with_format(frame, image::ImageFormat::Jpeg)
                .map_err(|e| PictureError::Frame(e.to_string()))?;
            return Ok(img.into_rgb8());
        }
        // BT.601 standard range: what the grab thread converts to (src/recording/i420.rs).
        FrameFormat::I420 => (PixelFormat::I420, ColorSpace::Bt601, 3),
        FrameFormat::Bgrx => (PixelFormat::Bgra, ColorSpace::Rgb, 1),
    };
    let expected = format.picture_bytes(w, h);
    if w == 0 || h == 0 || frame.len() != expected {
        return Err(PictureError::Frame(format!(
            "a {w}x{h} frame is {expected} bytes, not {}",
            frame.len()
        )));
    }
    let luma = w as usize * h as usize;
    let sources: Vec<&[u8]> = if planes == 3 {
        let (y, chroma) = frame.split_at(luma);
        let (u, v) = chroma.split_at(luma / 4);
        vec![y, u, v]
    } else {
        vec![frame]
    };
    let src = DcvFormat {
        pixel_format,
        color_space,
        num_planes: planes,
    };
    let dst = DcvFormat {
        pixel_format: PixelFormat::Rgb,
        color_space: ColorSpace::Rgb,
        num_planes: 1,
    };
    let mut rgb = vec![0u8; luma * 3];
    convert_image(w, h, &src, None, &sources, &dst, None, &mut [&mut rgb[..]])
        .map_err(|e| PictureError::Frame(format!("converting to RGB: {e:?}")))?;
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| PictureError::Frame("RGB buffer size".into()))
}

/// `rgb` encoded as `out`.
fn encode(rgb: &RgbImage, out: SnapshotFormat) -> Result<Vec<u8>, PictureError> {
    let mut buf = Vec::with_capacity(rgb.as_raw().len() / 8);
    let (w, h) = rgb.dimensions();
    match out {
        SnapshotFormat::Jpg => {
            let side = |n: u32| {
                u16::try_from(n)
                    .map_err(|_| PictureError::Encode(format!("{n} pixels is too large")))
            };
            let mut encoder = jpeg_encoder::Encoder::new(&mut buf, JPEG_QUALITY);
            // 4:2:0, as the video is.
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            encoder
                .encode(
                    rgb.as_raw(),
                    side(w)?,
                    side(h)?,
                    jpeg_encoder::ColorType::Rgb,
                )
                .map_err(|e| PictureError::Encode(e.to_string()))?;
        }
        // Fast compression: a 720p page compresses to about the size the default level gives, in
        // a fraction of the time.
        SnapshotFormat::Png => {
            PngEncoder::new_with_quality(&mut buf, CompressionType::Fast, PngFilter::Adaptive)
                .write_image(rgb.as_raw(), w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| PictureError::Encode(e.to_string()))?;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` I420 frame of one colour.
    fn i420(w: u32, h: u32, (y, u, v): (u8, u8, u8)) -> Vec<u8> {
        let luma = (w * h) as usize;
        let mut f = vec![y; luma];
        f.extend(std::iter::repeat_n(u, luma / 4));
        f.extend(std::iter::repeat_n(v, luma / 4));
        f
    }

    fn decode(bytes: &[u8]) -> RgbImage {
        image::load_from_memory(bytes).unwrap().into_rgb8()
    }

    fn near(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
    }

    #[test]
    fn heights_keep_the_aspect_and_stay_even() {
        assert_eq!(scaled_size((1280, 720), 640), (640, 360));
        assert_eq!(scaled_size((1280, 720), 320), (320, 180));
        // 100 * 720 / 1280 = 56.25 → 56; 30 → 16.875 → 16 (nearest even).
        assert_eq!(scaled_size((1280, 720), 100), (100, 56));
        assert_eq!(scaled_size((1280, 720), 30), (30, 16));
        assert_eq!(scaled_size((1000, 1), 16), (16, 2));
        assert_eq!(scaled_size((1280, 720), 2560), (2560, 1440));
    }

    #[test]
    fn i420_colours_come_out_roughly_right() {
        // BT.601 standard range (the values ffmpeg gives these colours).
        for (yuv, rgb) in [
            ((16, 128, 128), [0, 0, 0]),
            ((235, 128, 128), [255, 255, 255]),
            ((81, 90, 240), [255, 0, 0]),
            ((145, 54, 34), [0, 255, 0]),
            ((41, 240, 110), [0, 0, 255]),
        ] {
            let frame = i420(64, 32, yuv);
            for out in [SnapshotFormat::Png, SnapshotFormat::Jpg] {
                let pic = decode(&convert(&frame, FrameFormat::I420, (64, 32), out, None).unwrap());
                assert_eq!(pic.dimensions(), (64, 32));
                let got = pic.get_pixel(32, 16).0;
                // PNG is lossless (the conversion's rounding remains); JPEG adds its own.
                let tolerance = if out == SnapshotFormat::Png { 4 } else { 12 };
                assert!(
                    near(got, rgb, tolerance),
                    "{yuv:?} as {out:?}: {got:?}, not {rgb:?}"
                );
            }
        }
    }

    #[test]
    fn bgrx_frames_are_read_blue_first() {
        let frame = [40u8, 120, 200, 0].repeat(16 * 8);
        let pic = convert(
            &frame,
            FrameFormat::Bgrx,
            (16, 8),
            SnapshotFormat::Png,
            None,
        )
        .unwrap();
        let pic = decode(&pic);
        assert!(
            near(pic.get_pixel(3, 3).0, [200, 120, 40], 1),
            "{:?}",
            pic.get_pixel(3, 3)
        );
    }

    #[test]
    fn pictures_have_the_asked_format_and_size() {
        // A screencast frame: a JPEG, half red half blue.
        let mut src = RgbImage::new(1280, 720);
        for (x, _, p) in src.enumerate_pixels_mut() {
            p.0 = if x < 640 {
                [220, 30, 30]
            } else {
                [30, 30, 220]
            };
        }
        let jpeg = encode(&src, SnapshotFormat::Jpg).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG starts with SOI");

        let png = convert(
            &jpeg,
            FrameFormat::Jpeg,
            (1280, 720),
            SnapshotFormat::Png,
            Some(320),
        );
        let png = png.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let pic = decode(&png);
        assert_eq!(pic.dimensions(), (320, 180));
        assert!(
            near(pic.get_pixel(40, 90).0, [220, 30, 30], 16),
            "{:?}",
            pic.get_pixel(40, 90)
        );
        assert!(near(pic.get_pixel(280, 90).0, [30, 30, 220], 16));

        let jpg = convert(
            &jpeg,
            FrameFormat::Jpeg,
            (1280, 720),
            SnapshotFormat::Jpg,
            Some(640),
        );
        let jpg = jpg.unwrap();
        assert!(jpg.starts_with(&[0xFF, 0xD8]));
        assert_eq!(decode(&jpg).dimensions(), (640, 360));

        // Wider than the frame: scaled up.
        let frame = i420(64, 36, (81, 90, 240));
        let up = convert(
            &frame,
            FrameFormat::I420,
            (64, 36),
            SnapshotFormat::Jpg,
            Some(128),
        );
        assert_eq!(decode(&up.unwrap()).dimensions(), (128, 72));
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        let short = vec![0u8; 100];
        let err = convert(
            &short,
            FrameFormat::I420,
            (64, 32),
            SnapshotFormat::Jpg,
            None,
        );
        assert!(matches!(err, Err(PictureError::Frame(_))), "{err:?}");
        let err = convert(
            b"not a jpeg",
            FrameFormat::Jpeg,
            (64, 32),
            SnapshotFormat::Png,
            None,
        );
        assert!(matches!(err, Err(PictureError::Frame(_))), "{err:?}");
        let err = convert(&[], FrameFormat::Bgrx, (0, 0), SnapshotFormat::Png, None);
        assert!(matches!(err, Err(PictureError::Frame(_))), "{err:?}");
    }
}
