//! HLS straight from the recorded segments: each recorded MPEG-TS segment (cut at a keyframe every
//! two seconds, audio and video on the encoder's clock) is already a valid HLS media segment, so an
//! HLS result is the recorded segments under their published names, AES-128 encrypted when asked,
//! and a VOD playlist naming them. Nothing is re-read by ffmpeg, so segments can be published
//! while the recording goes on and Stop only adds the last ones and the playlist.
//!
//! Encryption follows the HLS specification's AES-128 method: the whole segment in CBC mode with
//! PKCS#7 padding. Every segment gets its own IV, its recorded number as a 128-bit big-endian
//! integer, written into the playlist (so a segment's IV never depends on its playlist position,
//! which is not known while recording), unless the task gives one IV for all (`EncryptIv`, as
//! ffmpeg does with an IV in its key info file, which is what the source product used). Segments of a restarted encoder start a new clock; the
//! playlist marks each such start with `#EXT-X-DISCONTINUITY`.

use std::io::Write;
use std::path::{Path, PathBuf};

use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};

use super::MediaError;
use super::segments::recorded_segments;
use crate::workdir::segment_number;

/// An AES-128 key for HLS and the URI players fetch it from.
#[derive(Clone)]
pub struct HlsKey {
    /// The 16-byte key.
    pub(crate) key: [u8; 16],
    /// The key URI written into the playlist.
    pub(crate) uri: String,
    /// One IV for every segment; `None`: each segment's own ([`iv_of`] its number).
    pub(crate) iv: Option<[u8; 16]>,
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
        let uri = uri.trim();
        if uri.is_empty() {
            return Err("an encryption key needs the URI players fetch it from".into());
        }
        // The playlist quotes the URI; HLS has no escape for a quote or a line break in it.
        if uri.chars().any(|c| c == '"' || c.is_control()) {
            return Err("the key URI must not contain quotes or control characters".into());
        }
        Ok(Self {
            key,
            uri: uri.to_string(),
            iv: None,
        })
    }

    /// The same key with one IV for every segment, given as 32 hex characters (an optional
    /// `0x` before them).
    pub(crate) fn with_iv_hex(mut self, iv_hex: &str) -> Result<Self, String> {
        let digits = iv_hex.trim();
        let digits = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
            .unwrap_or(digits);
        let iv: [u8; 16] = hex::decode(digits)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the IV must be 32 hexadecimal characters (16 bytes)".to_string())?;
        self.iv = Some(iv);
        Ok(self)
    }

    /// The IV of recorded segment `number`.
    pub(crate) fn iv_for(&self, number: u64) -> [u8; 16] {
        self.iv.unwrap_or_else(|| iv_of(number))
    }
}

/// A recorded segment as it appears in an HLS result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HlsSegment {
    /// The recorded file.
    pub(crate) source: PathBuf,
    /// Its recorded number (from `seg_NNNNNN.ts`): its published name and its IV.
    pub(crate) number: u64,
    /// Seconds of video in it.
    pub(crate) seconds: f64,
    /// The first segment of a restarted encoder (a new clock).
    pub(crate) discontinuity: bool,
}

/// The published file name of recorded segment `number`.
pub(crate) fn segment_file_name(stem: &str, number: u64) -> String {
    format!("{stem}_{number:06}.ts")
}

/// Characters that stay as they are in a URI path segment (RFC 3986's unreserved ones);
/// everything else is percent-encoded.
const URI_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The URI of recorded segment `number` in the playlist: its file name percent-encoded, so that a
/// name with `?`, `#`, `%`, spaces or non-ASCII characters stays one relative reference to the
/// file beside the playlist (players resolve it against the playlist's URL, then decode it).
pub(crate) fn segment_uri(stem: &str, number: u64) -> String {
    percent_encoding::utf8_percent_encode(&segment_file_name(stem, number), URI_SEGMENT).to_string()
}

/// The completed segments in `dir` (every encoder instance's, in order) as HLS segments.
/// Segments without video are left out (a player would stall on them).
pub(crate) fn segments_in(dir: &Path) -> Result<Vec<HlsSegment>, MediaError> {
    let mut out: Vec<HlsSegment> = Vec::new();
    for instance in recorded_segments(dir)? {
        let mut first = true;
        for r in instance {
            let Some(number) = segment_number(&r.name) else {
                continue;
            };
            if r.end <= r.start {
                continue;
            }
            out.push(HlsSegment {
                source: dir.join(&r.name),
                number,
                seconds: r.end - r.start,
                discontinuity: first && !out.is_empty(),
            });
            first = false;
        }
    }
    Ok(out)
}

