//! The still picture a live stream shows while the recording is paused: one second of the last
//! recorded picture (and silence), encoded once per pause with the recording encoder's own
//! settings, so the relay can splice it between the recording's segments.

use std::path::Path;
use std::time::Duration;

use crate::media::encoder::{
    AAC_FRAME, EncoderSettings, FrameFormat, SAMPLE_RATE, aac_output_args, silence_source,
};

/// Length of one still clip; the relay sends one a second for as long as the pause lasts.
pub(crate) const CLIP_SECONDS: u32 = 1;
/// A clip takes x264 a few tens of milliseconds; this bounds a stuck ffmpeg.
const LIMIT: Duration = Duration::from_secs(10);

/// What the clip is made from and like.
#[derive(Debug, Clone)]
pub(crate) struct StillSpec {
    pub(crate) encoder: EncoderSettings,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: u32,
}

/// ffmpeg's arguments: the picture in `picture` (as `input` describes it) held for
/// [`CLIP_SECONDS`], with silence if the recording has sound, as MPEG-TS on stdout.
pub(crate) fn still_args(spec: &StillSpec, input: FrameFormat, picture: &Path) -> Vec<String> {
    let s = &spec.encoder;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-hide_banner", "-nostats", "-nostdin", "-loglevel", "error"]);
    let size = format!("{}x{}", spec.width, spec.height);
    match input {
        FrameFormat::Jpeg => push(&["-f", "mjpeg"]),
        FrameFormat::Bgrx => push(&["-f", "rawvideo", "-pix_fmt", "bgr0", "-video_size", &size]),
        FrameFormat::I420 => push(&[
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-video_size",
            &size,
        ]),
    }
    let fps = spec.fps.max(1).to_string();
    let path = picture.display().to_string();
    push(&["-framerate", &fps, "-i", &path]);
    if s.audio {
        push(&["-f", "lavfi", "-i", &silence_source()]);
    }
    let hold = format!("tpad=stop_mode=clone:stop_duration={CLIP_SECONDS}");
    let filter = if input == FrameFormat::I420 {
        hold
    } else {
        format!(
            "scale={}:{}:flags=bicubic,pad=ceil(iw/2)*2:ceil(ih/2)*2,format=yuv420p,{hold}",
            spec.width, spec.height
        )
    };
    push(&["-vf", &filter, "-t", &CLIP_SECONDS.to_string()]);
    push(&["-map", "0:v:0"]);
    if s.audio {
        push(&["-map", "1:a:0"]);
    }
    // The recording encoder's settings (media/encoder/args.rs), so players see one stream.
    let gop = (spec.fps.max(1) * s.segment_seconds.max(1)).to_string();
    let crf = s.crf.to_string();
    push(&[
        "-threads", "1", "-c:v", "libx264", "-preset", &s.preset, "-crf", &crf,
    ]);
    push(&[
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-bf",
        "0",
    ]);
    push(&["-sc_threshold", "0"]);
    if s.audio {
        let aac = aac_output_args();
        push(&aac.iter().map(String::as_str).collect::<Vec<_>>());
        // The sound ends within the pictures: AAC frames (1024 samples) do not divide a second,
        // and the encoder starts its sound one frame before the pictures. So clip after clip,
        // the sound never overlaps the next clip's (the relay would leave out what does).
        let frames = (CLIP_SECONDS * SAMPLE_RATE + AAC_FRAME) / AAC_FRAME;
        push(&["-frames:a", &frames.to_string()]);
    }
    // One PES per sound frame (no muxing delay): the relay judges overlaps PES by PES.
    push(&["-max_delay", "0", "-f", "mpegts", "pipe:1"]);
    a
}

/// Encodes the clip for `picture` (written to `scratch` for ffmpeg to read).
pub(crate) async fn make_clip(
    spec: &StillSpec,
    input: FrameFormat,
    picture: &[u8],
    scratch: &Path,
) -> Result<Vec<u8>, String> {
    tokio::fs::write(scratch, picture)
        .await
        .map_err(|e| format!("writing the still picture: {e}"))?;
    let out = crate::process::run_capture(
        "ffmpeg",
        &spec.encoder.ffmpeg,
        still_args(spec, input, scratch),
        LIMIT,
    )
    .await
    .map_err(|e| e.to_string());
    let _ = tokio::fs::remove_file(scratch).await;
    let out = out?;
    if out.len() < super::ts::PACKET || out.len() % super::ts::PACKET != 0 {
        return Err(format!("ffmpeg made a still clip of {} bytes", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(audio: bool) -> StillSpec {
        StillSpec {
            encoder: EncoderSettings {
                audio,
                crf: 23,
                ..EncoderSettings::default()
            },
            width: 1280,
            height: 720,
            fps: 30,
        }
    }

    #[test]
    fn the_clip_is_encoded_like_the_recording() {
        let a = still_args(&spec(true), FrameFormat::I420, Path::new("/w/still.raw")).join(" ");
        assert!(
            a.contains(
                "-f rawvideo -pix_fmt yuv420p -video_size 1280x720 -framerate 30 -i /w/still.raw"
            ),
            "{a}"
        );
        assert!(
            a.contains("-vf tpad=stop_mode=clone:stop_duration=1 -t 1"),
            "{a}"
        );
        assert!(
            a.contains("-preset veryfast -crf 23 -pix_fmt yuv420p -g 60 -keyint_min 60 -bf 0"),
            "{a}"
        );
        assert!(
            a.contains("anullsrc=r=48000:cl=stereo") && a.contains("-c:a aac -b:a 128k"),
            "{a}"
        );
        assert!(a.contains("-frames:a 47"), "{a}");
        assert!(a.ends_with("-max_delay 0 -f mpegts pipe:1"));
        let b = still_args(&spec(false), FrameFormat::Jpeg, Path::new("/w/s.jpg")).join(" ");
        assert!(b.contains("-f mjpeg -framerate 30 -i /w/s.jpg"), "{b}");
        assert!(
            b.contains("scale=1280:720") && !b.contains("anullsrc") && !b.contains("1:a:0"),
            "{b}"
        );
    }
}
