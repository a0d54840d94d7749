//! RTMPS pushes end to end: Debian's nginx with its RTMP module behind a TLS terminator whose
//! certificate a private CA signed. The server is verified before the stream key is sent: with
//! the CA unknown the push is refused and nothing is published; with it trusted
//! (`PAGECAST_TLS_CA_FILE`) the stream arrives.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/rtmp.rs"]
mod rtmp_support;
#[path = "support/service.rs"]
mod service_support;
#[path = "support/tls.rs"]
mod tls_support;

use std::process::Command;
use std::time::Duration;

use common::*;
use redis_support::TestRedis;
use rtmp_support::{KEY, TestRtmp};
use serde_json::{Value, json};
use service_support::*;
use tls_support::{private_ca, tls_proxy};

fn live(d: &Value) -> Value {
    d["Stats"]["Live"][0].clone()
}

/// The codecs nginx serves for the stream (empty when nothing is published), waiting up to
/// `seconds` for them.
fn codecs(url: &str, seconds: u32) -> Vec<String> {
    let out = Command::new("timeout")
        .args([&seconds.to_string(), "ffprobe", "-v", "error"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    let mut c: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    c.sort();
    c
}

#[test]
fn an_rtmps_server_is_verified_before_the_stream_key_is_sent() {
    let redis = TestRedis::start();
    let rtmp = TestRtmp::start("live-tls-rtmp");
    let dir = scratch("live-tls-ca");
    let (ca, cert, key) = private_ca(&dir);
    let tls_port = tls_proxy(&cert, &key, rtmp.port);
    let fixtures = fixture_server();
    let start = |svc: &Service| {
        start_recording(
            &svc.url,
            json!({
                "RecordURL": format!("{fixtures}/animated.html"),
                "MaxDurationLimit": 60,
                "Output": {"Live": {"Url": format!("rtmps://127.0.0.1:{tls_port}/live/{KEY}")}},
            }),
        )
    };

    // The CA is not trusted: the handshake fails, the push retries, nothing is published.
    let untrusted = service(&redis, "live-tls-untrusted", true, 0, 1);
    let id = start(&untrusted);
    let d = wait_for(
        &untrusted.url,
        &id,
        "the push to be refused",
        Duration::from_secs(30),
        |d| live(d)["Attempts"].as_u64().unwrap_or(0) >= 2 && live(d)["LastError"].is_string(),
    );
    assert_eq!(d["Status"], "recording", "the recording goes on: {d}");
    assert_ne!(live(&d)["State"], "live", "{d}");
    assert_eq!(
        codecs(&rtmp.url(), 8),
        Vec::<String>::new(),
        "nothing published"
    );
    ok(&untrusted.url, "Stop", &id);
    wait_finished(&untrusted.url, &id, Duration::from_secs(60));
    drop(untrusted);

    // The same server with its CA trusted: the stream arrives through TLS.
    let ca = ca.display().to_string();
    let trusted = service_with(
        &redis,
        "live-tls-trusted",
        true,
        0,
        1,
        &[("PAGECAST_TLS_CA_FILE", ca.as_str())],
    );
    let id = start(&trusted);
    wait_for(
        &trusted.url,
        &id,
        "the push to be up",
        Duration::from_secs(30),
        |d| live(d)["State"] == "live",
    );
    assert_eq!(
        codecs(&rtmp.url(), 20),
        ["aac", "h264"],
        "the stream arrived"
    );
    ok(&trusted.url, "Stop", &id);
    let d = wait_finished(&trusted.url, &id, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert_eq!(live(&d)["Attempts"], 1, "{d}");
}
