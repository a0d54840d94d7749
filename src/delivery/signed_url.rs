//! Signed, expiring URLs of local results (`/files/s/<expiry>/<signature>/<dir>/<name>`).
//!
//! The signature is the HMAC-SHA256, under the service's URL signing key, of the expiry and of
//! the result file's *scope*: its own path below the output directory, or, for an HLS segment
//! (`<stem>_NNNNNN.ts`), the path of its playlist (`<stem>.m3u8`) beside it. It is carried in
//! the path, before the file's path, so the relative segment URIs of an HLS playlist resolve to
//! URLs that carry the playlist's signature and play. A URL is good until its expiry for its
//! own file and, for a playlist, its segments: never for another task's result in a shared
//! directory (an MP4 `a.mp4`, another playlist `b.m3u8` and its segments, a snapshot
//! `snapshots/<ms>.jpg`, each of which has its own URL).
//!
//! URLs are signed when they are rendered (Describe, the callback body), so each rendering is
//! fresh for the whole expiry period; the URL stored with the task is already in this form
//! (signed when the result was made), and [`UrlSigner::refresh_file_urls`] re-signs every
//! FileURL of that form. Object storage URLs never have that form and are left alone.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// The path prefix of a signed result URL.
pub(crate) const SIGNED_PREFIX: &str = "/files/s/";

/// Domain separation: a signature of a result URL is never valid for anything else. (v1
/// signed a result's whole directory; its URLs are refused.)
const CONTEXT: &str = "pagecast-files-v2";

/// Signs and checks result URLs. Cloning is cheap; the key is never printed.
#[derive(Clone)]
pub struct UrlSigner {
    key: Arc<[u8]>,
    expiry: Duration,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("key", &"<redacted>")
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// Why a signed path is refused (each answered 403 `InvalidSignature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Not of the form `/files/s/<expiry>/<signature>/<path>`.
    #[error("result URLs must be signed: take the FileURL from Describe or the callback")]
    Unsigned,
    /// The expiry has passed.
    #[error("this result URL has expired: take a fresh FileURL from Describe")]
    Expired,
    /// The signature does not match the expiry and the directory.
    #[error("the signature of this result URL does not match its path or expiry")]
    BadSignature,
    /// A path segment that can name no result file (`..`, empty, encoded `/`...).
    #[error("the path of this result URL is not a result file's path")]
    BadPath,
}

/// A checked signed path: the file's path segments below the output directory (decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedPath {
    /// Path segments, decoded, each a plain file or directory name.
    pub(crate) segments: Vec<String>,
}

impl UrlSigner {
    /// A signer with this key (any length; at least 16 bytes is enforced by configuration) whose
    /// URLs are valid for `expiry`.
    pub fn new(key: &[u8], expiry: Duration) -> Self {
        UrlSigner {
            key: Arc::from(key),
            expiry,
        }
    }

