//! Joins recorded segments into the deliverable without re-encoding: an MP4 with its index at the
//! front, or a VOD HLS playlist with MPEG-TS segments, optionally AES-128 encrypted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::MediaError;
use crate::process::run_capture;

/// An AES-128 key for HLS and the URI players fetch it from.
#[derive(Clone)]
pub struct HlsKey {
    /// The 16-byte key.
    pub key: [u8; 16],
    /// The key URI written into the playlist.
    pub uri: String,
}

impl std::fmt::Debug for HlsKey {
    // The key is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsKey")
            .field("key", &"<redacted>")
            .field("uri", &self.uri)
            .finish()
    }
}

impl HlsKey {
    /// Parses a key given as 32 hex characters.
    pub fn from_hex(hex_key: &str, uri: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| "the key must be 32 hexadecimal characters".to_string())?;
        let key: [u8; 16] = bytes
            .try_into()
            .map_err(|_| "the key must be 32 hexadecimal characters (16 bytes)".to_string())?;
        if uri.trim().is_empty() {
            return Err("an encryption key needs the URI players fetch it from".into());
        }
        Ok(Self {
            key,
            uri: uri.trim().to_string(),
        })
    }
}

/// What to produce.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    /// One MP4 file with `+faststart`.
    Mp4,
    /// An HLS VOD playlist; segments are written beside it, named after the playlist.
    Hls {
        /// Encrypt every segment with this key.
        key: Option<HlsKey>,
        /// Target segment length in seconds.
        segment_seconds: u32,
    },
}

impl OutputFormat {
    /// Chooses the format from an output path's extension (`.mp4` or `.m3u8`).
    pub fn from_path(path: &Path, key: Option<HlsKey>) -> Result<Self, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("mp4") if key.is_some() => {
                Err("encryption is only available for HLS (.m3u8) output".into())
            }
            Some("mp4") => Ok(OutputFormat::Mp4),
            Some("m3u8") => Ok(OutputFormat::Hls {
                key,
                segment_seconds: 2,
            }),
            _ => Err(format!("{} must end in .mp4 or .m3u8", path.display())),
        }
    }
}

/// Joins `segments` into `output`. Returns every file written (for HLS: the playlist first, then
/// the segments in order). `scratch` holds temporary files (list, key) and must be private.
pub async fn finalize(
    ffmpeg: &Path,
    segments: &[PathBuf],
    scratch: &Path,
    output: &Path,
    format: &OutputFormat,
) -> Result<Vec<PathBuf>, MediaError> {
    if segments.is_empty() {
        return Err(MediaError::Unexpected(
            "nothing was recorded (no segments)".into(),
        ));
    }
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir)
        .map_err(MediaError::io(format!("creating {}", out_dir.display())))?;
    let list = scratch.join("concat.txt");
    std::fs::write(&list, concat_list(segments))
        .map_err(MediaError::io("writing the concat list"))?;

    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostats",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
    ]
    .map(String::from)
    .to_vec();
    args.push(list.display().to_string());
    args.extend(["-map", "0", "-c", "copy"].map(String::from));
    // Generous: copying is fast (hundreds of times real time); this only catches a hang.
    let limit = Duration::from_secs(120 + segments.len() as u64);
    match format {
        OutputFormat::Mp4 => {
            args.extend(
                [
                    "-bsf:a",
                    "aac_adtstoasc",
                    "-movflags",
                    "+faststart",
                    "-f",
                    "mp4",
                ]
                .map(String::from),
            );
            args.push(output.display().to_string());
            run_capture("ffmpeg", ffmpeg, &args, limit).await?;
            Ok(vec![output.to_path_buf()])
        }
        OutputFormat::Hls {
            key,
            segment_seconds,
        } => {
            let stem = output
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("index")
                .to_string();
            args.extend(
                [
                    "-f",
                    "hls",
                    "-hls_playlist_type",
                    "vod",
                    "-hls_segment_type",
                    "mpegts",
                    "-hls_time",
                ]
                .map(String::from),
            );
            args.push(segment_seconds.to_string());
            args.push("-hls_segment_filename".into());
            args.push(
                out_dir
                    .join(format!("{stem}_%05d.ts"))
                    .display()
                    .to_string(),
            );
            let key_file = scratch.join("hls.key");
            if let Some(k) = key {
                write_private(&key_file, &k.key)?;
                let info = scratch.join("hls.keyinfo");
                write_private(
                    &info,
                    format!("{}\n{}\n", k.uri, key_file.display()).as_bytes(),
                )?;
                args.push("-hls_key_info_file".into());
                args.push(info.display().to_string());
            }
            args.push(output.display().to_string());
            let result = run_capture("ffmpeg", ffmpeg, &args, limit).await;
            // The key never stays on disk longer than needed.
            let _ = std::fs::remove_file(&key_file);
            let _ = std::fs::remove_file(scratch.join("hls.keyinfo"));
            result?;
            let playlist = std::fs::read_to_string(output)
                .map_err(MediaError::io("reading the HLS playlist"))?;
            let mut files = vec![output.to_path_buf()];
            files.extend(
                playlist_segments(&playlist)
                    .into_iter()
                    .map(|s| out_dir.join(s)),
            );
            Ok(files)
        }
    }
}

