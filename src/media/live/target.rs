//! A live push target: its URL (a secret: RTMP stream keys sit in the path, SRT passphrases and
//! stream ids in the query), how it may be shown, and the ffmpeg command line that pushes to it.
//! Pure functions only.

use std::path::{Path, PathBuf};

use crate::media::encoder::FrameFormat;

/// Most push targets one task may have.
pub const MAX_TARGETS: usize = 3;
/// Default video bit rate of a live stream, kbit/s (720p30 screen content).
pub const DEFAULT_VIDEO_KBPS: u32 = 2500;
/// Default audio bit rate of a live stream, kbit/s.
pub const DEFAULT_AUDIO_KBPS: u32 = 128;
/// Video bit rates a client may ask for, kbit/s.
pub(crate) const VIDEO_KBPS_RANGE: (u32, u32) = (100, 20_000);
/// Audio bit rates a client may ask for, kbit/s.
pub(crate) const AUDIO_KBPS_RANGE: (u32, u32) = (32, 320);
/// What replaces a hidden part of a URL.
const HIDDEN: &str = "***";

/// The protocols a live stream can be pushed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveProtocol {
    /// RTMP (FLV over TCP).
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    /// SRT (MPEG-TS over UDP).
    Srt,
}

impl LiveProtocol {
    /// The protocol of a URL's scheme (lower case), if it is one pagecast pushes to.
    pub(crate) fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "rtmp" => Some(Self::Rtmp),
            "rtmps" => Some(Self::Rtmps),
            "srt" => Some(Self::Srt),
            _ => None,
        }
    }

    /// The port used when the URL names none (SRT has no default: it must be given).
    pub(crate) fn default_port(self) -> Option<u16> {
        match self {
            Self::Rtmp => Some(1935),
            Self::Rtmps => Some(443),
            Self::Srt => None,
        }
    }
}

/// Checks a live URL's form: `rtmp://`, `rtmps://` or `srt://`, a host, a port for SRT, no user
/// info. Returns the protocol, host and port (for the egress check), or why it is refused.
pub fn parse_live_url(raw: &str) -> Result<(LiveProtocol, url::Host<String>, u16), LiveUrlError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| LiveUrlError::Invalid(e.to_string()))?;
    let protocol = LiveProtocol::of_scheme(url.scheme())
        .ok_or_else(|| LiveUrlError::Scheme(url.scheme().to_owned()))?;
    let host = match url.host() {
        Some(url::Host::Domain("")) | None => {
            return Err(LiveUrlError::Invalid("it has no host".into()));
        }
        Some(h) => h.to_owned(),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LiveUrlError::Invalid(
            "user:password@ is not supported; put credentials in the stream key or query".into(),
        ));
    }
    let port = url
        .port()
        .or(protocol.default_port())
        .ok_or_else(|| LiveUrlError::Invalid("an srt:// URL needs a port".into()))?;
    if protocol != LiveProtocol::Srt && url.path_segments().is_none_or(|s| s.count() < 2) {
        return Err(LiveUrlError::Invalid(
            "an RTMP URL needs an application and a stream key (rtmp://host/app/key)".into(),
        ));
    }
    Ok((protocol, host, port))
}

/// Why a live URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveUrlError {
    /// Not a protocol pagecast pushes to.
    #[error("the scheme {0}: is not supported; use rtmp://, rtmps:// or srt://")]
    Scheme(String),
    /// Not a usable URL.
    #[error("is not a usable live URL: {0}")]
    Invalid(String),
}

/// A live URL as it may be shown (Describe, logs): scheme, host, port and the first path segment
/// (the RTMP application); the rest of the path (the stream key) and every query value are
/// hidden.
pub fn redacted_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw.trim()) else {
        return "<not a URL>".into();
    };
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if let Some(app) = segments.first() {
        out.push('/');
        out.push_str(app);
        if segments.len() > 1 {
            out.push('/');
            out.push_str(HIDDEN);
        }
    }
    if let Some(q) = url.query().filter(|q| !q.is_empty()) {
        let hidden: Vec<String> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}={HIDDEN}"),
                None => HIDDEN.into(),
            })
            .collect();
        out.push('?');
        out.push_str(&hidden.join("&"));
    }
    out
}