    fn mac(&self, expires: i64, scope: &str) -> Hmac<sha2::Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(format!("{CONTEXT}\n{expires}\n{scope}").as_bytes());
        mac
    }

    /// The signature (64 lowercase hex digits) of `scope` (see [`scope_of`]: a decoded,
    /// `/`-separated file path, no leading or trailing `/`) valid until `expires` (unix seconds).
    pub fn signature(&self, expires: i64, scope: &str) -> String {
        hex::encode(self.mac(expires, scope).finalize().into_bytes())
    }

    /// `/files/s/<expiry>/<signature>/<key>` for the result file `key` (its path below the
    /// output directory, unencoded), valid from `now` (unix seconds) for the expiry period.
    pub fn signed_path(&self, key: &str, now: i64) -> String {
        let expires = now.saturating_add(self.expiry.as_secs().min(i64::MAX as u64) as i64);
        format!(
            "{SIGNED_PREFIX}{expires}/{}/{}",
            self.signature(expires, &scope_of(key)),
            crate::storage::encode_key(key)
        )
    }

    /// The full URL of result file `key` below `base` (e.g. `PAGECAST_PUBLIC_URL`).
    pub fn file_url(&self, base: &str, key: &str, now: i64) -> String {
        format!(
            "{}{}",
            base.trim_end_matches('/'),
            self.signed_path(key, now)
        )
    }

    /// Checks the path of a request (as sent, percent-encoded) at time `now`.
    pub(crate) fn verify(&self, raw_path: &str, now: i64) -> Result<SignedPath, Refused> {
        let rest = raw_path
            .strip_prefix(SIGNED_PREFIX)
            .ok_or(Refused::Unsigned)?;
        let mut parts = rest.splitn(3, '/');
        let (Some(expires), Some(signature), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Unsigned);
        };
        let expires: i64 = expires.parse().map_err(|_| Refused::Unsigned)?;
        let signature = hex::decode(signature).map_err(|_| Refused::BadSignature)?;
        let segments = decode_segments(path).ok_or(Refused::BadPath)?;
        // Constant-time comparison.
        self.mac(expires, &scope_of(&segments.join("/")))
            .verify_slice(&signature)
            .map_err(|_| Refused::BadSignature)?;
        if expires < now {
            return Err(Refused::Expired);
        }
        Ok(SignedPath { segments })
    }

    /// Re-signs, from `now`, a URL of the signed form (whatever its expiry or key was): the
    /// same base and path with a fresh expiry and signature. Any other URL is returned as is.
    pub(crate) fn refresh(&self, url: &str, now: i64) -> String {
        match split_signed(url) {
            Some((base, encoded_key)) => {
                let key = decode_segments(encoded_key).map(|s| s.join("/"));
                match key {
                    Some(key) => format!("{base}{}", self.signed_path(&key, now)),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        }
    }

    /// Re-signs every `Result.Videos[].FileURL` of a Describe (or callback) body.
    pub(crate) fn refresh_file_urls(&self, describe: &mut Value, now: i64) {
        // Videos, and the snapshots of `Output.Snapshots`.
        for list in ["/Result/Videos", "/Result/Snapshots"] {
            let Some(files) = describe.pointer_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for file in files {
                if let Some(Value::String(url)) = file.get_mut("FileURL") {
                    *url = self.refresh(url, now);
                }
            }
        }
    }
}

/// What a signature covers for the result file at `path` (below the output directory): the file
/// itself, or for an HLS segment (`<stem>_NNNNNN.ts`, see `media::hls::segment_file_name`; no
/// other result file ends in `.ts`) its playlist `<stem>.m3u8` in the same directory.
pub(crate) fn scope_of(path: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let segment_of = name
        .strip_suffix(".ts")
        .and_then(|base| base.rsplit_once('_'))
        .filter(|(stem, n)| {
            !stem.is_empty() && n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit())
        })
        .map(|(stem, _)| stem);
    match (segment_of, dir) {
        (Some(stem), Some(dir)) => format!("{dir}/{stem}.m3u8"),
        (Some(stem), None) => format!("{stem}.m3u8"),
        (None, _) => path.to_owned(),
    }
}

/// The URL of a result file that no signer signed: a renderer with a signer replaces it
/// ([`UrlSigner::refresh`]); served as it is, it is refused.
pub(crate) fn unsigned_file_url(base: &str, key: &str) -> String {
    format!(
        "{}{SIGNED_PREFIX}0/{}/{}",
        base.trim_end_matches('/'),
        "0".repeat(64),
        crate::storage::encode_key(key)
    )
}

/// `(base, encoded key)` of a URL of the form `<base>/files/s/<digits>/<64 hex>/<key>`.
fn split_signed(url: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(at) = url[from..].find(SIGNED_PREFIX) {
        let start = from + at;
        let rest = &url[start + SIGNED_PREFIX.len()..];
        let mut parts = rest.splitn(3, '/');
        if let (Some(exp), Some(sig), Some(key)) = (parts.next(), parts.next(), parts.next())
            && !exp.is_empty()
            && exp.bytes().all(|b| b.is_ascii_digit())
            && sig.len() == 64
            && sig.bytes().all(|b| b.is_ascii_hexdigit())
            && !key.is_empty()
            && !key.contains(['?', '#'])
        {
            return Some((&url[..start], key));
        }
        from = start + 1;
    }
    None
}

