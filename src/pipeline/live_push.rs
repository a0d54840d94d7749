//! `Output.Live` for the record stage: the task's push targets (full URLs from its secrets)
//! turned into a running [`LiveFeed`].

use tracing::warn;

use super::WorkerContext;
use crate::media::encoder::FrameFormat;
use crate::media::live::{LiveFeed, LiveSettings, LiveTarget};
use crate::task::TaskRecord;

/// The live pushes of `task`, started (they begin with its first recorded frame); `None`
/// without `Output.Live`. Targets whose URL cannot be read from the task's secrets are skipped
/// (with a warning): the recording never fails for its live stream.
pub(super) async fn feed_for(ctx: &WorkerContext, task: &TaskRecord) -> Option<LiveFeed> {
    let specs = &task.spec.output.live;
    if specs.is_empty() {
        return None;
    }
    let urls = match ctx.store.secrets(&task.id).await {
        Ok(s) => s.live_urls,
        Err(e) => {
            warn!(error = %e, "the live targets' URLs could not be read; no live push");
            return None;
        }
    };
    if urls.len() != specs.len() {
        warn!(
            targets = specs.len(),
            urls = urls.len(),
            "the live targets' URLs are missing; no live push"
        );
        return None;
    }
    let targets = specs
        .iter()
        .zip(urls)
        .map(|(spec, url)| LiveTarget {
            url,
            video_kbps: spec.video_kbps,
            audio_kbps: spec.audio_kbps,
        })
        .collect();
    let rec = &ctx.cfg.recorder;
    let settings = LiveSettings {
        ffmpeg: rec.ffmpeg.clone(),
        preset: rec.live_preset.clone(),
        width: task.spec.width,
        height: task.spec.height,
        fps: task.spec.fps,
        // Set from the recording's first frame.
        input: FrameFormat::Jpeg,
        // Set from the recording's encoder.
        sound: true,
        egress: ctx.cfg.url_policy(),
        ca_file: crate::tls::ffmpeg_ca_file(),
    };
    Some(LiveFeed::start(settings, targets))
}