/// `text` (ffmpeg's words) with every secret part of `raw` replaced: the whole URL by its
/// redacted form, and the stream key and each query value wherever else they appear.
pub(crate) fn redact_in(text: &str, raw: &str) -> String {
    let mut out = text.replace(raw.trim(), &redacted_url(raw));
    let Ok(url) = url::Url::parse(raw.trim()) else {
        return out;
    };
    let mut secrets: Vec<String> = url
        .path_segments()
        .map(|s| {
            s.filter(|p| !p.is_empty())
                .skip(1)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    // Longest first, so a secret containing another is replaced whole; short values (a port,
    // a mode) are not secrets and would mangle the text.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), HIDDEN);
    }
    out
}

/// One push target as the worker runs it.
#[derive(Clone, PartialEq, Eq)]
pub struct LiveTarget {
    /// The full URL (secret).
    pub url: String,
    /// Video bit rate, kbit/s: set, the push encodes the pictures itself at this rate.
    pub video_kbps: Option<u32>,
    /// Audio bit rate, kbit/s, likewise.
    pub audio_kbps: Option<u32>,
}

impl LiveTarget {
    /// Whether the push carries the recording's own encoded stream (no bit rate asked for).
    pub(crate) fn copies(&self) -> bool {
        self.video_kbps.is_none() && self.audio_kbps.is_none()
    }
}

impl std::fmt::Debug for LiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTarget")
            .field("url", &redacted_url(&self.url))
            .field("video_kbps", &self.video_kbps)
            .field("audio_kbps", &self.audio_kbps)
            .finish()
    }
}

/// What every push of one recording shares.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// libx264 preset.
    pub preset: String,
    /// Picture size and rate (the recording's).
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// What the frames are (the recording encoder's input format).
    pub input: FrameFormat,
    /// The recording has a sound track (without one, a push adds silence: players expect it).
    pub sound: bool,
    /// Where pushes may connect (checked before every attempt; see `route`).
    pub egress: crate::url_guard::UrlPolicy,
    /// The certificate authorities an RTMPS server is checked against, when not only the
    /// system's (`crate::tls::ffmpeg_ca_file`).
    pub ca_file: Option<PathBuf>,
}

/// The file descriptor the pushing ffmpeg reads PCM from.
pub(crate) const AUDIO_FD: i32 = 3;

/// The ffmpeg arguments that push frames (stdin) and s16le 48 kHz stereo PCM (fd 3) to `target`
/// as H.264 + AAC: FLV for RTMP(S), MPEG-TS for SRT, to the URL (and through the proxy) that
/// `to` says (see `route`).
pub(crate) fn push_args(
    s: &LiveSettings,
    target: &LiveTarget,
    to: &super::route::Connect,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-hide_banner", "-nostats", "-nostdin"]);
    push(&["-loglevel", "level+warning"]);
    let size = format!("{}x{}", s.width, s.height);
    match s.input {
        FrameFormat::Jpeg => push(&["-thread_queue_size", "64", "-f", "mjpeg"]),
        FrameFormat::Bgrx => push(&[
            "-probesize",
            "32",
            "-analyzeduration",
            "0",
            "-thread_queue_size",
            "4",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr0",
            "-video_size",
            &size,
        ]),
        FrameFormat::I420 => push(&[
            "-probesize",
            "32",
            "-analyzeduration",
            "0",
            "-thread_queue_size",
            "4",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-video_size",
            &size,
        ]),
    }
    let fps = s.fps.max(1).to_string();
    push(&["-framerate", &fps, "-i", "-"]);
    let audio_in = format!("pipe:{AUDIO_FD}");
    // Raw PCM needs no probing. Without these ffmpeg reads seconds of sound before it takes
    // any picture, while pictures and sound are handed over in step: the push would stall.
    push(&[
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-thread_queue_size",
        "64",
        "-f",
        "s16le",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-i",
        &audio_in,
    ]);
    push(&["-map", "0:v:0", "-map", "1:a:0"]);
    if s.input != FrameFormat::I420 {
        let vf = format!(
            "scale={}:{}:flags=bicubic,pad=ceil(iw/2)*2:ceil(ih/2)*2,format=yuv420p",
            s.width, s.height
        );
        push(&["-vf", &vf]);
    }
    let video_kbps = target.video_kbps.unwrap_or(DEFAULT_VIDEO_KBPS);
    let vb = format!("{video_kbps}k");
    let buf = format!("{}k", video_kbps * 2);
    // A keyframe every 2 s: players joining the stream start within 2 s.
    let gop = (s.fps.max(1) * 2).to_string();
    push(&[
        "-threads",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        &s.preset,
        "-tune",
        "zerolatency",
    ]);
    push(&[
        "-b:v", &vb, "-maxrate", &vb, "-bufsize", &buf, "-pix_fmt", "yuv420p",
    ]);
    push(&[
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-bf",
        "0",
    ]);
    let ab = format!("{}k", target.audio_kbps.unwrap_or(DEFAULT_AUDIO_KBPS));
    push(&["-c:a", "aac", "-b:a", &ab, "-ar", "48000", "-ac", "2"]);
    a.extend(output_args(to, s.ca_file.as_deref()));
    a
}

