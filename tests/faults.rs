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
    let _machine = alone();
    let base = fixture_server();
    let dir = scratch("fault-ffmpeg");
    let out = dir.join("out.mp4");
    // The clock page: its painted clock shows in the file what the restart cost.
    let child = spawn_record(&format!("{base}/clock.html"), &out, 9);
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
    // Nothing is lost: the frames the killed encoder had not written are replayed to the new
    // one (BENCHMARKS.md, fault recovery: ffmpeg killed, no frame lost, +0.056 s of length).
    // Margin for a loaded 2-core run: 0.3 s (9 frames), well inside the 0.8 s the replay
    // backlog covers at worst at 720p.
    assert!(
        p.duration >= 9.0 - 0.3 && p.duration <= 9.05,
        "duration {}: {stdout}",
        p.duration
    );
    // The restart shows as a short freeze only. BENCHMARKS.md: 100 ms with the release build; the
    // suite's debug build measured 401 ms both on a quiet 2-core machine and under load
    // (2026-12-06), so 600 ms: a restart that lost the replay would freeze for seconds.
    let a = analyze(&out);
    assert!(
        a["decoded"].as_u64().unwrap() >= 260,
        "the clock decodes: {a}"
    );
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 600.0,
        "longest freeze across the encoder restart: {a}"
    );
    // The file's duration includes the sound's encoder delay (about 21 ms) before the first frame.
    assert!(
        (p.frames as f64 - p.duration * 30.0).abs() <= 1.0,
        "constant frame rate across the restart: {} frames in {} s",
        p.frames,
        p.duration
    );
}

#[test]
fn a_crashed_renderer_is_reopened_and_recording_goes_on() {
    let _machine = alone();
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
    // The viewer misses only the reopen (BENCHMARKS.md, fault recovery: renderer killed, 217 ms
    // of freeze; margin 283 ms for a loaded 2-core run).
    let a = analyze(&out);
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 500.0,
        "longest freeze across the renderer crash: {a}"
    );
}

#[test]
fn a_hung_page_is_detected_and_reopened_and_recording_goes_on() {
    let _machine = alone();
    let base = fixture_server();
    let dir = scratch("fault-hang");
    let out = dir.join("out.mp4");
    // The page's main thread spins forever 3 s after it loads; a 2 s watchdog notices.
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/clock.html?hang=3000"))
        .arg("-o")
        .arg(&out)
        .args(["-q", "--duration", "12", "--hang-timeout", "2"]);
    let o = run(cmd, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", stderr(&o));
    assert!(stdout.contains("1 page hang(s)"), "{stdout}");
    assert!(stdout.contains("0 page crash(es)"), "{stdout}");
    let p = probe(&out, &[]);
    assert_close(
        p.duration,
        12.0,
        0.27,
        "the recording keeps its length across the hang",
    );
    // The clock stops while the page hangs and runs again once it is reopened: the longest
    // stretch of identical frames is the hang: at least the 2 s the watchdog waits, and at most
    // that plus 1.5 s (BENCHMARKS.md, fault recovery: 3400 ms of freeze for a 3 s watchdog,
    // i.e. 0.4 s for detection and reload on a quiet machine; 1.1 s more for a loaded 2-core
    // run). Nothing else in the recording stands still that long.
    let a = analyze(&out);
    let freeze = a["longest_freeze_ms"].as_f64().unwrap();
    assert!(
        (1900.0..=3500.0).contains(&freeze),
        "the longest freeze ({freeze} ms) is the hang: {a}"
    );
    assert!(
        frame_clock_decodes_at(&out, (p.frames - 5) as usize),
        "the reopened page is recorded after the hang"
    );
    let span = page_clock_span(&out, p.frames);
    assert!(
        (11.0..13.0).contains(&span),
        "the page's clock runs on after the reopen: {span} s"
    );
}

#[test]
fn a_hostile_page_cannot_open_windows_stall_on_dialogs_download_or_get_permissions() {
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("fault-hostile");
    let out = dir.join("out.mp4");
    // Everywhere a download could land: the browser's profile and work directory (kept), the
    // directory pagecast runs in, the user's home and download folders, the temporary directory.
    let work = dir.join("work");
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let mut shallow = vec![home.clone(), home.join("Downloads"), std::env::temp_dir()];
    shallow.extend(std::env::var_os("XDG_DOWNLOAD_DIR").map(std::path::PathBuf::from));
    let is_download = |p: &std::path::Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pagecast-hostile-download"))
    };
    let downloaded = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = files_below(&dir)
            .into_iter()
            .filter(|p| is_download(p))
            .collect();
        for d in &shallow {
            found.extend(
                std::fs::read_dir(d)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_download(p)),
            );
        }
        found
    };
    for stale in downloaded() {
        let _ = std::fs::remove_file(stale);
    }
    let mut cmd = pagecast();
    cmd.arg("record")
        .arg(format!("{base}/hostile.html"))
        .arg("-o")
        .arg(&out)
        .args(["-q", "--duration", "6", "--keep-work-dir", "--work-dir"])
        .arg(&work)
        .current_dir(&cwd);
    let o = run(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !files_below(&work).is_empty(),
        "the work directory was kept for the download check"
    );
    let p = probe(&out, &[]);
    // The page turns green only if window.open gave nothing, alert/confirm/prompt returned at
    // once (dismissed), and the permission requests were denied.
    let [r, g, b] = frame_at(&out, (p.frames - 1) as usize, &[]).mean(400, 300, 400, 300);
    assert!(
        g > 150.0 && r < 80.0 && b < 80.0,
        "the page reports something got through (r={r} g={g} b={b}); see {}",
        out.display()
    );
    let found = downloaded();
    assert!(found.is_empty(), "the page downloaded a file: {found:?}");
}