/// The decoded segments of a percent-encoded relative path, or `None` when one of them could
/// name something other than a file or directory below the output directory.
fn decode_segments(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in path.split('/') {
        let seg = percent_decode_str(raw).decode_utf8().ok()?;
        let bad = seg.is_empty()
            || seg == "."
            || seg == ".."
            || seg.contains(['/', '\\', '\0'])
            || seg.chars().any(char::is_control);
        if bad {
            return None;
        }
        out.push(seg.into_owned());
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signer() -> UrlSigner {
        UrlSigner::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn a_signed_path_covers_its_file_and_a_playlist_its_segments() {
        let s = signer();
        let p = s.signed_path("classes/42/replay.m3u8", NOW);
        assert!(p.starts_with(&format!("/files/s/{}/", NOW + 3600)), "{p}");
        assert!(p.ends_with("/classes/42/replay.m3u8"));
        let ok = s.verify(&p, NOW + 10).unwrap();
        assert_eq!(ok.segments, ["classes", "42", "replay.m3u8"]);
        // A segment beside the playlist (a relative URI resolved against it) is covered.
        for seg in ["replay_000001.ts", "replay_123456.ts", "replay_1234567.ts"] {
            assert!(
                s.verify(&p.replace("replay.m3u8", seg), NOW).is_ok(),
                "{seg}"
            );
        }
        // Another result in the same directory, another directory, a subdirectory or a parent
        // is not; nor is anything that only looks like one of its segments.
        for other in [
            "other.m3u8",
            "other_000001.ts",
            "replay.mp4",
            "1800000000000.mp4",
            "snapshots/3000.jpg",
            "replay_000001.ts.partial",
            "replay_00001.ts",
            "replay_00000a.ts",
            "replay.ts",
            "replay_000001_000001.ts",
        ] {
            let other = p.replace("replay.m3u8", other);
            assert_eq!(s.verify(&other, NOW), Err(Refused::BadSignature), "{other}");
        }
        for other in [
            p.replace("/42/", "/43/"),
            p.replace("replay.m3u8", "x/replay.m3u8"),
            p.replace("classes/42/", "classes/"),
        ] {
            assert_eq!(s.verify(&other, NOW), Err(Refused::BadSignature), "{other}");
        }
        // An MP4's or a snapshot's URL is good for that file only.
        let mp4 = s.signed_path("classes/42/a.mp4", NOW);
        assert!(s.verify(&mp4, NOW).is_ok());
        for other in ["b.mp4", "a.m3u8", "a_000001.ts"] {
            let other = mp4.replace("a.mp4", other);
            assert_eq!(s.verify(&other, NOW), Err(Refused::BadSignature), "{other}");
        }
        let snap = s.signed_path("classes/42/snapshots/3000.jpg", NOW);
        assert!(s.verify(&snap, NOW).is_ok());
        let next = snap.replace("3000.jpg", "6000.jpg");
        assert_eq!(s.verify(&next, NOW), Err(Refused::BadSignature));
        assert_eq!(scope_of("a_000001.ts"), "a.m3u8");
        assert_eq!(scope_of("d/_000001.ts"), "d/_000001.ts");
    }

    #[test]
    fn altered_expired_unsigned_and_traversing_paths_are_refused() {
        let s = signer();
        let p = s.signed_path("t/a.mp4", NOW);
        assert_eq!(s.verify(&p, NOW + 3601), Err(Refused::Expired));
        let later = p.replace(&(NOW + 3600).to_string(), &(NOW + 7200).to_string());
        assert_eq!(s.verify(&later, NOW), Err(Refused::BadSignature));
        let other_key = UrlSigner::new(b"another key, also long enough", Duration::from_secs(60));
        assert_eq!(other_key.verify(&p, NOW), Err(Refused::BadSignature));
        assert_eq!(s.verify("/files/t/a.mp4", NOW), Err(Refused::Unsigned));
        assert_eq!(s.verify("/files/s/abc/def", NOW), Err(Refused::Unsigned));
        let sig = s.signature(NOW + 10, "t");
        for bad in [
            "t/../a.mp4",
            "t/./a.mp4",
            "t//a.mp4",
            "t/a%2fb.mp4",
            "t/%2e%2e",
            "t/a%00",
        ] {
            let path = format!("/files/s/{}/{sig}/{bad}", NOW + 10);
            assert_eq!(s.verify(&path, NOW), Err(Refused::BadPath), "{bad}");
        }
        assert_eq!(
            s.verify(&format!("/files/s/{}/zz/t/a.mp4", NOW + 10), NOW),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn encoded_names_are_signed_decoded() {
        let s = signer();
        let p = s.signed_path("课程 1/第一节 #2.mp4", NOW);
        assert!(!p.contains(' ') && !p.contains('#'), "{p}");
        let ok = s.verify(&p, NOW).unwrap();
        assert_eq!(ok.segments, ["课程 1", "第一节 #2.mp4"]);
        // A client that encodes differently (lowercase hex) still matches: 课 is E8 AF BE.
        let lower = p.replace("%E8%AF%BE", "%e8%af%be");
        assert_ne!(lower, p);
        assert!(s.verify(&lower, NOW).is_ok());
    }

    #[test]
    fn refresh_resigns_only_result_urls() {
        let s = signer();
        let stored = unsigned_file_url("http://node-a:8080/base/", "t/a.mp4");
        assert_eq!(
            stored,
            format!(
                "http://node-a:8080/base/files/s/0/{}/t/a.mp4",
                "0".repeat(64)
            )
        );
        assert_eq!(
            s.verify(stored.strip_prefix("http://node-a:8080/base").unwrap(), NOW),
            Err(Refused::BadSignature)
        );
        let fresh = s.refresh(&stored, NOW);
        assert_eq!(fresh, s.file_url("http://node-a:8080/base", "t/a.mp4", NOW));
        assert!(
            s.verify(fresh.strip_prefix("http://node-a:8080/base").unwrap(), NOW)
                .is_ok()
        );
        // Refreshing again later moves the expiry on.
        let later = s.refresh(&fresh, NOW + 100);
        assert!(later.contains(&format!("/files/s/{}/", NOW + 3700)));
        for other in [
            "https://bucket.s3.amazonaws.com/t/a.mp4",
            "https://cdn.example.org/files/t/a.mp4",
            "http://minio:9000/files/s/1/abc/t/a.mp4?X-Amz-Signature=1",
            "",
        ] {
            assert_eq!(s.refresh(other, NOW), other);
        }
    }

    #[test]
    fn describe_bodies_get_fresh_urls() {
        let s = signer();
        let mut body = serde_json::json!({
            "TaskID": "x",
            "Result": {"Videos": [
                {"Filename": "t/a.m3u8", "FileURL": unsigned_file_url("http://h", "t/a.m3u8")},
                {"Filename": "k", "FileURL": "https://cdn.example.org/k"},
            ]},
        });
        s.refresh_file_urls(&mut body, NOW);
        assert_eq!(
            body["Result"]["Videos"][0]["FileURL"],
            s.file_url("http://h", "t/a.m3u8", NOW)
        );
        assert_eq!(
            body["Result"]["Videos"][1]["FileURL"],
            "https://cdn.example.org/k"
        );
        let mut none = serde_json::json!({"TaskID": "x"});
        s.refresh_file_urls(&mut none, NOW);
        assert_eq!(none, serde_json::json!({"TaskID": "x"}));
    }

    #[test]
    fn the_key_is_not_printed() {
        assert!(!format!("{:?}", signer()).contains("0123456789"));
    }
}
