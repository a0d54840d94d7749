//! `Output.Video` / `Data.Video`: container and HLS encryption.
//!
//! The key has the source product's meaning: its key server serves the first 16 bytes of the
//! `EncryptKey` string (ffmpeg read them from a key file holding that string), so those bytes
//! are the AES-128 key. The extension `EncryptKeyHex` gives the 16 bytes as 32 hex characters
//! instead. `EncryptIv` (32 hex characters) is the IV of every segment, written into the
//! playlist; without it each segment has its own.

use serde_json::Value;

use super::reader::Obj;
use super::{ENCRYPT_KEY_BYTES, ENCRYPT_KEY_HEX_LEN, Parser};
use crate::api::error::{ApiError, echo};
use crate::task::Muxer;

/// One source of `Video` settings, with the path each value came from.
#[derive(Default)]
pub(super) struct VideoFields {
    pub(super) muxer: Option<(Muxer, String)>,
    /// The key as 32 hex characters, from `EncryptKey` or `EncryptKeyHex`.
    pub(super) encrypt_key: Option<(String, String)>,
    /// The IV as 32 lower-case hex characters.
    pub(super) encrypt_iv: Option<(String, String)>,
    pub(super) auth_url: Option<(String, String)>,
    pub(super) generate_key: Option<(bool, String)>,
}

impl VideoFields {
    /// `Output.Video` (self) and `Data.Video` (other): either may set a field; both must agree.
    pub(super) fn merge(self, other: VideoFields) -> Result<VideoFields, ApiError> {
        fn pick<T: PartialEq>(
            a: Option<(T, String)>,
            b: Option<(T, String)>,
        ) -> Result<Option<(T, String)>, ApiError> {
            match (a, b) {
                (Some((x, px)), Some((y, py))) if x != y => Err(ApiError::invalid(
                    &px,
                    format!("and {py} disagree; set only one of them"),
                )),
                (Some(x), _) => Ok(Some(x)),
                (None, y) => Ok(y),
            }
        }
        Ok(VideoFields {
            muxer: pick(self.muxer, other.muxer)?,
            encrypt_key: pick(self.encrypt_key, other.encrypt_key)?,
            encrypt_iv: pick(self.encrypt_iv, other.encrypt_iv)?,
            auth_url: pick(self.auth_url, other.auth_url)?,
            generate_key: pick(self.generate_key, other.generate_key)?,
        })
    }
}

impl Parser<'_> {
    pub(super) fn video(&self, video: &Obj<'_>) -> Result<VideoFields, ApiError> {
        let muxer = match video.string("Muxer", self.limits.max_string_len)? {
            None => None,
            Some(raw) => {
                let muxer = match raw.trim().to_ascii_lowercase().as_str() {
                    "mp4" => Muxer::Mp4,
                    "hls" => Muxer::Hls,
                    "none" => Muxer::None,
                    _ => {
                        return Err(ApiError::invalid(
                            &video.field("Muxer"),
                            format!(
                                "must be \"mp4\", \"hls\" or \"none\", got {}",
                                echo(&Value::from(raw))
                            ),
                        ));
                    }
                };
                Some((muxer, video.field("Muxer")))
            }
        };
        let encrypt_key = encrypt_key(video)?;
        let encrypt_iv = hex16(video, "EncryptIv")?.map(|iv| (iv, video.field("EncryptIv")));
        let auth_url = match video.string("AuthUrl", self.limits.max_url_len)? {
            None => None,
            Some(raw) => Some((
                key_uri(&video.field("AuthUrl"), raw)?,
                video.field("AuthUrl"),
            )),
        };
        let generate_key = video
            .bool("GenerateKey")?
            .map(|g| (g, video.field("GenerateKey")));
        Ok(VideoFields {
            muxer,
            encrypt_key,
            encrypt_iv,
            auth_url,
            generate_key,
        })
    }
}

/// The HLS key as 32 lower-case hex characters, with the field it came from: the first 16 bytes
/// of `EncryptKey`, or `EncryptKeyHex`. Neither value is ever quoted in a message.
fn encrypt_key(video: &Obj<'_>) -> Result<Option<(String, String)>, ApiError> {
    let text = video.field("EncryptKey");
    let from_text = match video.get("EncryptKey") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.len() >= ENCRYPT_KEY_BYTES => {
            Some(hex::encode(&s.as_bytes()[..ENCRYPT_KEY_BYTES]))
        }
        Some(Value::String(s)) => {
            return Err(ApiError::invalid(
                &text,
                format!(
                    "must be at least {ENCRYPT_KEY_BYTES} bytes long (its first \
                     {ENCRYPT_KEY_BYTES} bytes are the AES-128 key; got {})",
                    s.len()
                ),
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                &text,
                format!("must be a string of at least {ENCRYPT_KEY_BYTES} bytes"),
            ));
        }
    };
    let from_hex = hex16(video, "EncryptKeyHex")?;
    match (from_text, from_hex) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            &text,
            format!("and {} cannot both be set", video.field("EncryptKeyHex")),
        )),
        (Some(k), None) => Ok(Some((k, text))),
        (None, Some(k)) => Ok(Some((k, video.field("EncryptKeyHex")))),
        (None, None) => Ok(None),
    }
}