#[test]
fn a_dead_browser_is_replaced_and_recording_goes_on() {
    let _machine = alone();
    let base = fixture_server();
    let dir = scratch("fault-browser");
    let out = dir.join("out.mp4");
    // Long enough that a new browser has the page again well before the end, even when
    // another recording shares the 2 cores.
    let child = spawn_record(&format!("{base}/clock.html"), &out, 20);
    // Chromium's main process is the one without a --type= (renderer, gpu-process, zygote...).
    let is_browser =
        |c: &str| c.contains("chromium") && !c.contains("--type=") && !c.contains("crashpad");
    wait_for_descendants(child.id(), "the browser", is_browser);
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    for pid in wait_for_descendants(child.id(), "the browser", is_browser) {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let (stdout, _) = finish(child);
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    assert!(stdout.contains("1 browser restart(s)"), "{stdout}");
    let p = probe(&out, &[]);
    assert_close(
        p.duration,
        20.0,
        0.27,
        "the recording keeps its length across the browser's death",
    );
    // A new browser shows the page again: its clock decodes in the last frames and has moved on
    // by the recording's length (the gap repeated the last frame, so no time is skipped).
    assert!(
        frame_clock_decodes_at(&out, (p.frames - 5) as usize),
        "the page is recorded again after the new browser opened it"
    );
    let span = page_clock_span(&out, p.frames);
    assert!(
        (19.0..21.0).contains(&span),
        "the page's clock runs on in the new browser: {span} s"
    );
    // The viewer misses only the new browser's start and load (BENCHMARKS.md, fault recovery:
    // browser killed, 850 ms of freeze; margin 650 ms for a loaded 2-core run).
    let a = analyze(&out);
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 1500.0,
        "longest freeze across the browser's death: {a}"
    );
}

