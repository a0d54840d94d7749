//! End-to-end: the two capture backends, `x11` (the default: headful Chromium on a private Xvfb
//! display) and `screencast` (headless Chromium's JPEG frames). Frame timing is checked on a
//! machine not shared with another recording (a test binary of its own).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn the_x11_backend_records_a_headful_browser_on_its_own_display() {
    let base = fixture_server();
    let dir = scratch("x11");
    let out = dir.join("x11.mp4");
    let o = record_ok(
        &format!("{base}/clock.html"),
        &out,
        &["--duration", "6", "-v"],
    );
    let p = probe(&out, &[]);
    assert_close(p.duration, 6.0, 0.2, "duration");
    assert_eq!((p.width, p.height, p.frames), (1280, 720, 180));
    // The page fills the screen exactly: its clock strip starts in the top-left pixel (no
    // browser interface, info bar or window frame above it) and decodes in every frame.
    let a = analyze(&out);
    assert_eq!(a["decoded"].as_u64(), Some(180), "{a}");
    assert!(a["gaps"].as_array().unwrap().is_empty(), "no jump: {a}");
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 500.0,
        "the page moves throughout: {a}"
    );
    // The window is exactly the video's size: the page's grey background reaches the last
    // column and row (a window a pixel short leaves a black edge).
    let f = frame_at(&out, 90, &[]);
    let px = |x: usize, y: usize| f.data[(y * f.width + x) * 3];
    assert!(
        px(f.width - 1, 360) > 100 && px(640, f.height - 1) > 100,
        "no black edge: right {} bottom {}",
        px(f.width - 1, 360),
        px(640, f.height - 1)
    );
    let span = page_clock_span(&out, p.frames);
    assert!(
        (5.5..6.5).contains(&span),
        "page time runs with the video: {span} s"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("180 written"), "{stdout}");
    assert!(
        stderr(&o).contains("virtual display started"),
        "x11 is the default: {}",
        stderr(&o)
    );
}

#[test]
fn the_x11_backend_fails_clearly_without_xvfb() {
    let base = fixture_server();
    let dir = scratch("x11-missing");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/clock.html"))
        .arg("-o")
        .arg(dir.join("out.mp4"))
        .args([
            "--duration",
            "2",
            "--capture",
            "x11",
            "--xvfb",
            "/nonexistent/Xvfb",
        ]);
    let o = run(cmd, Duration::from_secs(60));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("Xvfb"),
        "the error names what is missing: {err}"
    );
}

#[test]
fn the_screencast_backend_records_a_headless_browser() {
    let base = fixture_server();
    let dir = scratch("screencast");
    let out = dir.join("screencast.mp4");
    let o = record_ok(
        &format!("{base}/clock.html"),
        &out,
        &["--duration", "6", "--capture", "screencast", "-v"],
    );
    let p = probe(&out, &[]);
    assert_close(p.duration, 6.0, 0.2, "duration");
    assert_eq!((p.width, p.height, p.frames), (1280, 720, 180));
    let a = analyze(&out);
    assert!(a["decoded"].as_u64().unwrap() >= 178, "{a}");
    assert!(a["gaps"].as_array().unwrap().is_empty(), "no jump: {a}");
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 500.0,
        "the page moves throughout: {a}"
    );
    assert!(
        !stderr(&o).contains("virtual display started"),
        "headless, without a display: {}",
        stderr(&o)
    );
}

/// A recording's browser runs one renderer for a one-site page: not the tab Chromium opens at
/// start, not the omnibox popup that Chromium preloads as a WebUI page even in kiosk mode, not a
/// spare kept for the next navigation. Each of those held 20–70 MB for the whole recording.
#[test]
fn the_recording_browser_runs_only_the_pages_renderer_and_its_display_no_gl() {
    let base = fixture_server();
    let dir = scratch("one-renderer");
    let out = dir.join("one.mp4");
    let mut child = pagecast()
        .arg("record")
        .arg(format!("{base}/clock.html"))
        .args(["--duration", "8", "-q", "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pagecast");
    // Well into the recording (a browser starts in about a second).
    std::thread::sleep(Duration::from_secs(5));
    let processes = descendants(child.id());
    let renderers: Vec<String> = processes
        .iter()
        .copied()
        .map(cmdline)
        .filter(|c| c.contains("--type=renderer"))
        .collect();
    // The virtual display runs without GLX, whose software renderer would map LLVM into it
    // (about 48 MB); the browser paints without a GPU.
    let xvfb: Vec<u32> = processes
        .iter()
        .copied()
        .filter(|&pid| cmdline(pid).contains("Xvfb"))
        .collect();
    let display_gl: Vec<String> = xvfb
        .iter()
        .flat_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("libLLVM") || l.contains("_dri.so"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(
        renderers.len(),
        1,
        "renderers: {:#?}",
        renderers
            .iter()
            .map(|c| c
                .split(' ')
                .filter(|a| a.starts_with("--renderer-client-id") || a.contains("webui"))
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert_eq!(xvfb.len(), 1, "the recording's Xvfb");
    assert!(display_gl.is_empty(), "Xvfb maps GL: {display_gl:#?}");
    assert_close(probe(&out, &[]).duration, 8.0, 0.2, "duration");
}