/// The output half of a push's arguments: the container for the target's protocol, and where
/// to send it (the checked address, through the egress proxy for RTMPS to a name: `to`). An
/// RTMPS server's certificate is verified, for its name (the stream key goes over that
/// connection), against the system's roots or `ca_file`.
pub(crate) fn output_args(to: &super::route::Connect, ca_file: Option<&Path>) -> Vec<String> {
    let protocol = url::Url::parse(&to.url)
        .ok()
        .and_then(|u| LiveProtocol::of_scheme(u.scheme()))
        .unwrap_or(LiveProtocol::Rtmp);
    let container: &[&str] = match protocol {
        // A target that stops reading (network gone) fails the push within 10 s instead of
        // blocking it for good; pagecast then reconnects.
        // A small send buffer (instead of the kernel's, which grows to megabytes) makes a target
        // that stops reading block the push within seconds even at a low bit rate.
        LiveProtocol::Rtmp | LiveProtocol::Rtmps => &[
            "-send_buffer_size",
            "262144",
            "-rw_timeout",
            "10000000",
            "-flvflags",
            "no_duration_filesize",
            "-f",
            "flv",
        ],
        LiveProtocol::Srt => &["-f", "mpegts"],
    };
    let mut a: Vec<String> = container.iter().map(|s| s.to_string()).collect();
    if protocol == LiveProtocol::Rtmps {
        a.extend(["-tls_verify".to_string(), "1".into()]);
        if let Some(ca) = ca_file {
            a.extend(["-ca_file".to_string(), ca.display().to_string()]);
        }
    }
    if let Some(proxy) = &to.http_proxy {
        a.extend(["-http_proxy".to_string(), proxy.clone()]);
    }
    a.push(to.url.clone());
    a
}