/// The browser's restart budget (3) with new browsers killed while they start: the first
/// browser is killed mid-recording, then the next two as soon as their process appears (before
/// they can take the page). Each is one death, counted once; the fourth browser records on, and
/// the file keeps its length. (Before the fix a new browser that failed to start ended the
/// recording at once: two deaths, not four, ended it.)
#[test]
fn browsers_killed_while_they_start_are_each_one_death_within_the_budget() {
    let _machine = alone();
    let base = fixture_server();
    let dir = scratch("fault-relaunch");
    let out = dir.join("out.mp4");
    let mut child = spawn_record(&format!("{base}/clock.html"), &out, 20);
    let is_browser =
        |c: &str| c.contains("chromium") && !c.contains("--type=") && !c.contains("crashpad");
    let mut killed = wait_for_descendants(child.id(), "the browser", is_browser);
    std::thread::sleep(Duration::from_secs(3));
    let kill = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    };
    killed.iter().for_each(|p| kill(*p));
    for relaunch in 1..=2 {
        // Watched closely: the new browser dies while it starts, not after it took the page.
        let deadline = Instant::now() + Duration::from_secs(20);
        let new = loop {
            let new: Vec<u32> = descendants(child.id())
                .into_iter()
                .filter(|p| !killed.contains(p) && is_browser(&cmdline(*p)))
                .collect();
            if !new.is_empty() {
                break new;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let o = child.wait_with_output().unwrap();
                panic!(
                    "the recording ended ({status}) after {relaunch} browser deaths: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "relaunch {relaunch}: no new browser within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        new.iter().for_each(|p| kill(*p));
        killed.extend(new);
    }
    let (stdout, _) = finish(child);
    assert!(stdout.contains("3 browser restart(s)"), "{stdout}");
    let p = probe(&out, &[]);
    assert_close(
        p.duration,
        20.0,
        0.27,
        "the recording keeps its length across three browser deaths",
    );
    assert!(
        frame_clock_decodes_at(&out, (p.frames - 5) as usize),
        "the fourth browser shows the page"
    );
}

/// Every file below `dir`, recursively.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The browser's profile (cookies, storage) and its crash dumps (a minidump carries the page's
/// origin) do not outlive the recording: a hung page's renderer is crashed to end the hang,
/// which makes Chromium write a dump, yet afterwards neither the kept work directory nor the
/// user's home holds a profile or a dump.
#[test]
fn a_recordings_profile_and_crash_dumps_are_removed_when_it_ends() {
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("fault-profile");
    let home = dir.join("home");
    let work = dir.join("work");
    std::fs::create_dir_all(&home).unwrap();
    // Positive control: while the recording runs, a watcher notes every minidump that appears
    // anywhere below the test's directory (the profile is inside the kept work directory), so
    // the test knows that a dump was written before it checks that none is left.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for p in files_below(&dir) {
                    if p.to_string_lossy().ends_with(".dmp") {
                        seen.insert(p);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let mut cmd = pagecast();
    cmd.env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .arg("record")
        .arg(format!("{base}/clock.html?hang=2000"))
        .arg("-o")
        .arg(dir.join("out.mp4"))
        .args(["-q", "--duration", "8", "--hang-timeout", "2", "--no-audio"])
        .args(["--keep-work-dir", "--work-dir"])
        .arg(&work);
    let o = run(cmd, Duration::from_secs(90));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let dumps_written = watcher.join().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", stderr(&o));
    assert!(stdout.contains("1 page hang(s)"), "{stdout}");
    assert!(
        dumps_written
            .iter()
            .any(|p| p.to_string_lossy().contains("browser-profile")),
        "the crashed renderer wrote a minidump into the profile while recording: {dumps_written:#?}"
    );
    let kept: Vec<_> = files_below(&work);
    assert!(
        kept.iter()
            .any(|p| p.extension().is_some_and(|e| e == "ts")),
        "the work directory was kept: {kept:#?}"
    );
    let profiles: Vec<_> = kept
        .iter()
        .filter(|p| p.to_string_lossy().contains("browser-profile"))
        .collect();
    assert!(profiles.is_empty(), "profile left behind: {profiles:#?}");
    let dumps: Vec<_> = files_below(&dir)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.ends_with(".dmp") || s.contains("Crash Reports")
        })
        .collect();
    assert!(dumps.is_empty(), "crash dumps left behind: {dumps:#?}");
}

/// A page that prints (itself, then through a fresh iframe, which a replaced `window.print`
/// does not cover) is recorded on: no print preview covers it, and its clock runs throughout.
#[test]
fn a_page_calling_print_keeps_being_recorded() {
    let _machine = beside_others();
    let base = fixture_server();
    let dir = scratch("fault-print");
    let out = dir.join("out.mp4");
    record_ok(
        &format!("{base}/clock.html?print=2000&printframe=4000"),
        &out,
        &["--duration", "8", "--no-audio"],
    );
    let p = probe(&out, &[]);
    assert_close(p.duration, 8.0, 0.2, "duration");
    let a = analyze(&out);
    assert!(
        a["decoded"].as_u64().unwrap() >= p.frames - 3,
        "the page's clock is visible in every frame (a print preview hides it): {a}"
    );
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 500.0,
        "the page moves throughout: {a}"
    );
    let span = page_clock_span(&out, p.frames);
    assert!((7.5..8.5).contains(&span), "page time runs on: {span} s");
}

/// A page that allocates without bound ends its recording with PageOutOfMemory at the cap
/// (`PAGECAST_PAGE_MEMORY_MB`), whether it grows memory outside the JavaScript heap (typed
/// arrays: the watchdog on the browser's memory ends it) or the heap itself (V8's limit crashes
/// the renderer, which says why); what was recorded is written, and the browser profile is
/// removed on this failure path too.
#[test]
fn a_page_taking_more_memory_than_the_cap_ends_with_page_out_of_memory() {
    let _machine = beside_others();
    let base = fixture_server();
    for (kind, says) in [("buffer", "the page used"), ("heap", "ran out of memory")] {
        let dir = scratch(&format!("fault-memory-{kind}"));
        let out = dir.join("out.mp4");
        let work = dir.join("work");
        let began = Instant::now();
        let mut cmd = pagecast();
        cmd.env("PAGECAST_PAGE_MEMORY_MB", "1024")
            .arg("record")
            // At most 3 GB, should the cap fail.
            .arg(format!("{base}/memory_hog.html?kind={kind}&max=3000"))
            .arg("-o")
            .arg(&out)
            .args(["-q", "--duration", "40", "--no-audio", "--keep-work-dir"])
            .arg("--work-dir")
            .arg(&work);
        let o = run(cmd, Duration::from_secs(120));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{kind}: {err}");
        assert!(
            err.contains("error [PageOutOfMemory]")
                && err.contains(says)
                && err.contains("PAGECAST_PAGE_MEMORY_MB=1024"),
            "{kind}: {err}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(35),
            "{kind}: ended at the cap, not at the duration: {:?}",
            began.elapsed()
        );
        // What was recorded before is delivered, and only that (no padding to --duration).
        let p = probe(&out, &[]);
        assert!(
            (1.5..40.0).contains(&p.duration),
            "{kind}: {} s",
            p.duration
        );
        let profiles: Vec<_> = files_below(&work)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("browser-profile"))
            .collect();
        assert!(profiles.is_empty(), "{kind}: {profiles:#?}");
    }
}
