//! ffprobe: what a media file contains.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::MediaError;
use crate::process::run_capture;

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// Container duration in seconds.
    pub duration: f64,
    /// Video width.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Video codec name (e.g. "h264").
    pub video_codec: String,
    /// Video average frame rate.
    pub(crate) fps: f64,
    /// Whether there is an audio stream.
    pub(crate) has_audio: bool,
}

#[derive(Deserialize)]
struct Probe {
    format: Option<ProbeFormat>,
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
}

/// Runs ffprobe on `path` (extra input options such as `-allowed_extensions ALL` go in `pre_args`).
pub async fn probe(
    ffprobe: &Path,
    path: &Path,
    pre_args: &[&str],
) -> Result<MediaInfo, MediaError> {
    let mut args: Vec<String> = vec!["-v".into(), "error".into()];
    args.extend(pre_args.iter().map(|s| s.to_string()));
    args.extend(
        [
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate",
            "-of",
            "json",
        ]
        .map(String::from),
    );
    args.push(path.display().to_string());
    let out = run_capture("ffprobe", ffprobe, &args, Duration::from_secs(60)).await?;
    parse_probe(&String::from_utf8_lossy(&out))
}

/// Parses ffprobe's JSON output.
pub(crate) fn parse_probe(json: &str) -> Result<MediaInfo, MediaError> {
    let p: Probe = serde_json::from_str(json)
        .map_err(|e| MediaError::Unexpected(format!("ffprobe output: {e}")))?;
    let video = p
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or_else(|| MediaError::Unexpected("no video stream".into()))?;
    let duration = p
        .format
        .and_then(|f| f.duration)
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Ok(MediaInfo {
        duration,
        width: video.width.unwrap_or(0),
        height: video.height.unwrap_or(0),
        video_codec: video.codec_name.clone().unwrap_or_default(),
        fps: video
            .avg_frame_rate
            .as_deref()
            .map(parse_rate)
            .unwrap_or(0.0),
        has_audio: p
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
    })
}

fn parse_rate(r: &str) -> f64 {
    match r.split_once('/') {
        Some((n, d)) => match (n.parse::<f64>(), d.parse::<f64>()) {
            (Ok(n), Ok(d)) if d != 0.0 => n / d,
            _ => 0.0,
        },
        None => r.parse().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffprobe_json() {
        let j = r#"{"streams":[{"codec_name":"h264","codec_type":"video","width":1280,"height":720,"avg_frame_rate":"30/1"}],"format":{"duration":"10.033333"}}"#;
        let i = parse_probe(j).unwrap();
        assert_eq!(
            (i.width, i.height, i.video_codec.as_str()),
            (1280, 720, "h264")
        );
        assert!(
            (i.fps - 30.0).abs() < 1e-9 && (i.duration - 10.033333).abs() < 1e-9 && !i.has_audio
        );
        assert!(parse_probe(r#"{"streams":[]}"#).is_err());
    }
}
