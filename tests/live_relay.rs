//! A push of the recording's own stream (the relay) across a pause, end to end: `pagecast
//! record --live srt://…` on a page that pauses and resumes itself, received by a real SRT
//! listener (ffmpeg), and the received stream checked packet by packet and decoded.

mod common;
#[path = "support/srt.rs"]
mod srt_support;

use std::process::Command;
use std::time::Instant;

use common::*;
use srt_support::SrtListener;

/// One packet of a transport stream file as ffprobe reads it.
struct Packet {
    stream: u32,
    dts: f64,
    duration: f64,
    key: bool,
}

fn packets(path: &std::path::Path) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args(["packet=stream_index,dts_time,duration_time,flags"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(Packet {
                stream: f.first()?.parse().ok()?,
                dts: f.get(1)?.parse().ok()?,
                duration: f.get(2)?.parse().ok()?,
                key: f.get(3)?.starts_with('K'),
            })
        })
        .collect()
}

#[test]
fn a_pause_is_bridged_in_the_pushed_stream_without_a_jump() {
    let fixtures = fixture_server();
    let dir = scratch("live-relay");
    let listener = SrtListener::start(&dir);
    let port = listener.port;
    // The page pauses itself 3 s after it loads and resumes 4 s later; 8 s are recorded.
    let out = dir.join("out.mp4");
    let began = Instant::now();
    record_ok(
        &format!("{fixtures}/clock.html?pause=3000&resume=7000"),
        &out,
        &[
            "--duration",
            "8",
            "--live",
            &format!("srt://127.0.0.1:{port}?latency=200000"),
        ],
    );
    let wall = began.elapsed().as_secs_f64();
    let received = listener.finish();
    let recorded = probe(&out, &[]).duration;
    assert_close(recorded, 8.0, 0.3, "the file has no paused stretch");

    let p = packets(&received);
    let video: Vec<&Packet> = p.iter().filter(|x| x.stream == 0).collect();
    let audio: Vec<&Packet> = p.iter().filter(|x| x.stream == 1).collect();
    assert!(
        video.len() > 100 && audio.len() > 20,
        "{} video, {} audio packets",
        video.len(),
        audio.len()
    );
    // The stream's clock never goes back, and the pictures have no hole: the pause is filled
    // with the still picture, spliced in to the frame.
    let holes = |t: &[&Packet]| -> Vec<f64> {
        t.windows(2)
            .map(|w| w[1].dts - (w[0].dts + w[0].duration))
            .filter(|h| *h > 0.05)
            .collect()
    };
    for (name, t) in [("video", &video), ("audio", &audio)] {
        let back = t.windows(2).filter(|w| w[1].dts <= w[0].dts).count();
        assert_eq!(back, 0, "{name} timestamps go back {back} times");
    }
    assert_eq!(holes(&video), Vec::<f64>::new(), "holes in the pictures");
    // Nor the sound, but where the pause began: the sound the encoder's muxer still held then
    // (it writes sound in runs of up to 0.35 s) is not in the segment the relay reads.
    let sound = holes(&audio);
    assert!(
        sound.len() <= 1 && sound.iter().all(|h| *h <= 0.4),
        "holes in the sound: {sound:?}"
    );
    // It spans the recording and the pause: 8 s recorded plus 4 s paused (the wall time of the
    // run bounds it from above). Without the bridge it would span at most the 8 s recorded; the
    // listener may miss the first second or so when the push connects on a loaded machine
    // (11.00 s was measured once in the suite's pool), so more than 10.5 s shows the bridge.
    let span = video.last().unwrap().dts - video.first().unwrap().dts;
    assert!(
        span > 10.5 && span < wall,
        "the stream spans {span:.2} s (run took {wall:.1} s)"
    );
    // The still picture starts with a keyframe; the recording's next segment too.
    let keys = video.iter().filter(|x| x.key).count();
    assert!(keys >= 6, "{keys} keyframes");
    // Everything decodes.
    let decoded = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", "error", "-i"])
        .arg(&received)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&decoded.stderr).to_string();
    assert!(errors.trim().is_empty(), "decoding the stream: {errors}");
}
