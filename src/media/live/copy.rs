//! A push that carries the recording's own encoded stream: MPEG-TS on its stdin (from the relay),
//! remuxed for its target (FLV for RTMP and RTMPS, MPEG-TS for SRT), nothing encoded.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use super::route::Connect;
use super::target::{LiveSettings, output_args, redact_in};
use crate::process::{OwnedChild, resolve_program};

/// Chunks a push may have waiting (the relay sends one about every 20 ms: 4 s of stream).
pub(super) const QUEUE: usize = 200;

/// ffmpeg's arguments: MPEG-TS in, the same packets out; with silence added as AAC when the
/// recording has no sound (players expect a sound track).
pub(crate) fn copy_args(to: &Connect, sound: bool, ca_file: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostats",
        "-nostdin",
        "-loglevel",
        "level+warning",
        // What to probe before sending: the relay starts each push with a keyframe and the
        // stream's tables, so the parameters are in the first packets; this bounds the wait.
        "-probesize",
        "1000000",
        "-analyzeduration",
        "1000000",
        "-f",
        "mpegts",
        "-i",
        "pipe:0",
    ]
    .map(String::from)
    .to_vec();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    if sound {
        push(&["-map", "0", "-c", "copy"]);
    } else {
        // ffmpeg reads whichever input is behind, so the silence keeps pace with the pictures;
        // it ends with them.
        push(&["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]);
        push(&["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"]);
        push(&["-c:a", "aac", "-b:a", "64k", "-shortest"]);
    }
    a.extend(output_args(to, ca_file));
    a
}

/// A started push: its ffmpeg, and the queue its stdin is written from.
pub(super) type Started = (OwnedChild, SyncSender<Arc<[u8]>>);

/// Starts the push's ffmpeg (to where `to` says) and the thread that writes its stdin.
pub(super) fn spawn(s: &LiveSettings, to: &Connect) -> Result<Started, String> {
    let exe = resolve_program("ffmpeg", &s.ffmpeg).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(copy_args(to, s.sound, s.ca_file.as_deref()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let url = to.url.clone();
    // ffmpeg quotes its output URL in errors: never log the stream key.
    let log = move |line: &str| {
        tracing::debug!(target: "pagecast::ffmpeg", "{}", redact_in(line, &url));
    };
    let mut child = OwnedChild::spawn("ffmpeg", cmd, log).map_err(|e| e.to_string())?;
    let mut stdin = match child.take_stdin_file() {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(format!("ffmpeg's input: {e}")),
        None => return Err("ffmpeg's input is not a pipe".into()),
    };
    let (tx, rx) = sync_channel::<Arc<[u8]>>(QUEUE);
    // The writer ends when its queue closes (the push ends) or ffmpeg stops reading.
    std::thread::Builder::new()
        .name("live-stream".into())
        .spawn(move || {
            while let Ok(chunk) = rx.recv() {
                if stdin.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("could not start a live writer thread: {e}"))?;
    Ok((child, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_remuxed_not_encoded() {
        let t = |url: &str| Connect {
            url: url.into(),
            http_proxy: None,
        };
        let rtmp = copy_args(&t("rtmp://h/app/key"), true, None).join(" ");
        assert!(
            rtmp.contains("-f mpegts -i pipe:0 -map 0 -c copy"),
            "{rtmp}"
        );
        assert!(!rtmp.contains("libx264") && !rtmp.contains("aac"), "{rtmp}");
        assert!(rtmp.ends_with("-f flv rtmp://h/app/key"), "{rtmp}");
        let srt = copy_args(&t("srt://h:9000"), true, None).join(" ");
        assert!(srt.ends_with("-c copy -f mpegts srt://h:9000"), "{srt}");
        // No sound recorded: silence is added, the pictures still copied.
        let silent = copy_args(&t("rtmp://h/app/key"), false, None).join(" ");
        assert!(
            silent
                .contains("-i anullsrc=r=48000:cl=stereo -map 0:v:0 -map 1:a:0 -c:v copy -c:a aac"),
            "{silent}"
        );
        assert!(silent.contains("-shortest"), "{silent}");
    }
}
