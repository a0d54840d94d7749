//! End-to-end: the page's sound, recorded by the real binary through PulseAudio and checked in the
//! file: A/V offsets measured on `av_sync.html` (flash + beep every second), after pauses and a
//! reload, isolation of concurrent recordings, silence, sinks cleaned up on every exit path.
//!
//! The tests take a lock so they run one at a time even under `--test-threads=2`.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Limits on the recorder's own A/V error, in ms: per flash, offset (beep − first white frame,
/// what a viewer sees) plus how late the page painted that flash (read from the frame's clock
/// strip: `av_sync.html` draws each frame for a time it names, and at 30 Hz painting its first
/// white frame can be up to 33 ms after the instant it flashes for; the viewer then sees the
/// page's own lead, which is not the recorder's). A media element has no clock strip: its
/// error is its offset.
///
/// Target (BENCHMARKS.md, A/V sync): mean <= 20 ms, max <= 45 ms, over runs. One run's mean
/// is one draw of what a 30 fps file and a 30 Hz page cannot avoid: a picture stands for its
/// whole 33.3 ms slot, so a change shows up to half a slot (16.7 ms) before or after it reached
/// the screen, by the same amount for every flash of a recording (the page's frames keep their
/// phase to the slot grid); and the page, drawing each frame for one frame interval after its
/// animation frame, cannot know whether Chromium shows a 30 Hz frame one or two 60 Hz paints
/// later (16.7 ms). Measured per-run means (2026-12-07, docs/benchmarks/notebook.md): release
/// build, idle: canvas -3.9, +13.6, +0.3 ms, media element -12.1, +20.1, -10.1 ms; debug build
/// in the suite: +12.9, +4.8, -2.4 ms and once +38.1 ms (every flash of that run +36 to +40).
/// So the limits on the means are those two 16.7 ms plus 11 ms, the target's max: a constant
/// shift of more than that beyond them fails. The max allows the target plus one 60 Hz paint
/// (a flash shown one paint late). The tests run with nothing else on the machine
/// (scripts/run-tests.py). What they catch is what a recorder gets wrong by tens to hundreds of
/// ms: a wrong clock, the monitor's 1.5-2 s start-up delay, drift, or sound cut at the wrong
/// place after a pause or reload. On a machine saturated by other work (load 9-23 on 2 cores,
/// docs/benchmarks/notebook.md) Chromium itself falls out of step and these fail.
///
/// Mean |error| of either page.
const MEAN_ABS_LIMIT_MS: f64 = 45.0;
/// Max |error| of either page.
const MAX_ABS_LIMIT_MS: f64 = 62.0;
/// Mean signed error: no constant shift.
const MEAN_LIMIT_MS: f64 = 45.0;
/// Median |error| of a stretch of a recording (after a resume): as the mean.
const MEDIAN_LIMIT_MS: f64 = 45.0;

