//! End-to-end: the two capture backends, `x11` (the default: headful Chromium on a private X
//! display) and `screencast` (headless Chromium's JPEG frames). Frame timing is checked on a
//! machine not shared with another recording (a test binary of its own).

mod common;

use std::time::Duration;

use common::*;

/// Asserts the frame timing `pagecast analyze` reports for a recording of `clock.html` made
/// [alone], against BENCHMARKS.md (frame timing of one 720p30 recording, run of 2026-12-03:
/// distinct 1.0000 (one run 0.9978), p95 error 1.0 ms, longest freeze 33.3 ms, drift 0.99996;
/// targets >= 0.999, <= 5 ms, <= 67 ms, 1.000 +- 0.0005), each with the margin a loaded 2-core
/// CI run of the debug build needs: three repeated frames in a 6 s recording (0.983), one 60 Hz
/// paint more of timing error (a grab that sees the paint before: 1.0 + 16.7 ms), one frame more
/// of freeze than the target (100 ms), and a drift band six times as wide, which holds that one
/// paint at an end of the fit (a 6 s fit moves by 0.00017 per millisecond of error at its ends;
/// a suite run of 2026-12-07 had distinct 1.0000, p95 within the bound and drift 0.9975, the
/// pictures one paint behind in the last second only). Measured on this project's shared
/// machine at load average 23 (ten times what 2 cores hold): 0.966-0.972, 17.0-17.3 ms,
/// 100-133 ms, 0.9962-0.9985; such a machine fails them, as it should.
fn assert_frame_timing(a: &serde_json::Value, what: &str) {
    eprintln!("{what}: {a}");
    let f = |k: &str| {
        a[k].as_f64()
            .unwrap_or_else(|| panic!("{what}: no {k} in {a}"))
    };
    assert!(f("distinct_ratio") >= 0.983, "{what}: distinct frames: {a}");
    assert!(f("p95_error_ms") <= 17.7, "{what}: p95 timing error: {a}");
    assert!(
        f("longest_freeze_ms") <= 100.0,
        "{what}: longest freeze: {a}"
    );
    assert!((f("drift") - 1.0).abs() <= 0.003, "{what}: drift: {a}");
    assert!(
        a["gaps"].as_array().unwrap().is_empty(),
        "{what}: no jump: {a}"
    );
    // The first slots get the frames grabbed for them. Two causes made the second frame repeat
    // the first (2026-12-07: one 720p run in three, two 1080p runs in three): slots decided
    // while their frames still waited in the channel, and a grab taken on the grid from before
    // the start, which made the first slot's own grab too late.
    let repeated = a["repeated_frames"].as_array().unwrap();
    assert!(
        !repeated.iter().any(|i| i.as_u64() == Some(1)),
        "{what}: the second frame repeats the first: {a}"
    );
}

#[test]
fn the_x11_backend_records_a_headful_browser_on_its_own_display() {
    let _machine = alone();
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
    assert_frame_timing(&a, "x11 MP4");
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

/// An HLS recording has the same frame timing as an MP4 one (its segments join without a
/// repeated or lost frame).
#[test]
fn an_hls_recording_keeps_frame_timing() {
    let _machine = alone();
    let base = fixture_server();
    let dir = scratch("hls-timing");
    let out = dir.join("clock.m3u8");
    record_ok(&format!("{base}/clock.html"), &out, &["--duration", "6"]);
    let a = analyze(&out);
    assert!(a["decoded"].as_u64().unwrap() >= 179, "{a}");
    assert_frame_timing(&a, "x11 HLS");
}

#[test]
fn the_x11_backend_fails_clearly_without_xvfb() {
    let _machine = beside_others();
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
            "--display-server",
            "xvfb",
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
    let _machine = beside_others();
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
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("one-renderer");
    let out = dir.join("one.mp4");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/clock.html"))
        .args(["--duration", "8", "-q", "-o"])
        .arg(&out);
    let mut rec = spawn_watched(cmd);
    rec.wait_for_log(RECORDING_STARTED, Duration::from_secs(60));
    // Through the next 2 s of the recording (a spare renderer would appear within it): one
    // renderer at every look.
    let watch_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        let renderers = descendants(rec.child.id())
            .into_iter()
            .map(cmdline)
            .filter(|c| c.contains("--type=renderer"))
            .count();
        assert_eq!(renderers, 1, "renderers while recording");
        std::thread::sleep(Duration::from_millis(100));
    }
    let child = &mut rec.child;
    let processes = descendants(child.id());
    let renderers: Vec<String> = processes
        .iter()
        .copied()
        .map(cmdline)
        .filter(|c| c.contains("--type=renderer"))
        .collect();
    // The virtual display runs without GLX, whose software renderer would map LLVM into it
    // (about 48 MB); the browser paints without a GPU.
    let servers: Vec<u32> = processes
        .iter()
        .copied()
        .filter(|&pid| {
            let c = cmdline(pid);
            c.contains("Xorg") || c.contains("Xvfb")
        })
        .collect();
    let display_gl: Vec<String> = servers
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
    assert_eq!(servers.len(), 1, "the recording's X server");
    assert!(
        display_gl.is_empty(),
        "the X server maps GL: {display_gl:#?}"
    );
    assert_close(probe(&out, &[]).duration, 8.0, 0.2, "duration");
}

