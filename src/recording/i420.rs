//! Screen grabs (32-bit BGRX, as the X server holds them) to I420: planar 4:2:0 YUV, BT.601
//! with standard (16–235) range, which is what ffmpeg's own conversion of the same pixels made
//! and what x264 encodes. Converting here, in the grab thread, replaces the copy each grab
//! needed anyway; the picture then takes 1.5 bytes a pixel instead of 4 in every queue between
//! the grab and ffmpeg, and ffmpeg no longer converts at all.

use std::sync::Arc;

use dcv_color_primitives::{ColorSpace, ImageFormat, PixelFormat, convert_image};

use crate::media::encoder::FrameFormat;

/// Whether pictures of this size can be I420 (its chroma planes need even sides).
pub(super) fn fits(width: u32, height: u32) -> bool {
    width > 0 && height > 0 && width.is_multiple_of(2) && height.is_multiple_of(2)
}

/// Converts one BGRX picture of `width`×`height` (tightly packed) into a new I420 buffer:
/// the Y plane, then U, then V.
pub(super) fn from_bgrx(bgrx: &[u8], width: u32, height: u32) -> Result<Arc<[u8]>, String> {
    if !fits(width, height) {
        return Err(format!(
            "{width}x{height} has an odd side; I420 needs even ones"
        ));
    }
    let luma = width as usize * height as usize;
    if bgrx.len() != luma * 4 {
        return Err(format!(
            "a {width}x{height} BGRX picture is {} bytes, not {}",
            luma * 4,
            bgrx.len()
        ));
    }
    // One zeroed allocation, written in place (the buffer is not shared yet).
    // SAFETY: zero bytes are valid `u8`s.
    let mut out: Arc<[u8]> = unsafe {
        Arc::<[u8]>::new_zeroed_slice(FrameFormat::I420.picture_bytes(width, height)).assume_init()
    };
    let planes = Arc::get_mut(&mut out).ok_or("a new buffer is not shared")?;
    let (y, chroma) = planes.split_at_mut(luma);
    let (u, v) = chroma.split_at_mut(luma / 4);
    let src = ImageFormat {
        // The fourth byte is X, not alpha; the conversion to YUV ignores it either way.
        pixel_format: PixelFormat::Bgra,
        color_space: ColorSpace::Rgb,
        num_planes: 1,
    };
    let dst = ImageFormat {
        pixel_format: PixelFormat::I420,
        color_space: ColorSpace::Bt601,
        num_planes: 3,
    };
    convert_image(
        width,
        height,
        &src,
        None,
        &[bgrx],
        &dst,
        None,
        &mut [y, u, v],
    )
    .map_err(|e| format!("converting a grab to I420: {e:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(b: u8, g: u8, r: u8, w: u32, h: u32) -> Vec<u8> {
        [b, g, r, 0].repeat(w as usize * h as usize)
    }

    /// BT.601 standard range, as ffmpeg converts: Y = 16 + 219·luma, U/V = 128 + 224·chroma.
    #[test]
    fn colours_land_where_bt601_puts_them() {
        let (w, h) = (64, 32);
        for ((b, g, r), (y, u, v)) in [
            ((0, 0, 0), (16, 128, 128)),
            ((255, 255, 255), (235, 128, 128)),
            ((0, 255, 0), (145, 54, 34)),
            ((0, 0, 255), (82, 90, 240)),
            ((255, 0, 0), (41, 240, 110)),
        ] {
            let out = from_bgrx(&solid(b, g, r, w, h), w, h).unwrap();
            let luma = (w * h) as usize;
            assert_eq!(out.len(), luma * 3 / 2);
            let (py, pu, pv) = (out[0], out[luma], out[luma + luma / 4]);
            for (got, want, what) in [(py, y, "Y"), (pu, u, "U"), (pv, v, "V")] {
                assert!(
                    (i32::from(got) - want).abs() <= 1,
                    "rgb ({r},{g},{b}): {what} {got}, want {want}"
                );
            }
            // Every sample of a plane is the same for a solid picture.
            assert!(out[..luma].iter().all(|s| *s == py));
            assert!(out[luma..luma + luma / 4].iter().all(|s| *s == pu));
            assert!(out[luma + luma / 4..].iter().all(|s| *s == pv));
        }
    }

    #[test]
    fn odd_sides_and_wrong_sizes_are_errors() {
        assert!(!fits(1281, 720) && !fits(1280, 721) && fits(1280, 720));
        assert!(from_bgrx(&solid(0, 0, 0, 3, 2), 3, 2).is_err());
        assert!(from_bgrx(&[0; 10], 2, 2).is_err());
    }
}
