//! End-to-end: `pagecast record` against real Chromium and ffmpeg, checked with ffprobe and by
//! looking at decoded frames.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn animated_page_has_the_requested_duration_and_moves() {
    let base = fixture_server();
    let dir = scratch("animated");
    let out = dir.join("animated.mp4");
    record_ok(&format!("{base}/animated.html"), &out, &["--duration", "4"]);
    let p = probe(&out, &[]);
    assert_close(p.duration, 4.0, 4.0 * 0.03, "duration");
    assert_eq!(
        (p.width, p.height, p.codec.as_str(), p.pix_fmt.as_str()),
        (1280, 720, "h264", "yuv420p")
    );
    assert_eq!(p.frames, 120, "constant 30 fps");
    // The content changes between frames one second apart.
    let a = frame_at(&out, 30, &[]);
    let b = frame_at(&out, 60, &[]);
    let differing = a
        .data
        .iter()
        .zip(&b.data)
        .filter(|(x, y)| x.abs_diff(**y) > 30)
        .count();
    assert!(
        differing > 1000,
        "frames 1 s apart should differ, {differing} bytes differ"
    );
    // MP4 with the index at the front (+faststart): the moov box comes before mdat.
    let bytes = std::fs::read(&out).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov must precede mdat");
}

#[test]
fn static_page_is_recorded_for_the_full_duration() {
    let base = fixture_server();
    let dir = scratch("static");
    let out = dir.join("static.mp4");
    record_ok(&format!("{base}/static.html"), &out, &["--duration", "4"]);
    let p = probe(&out, &[]);
    assert_close(
        p.duration,
        4.0,
        4.0 * 0.03,
        "duration of a page that never repaints",
    );
    assert_eq!(p.frames, 120);
    // Same picture at the start and the end.
    let a = frame_at(&out, 2, &[]);
    let b = frame_at(&out, 118, &[]);
    let differing = a
        .data
        .iter()
        .zip(&b.data)
        .filter(|(x, y)| x.abs_diff(**y) > 30)
        .count();
    // Lossy coding leaves a few stray bytes (about 100 of 2.76 million were seen); any repaint of
    // content changes tens of thousands.
    assert!(
        differing < a.data.len() / 2000,
        "a static page should look the same throughout ({differing} bytes differ)"
    );
}

#[test]
fn cjk_text_renders_with_the_bundled_font() {
    let base = fixture_server();
    let dir = scratch("cjk");
    let out = dir.join("cjk.mp4");
    record_ok(&format!("{base}/cjk.html"), &out, &["--duration", "1"]);
    let f = frame_at(&out, 15, &[]);
    // Boxes at x = 40, 280, 520 (200x200): 永, あ, and U+E000 which no font has (a missing-glyph box).
    let yong = f.ink(40, 40, 200, 200);
    let a = f.ink(280, 40, 200, 200);
    let tofu = f.ink(520, 40, 200, 200);
    let ink = |v: &[bool]| v.iter().filter(|b| **b).count();
    let diff = |x: &[bool], y: &[bool]| x.iter().zip(y).filter(|(p, q)| p != q).count();
    assert!(
        ink(&yong) > 1500 && ink(&a) > 1500,
        "glyphs have ink: {} {}",
        ink(&yong),
        ink(&a)
    );
    // Missing glyphs all look alike; real glyphs differ from each other and from the missing-glyph box.
    assert!(
        diff(&yong, &a) > 2000,
        "永 and あ must look different ({})",
        diff(&yong, &a)
    );
    assert!(
        diff(&yong, &tofu) > 2000,
        "永 must not be a missing-glyph box ({})",
        diff(&yong, &tofu)
    );
    assert!(
        diff(&a, &tofu) > 2000,
        "あ must not be a missing-glyph box ({})",
        diff(&a, &tofu)
    );
}