/// The IV of recorded segment `number`: the number as a 128-bit big-endian integer.
pub(crate) fn iv_of(number: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[8..].copy_from_slice(&number.to_be_bytes());
    iv
}

/// Encrypts a whole segment with AES-128-CBC and PKCS#7 padding.
pub(crate) fn encrypt(data: &[u8], key: &[u8; 16], iv: &[u8; 16]) -> Result<Vec<u8>, MediaError> {
    let len = data.len();
    // PKCS#7 always pads: a whole block after data that fills its last one.
    let mut buf = vec![0u8; (len / 16 + 1) * 16];
    buf[..len].copy_from_slice(data);
    cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, len)
        .map_err(|_| MediaError::Unexpected("no room for the AES padding".into()))?;
    Ok(buf)
}

/// Writes `seg` to `dest` in its published form (encrypted with `key` if given) and returns its
/// size. The file appears whole or not at all: it is written beside `dest` and renamed. An
/// unencrypted segment is hard-linked when it can be (no copy), since recorded segments never
/// change. A segment too small for ffmpeg to recognise gets null packets after it (see
/// `ts_padding`; a player discards them), before it is encrypted.
pub(crate) fn stage(
    seg: &HlsSegment,
    dest: &Path,
    key: Option<&HlsKey>,
) -> Result<u64, MediaError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(MediaError::io(format!("creating {}", dir.display())))?;
    let partial = dest.with_extension("ts.partial");
    let _ = std::fs::remove_file(&partial);
    let read = || {
        std::fs::read(&seg.source)
            .map_err(MediaError::io(format!("reading {}", seg.source.display())))
    };
    let write = |bytes: &[u8]| {
        std::fs::File::create(&partial)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(MediaError::io(format!("writing {}", partial.display())))
    };
    let size = std::fs::metadata(&seg.source)
        .map_err(MediaError::io(format!("reading {}", seg.source.display())))?
        .len();
    let padding = super::ts_padding::for_segment(size);
    let written = match key {
        Some(k) => {
            let mut plain = read()?;
            plain.extend_from_slice(&padding);
            let sealed = encrypt(&plain, &k.key, &k.iv_for(seg.number))?;
            write(&sealed)?;
            sealed.len() as u64
        }
        None if !padding.is_empty() => {
            let mut plain = read()?;
            plain.extend_from_slice(&padding);
            write(&plain)?;
            plain.len() as u64
        }
        None => {
            if std::fs::hard_link(&seg.source, &partial).is_err() {
                std::fs::copy(&seg.source, &partial)
                    .map_err(MediaError::io(format!("copying {}", seg.source.display())))?;
            }
            std::fs::metadata(&partial)
                .map_err(MediaError::io(format!("reading {}", partial.display())))?
                .len()
        }
    };
    std::fs::rename(&partial, dest)
        .map_err(MediaError::io(format!("writing {}", dest.display())))?;
    // Renaming a link onto another link of the same file does nothing: the partial name stays.
    let _ = std::fs::remove_file(&partial);
    Ok(written)
}