/// The environment variable `name` of process `pid`.
fn environ_of(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{name}=")).map(str::to_string)
    })
}

/// Runs `cmd` as the unprivileged user `nobody` (uid and gid 65534, no groups).
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(cmd)
        .output()
        .expect("setpriv (util-linux)")
}

/// A recording's display takes only clients holding its cookie: another local user (who can
/// reach the X socket) is refused, and so is this user without the cookie; the recording goes
/// on, and the cookie's directory is gone afterwards.
#[test]
fn another_user_cannot_open_a_recordings_display() {
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("x11-auth");
    let out = dir.join("auth.mp4");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/clock.html"))
        .args(["--duration", "8", "-q", "-o"])
        .arg(&out);
    let mut rec = spawn_watched(cmd);
    // Recording (the display and the browser on it are up).
    rec.wait_for_log(RECORDING_STARTED, Duration::from_secs(60));
    let child = &mut rec.child;
    // The browser's environment names the display and its Xauthority file.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (display, xauthority) = loop {
        let found = descendants(child.id()).into_iter().find_map(|pid| {
            let c = cmdline(pid);
            (c.contains("chromium") && !c.contains("--type=") && !c.contains("crashpad"))
                .then(|| Some((environ_of(pid, "DISPLAY")?, environ_of(pid, "XAUTHORITY")?)))
                .flatten()
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no browser with a display"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let xauthority = std::path::PathBuf::from(xauthority);
    let xdpyinfo = |user_nobody: bool, auth: &str| {
        let cmd = [
            "env",
            &format!("DISPLAY={display}"),
            &format!("XAUTHORITY={auth}"),
            "xdpyinfo",
        ];
        if user_nobody {
            as_nobody(&cmd)
        } else {
            std::process::Command::new(cmd[0])
                .args(&cmd[1..])
                .output()
                .expect("xdpyinfo (x11-utils)")
        }
    };
    let auth = xauthority.display().to_string();
    // The display is up, and takes its cookie.
    let o = xdpyinfo(false, &auth);
    assert!(
        o.status.success(),
        "the cookie opens the display: {}",
        stderr(&o)
    );
    // Without it, nobody gets in: neither another user nor this one.
    for (nobody, auth) in [
        (true, "/nonexistent"),
        (true, auth.as_str()),
        (false, "/nonexistent"),
    ] {
        let o = xdpyinfo(nobody, auth);
        assert!(
            !o.status.success(),
            "nobody={nobody} XAUTHORITY={auth} opened {display}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // The cookie is readable by this user only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&xauthority), 0o600);
    assert_eq!(mode(xauthority.parent().unwrap()), 0o700);
    let (status, err) = rec.finish(Duration::from_secs(60));
    assert!(status.success(), "{status}: {err}");
    let p = probe(&out, &[]);
    assert_close(p.duration, 8.0, 0.2, "duration");
    assert!(
        frame_clock_decodes_at(&out, (p.frames - 5) as usize),
        "the page was recorded"
    );
    assert!(
        !xauthority.parent().unwrap().exists(),
        "the cookie's directory is removed"
    );
}
