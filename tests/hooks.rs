//! End-to-end: the page-side controls (pause, resume, refresh, stop) and the frame clock.

mod common;

use common::*;

#[test]
fn pause_and_resume_leave_no_gap_and_no_frozen_stretch() {
    let base = fixture_server();
    let dir = scratch("pause");
    let out = dir.join("pause.mp4");
    // The page pauses at 1.5 s, resumes at 3.5 s and stops the recording at 5.5 s.
    record_ok(
        &format!("{base}/clock.html?pause=1500&resume=3500&stop=5500"),
        &out,
        &[],
    );
    // The page fires its hooks from requestAnimationFrame: on a loaded machine its main thread
    // stalls now and then, which moves a hook by the stall (and shows as a short freeze). The
    // tolerances below allow for stalls of a few hundred ms; the benchmark measures precision.
    let p = probe(&out, &[]);
    assert_close(p.duration, 3.5, 0.5, "recorded time excludes the 2 s pause");
    let a = analyze(&out);
    let gaps = a["gaps"].as_array().unwrap();
    assert_eq!(
        gaps.len(),
        1,
        "exactly one jump in page time, at the pause: {a}"
    );
    // A stall just before the pause repeats the last picture until the hook runs, so the page
    // clock then jumps by the pause minus the stall.
    let jump = gaps[0]["jump_ms"].as_f64().unwrap();
    assert!(
        (1650.0..=2150.0).contains(&jump),
        "the jump is the pause: {jump} ms, not 2000 ms (-350/+150): {a}"
    );
    // Recording through the pause would freeze the picture for the whole 2 s; a loaded CI machine
    // may repeat a few frames, which the benchmark (not this test) measures.
    assert!(
        a["longest_freeze_ms"].as_f64().unwrap() <= 500.0,
        "no frozen stretch: {a}"
    );
}

#[test]
fn refresh_reloads_the_page_and_recording_goes_on() {
    let base = fixture_server();
    let dir = scratch("refresh");
    let out = dir.join("refresh.mp4");
    record_ok(
        &format!("{base}/clock.html?refresh=1500"),
        &out,
        &["--duration", "4"],
    );
    let p = probe(&out, &[]);
    assert_close(p.duration, 4.0, 0.12, "duration");
    let a = analyze(&out);
    // Frames after the reload show the page again (its clock decodes) up to the end.
    assert!(a["decoded"].as_u64().unwrap() >= 100, "{a}");
    let last = frame_clock_decodes_at(&out, 115);
    assert!(last, "the page is visible again after the reload");
    // The page's own load counter: first load before refreshPage() at 1.5 s, second after.
    assert_eq!(
        frame_at(&out, 15, &[]).clock_page_load(),
        Some(1),
        "0.5 s: first load"
    );
    assert_eq!(
        frame_at(&out, 115, &[]).clock_page_load(),
        Some(2),
        "3.8 s: the page was reloaded once"
    );
}

#[test]
fn stop_record_from_the_page_ends_the_recording() {
    let base = fixture_server();
    let dir = scratch("stop");
    let out = dir.join("stop.mp4");
    record_ok(
        &format!("{base}/clock.html?stop=2500"),
        &out,
        &["--duration", "30"],
    );
    let p = probe(&out, &[]);
    assert!(
        p.duration > 1.5 && p.duration < 3.0,
        "stopped by the page after about 2.5 s: {}",
        p.duration
    );
}