/// The tests in this file run one at a time even under `--test-threads=2`: each records with
/// Chromium, and two at once on a 2-core machine measure the machine, not the recorder.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `pagecast analyze --av-sync --json` on a file.
fn av_sync(file: &Path, tones: &[u32]) -> serde_json::Value {
    let mut cmd = pagecast();
    cmd.args(["analyze", "--av-sync", "--json"]).arg(file);
    for t in tones {
        cmd.arg("--tone").arg(t.to_string());
    }
    let o = run(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "analyze failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("analyze json")
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The recorder's errors (offset + the page's lateness) of the pairs whose flash is after
/// `from_s` in the file.
fn errors_after(r: &serde_json::Value, from_s: f64) -> Vec<f64> {
    r["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| f(p, "flash_s") >= from_s)
        .map(|p| f(p, "recorder_error_ms"))
        .collect()
}

fn assert_in_sync(r: &serde_json::Value, what: &str, min_pairs: usize) {
    let pairs = r["pairs"].as_array().unwrap().len();
    eprintln!(
        "{what}: {pairs} pairs, offset mean {:+.1} ms, mean |offset| {:.1} ms, max |offset| {:.1} ms; recorder error mean {:+.1} ms, mean |error| {:.1} ms, max |error| {:.1} ms",
        f(r, "mean_offset_ms"),
        f(r, "mean_abs_offset_ms"),
        f(r, "max_abs_offset_ms"),
        f(r, "mean_recorder_error_ms"),
        f(r, "mean_abs_recorder_error_ms"),
        f(r, "max_abs_recorder_error_ms"),
    );
    assert!(
        pairs >= min_pairs,
        "{what}: only {pairs} flash/beep pairs: {r}"
    );
    assert!(
        f(r, "mean_abs_recorder_error_ms") <= MEAN_ABS_LIMIT_MS,
        "{what}: mean |A/V error| {} ms: {r}",
        f(r, "mean_abs_recorder_error_ms")
    );
    assert!(
        f(r, "max_abs_recorder_error_ms") <= MAX_ABS_LIMIT_MS,
        "{what}: max |A/V error| {} ms: {r}",
        f(r, "max_abs_recorder_error_ms")
    );
    assert!(
        f(r, "mean_recorder_error_ms").abs() <= MEAN_LIMIT_MS,
        "{what}: mean A/V error {} ms: {r}",
        f(r, "mean_recorder_error_ms")
    );
}

fn stream_facts(file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_type,codec_name,sample_rate,channels,duration:format=duration")
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe");
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

fn audio_stream(file: &Path) -> Option<serde_json::Value> {
    stream_facts(file)["streams"]
        .as_array()?
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .cloned()
}

/// The file's sound is AAC 48 kHz stereo and spans the whole video.
fn assert_sound_track(file: &Path, r: &serde_json::Value) {
    let a = audio_stream(file).expect("an audio stream");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
    let (video, audio) = (f(r, "video_s"), f(r, "audio_s"));
    assert!(
        audio >= video - 0.05 && audio <= video + 0.1,
        "the sound ({audio} s) must span the video ({video} s)"
    );
}

#[test]
fn a_30_second_recording_is_in_sync() {
    let _serial = serial();
    let base = fixture_server();
    let dir = scratch("audio-sync");
    let out = dir.join("sync.mp4");
    record_ok(
        &format!("{base}/av_sync.html?freq=1000"),
        &out,
        &["--duration", "30"],
    );
    let r = av_sync(&out, &[1000]);
    assert_sound_track(&out, &r);
    assert_close(f(&r, "video_s"), 30.0, 0.05, "video length");
    assert_in_sync(&r, "30 s", 15);
    let hz = f(&r, "tone_hz");
    assert!((hz - 1000.0).abs() < 10.0, "tone {hz} Hz");
}

#[test]
fn pause_resume_and_reload_keep_sync() {
    let _serial = serial();
    let base = fixture_server();
    let dir = scratch("audio-pause");
    // Paused from 4 s to 6.5 s of page time, reloaded at 9 s; 12 s recorded (pauses excluded).
    let out = dir.join("pause.mp4");
    record_ok(
        &format!("{base}/av_sync.html?freq=1000&pause=4000&resume=6500&refresh=9000"),
        &out,
        &["--duration", "12"],
    );
    let r = av_sync(&out, &[]);
    assert_sound_track(&out, &r);
    assert_close(f(&r, "video_s"), 12.0, 0.05, "video length");
    assert_in_sync(&r, "pause + reload", 7);
    // Flashes after the resume (recorded ~4 s) and after the reload (~6.5 s in the file) are
    // there and in step.
    let after_resume = errors_after(&r, 4.5);
    let after_reload = errors_after(&r, 8.0);
    assert!(
        after_resume.len() >= 5 && after_reload.len() >= 2,
        "flashes after resume {after_resume:?}, after reload {after_reload:?}"
    );
    let mut sorted: Vec<f64> = after_resume.iter().map(|o| o.abs()).collect();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    assert!(
        median <= MEDIAN_LIMIT_MS,
        "median |A/V error| {median} ms after the resume: {after_resume:?}"
    );
}

#[test]
fn a_media_element_is_in_sync() {
    let _serial = serial();
    // A <video> whose picture flashes and whose sound beeps together: Chromium keeps its picture
    // in step with its sound, so this is what a recorded class video looks like.
    let base = fixture_server();
    let dir = scratch("audio-video-element");
    let out = dir.join("element.mp4");
    record_ok(
        &format!("{base}/av_sync_video.html"),
        &out,
        &["--duration", "12"],
    );
    let r = av_sync(&out, &[1000]);
    assert_sound_track(&out, &r);
    assert_in_sync(&r, "media element", 6);
}

/// A private PulseAudio server shared by several pagecast processes (as `--pulse-server`).
struct SharedPulse {
    child: Child,
    dir: PathBuf,
}

impl SharedPulse {
    fn start(name: &str) -> SharedPulse {
        let dir = scratch(name);
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
            ])
            .args(["--realtime=no", "--high-priority=no", "--log-target=stderr"])
            .arg(format!(
                "--load=module-native-protocol-unix socket={}/native auth-anonymous=1",
                dir.display()
            ))
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulseaudio");
        let p = SharedPulse { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.pactl(&["info"]).is_none() {
            assert!(Instant::now() < deadline, "pulseaudio did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn address(&self) -> String {
        format!("unix:{}/native", self.dir.display())
    }

    fn pactl(&self, args: &[&str]) -> Option<String> {
        let o = Command::new("pactl")
            .arg(format!("--server={}", self.address()))
            .args(args)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Names of the sinks pagecast created that still exist.
    fn pagecast_sinks(&self) -> Vec<String> {
        self.pactl(&["list", "short", "sinks"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('\t').nth(1))
            .filter(|n| n.starts_with("pagecast-"))
            .map(String::from)
            .collect()
    }

    fn record(&self, url: &str, out: &Path, extra: &[&str]) -> Command {
        let mut cmd = pagecast();
        cmd.env("PAGECAST_PULSE_SERVER", self.address())
            .arg("record")
            .arg(url)
            .arg("-o")
            .arg(out)
            .arg("-q")
            .args(extra);
        cmd
    }
}

impl Drop for SharedPulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn concurrent_recordings_hear_only_their_own_page() {
    let _serial = serial();
    let base = fixture_server();
    let pulse = SharedPulse::start("audio-pulse-two");
    let dir = scratch("audio-two");
    let small = ["--duration", "8", "--width", "640", "--height", "360"];
    let (a, b) = (dir.join("a700.mp4"), dir.join("b1500.mp4"));
    let mut ca = pulse.record(&format!("{base}/av_sync.html?freq=700"), &a, &small);
    let mut cb = pulse.record(&format!("{base}/av_sync.html?freq=1500"), &b, &small);
    ca.stdout(Stdio::piped()).stderr(Stdio::piped());
    cb.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (pa, pb) = (ca.spawn().unwrap(), cb.spawn().unwrap());
    // While both run, each has its own sink on the shared server.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sinks = pulse.pagecast_sinks();
        if sinks.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected two sinks, saw {sinks:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (p, what) in [(pa, "700 Hz"), (pb, "1500 Hz")] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{what}: {}", stderr(&o));
    }
    let ra = av_sync(&a, &[700, 1500]);
    let rb = av_sync(&b, &[700, 1500]);
    let level = |r: &serde_json::Value, i: usize| r["tone_levels_db"][i][1].as_f64().unwrap();
    eprintln!(
        "700 Hz page: {:.1} / {:.1} dBFS; 1500 Hz page: {:.1} / {:.1} dBFS (at 700 / 1500 Hz)",
        level(&ra, 0),
        level(&ra, 1),
        level(&rb, 0),
        level(&rb, 1)
    );
    assert!(
        level(&ra, 0) > -40.0 && level(&rb, 1) > -40.0,
        "each hears its own tone"
    );
    // The beeps' sharp edges spread a little energy over the whole spectrum (about -60 dBFS at
    // the other frequency); a page heard through the wrong sink would be near -20 dBFS.
    assert!(
        level(&ra, 1) < level(&ra, 0) - 30.0 && level(&ra, 1) < -45.0,
        "the 700 Hz recording hears the other page: {ra}"
    );
    assert!(
        level(&rb, 0) < level(&rb, 1) - 30.0 && level(&rb, 0) < -45.0,
        "the 1500 Hz recording hears the other page: {rb}"
    );
    assert!((f(&ra, "tone_hz") - 700.0).abs() < 10.0, "{ra}");
    assert!((f(&rb, "tone_hz") - 1500.0).abs() < 15.0, "{rb}");
    assert_eq!(
        pulse.pagecast_sinks(),
        Vec::<String>::new(),
        "sinks removed"
    );
}

#[test]
fn a_killed_recording_leaves_no_sink_behind() {
    let _serial = serial();
    let base = fixture_server();
    let pulse = SharedPulse::start("audio-pulse-kill");
    let dir = scratch("audio-kill");
    let mut cmd = pulse.record(
        &format!("{base}/av_sync.html"),
        &dir.join("killed.mp4"),
        &["--duration", "60"],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pulse.pagecast_sinks().is_empty() {
        assert!(Instant::now() < deadline, "no sink appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL: no destructor runs, the sink stays on the shared server...
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let left = pulse.pagecast_sinks();
    assert_eq!(left.len(), 1, "{left:?}");
    // ...until the next pagecast process connects and removes it (its owner is gone).
    let out = dir.join("next.mp4");
    let o = run(
        pulse.record(
            &format!("{base}/av_sync.html?silent=1"),
            &out,
            &["--duration", "1"],
        ),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pulse.pagecast_sinks(), Vec::<String>::new());
}

#[test]
fn a_silent_page_still_has_a_sound_track_of_full_length() {
    let _serial = serial();
    let base = fixture_server();
    let dir = scratch("audio-silent");
    // HLS, to check the sound reaches that format too.
    let out = dir.join("silent.m3u8");
    record_ok(
        &format!("{base}/av_sync.html?silent=1"),
        &out,
        &["--duration", "5"],
    );
    let r = av_sync(&out, &[]);
    assert_sound_track(&out, &r);
    assert!(
        f(&r, "peak_db") < -60.0,
        "silence: peak {} dBFS",
        f(&r, "peak_db")
    );
    assert_eq!(r["beeps"], 0);
    assert!(r["flashes"].as_u64().unwrap() >= 4, "{r}");
}

#[test]
fn no_audio_records_the_picture_only_and_a_missing_pulseaudio_is_named() {
    let _serial = serial();
    let base = fixture_server();
    let dir = scratch("audio-off");
    let out = dir.join("quiet.mp4");
    record_ok(
        &format!("{base}/av_sync.html"),
        &out,
        &["--duration", "2", "--no-audio"],
    );
    assert!(audio_stream(&out).is_none(), "--no-audio: no sound track");

    let mut cmd = pagecast();
    cmd.env("PAGECAST_PULSEAUDIO", "/nonexistent/pulseaudio")
        .env_remove("PAGECAST_PULSE_SERVER")
        .args(["record", &format!("{base}/av_sync.html"), "-o"])
        .arg(dir.join("never.mp4"))
        .args(["-q", "--duration", "1"]);
    let o = run(cmd, Duration::from_secs(60));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error [AudioFailed]") && err.contains("pulseaudio not found"),
        "{err}"
    );
    assert!(
        err.contains("--no-audio"),
        "the message says how to do without: {err}"
    );
}

#[test]
fn service_tasks_record_their_own_sound_or_none() {
    let _serial = serial();
    use serde_json::json;
    use service_support::{describe, fetch_video, ok, service, start_recording, wait_finished};
    let redis = redis_support::TestRedis::start();
    let fixtures = fixture_server();
    // One worker process running two recordings at once: two sinks on its one PulseAudio server.
    let svc = service(&redis, "svc-audio", true, 0, 2);
    let small = |freq: u32, audio: Option<bool>| {
        let mut data = json!({
            "RecordURL": format!("{fixtures}/av_sync.html?freq={freq}"),
            "Width": 640,
            "Height": 360,
        });
        if let Some(a) = audio {
            data["Audio"] = json!(a);
        }
        data
    };
    let a = start_recording(&svc.url, small(700, None));
    let b = start_recording(&svc.url, small(1500, Some(true)));
    std::thread::sleep(Duration::from_secs(5));
    ok(&svc.url, "Stop", &a);
    ok(&svc.url, "Stop", &b);
    let dir = scratch("svc-audio-dl");
    let mut levels = Vec::new();
    for (id, name) in [(&a, "a"), (&b, "b")] {
        let d = wait_finished(&svc.url, id, Duration::from_secs(60));
        assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let file = fetch_video(&d, &sub);
        assert!(audio_stream(&file).is_some(), "task {name} has sound");
        let r = av_sync(&file, &[700, 1500]);
        levels.push((
            r["tone_levels_db"][0][1].as_f64().unwrap(),
            r["tone_levels_db"][1][1].as_f64().unwrap(),
        ));
    }
    eprintln!("service tasks, levels at 700 / 1500 Hz: {levels:?}");
    assert!(levels[0].0 > -40.0 && levels[0].1 < -45.0, "{levels:?}");
    assert!(levels[1].1 > -40.0 && levels[1].0 < -45.0, "{levels:?}");

    let c = start_recording(&svc.url, small(1000, Some(false)));
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &c);
    let d = wait_finished(&svc.url, &c, Duration::from_secs(60));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let sub = dir.join("c");
    std::fs::create_dir_all(&sub).unwrap();
    let file = fetch_video(&d, &sub);
    assert!(
        audio_stream(&file).is_none(),
        "\"Audio\": false records no sound: {}",
        describe(&svc.url, &c)
    );
}

/// Runs `cmd` as the unprivileged user `nobody` (uid and gid 65534, no groups).
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(cmd)
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv (util-linux)")
}

/// The private sound server takes only this user's clients: its socket lies in a 0700
/// directory and it takes no anonymous clients, so another local user cannot list its sinks or
/// record a page's sound; the page is still heard, and the directory is gone when pagecast
/// exits.
#[test]
fn another_user_cannot_reach_the_private_sound_server() {
    let _serial = serial();
    let base = fixture_server();
    let dir = scratch("audio-private");
    let out = dir.join("private.mp4");
    let mut child = pagecast()
        .env_remove("PAGECAST_PULSE_SERVER")
        .args(["record", &format!("{base}/av_sync.html?freq=1000"), "-o"])
        .arg(&out)
        .args(["-q", "--duration", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (module_args, socket) = loop {
        let found = descendants(child.id()).into_iter().find_map(|pid| {
            let c = cmdline(pid);
            let args = c.split("--load=").nth(1)?.to_string();
            let socket = args.split("socket=").nth(1)?.split(' ').next()?.to_string();
            c.contains("pulseaudio").then_some((args, socket))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no private pulseaudio below pagecast"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let socket = PathBuf::from(socket);
    let runtime = socket.parent().unwrap().to_path_buf();
    let server = format!("--server=unix:{}", socket.display());
    // Up for this user.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !Command::new("pactl")
        .args([server.as_str(), "info"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the server does not answer its own user"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!module_args.contains("auth-anonymous=1"), "{module_args}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&runtime), 0o700, "{}", runtime.display());
    assert_eq!(mode(&runtime.join("cookie")), 0o600);
    // Another user: refused, with or without pointing at the cookie, and cannot record it.
    let cookie = format!("PULSE_COOKIE={}", runtime.join("cookie").display());
    for cmd in [
        vec!["pactl", server.as_str(), "info"],
        vec![
            "env",
            cookie.as_str(),
            "pactl",
            server.as_str(),
            "list",
            "short",
            "sinks",
        ],
        vec![
            "timeout",
            "3",
            "parec",
            server.as_str(),
            "--raw",
            "/dev/null",
        ],
    ] {
        let o = as_nobody(&cmd);
        assert!(
            !o.status.success(),
            "{cmd:?} as nobody reached the server: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    let r = av_sync(&out, &[1000]);
    assert_sound_track(&out, &r);
    assert!(r["beeps"].as_u64().unwrap() >= 4, "the page was heard: {r}");
    assert!(
        !runtime.exists(),
        "{} is left after pagecast exited",
        runtime.display()
    );
}
