//! Fault tests for the recording engine: the encoder or the page's renderer dies mid-recording,
//! and the recording goes on in the same output.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Starts `pagecast record` in the background.
fn spawn_record(url: &str, out: &std::path::Path, seconds: u32) -> std::process::Child {
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(url)
        .arg("-o")
        .arg(out)
        .args(["-q", "--duration", &seconds.to_string()]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pagecast")
}

/// Waits until a process matching `pred` runs below `pid`, and returns them all.
fn wait_for_descendants(pid: u32, what: &str, pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found: Vec<u32> = descendants(pid)
            .into_iter()
            .filter(|p| pred(&cmdline(*p)))
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} below pagecast");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finish(child: std::process::Child) -> (String, String) {
    let o = child.wait_with_output().expect("pagecast output");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(
        o.status.success(),
        "pagecast failed ({}): {out} {err}",
        o.status
    );
    (out, err)
}

#[test]
fn a_killed_encoder_is_restarted_and_recording_goes_on() {
    let base = fixture_server();
    let dir = scratch("fault-ffmpeg");
    let out = dir.join("out.mp4");
    let child = spawn_record(&format!("{base}/animated.html"), &out, 9);
    let ffmpeg = wait_for_descendants(child.id(), "ffmpeg", |c| {
        c.contains("ffmpeg") && c.contains("-f segment")
    });
    // Let it complete a couple of segments first.
    std::thread::sleep(Duration::from_secs(4));
    for pid in ffmpeg {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let (stdout, _) = finish(child);
    assert!(stdout.contains("1 encoder restart(s)"), "{stdout}");
    let p = probe(&out, &[]);
    // At most the segment being written (2 s) is lost.
    assert!(
        p.duration >= 9.0 - 2.2 && p.duration <= 9.05,
        "duration {}: {stdout}",
        p.duration
    );
    assert_eq!(
        p.frames as f64,
        (p.duration * 30.0).round(),
        "constant frame rate across the restart"
    );
}

#[test]
fn a_crashed_renderer_is_reopened_and_recording_goes_on() {
    let base = fixture_server();
    let dir = scratch("fault-renderer");
    let out = dir.join("out.mp4");
    let child = spawn_record(&format!("{base}/clock.html"), &out, 9);
    let is_page_renderer =
        |c: &str| c.contains("--type=renderer") && !c.contains("--top-chrome-webui");
    wait_for_descendants(child.id(), "renderer", is_page_renderer);
    std::thread::sleep(Duration::from_secs(3));
    for pid in wait_for_descendants(child.id(), "renderer", is_page_renderer) {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let (stdout, _) = finish(child);
    assert!(stdout.contains("1 page crash(es)"), "{stdout}");
    let p = probe(&out, &[]);
    assert_close(
        p.duration,
        9.0,
        0.27,
        "the recording keeps its length across the crash",
    );
    // The page is back: its clock decodes again in the last second.
    assert!(
        frame_clock_decodes_at(&out, (p.frames - 5) as usize),
        "the reopened page is recorded after the crash"
    );
}