/// How long to wait before connection attempt `attempt` (1 = the first retry): 1, 2, 4, 8, 16,
/// then 30 s.
pub(crate) fn backoff(attempt: u32) -> std::time::Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(5);
    std::time::Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_urls_are_checked_for_scheme_host_and_port() {
        let (p, h, port) = parse_live_url("rtmp://live.example.com/app/key").unwrap();
        assert_eq!(
            (p, h.to_string(), port),
            (LiveProtocol::Rtmp, "live.example.com".into(), 1935)
        );
        assert_eq!(parse_live_url("rtmps://x.example/app/k").unwrap().2, 443);
        assert_eq!(
            parse_live_url("srt://10.0.0.1:9000?streamid=a").unwrap().2,
            9000
        );
        assert!(
            matches!(parse_live_url("srt://10.0.0.1"), Err(LiveUrlError::Invalid(m)) if m.contains("port"))
        );
        assert!(
            matches!(parse_live_url("rtsp://h/a/k"), Err(LiveUrlError::Scheme(s)) if s == "rtsp")
        );
        assert!(matches!(
            parse_live_url("https://h/a/k"),
            Err(LiveUrlError::Scheme(_))
        ));
        assert!(parse_live_url("rtmp://h/app").is_err(), "no stream key");
        assert!(parse_live_url("rtmp://u:p@h/app/key").is_err());
        assert!(parse_live_url("not a url").is_err());
    }

    #[test]
    fn stream_keys_and_query_values_never_show() {
        assert_eq!(
            redacted_url("rtmp://live.example.com/app/sekr3t-key"),
            "rtmp://live.example.com/app/***"
        );
        assert_eq!(
            redacted_url("srt://10.0.0.1:9000?streamid=room1&passphrase=verysecret1"),
            "srt://10.0.0.1:9000?streamid=***&passphrase=***"
        );
        assert_eq!(
            redacted_url("rtmp://h:1936/app/a/b?x"),
            "rtmp://h:1936/app/***?***"
        );
        let url = "rtmp://h/app/sekr3t-key";
        let said = format!("[error] {url}: Connection refused; key sekr3t-key rejected");
        let shown = redact_in(&said, url);
        assert!(!shown.contains("sekr3t"), "{shown}");
        assert!(
            shown.contains("rtmp://h/app/***: Connection refused"),
            "{shown}"
        );
        let srt = "srt://h:9000?passphrase=verysecret1&mode=caller";
        let shown = redact_in(&format!("opening {srt} with verysecret1"), srt);
        assert!(!shown.contains("verysecret1"), "{shown}");
        assert!(
            !format!(
                "{:?}",
                LiveTarget {
                    url: url.into(),
                    video_kbps: Some(1),
                    audio_kbps: Some(1)
                }
            )
            .contains("sekr3t")
        );
    }

    #[test]
    fn rtmp_gets_flv_and_srt_gets_mpegts() {
        let s = LiveSettings {
            ffmpeg: "ffmpeg".into(),
            preset: "veryfast".into(),
            width: 1280,
            height: 720,
            fps: 30,
            input: FrameFormat::Jpeg,
            sound: true,
            egress: crate::url_guard::UrlPolicy::OPEN,
            ca_file: None,
        };
        let t = |url: &str| LiveTarget {
            url: url.into(),
            video_kbps: Some(1500),
            audio_kbps: Some(96),
        };
        let to = |url: &str, proxy: Option<&str>| super::super::route::Connect {
            url: url.into(),
            http_proxy: proxy.map(String::from),
        };
        let rtmp = push_args(&s, &t("rtmp://h/app/key"), &to("rtmp://h/app/key", None)).join(" ");
        assert!(rtmp.contains("-c:v libx264"), "{rtmp}");
        assert!(
            rtmp.contains("-b:v 1500k -maxrate 1500k -bufsize 3000k"),
            "{rtmp}"
        );
        assert!(rtmp.contains("-c:a aac -b:a 96k"), "{rtmp}");
        assert!(rtmp.contains("-g 60 -keyint_min 60"), "{rtmp}");
        assert!(rtmp.ends_with("-f flv rtmp://h/app/key"), "{rtmp}");
        let srt = push_args(&s, &t("srt://h:9000"), &to("srt://10.0.0.1:9000", None)).join(" ");
        assert!(srt.ends_with("-f mpegts srt://10.0.0.1:9000"), "{srt}");
        let rtmps = push_args(
            &s,
            &t("rtmps://h/app/key"),
            &to("rtmps://h/app/key", Some("http://127.0.0.1:4000")),
        )
        .join(" ");
        // The RTMPS server's certificate is verified (the stream key goes over it); plain
        // RTMP has nothing to verify.
        assert!(
            rtmps.ends_with(
                "-f flv -tls_verify 1 -http_proxy http://127.0.0.1:4000 rtmps://h/app/key"
            ),
            "{rtmps}"
        );
        assert!(!rtmp.contains("tls_verify"), "{rtmp}");
        let private = LiveSettings {
            ca_file: Some("/run/ca.pem".into()),
            ..s.clone()
        };
        let rtmps = push_args(
            &private,
            &t("rtmps://h/app/key"),
            &to("rtmps://10.1.1.1:443/app/key", None),
        )
        .join(" ");
        assert!(
            rtmps.ends_with("-tls_verify 1 -ca_file /run/ca.pem rtmps://10.1.1.1:443/app/key"),
            "{rtmps}"
        );
        assert!(!srt.contains("rw_timeout"), "{srt}");
    }

    #[test]
    fn backoff_doubles_up_to_30_seconds() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0).as_secs(), 1);
    }
}