/// The VOD playlist of `segments`, each named [`segment_file_name`]`(stem, number)` relative to
/// the playlist (as a URI: [`segment_uri`]).
pub(crate) fn playlist(segments: &[HlsSegment], stem: &str, key: Option<&HlsKey>) -> String {
    // Every segment's duration, rounded up, must fit the target duration.
    let target = segments
        .iter()
        .map(|s| s.seconds.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for seg in segments {
        if seg.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(k) = key {
            out.push_str(&format!(
                "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV=0x{}\n",
                k.uri,
                hex::encode(k.iv_for(seg.number))
            ));
        }
        out.push_str(&format!(
            "#EXTINF:{:.6},\n{}\n",
            seg.seconds,
            segment_uri(stem, seg.number)
        ));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// Writes a whole HLS result for `segments` into `playlist_path`'s directory: every segment in
/// its published form, then the playlist. Returns the files written, the playlist first.
pub(crate) fn write_vod(
    segments: &[HlsSegment],
    playlist_path: &Path,
    key: Option<&HlsKey>,
) -> Result<Vec<PathBuf>, MediaError> {
    let dir = playlist_path.parent().unwrap_or(Path::new("."));
    let stem = playlist_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("index");
    let mut files = vec![playlist_path.to_path_buf()];
    for seg in segments {
        let dest = dir.join(segment_file_name(stem, seg.number));
        stage(seg, &dest, key)?;
        files.push(dest);
    }
    write_playlist(playlist_path, &playlist(segments, stem, key))?;
    Ok(files)
}

/// Writes a playlist whole (beside it, then renamed).
pub(crate) fn write_playlist(path: &Path, text: &str) -> Result<(), MediaError> {
    let partial = path.with_extension("m3u8.partial");
    std::fs::write(&partial, text)
        .map_err(MediaError::io(format!("writing {}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(MediaError::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(number: u64, seconds: f64, discontinuity: bool) -> HlsSegment {
        HlsSegment {
            source: PathBuf::from(format!("/w/seg_{number:06}.ts")),
            number,
            seconds,
            discontinuity,
        }
    }

    #[test]
    fn key_uri_must_be_quotable() {
        let hex = "00112233445566778899aabbccddeeff";
        assert!(HlsKey::from_hex(hex, "https://k/x?a=1").is_ok());
        assert!(HlsKey::from_hex(hex, "https://k/\"x").is_err());
        assert!(HlsKey::from_hex(hex, "https://k/x\nEXT").is_err());
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(segment_number("seg_000123.ts"), Some(123));
        assert_eq!(segment_number("seg_x.ts"), None);
        assert_eq!(segment_number("other.ts"), None);
        assert_eq!(segment_file_name("lesson", 7), "lesson_000007.ts");
        assert_eq!(
            iv_of(0x0102),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
        );
    }

    #[test]
    fn encryption_is_aes_128_cbc_with_pkcs7() {
        // NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), first block.
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let sealed = encrypt(&plain, &key, &iv).unwrap();
        assert_eq!(
            hex::encode(&sealed[..16]),
            "7649abac8119b246cee98e9b12e9197d"
        );
        assert_eq!(sealed.len(), 32, "a whole block of padding after 16 bytes");
        assert_eq!(encrypt(&[0u8; 17], &key, &iv).unwrap().len(), 32);
    }

    #[test]
    fn playlist_marks_restarts_and_keys_every_segment() {
        let key = HlsKey::from_hex("00112233445566778899aabbccddeeff", "https://k/x").unwrap();
        let segs = [seg(0, 2.0, false), seg(1, 1.5, false), seg(3, 2.02, true)];
        let text = playlist(&segs, "t", Some(&key));
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1);
        let disc = text.find("#EXT-X-DISCONTINUITY").unwrap();
        assert!(
            disc > text.find("t_000001.ts").unwrap() && disc < text.find("t_000003.ts").unwrap()
        );
        assert_eq!(
            text.matches("METHOD=AES-128,URI=\"https://k/x\"").count(),
            3
        );
        assert!(
            text.contains(
                "IV=0x00000000000000000000000000000003\n#EXTINF:2.020000,\nt_000003.ts\n"
            )
        );
        let plain = playlist(&segs, "t", None);
        assert!(!plain.contains("EXT-X-KEY"));
        assert_eq!(crate::media::finalize::playlist_segments(&plain).len(), 3);
    }

    #[test]
    fn a_given_iv_is_every_segments_iv() {
        let key = HlsKey::from_hex("00112233445566778899aabbccddeeff", "https://k/x")
            .unwrap()
            .with_iv_hex("0x0F0e0d0c0b0a09080706050403020100")
            .unwrap();
        let iv = hex::decode("0f0e0d0c0b0a09080706050403020100").unwrap();
        assert_eq!(key.iv_for(0).to_vec(), iv);
        assert_eq!(key.iv_for(7).to_vec(), iv);
        let text = playlist(&[seg(0, 2.0, false), seg(7, 2.0, false)], "t", Some(&key));
        assert_eq!(
            text.matches("IV=0x0f0e0d0c0b0a09080706050403020100\n")
                .count(),
            2,
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("seg_000007.ts");
        std::fs::write(&src, vec![9u8; 9000]).unwrap();
        let s = HlsSegment {
            source: src,
            number: 7,
            seconds: 2.0,
            discontinuity: false,
        };
        let dest = dir.path().join("t_000007.ts");
        stage(&s, &dest, Some(&key)).unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            encrypt(&[9u8; 9000], &key.key, &key.iv_for(7)).unwrap()
        );
        for bad in [
            "",
            "0x",
            "00",
            "zz0e0d0c0b0a09080706050403020100",
            "0f0e0d0c0b0a0908070605040302010000",
        ] {
            assert!(
                HlsKey::from_hex("00112233445566778899aabbccddeeff", "u")
                    .unwrap()
                    .with_iv_hex(bad)
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn segment_uris_are_percent_encoded() {
        assert_eq!(segment_uri("lesson-1.a~b", 7), "lesson-1.a~b_000007.ts");
        assert_eq!(segment_uri("a?b #c%d", 1), "a%3Fb%20%23c%25d_000001.ts");
        assert_eq!(segment_uri("录:x", 2), "%E5%BD%95%3Ax_000002.ts");
        let text = playlist(&[seg(0, 2.0, false)], "q?x", None);
        assert!(text.contains("\nq%3Fx_000000.ts\n"), "{text}");
    }

    #[test]
    fn segments_follow_the_encoder_lists() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0u64, 1, 2, 3, 4] {
            std::fs::write(dir.path().join(format!("seg_{n:06}.ts")), b"ts").unwrap();
        }
        std::fs::write(
            dir.path().join("segments-000000.csv"),
            "seg_000000.ts,1.4,3.4\nseg_000001.ts,3.4,5.4\n",
        )
        .unwrap();
        // Segment 2 was in progress when the encoder died; the restart began at 3.
        std::fs::write(
            dir.path().join("segments-000003.csv"),
            "seg_000003.ts,1.4,3.4\nseg_000004.ts,3.4,3.4\n",
        )
        .unwrap();
        let segs = segments_in(dir.path()).unwrap();
        let got: Vec<_> = segs.iter().map(|s| (s.number, s.discontinuity)).collect();
        assert_eq!(got, [(0, false), (1, false), (3, true)], "no empty segment");
    }

    #[test]
    fn staging_encrypts_or_links_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("seg_000005.ts");
        std::fs::write(&src, vec![7u8; 9000]).unwrap();
        let s = HlsSegment {
            source: src,
            number: 5,
            seconds: 2.0,
            discontinuity: false,
        };
        let plain_dest = dir.path().join("out/a_000005.ts");
        assert_eq!(stage(&s, &plain_dest, None).unwrap(), 9000);
        assert_eq!(std::fs::read(&plain_dest).unwrap(), vec![7u8; 9000]);
        assert_eq!(stage(&s, &plain_dest, None).unwrap(), 9000, "again");
        let key = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").unwrap();
        let sealed_dest = dir.path().join("out/b_000005.ts");
        assert_eq!(stage(&s, &sealed_dest, Some(&key)).unwrap(), 9008);
        assert_eq!(
            std::fs::read(&sealed_dest).unwrap(),
            encrypt(&[7u8; 9000], &key.key, &iv_of(5)).unwrap()
        );
        // Staging again replaces the file; nothing partial is left.
        stage(&s, &sealed_dest, Some(&key)).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// A segment of a few packets (a one-frame recording of a plain page) is published with null
    /// packets after it, plain or encrypted, so that ffmpeg recognises it.
    #[test]
    fn a_tiny_segment_is_staged_with_null_packets_after_it() {
        use super::super::ts_padding::{MIN_PROBED_BYTES, for_segment};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("seg_000000.ts");
        let tiny = vec![0x47u8; 1692];
        std::fs::write(&src, &tiny).unwrap();
        let s = HlsSegment {
            source: src.clone(),
            number: 0,
            seconds: 0.033,
            discontinuity: false,
        };
        let mut padded = tiny.clone();
        padded.extend(for_segment(1692));
        assert!(padded.len() as u64 >= MIN_PROBED_BYTES);
        let plain_dest = dir.path().join("out/a_000000.ts");
        assert_eq!(stage(&s, &plain_dest, None).unwrap(), padded.len() as u64);
        assert_eq!(std::fs::read(&plain_dest).unwrap(), padded);
        assert_eq!(
            std::fs::read(&src).unwrap(),
            tiny,
            "the recorded segment is untouched"
        );
        let key = HlsKey::from_hex("00112233445566778899aabbccddeeff", "u").unwrap();
        let sealed_dest = dir.path().join("out/b_000000.ts");
        stage(&s, &sealed_dest, Some(&key)).unwrap();
        assert_eq!(
            std::fs::read(&sealed_dest).unwrap(),
            encrypt(&padded, &key.key, &iv_of(0)).unwrap()
        );
    }
}