/// The segment URIs of a media playlist, in order.
pub fn playlist_segments(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The concat demuxer's list. Each segment's duration is taken from the encoder's segment list
/// (the video's span, `end - start`) when known: without it the demuxer would use the file's
/// own duration, which ends with the last audio packet and may reach past the last frame, and
/// every segment would push the following ones later (stretching the file and the audio with
/// it). With it, every segment of one encoder starts exactly where the previous one's video
/// ended, so both streams keep their recorded timestamps relative to each other.
fn concat_list(segments: &[PathBuf]) -> String {
    let mut durations = std::collections::HashMap::new();
    let mut dirs: Vec<&Path> = segments.iter().filter_map(|p| p.parent()).collect();
    dirs.dedup();
    for dir in dirs {
        durations.extend(segment_durations(dir));
    }
    let mut s = String::from("ffconcat version 1.0\n");
    for seg in segments {
        // Single quotes are escaped the way the concat demuxer expects.
        let path = seg.display().to_string().replace('\'', r"'\''");
        s.push_str(&format!("file '{path}'\n"));
        if let Some(d) = seg
            .parent()
            .and_then(|dir| durations.get(&dir.join(seg.file_name()?)))
        {
            s.push_str(&format!("duration {d:.6}\n"));
        }
    }
    s
}

/// Segment path -> duration (end - start) from every segment list (`segments-*.csv`) in `dir`.
fn segment_durations(dir: &Path) -> Vec<(PathBuf, f64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("segments-") && name.ends_with(".csv")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if let [file, start, end] = f.as_slice()
                && let (Ok(start), Ok(end)) = (start.parse::<f64>(), end.parse::<f64>())
                && end > start
                && !file.contains('/')
            {
                out.push((dir.join(file.trim_matches('"')), end - start));
            }
        }
    }
    out
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), MediaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(MediaError::io(format!("writing {}", path.display())))?;
    f.write_all(data)
        .map_err(MediaError::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parsing() {
        assert!(HlsKey::from_hex("00112233445566778899aabbccddeeff", "https://k/x").is_ok());
        assert!(HlsKey::from_hex("0011", "https://k/x").is_err());
        assert!(HlsKey::from_hex("zz112233445566778899aabbccddeeff", "https://k/x").is_err());
        assert!(HlsKey::from_hex("00112233445566778899aabbccddeeff", " ").is_err());
        let k = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").unwrap();
        assert!(
            !format!("{k:?}").contains("0011"),
            "the key must never be printed"
        );
    }

    #[test]
    fn format_from_extension() {
        assert!(matches!(
            OutputFormat::from_path(Path::new("a/b.MP4"), None),
            Ok(OutputFormat::Mp4)
        ));
        assert!(matches!(
            OutputFormat::from_path(Path::new("x.m3u8"), None),
            Ok(OutputFormat::Hls { .. })
        ));
        assert!(OutputFormat::from_path(Path::new("x.webm"), None).is_err());
        let k = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").ok();
        assert!(OutputFormat::from_path(Path::new("x.mp4"), k).is_err());
    }

    #[test]
    fn playlist_and_concat_list() {
        let pl = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2.0,\nout_00000.ts\n#EXTINF:1.0,\nout_00001.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(playlist_segments(pl), vec!["out_00000.ts", "out_00001.ts"]);
        let list = concat_list(&[PathBuf::from("/w/it's.ts")]);
        assert!(list.contains(r"file '/w/it'\''s.ts'"), "{list}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("segments-000000.csv"),
            "seg_000000.ts,0.000000,2.000000\nseg_000001.ts,2.000000,3.466667\n",
        )
        .unwrap();
        let segs = [
            dir.path().join("seg_000000.ts"),
            dir.path().join("seg_000001.ts"),
            dir.path().join("seg_000005.ts"), // not in any list: no duration
        ];
        let list = concat_list(&segs);
        let lines: Vec<&str> = list.lines().skip(1).collect();
        assert_eq!(lines[1], "duration 2.000000");
        assert_eq!(lines[3], "duration 1.466667");
        assert!(lines[4].starts_with("file ") && lines.len() == 5, "{list}");
    }
}
