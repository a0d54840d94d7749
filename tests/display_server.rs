//! End-to-end: the X server behind the `x11` backend. Xvfb by default; Xorg's dummy driver
//! (`--display-server xorg` or `auto`) gives the display a mode at the recording's frame rate,
//! so Chromium paints once per video frame (not at Xvfb's fixed 60 Hz); where Xorg cannot
//! start, `auto` records on Xvfb, and `xorg` fails clearly.

mod common;

use std::time::Duration;

use common::*;

/// The page's paints per second while recording, from the grabber's timing trace: DAMAGE events
/// closer than 4 ms are one paint (a frame's damage comes as several rectangles).
fn paints_per_second(log: &str) -> f64 {
    let started = log
        .find("recording started")
        .unwrap_or_else(|| panic!("no start in the log:\n{log}"));
    let paints: Vec<f64> = log[started..]
        .lines()
        .filter_map(|l| l.split("painted=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    let mut distinct = 0usize;
    let mut last = f64::NEG_INFINITY;
    for &t in &paints {
        if t - last >= 0.004 {
            distinct += 1;
        }
        last = t;
    }
    let span = paints.last().copied().unwrap_or(0.0) - paints.first().copied().unwrap_or(0.0);
    assert!(span > 3.0, "paints over {span} s only:\n{log}");
    (distinct - 1) as f64 / span
}

/// Records `clock.html` (it paints every animation frame) for 6 s at `fps` with `extra`
/// arguments, tracing paints; returns the paint rate and the log.
fn record_traced(name: &str, fps: u32, extra: &[&str]) -> (f64, String) {
    let base = fixture_server();
    let dir = scratch(name);
    let out = dir.join("clock.mp4");
    let mut cmd = pagecast();
    cmd.env("PAGECAST_LOG", "pagecast::timing=trace,info")
        .arg("record")
        .arg(format!("{base}/clock.html"))
        .arg("-o")
        .arg(&out)
        .args(["--duration", "6", "--fps", &fps.to_string()])
        .args(extra);
    let o = run(cmd, Duration::from_secs(120));
    let log = stderr(&o);
    assert!(o.status.success(), "{}\n{log}", o.status);
    assert_close(probe(&out, &[]).duration, 6.0, 0.2, "duration");
    (paints_per_second(&log), log)
}

/// The Xorg display refreshes at the video's frame rate, and Chromium paints at it: 30 paints a
/// second for 30 fps, 25 for a 25 fps video, where Xvfb's display (the default) has it paint 60
/// times.
#[test]
fn chromium_paints_once_per_video_frame_on_the_xorg_display() {
    let _machine = alone();
    let (rate, log) = record_traced("paint-rate-30", 30, &["--display-server", "auto"]);
    assert!(log.contains(r#"server="Xorg""#), "Xorg under auto:\n{log}");
    assert!(log.contains("refresh_hz=Some(30.0)"), "{log}");
    assert!(
        (27.0..=31.0).contains(&rate),
        "paints a second at 30 fps: {rate}"
    );

    let (rate, log) = record_traced("paint-rate-25", 25, &["--display-server", "xorg"]);
    assert!(log.contains("refresh_hz=Some(25.0)"), "{log}");
    assert!(
        (22.5..=26.0).contains(&rate),
        "paints a second at 25 fps: {rate}"
    );

    // The same count on Xvfb tells them apart: 60 a second whatever the frame rate.
    let (rate, log) = record_traced("paint-rate-xvfb", 30, &[]);
    assert!(log.contains(r#"server="Xvfb""#), "Xvfb by default:\n{log}");
    assert!(rate > 50.0, "paints a second on Xvfb: {rate}");
}

/// Without a usable Xorg, `auto` warns once and records on Xvfb.
#[test]
fn auto_records_on_xvfb_where_xorg_cannot_start() {
    let _machine = beside_others();
    let base = fixture_server();
    for (name, xorg) in [
        ("no-xorg", "/nonexistent/Xorg"),
        // Runs, but is no X server: it exits before giving a display number.
        ("false-xorg", "/bin/false"),
    ] {
        let out = scratch(name).join("clock.mp4");
        let o = record_ok(
            &format!("{base}/clock.html"),
            &out,
            &[
                "--duration",
                "3",
                "-v",
                "--display-server",
                "auto",
                "--xorg",
                xorg,
            ],
        );
        let log = stderr(&o);
        assert!(
            log.contains(r#"server="Xvfb""#),
            "{name}: Xvfb instead:\n{log}"
        );
        assert_close(probe(&out, &[]).duration, 3.0, 0.2, "duration");
        if xorg == "/bin/false" {
            assert!(
                log.contains("Xorg with the dummy driver could not start")
                    && log.contains("xserver-xorg-video-dummy"),
                "a failing Xorg is reported with its fix:\n{log}"
            );
        }
    }
}

/// `--display-server xorg` has no fallback: a missing Xorg fails the recording, naming it.
#[test]
fn xorg_only_fails_clearly_without_xorg() {
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("xorg-missing");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/clock.html"))
        .arg("-o")
        .arg(dir.join("out.mp4"))
        .args(["--duration", "2", "--display-server", "xorg"])
        .args(["--xorg", "/nonexistent/Xorg"]);
    let o = run(cmd, Duration::from_secs(60));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("Xorg") && err.contains("/nonexistent/Xorg"),
        "the error names what is missing: {err}"
    );
    assert!(!dir.join("out.mp4").exists(), "no output");
}
