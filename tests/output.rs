//! End-to-end: HLS output, AES-128 encryption, and clear errors for bad input.

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "000102030405060708090a0b0c0d0e0f";

#[test]
fn hls_with_a_key_is_encrypted_and_decodes_with_the_key() {
    let base = fixture_server();
    let dir = scratch("hls");
    let out = dir.join("index.m3u8");
    record_ok(
        &format!("{base}/animated.html"),
        &out,
        &[
            "--duration",
            "3",
            "--hls-key",
            KEY,
            "--hls-key-uri",
            "enc.key",
        ],
    );
    let playlist = std::fs::read_to_string(&out).unwrap();
    assert!(
        playlist.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"enc.key\""),
        "{playlist}"
    );
    assert!(playlist.contains("#EXT-X-ENDLIST"), "VOD playlist");
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    let segments: Vec<_> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
    assert!(!segments.is_empty());
    for s in &segments {
        let bytes = std::fs::read(dir.join(s)).unwrap();
        assert_ne!(
            bytes[0], 0x47,
            "{s} must not be a plain MPEG-TS (sync byte 0x47)"
        );
    }
    assert!(
        !dir.join("enc.key").exists(),
        "the key is not written next to the output"
    );
    // Without the key the segments do not decode...
    let no_key = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-allowed_extensions", "ALL", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        !no_key.status.success(),
        "decoding without the key must fail"
    );
    // ...and with it they do, for the whole duration.
    std::fs::write(dir.join("enc.key"), hex_bytes(KEY)).unwrap();
    let p = probe(&out, &["-allowed_extensions", "ALL"]);
    assert_close(p.duration, 3.0, 0.1, "HLS duration");
    assert_eq!(p.frames, 90);
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn plain_hls_plays() {
    let base = fixture_server();
    let dir = scratch("hls-plain");
    let out = dir.join("rec.m3u8");
    record_ok(&format!("{base}/animated.html"), &out, &["--duration", "3"]);
    let playlist = std::fs::read_to_string(&out).unwrap();
    assert!(!playlist.contains("EXT-X-KEY"));
    let p = probe(&out, &[]);
    assert_close(p.duration, 3.0, 0.1, "HLS duration");
}

fn record_err(args: &[&str]) -> (i32, String) {
    let mut cmd = pagecast();
    cmd.arg("record").args(args).arg("-q");
    let o = run(cmd, Duration::from_secs(90));
    assert!(!o.status.success(), "expected failure for {args:?}");
    (o.status.code().unwrap_or(-1), stderr(&o))
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = scratch("bad-input");
    let out = dir.join("x.mp4");
    let out = out.to_str().unwrap();
    let (code, e) = record_err(&["ftp://example.org/", "-o", out]);
    assert!(
        e.contains("InvalidParam") && e.contains("only http and https"),
        "{e}"
    );
    assert_eq!(code, 2);
    let (_, e) = record_err(&["not a url", "-o", out]);
    assert!(e.contains("InvalidParam"), "{e}");
    let (_, e) = record_err(&["http://127.0.0.1:9/", "--width", "4000", "-o", out]);
    assert!(
        e.contains("InvalidParam") && e.contains("--width") && e.contains("at most 2560"),
        "{e}"
    );
    // A range error names the flag the user set.
    let (code, e) = record_err(&["http://127.0.0.1:9/", "--fps", "61", "-o", out]);
    assert!(
        e.contains("InvalidParam") && e.contains("--fps must be between 1 and 60"),
        "{e}"
    );
    assert_eq!(code, 2);
    let (_, e) = record_err(&[
        "http://127.0.0.1:9/",
        "-o",
        dir.join("x.webm").to_str().unwrap(),
    ]);
    assert!(e.contains("must end in .mp4 or .m3u8"), "{e}");
    let (_, e) = record_err(&[
        "http://127.0.0.1:9/",
        "-o",
        out,
        "--hls-key",
        "00",
        "--hls-key-uri",
        "k",
    ]);
    assert!(e.contains("InvalidParam"), "{e}");
}

#[test]
fn unreachable_pages_give_clear_errors() {
    let base = fixture_server();
    let dir = scratch("unreachable");
    let out = dir.join("x.mp4");
    let out = out.to_str().unwrap();
    // A port that was just free: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, e) = record_err(&[&format!("http://127.0.0.1:{port}/"), "-o", out]);
    assert!(
        e.contains("PageLoadFailed") && e.contains("ERR_CONNECTION_REFUSED"),
        "{e}"
    );
    let (_, e) = record_err(&["http://no-such-host.invalid/", "-o", out]);
    assert!(
        e.contains("PageLoadFailed") && e.contains("ERR_NAME_NOT_RESOLVED"),
        "{e}"
    );
    let (_, e) = record_err(&[&format!("{base}/missing.html"), "-o", out]);
    assert!(e.contains("PageLoadFailed") && e.contains("404"), "{e}");
    assert!(
        !std::path::Path::new(out).exists(),
        "no file is written for a failed recording"
    );
}

/// Only the document's own status decides whether a page loaded: a 404 image, iframe or fetch
/// on a page that answered 200 does not fail the recording.
#[test]
fn broken_parts_of_a_page_do_not_fail_it() {
    let base = fixture_server();
    let out = scratch("broken-parts").join("x.mp4");
    record_ok(
        &format!("{base}/broken_parts.html"),
        &out,
        &["--duration", "2"],
    );
    assert_close(probe(&out, &[]).duration, 2.0, 0.1, "recorded");
}

#[test]
fn missing_binaries_give_clear_errors() {
    let dir = scratch("missing-bin");
    let out = dir.join("x.mp4");
    let out = out.to_str().unwrap();
    let (_, e) = record_err(&[
        "http://127.0.0.1:9/",
        "-o",
        out,
        "--chromium",
        "/nonexistent/chromium",
    ]);
    assert!(
        e.contains("BrowserFailed") && e.contains("chromium not found"),
        "{e}"
    );
    let (_, e) = record_err(&[
        "http://127.0.0.1:9/",
        "-o",
        out,
        "--ffmpeg",
        "/nonexistent/ffmpeg",
    ]);
    assert!(e.contains("ffmpeg not found"), "{e}");
}

#[test]
fn the_demo_page_records_offline() {
    let dir = scratch("demo");
    let out = dir.join("demo.mp4");
    record_ok("demo", &out, &["--duration", "2"]);
    let p = probe(&out, &[]);
    assert_close(p.duration, 2.0, 0.06, "demo duration");
}
