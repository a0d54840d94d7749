//! The ffmpeg of a push that carries the recording's own encoded stream: MPEG-TS on its stdin
//! (from the relay), remuxed for its target (FLV for RTMP and RTMPS, MPEG-TS for SRT), nothing
//! encoded.

use std::path::Path;

use super::route::Connect;
use super::target::output_args;

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