/// 16 bytes as 32 hex characters (an optional `0x` before them), stored lower-case; `""` counts
/// as absent. The value is never quoted in a message.
fn hex16(video: &Obj<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            &video.field(name),
            format!("must be a string of {ENCRYPT_KEY_HEX_LEN} hexadecimal characters (16 bytes)"),
        )
    };
    match video.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let digits = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            if digits.len() == ENCRYPT_KEY_HEX_LEN && digits.bytes().all(|b| b.is_ascii_hexdigit())
            {
                Ok(Some(digits.to_ascii_lowercase()))
            } else {
                Err(bad())
            }
        }
        Some(_) => Err(bad()),
    }
}

/// The key URI written into the playlist's `#EXT-X-KEY:...,URI="..."`: an absolute http(s) URL or
/// a reference relative to the playlist. Nothing that could break out of the quoted attribute.
fn key_uri(path: &str, raw: &str) -> Result<String, ApiError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(path, "must not be blank"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(ApiError::invalid(
            path,
            "must be a URL without spaces, quotes or control characters",
        ));
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    path,
                    "must be an http or https URL with a host",
                ));
            }
            Ok(url.to_string())
        }
        Ok(url) => Err(ApiError::invalid(
            path,
            format!(
                "must be an http or https URL (or a relative one), not {}:",
                url.scheme()
            ),
        )),
        // A reference relative to the playlist, e.g. "key.bin" or "/keys/1".
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            if value.contains('\\') {
                return Err(ApiError::invalid(path, "must not contain backslashes"));
            }
            Ok(value.to_owned())
        }
        Err(e) => Err(ApiError::invalid(path, format!("is not a valid URL ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::error::ErrorCode;
    use crate::task::{Muxer, TaskSecrets};
    use serde_json::{Value, json};

    #[test]
    fn muxer_from_output_video_or_data_video() {
        assert_eq!(
            spec(with(json!({"Output": {"Video": {"Muxer": "hls"}}}))).muxer,
            Muxer::Hls
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": "HLS"}}))).muxer,
            Muxer::Hls
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": "Mp4"}}))).muxer,
            Muxer::Mp4
        );
        assert_eq!(
            spec(with(json!({"Video": {"Muxer": ""}}))).muxer,
            Muxer::Mp4
        );
        assert_eq!(spec(with(json!({"Video": {}}))).muxer, Muxer::Mp4);
        // A snapshot-only task: 5 frames a second unless Fps says otherwise.
        let snaps =
            json!({"Video": {"Muxer": "None"}, "Snapshots": {"Interval": 1, "Format": "jpg"}});
        let s = spec(with(json!({"Output": snaps})));
        assert_eq!((s.muxer, s.fps), (Muxer::None, 5));
        let s = spec(json!({"RecordURL": "https://example.com", "Fps": 25, "Output": snaps}));
        assert_eq!((s.muxer, s.fps), (Muxer::None, 25));
        assert_eq!(spec(with(json!({}))).fps, 30, "other tasks: 30");
        assert_eq!(
            spec(with(
                json!({"Output": {"Video": {"Muxer": "hls"}}, "Video": {"Muxer": "HLS"}})
            ))
            .muxer,
            Muxer::Hls
        );
    }

    #[test]
    fn muxer_invalid_or_conflicting() {
        invalid(
            with(json!({"Video": {"Muxer": "webm"}})),
            "Data.Video.Muxer",
        );
        invalid(
            with(json!({"Output": {"Video": {"Muxer": 1}}})),
            "Data.Output.Video.Muxer",
        );
        invalid(
            with(json!({"Video": "hls"})),
            "Data.Video must be an object",
        );
        let m = invalid(
            with(json!({"Output": {"Video": {"Muxer": "hls"}}, "Video": {"Muxer": "mp4"}})),
            "Data.Output.Video.Muxer",
        );
        assert!(m.contains("Data.Video.Muxer"), "{m}");
    }

    use super::super::tests::KEY;

    #[test]
    fn encrypt_key_is_its_first_16_bytes_as_in_the_source_product() {
        // web-record's key server serves the string's first 16 bytes: they are the key.
        let (spec, secrets) = ok(with(json!({"Output": {"Video": {
            "Muxer": "hls", "EncryptKey": "0123456789abcdef", "AuthUrl": "https://keys.example.org/k/1",
        }}})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some(hex::encode(b"0123456789abcdef").as_str())
        );
        assert_eq!(
            spec.auth_url.as_deref(),
            Some("https://keys.example.org/k/1")
        );
        // Longer strings: the first 16 bytes (of UTF-8), the rest is not part of the key.
        let (_, secrets) = ok(with(json!({"Video": {
            "Muxer": "hls", "EncryptKey": "0123456789abcdefTHE-REST", "AuthUrl": "k",
        }})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some(hex::encode(b"0123456789abcdef").as_str())
        );
        let (_, secrets) = ok(with(json!({"Video": {
            "Muxer": "hls", "EncryptKey": "密钥密钥密钥zz", "AuthUrl": "k",
        }})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some(hex::encode(&"密钥密钥密钥zz".as_bytes()[..16]).as_str())
        );
        // A 32-hex-character string is 32 bytes of text, not 16 bytes of hex.
        let (_, secrets) = ok(with(json!({"Video": {
            "Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "k",
        }})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some(hex::encode(&KEY.as_bytes()[..16]).as_str())
        );
        // Data.Video works too, and the two places may be mixed.
        let (spec, secrets) = ok(with(json!({
            "Output": {"Video": {"Muxer": "hls"}},
            "Video": {"EncryptKey": "0123456789abcdef", "AuthUrl": "key.bin"},
        })));
        assert!(secrets.encrypt_key.is_some());
        assert_eq!(spec.auth_url.as_deref(), Some("key.bin"));
        // The spec carries no trace of the key.
        let text = serde_json::to_string(&spec).unwrap();
        assert!(!text.contains("0123456789"), "{text}");
        assert!(!text.contains(&hex::encode(b"01234567")), "{text}");
    }

    #[test]
    fn encrypt_key_hex_and_encrypt_iv() {
        let (_, secrets) = ok(with(json!({"Output": {"Video": {
            "Muxer": "hls", "EncryptKeyHex": "00112233445566778899AaBbCcDdEeFf",
            "EncryptIv": "0x0F0E0D0C0B0A09080706050403020100", "AuthUrl": "k",
        }}})));
        assert_eq!(
            secrets.encrypt_key.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        assert_eq!(
            secrets.encrypt_iv.as_deref(),
            Some("0f0e0d0c0b0a09080706050403020100")
        );
        // The same key given both ways in the two places agrees.
        assert!(
            parse(with(json!({
                "Output": {"Video": {"Muxer": "hls", "EncryptKey": "0123456789abcdef", "AuthUrl": "k"}},
                "Video": {"EncryptKeyHex": hex::encode(b"0123456789abcdef")},
            })))
            .is_ok()
        );
        // Both in one place: refused.
        let m = invalid(
            with(json!({"Video": {
                "Muxer": "hls", "EncryptKey": "0123456789abcdef",
                "EncryptKeyHex": "00112233445566778899aabbccddeeff", "AuthUrl": "k",
            }})),
            "Data.Video.EncryptKey",
        );
        assert!(m.contains("EncryptKeyHex"), "{m}");
        // AuthUrl is required with either.
        let m = invalid(
            with(
                json!({"Video": {"Muxer": "hls", "EncryptKeyHex": "00112233445566778899aabbccddeeff"}}),
            ),
            "Data.Video.AuthUrl",
        );
        assert!(m.contains("Data.Video.EncryptKeyHex"), "{m}");
        // An IV without a key means nothing (as AuthUrl without one).
        let (_, secrets) = ok(with(
            json!({"Video": {"Muxer": "hls", "EncryptIv": "0f0e0d0c0b0a09080706050403020100"}}),
        ));
        assert_eq!(secrets, TaskSecrets::default());
        for bad in [
            "0f0e",
            "0f0e0d0c0b0a0908070605040302010000",
            "zz0e0d0c0b0a09080706050403020100",
        ] {
            invalid(
                with(
                    json!({"Video": {"Muxer": "hls", "EncryptKey": "0123456789abcdef", "AuthUrl": "k", "EncryptIv": bad}}),
                ),
                "Data.Video.EncryptIv",
            );
            let e = err(with(
                json!({"Video": {"Muxer": "hls", "EncryptKeyHex": bad, "AuthUrl": "k"}}),
            ));
            assert!(e.message.starts_with("Data.Video.EncryptKeyHex"), "{e}");
            assert!(!e.message.contains(bad), "echoed: {e}");
        }
    }

    #[test]
    fn encrypt_key_requires_hls() {
        let m = invalid(
            with(
                json!({"Output": {"Video": {"EncryptKey": KEY, "AuthUrl": "https://k.example.org/"}}}),
            ),
            "Data.Output.Video.EncryptKey",
        );
        assert!(m.contains("hls"), "{m}");
        invalid(
            with(json!({"Video": {"Muxer": "mp4", "EncryptKey": KEY, "AuthUrl": "k"}})),
            "Data.Video.EncryptKey",
        );
    }

    #[test]
    fn generate_key_makes_a_fresh_key_for_hls_with_a_callback() {
        let data = || {
            with(json!({
                "CallbackURL": "https://hooks.example.org/cb",
                "Output": {"Video": {"Muxer": "hls", "GenerateKey": true, "AuthUrl": "https://k.example.org/1"}},
            }))
        };
        let (spec, secrets) = parse(data()).unwrap();
        let key = secrets.encrypt_key.clone().unwrap();
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(secrets.key_generated);
        assert_eq!(spec.auth_url.as_deref(), Some("https://k.example.org/1"));
        let (_, again) = parse(data()).unwrap();
        assert_ne!(again.encrypt_key, secrets.encrypt_key, "a new key per task");
        assert!(!format!("{secrets:?}").contains(&key), "redacted in Debug");
        // false or absent: no key.
        let (_, none) = parse(with(
            json!({"Output": {"Video": {"Muxer": "hls", "GenerateKey": false}}}),
        ))
        .unwrap();
        assert!(none.encrypt_key.is_none() && !none.key_generated);
    }

    #[test]
    fn generate_key_rules() {
        let hls = |video: Value, callback: bool| {
            let mut d = with(json!({ "Output": { "Video": video } }));
            if callback {
                d["CallbackURL"] = json!("https://hooks.example.org/cb");
            }
            d
        };
        let m = invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": true, "AuthUrl": "k"}),
                false,
            ),
            "Data.Output.Video.GenerateKey",
        );
        assert!(m.contains("CallbackURL"), "{m}");
        invalid(
            hls(json!({"Muxer": "hls", "GenerateKey": true}), true),
            "Data.Output.Video.AuthUrl",
        );
        invalid(
            hls(json!({"GenerateKey": true, "AuthUrl": "k"}), true),
            "Data.Output.Video.GenerateKey",
        );
        let m = invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": true, "EncryptKey": KEY, "AuthUrl": "k"}),
                true,
            ),
            "Data.Output.Video.GenerateKey",
        );
        assert!(m.contains("EncryptKey"), "{m}");
        invalid(
            hls(
                json!({"Muxer": "hls", "GenerateKey": "yes", "AuthUrl": "k"}),
                true,
            ),
            "Data.Output.Video.GenerateKey",
        );
    }

    #[test]
    fn encrypt_key_requires_auth_url() {
        let m = invalid(
            with(json!({"Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY}}})),
            "Data.Output.Video.AuthUrl",
        );
        assert!(m.contains("EncryptKey"), "{m}");
        invalid(
            with(json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": ""}})),
            "Data.Video.AuthUrl",
        );
    }

    #[test]
    fn encrypt_key_format_and_never_echoed() {
        for bad in [
            json!("0011"),
            json!("only-15-bytes.."),
            json!(12345),
            json!({"k": "0123456789abcdef"}),
        ] {
            let e = err(with(
                json!({"Video": {"Muxer": "hls", "EncryptKey": bad.clone(), "AuthUrl": "k"}}),
            ));
            assert_eq!(e.code, ErrorCode::InvalidParam);
            assert!(
                e.message.starts_with("Data.Video.EncryptKey"),
                "{}",
                e.message
            );
            let raw = bad
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| bad.to_string());
            assert!(!e.message.contains(&raw), "key echoed: {}", e.message);
        }
        // Conflicting keys: neither is quoted.
        let e = err(with(json!({
            "Output": {"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "k"}},
            "Video": {"EncryptKey": "ffffffffffffffffffffffffffffffff"},
        })));
        assert!(e.message.contains("disagree"), "{e}");
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert!(
            !e.message.to_ascii_lowercase().contains("ffff"),
            "{}",
            e.message
        );
        assert!(
            !e.message.to_ascii_lowercase().contains("0011"),
            "{}",
            e.message
        );
    }

    #[test]
    fn auth_url_rules() {
        let auth = |a: &str| {
            ok(with(
                json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": a}}),
            ))
            .0
            .auth_url
        };
        assert_eq!(
            auth("https://k.example.org/key?t=1"),
            Some("https://k.example.org/key?t=1".into())
        );
        assert_eq!(auth("/keys/1"), Some("/keys/1".into()));
        for bad in [
            "javascript:alert(1)",
            "file:///etc/key",
            "k\"ey",
            "a b",
            "k\nx",
            "https://",
            "a\\b",
        ] {
            invalid(
                with(json!({"Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": bad}})),
                "Data.Video.AuthUrl",
            );
        }
    }

    #[test]
    fn auth_url_without_key_is_ignored() {
        let s = spec(with(
            json!({"Video": {"Muxer": "hls", "AuthUrl": "https://k.example.org/"}}),
        ));
        assert_eq!(s.auth_url, None);
    }
}