/// What you see is what you get: Chromium's offer to translate a page in another language is
/// not part of the page, so it must not be recorded.
#[test]
fn a_page_in_another_language_is_recorded_without_a_translate_bar() {
    let base = fixture_server();
    let out = scratch("translate").join("zh.mp4");
    record_ok(
        &format!("{base}/chinese_page.html"),
        &out,
        &["--duration", "4"],
    );
    let f = frame_at(&out, 110, &[]);
    // The top right corner is the page's plain background (#3060a0 is about 48, 96, 160).
    let mut odd = 0;
    for y in (4..90).step_by(4) {
        for x in (f.width - 500..f.width - 4).step_by(4) {
            let i = (y * f.width + x) * 3;
            let (r, g, b) = (f.data[i], f.data[i + 1], f.data[i + 2]);
            if r.abs_diff(48) > 20 || g.abs_diff(96) > 20 || b.abs_diff(160) > 20 {
                odd += 1;
            }
        }
    }
    assert_eq!(
        odd, 0,
        "something other than the page covers its top right corner"
    );
}

/// The font files fontconfig lists for `pattern` on this machine.
fn font_files(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("fc-list")
        .args([pattern, "--format", "%{file}\n"])
        .output()
        .expect("fc-list (Debian package fontconfig)");
    assert!(out.status.success(), "fc-list {pattern} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cjk_text_is_boxes_without_the_bundled_font() {
    // The control for the test above: Chromium gets a fontconfig of its own that holds one
    // Latin font and nothing else (no system configuration, so no system CJK font), and the
    // glyphs degrade to identical boxes. It runs on every machine, CJK fonts installed or not.
    let cjk = font_files(":charset=6c38");
    let latin = font_files(":lang=en")
        .into_iter()
        .find(|f| !cjk.contains(f) && (f.ends_with(".ttf") || f.ends_with(".otf")))
        .expect("a Latin font without CJK glyphs (fonts-dejavu-core comes with fontconfig)");
    let base = fixture_server();
    let dir = scratch("cjk-nofont");
    let fonts = dir.join("fonts");
    std::fs::create_dir_all(&fonts).unwrap();
    let name = std::path::Path::new(&latin).file_name().unwrap();
    std::os::unix::fs::symlink(&latin, fonts.join(name)).unwrap();
    let conf = dir.join("fonts.conf");
    std::fs::write(
        &conf,
        format!(
            "<?xml version=\"1.0\"?><fontconfig><dir>{}</dir><cachedir>{}</cachedir></fontconfig>",
            fonts.display(),
            dir.join("cache").display()
        ),
    )
    .unwrap();
    let out = dir.join("cjk.mp4");
    record_ok(
        &format!("{base}/cjk.html"),
        &out,
        &["--duration", "1", "--fontconfig", conf.to_str().unwrap()],
    );
    let f = frame_at(&out, 15, &[]);
    let yong = f.ink(40, 40, 200, 200);
    let a = f.ink(280, 40, 200, 200);
    let diff = yong.iter().zip(&a).filter(|(p, q)| p != q).count();
    assert!(
        diff < 2000,
        "without the font both characters should be the same box ({diff})"
    );
}

#[test]
fn manual_start_records_nothing_before_start_record() {
    let base = fixture_server();
    let dir = scratch("manual");
    let out = dir.join("manual.mp4");
    // The page is red until it calls window.startRecord() after 1.5 s, and green from then on.
    record_ok(
        &format!("{base}/manual.html?delay=1500"),
        &out,
        &["--manual-start", "--duration", "2"],
    );
    let p = probe(&out, &[]);
    assert_close(p.duration, 2.0, 0.06, "duration counts from startRecord()");
    for index in [0, 1, 30, 59] {
        let [r, g, _] = f64x3(frame_at(&out, index, &[]).mean(100, 100, 400, 300));
        assert!(
            g > 200.0 && r < 60.0,
            "frame {index} should be green, is r={r} g={g}"
        );
    }
}

fn f64x3(v: [f64; 3]) -> [f64; 3] {
    v
}

#[test]
fn manual_start_times_out_with_a_clear_error() {
    let base = fixture_server();
    let dir = scratch("manual-timeout");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/static.html"))
        .args(["--manual-start", "--start-timeout", "2", "-q", "-o"])
        .arg(dir.join("x.mp4"));
    let o = run(cmd, Duration::from_secs(60));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("StartTimeout") && stderr(&o).contains("window.startRecord()"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("x.mp4").exists());
}

#[test]
fn odd_sizes_do_not_break_the_encoder() {
    let base = fixture_server();
    let dir = scratch("odd");
    let out = dir.join("odd.mp4");
    record_ok(
        &format!("{base}/animated.html"),
        &out,
        &["--duration", "1", "--width", "641", "--height", "361"],
    );
    let p = probe(&out, &[]);
    assert_eq!((p.width, p.height), (642, 362), "padded to even dimensions");
    assert_eq!(p.frames, 30);
}

#[test]
fn sigterm_finishes_the_file_cleanly() {
    let base = fixture_server();
    let dir = scratch("sigterm");
    let out = dir.join("term.mp4");
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/animated.html"))
        .args(["-q", "-o"])
        .arg(&out);
    let mut rec = spawn_watched(cmd);
    // Wait until recording has begun (its log says so), let it record ~2 s, then ask it to stop.
    rec.wait_for_log(RECORDING_STARTED, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let pid = rec.child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    let (status, log) = rec.finish(Duration::from_secs(60));
    assert!(status.success(), "exit after SIGTERM: {status} {log}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let p = probe(&out, &[]);
    assert!(
        p.duration > 1.0 && p.duration < 5.0,
        "duration {}",
        p.duration
    );
    assert_eq!(p.frames as f64, (p.duration * 30.0).round());
}

/// Chromium's sandbox is on where the environment allows it: as an unprivileged user here (user
/// namespaces are available), `PAGECAST_CHROMIUM_SANDBOX=on` records normally; as root, where
/// Chromium refuses its sandbox, `on` fails with Chromium's reason.
#[test]
fn chromium_runs_sandboxed_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    let base = fixture_server();
    let dir = scratch("sandbox");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.join("out.mp4");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pagecast"))
        .arg("record")
        .arg(format!("{base}/animated.html"))
        .arg("-o")
        .arg(&out)
        .args(["-q", "--duration", "3", "--no-audio"])
        .env("HOME", &dir)
        .env("PAGECAST_CHROMIUM_SANDBOX", "on");
    let o = run(cmd, Duration::from_secs(90));
    assert!(
        o.status.success(),
        "sandboxed recording failed: {}",
        stderr(&o)
    );
    assert_close(probe(&out, &[]).duration, 3.0, 0.1, "sandboxed recording");

    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/animated.html"))
        .arg("-o")
        .arg(dir.join("root.mp4"))
        .args(["-q", "--duration", "2", "--no-audio"])
        .env("PAGECAST_CHROMIUM_SANDBOX", "on");
    let o = run(cmd, Duration::from_secs(90));
    assert!(
        !o.status.success(),
        "Chromium does not sandbox itself as root"
    );
    assert!(stderr(&o).contains("BrowserFailed"), "{}", stderr(&o));
}

#[test]
fn two_recordings_at_once_keep_the_page_moving_when_the_machine_is_overloaded() {
    // Three recordings (this test's two, one of each backend, and whatever test runs beside it)
    // need more than the 2 cores CI has: the encoders fall behind. That must cost frame rate,
    // not freeze the page in the video until the load goes away.
    let base = fixture_server();
    let dir = scratch("overload");
    let backends = ["x11", "screencast"];
    let outs: Vec<_> = backends
        .iter()
        .map(|n| dir.join(format!("{n}.mp4")))
        .collect();
    std::thread::scope(|s| {
        for (out, backend) in outs.iter().zip(backends) {
            let url = format!("{base}/clock.html");
            s.spawn(move || record_ok(&url, out, &["--duration", "12", "--capture", backend]));
        }
    });
    for out in &outs {
        let p = probe(out, &[]);
        assert_close(p.duration, 12.0, 0.27, "duration");
        let a = analyze(out);
        assert!(a["gaps"].as_array().unwrap().is_empty(), "no jump: {a}");
        assert!(
            a["longest_freeze_ms"].as_f64().unwrap() <= 1000.0,
            "the page never stands still for a second: {a}"
        );
        let span = page_clock_span(out, p.frames);
        assert!(
            (11.0..13.0).contains(&span),
            "the page's clock runs on: {span} s"
        );
    }
}
