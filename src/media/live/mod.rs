//! Live push: the recording's pictures and sound, pushed while it records to up to
//! [`target::MAX_TARGETS`] RTMP, RTMPS or SRT targets.
//!
//! Two kinds of push, each an ffmpeg of its own under the process core, restarted with backoff
//! when its target refuses or drops it:
//!
//! - **The recording's own stream** (the default: no bit rate asked for). The [`relay`] reads the
//!   encoder's segments as they are written (each packet reaches the file as it is encoded) and
//!   the push remuxes them: no second encode. Tee-ing inside the recording's ffmpeg instead would
//!   tie the file to the network (a dropped target would restart the encoder). Pauses, which the
//!   file skips, are bridged with a clip of the last picture ([`still`]), spliced in with the
//!   timestamps moved so the stream's clock runs on ([`splice`]).
//! - **An encode of its own** at the asked `VideoBitrate`/`AudioBitrate`: fed the frames (and
//!   samples) the recording's encoder gets, through [`LiveFeed::offer`], which never waits (a
//!   full queue drops the frame for the live stream only). It keeps its own clock, showing the
//!   last picture with silence while the file holds still. The cost is one more H.264 encode
//!   (BENCHMARKS.md, "Live push").

pub mod target;

mod copy;
mod push;
mod relay;
mod route;
mod splice;
mod still;
mod ts;

pub(crate) use self::relay::Source as RelaySource;
pub(crate) use self::still::StillSpec;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::push::Pusher;
pub use self::target::{LiveSettings, LiveTarget};
use super::encoder::{FrameFormat, SlotMedia};

/// How long the frames may stop (a pause, a stall) before the live stream shows the last
/// picture with silence on its own.
const HOLD_SECONDS: f64 = 1.0;
/// How far ahead of its clock the live stream may get (frames arriving in a burst after a
/// stall it bridged) before frames are dropped to stay on time.
const AHEAD_SECONDS: f64 = 0.5;

/// One push target as Describe shows it (`Stats.Live[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct LiveTargetStats {
    /// The URL with its stream key and query values hidden.
    pub url: String,
    /// `connecting`, `live`, `retrying` or `ended`.
    pub state: String,
    /// Connection attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed (ffmpeg's words, stream key hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the live stream should do now, given how long it has run and how many frames it sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// On time: send what comes.
    OnTime,
    /// The frames stopped: send this many repeats of the last picture (with silence).
    Fill(u64),
    /// Ahead of the clock: drop incoming frames.
    Ahead,
}

/// The live stream's pacing: it should have sent `elapsed * fps` frames, give or take
/// [`HOLD_SECONDS`] behind and [`AHEAD_SECONDS`] ahead.
pub(crate) fn pace(elapsed: f64, sent: u64, fps: u32) -> Pace {
    let fps = f64::from(fps.max(1));
    let behind_limit = ((elapsed - HOLD_SECONDS) * fps).floor();
    if behind_limit > sent as f64 {
        return Pace::Fill(behind_limit as u64 - sent);
    }
    if sent as f64 > ((elapsed + AHEAD_SECONDS) * fps).ceil() {
        return Pace::Ahead;
    }
    Pace::OnTime
}

/// The last picture the recording took, for the relay's still clips.
pub(crate) type LastPicture = Arc<Mutex<Option<(Arc<[u8]>, FrameFormat)>>>;

/// Pushes with their place in `Stats.Live`.
type Slots = Vec<(usize, Pusher)>;

/// The pushes that carry the recording's stream, until the recording says where it is written.
type Waiting = Arc<Mutex<Option<(LiveSettings, Slots)>>>;

/// The live pushes of one recording. Cheap to clone; the pushes end with [`LiveFeed::finish`]
/// (or when every clone is dropped).
#[derive(Clone)]
pub struct LiveFeed {
    /// Frames for the pushes that encode their own stream (`None` if there are none).
    tx: Option<mpsc::Sender<(SlotMedia, FrameFormat)>>,
    /// The relay's pushes, started by [`LiveFeed::follow`].
    waiting: Waiting,
    picture: LastPicture,
    stats: Arc<Mutex<Vec<LiveTargetStats>>>,
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("targets", &self.stats())
            .finish()
    }
}

impl LiveFeed {
    /// Starts pushing to `targets`: those that encode their own stream begin with the first
    /// frame offered, the others once the recording's encoder runs ([`LiveFeed::follow`]).
    pub fn start(settings: LiveSettings, targets: Vec<LiveTarget>) -> Self {
        let fps = settings.fps.max(1);
        let pushers: Vec<Pusher> = targets.into_iter().map(Pusher::new).collect();
        let stats = Arc::new(Mutex::new(
            pushers.iter().map(|p| p.stats.clone()).collect(),
        ));
        let stop = CancellationToken::new();
        let (copying, encoding): (Slots, Slots) = pushers
            .into_iter()
            .enumerate()
            .partition(|(_, p)| p.copies());
        let mut tasks = Vec::new();
        let mut tx = None;
        if !encoding.is_empty() {
            let (sender, rx) = mpsc::channel(fps as usize * 2);
            tx = Some(sender);
            // The pushes log under the caller's span (the task's, with its TaskID).
            tasks.push(tokio::spawn(
                run(settings.clone(), encoding, rx, stats.clone(), stop.clone())
                    .instrument(tracing::Span::current()),
            ));
        }
        let waiting = (!copying.is_empty()).then_some((settings, copying));
        Self {
            tx,
            waiting: Arc::new(Mutex::new(waiting)),
            picture: Arc::default(),
            stats,
            stop,
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// Hands one output frame (and its samples) to the live stream. Never waits. `input` is what
    /// the frame's picture is (the recording decides it once it knows its capture backend).
    pub(crate) fn offer(&self, slot: &SlotMedia, input: FrameFormat) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send((slot.clone(), input));
        }
        if let Ok(mut p) = self.picture.lock() {
            *p = Some((slot.image.clone(), input));
        }
    }

    /// The recording's encoder writes its segments from `source`: the pushes that carry its
    /// stream start (once; an encoder started again continues the numbering they follow).
    pub(crate) fn follow(&self, source: RelaySource) {
        let Some((settings, pushers)) = self.waiting.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let task = tokio::spawn(
            relay::run(
                source,
                settings,
                pushers,
                self.stats.clone(),
                self.picture.clone(),
                self.stop.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
    }

    /// Each target's state.
    pub fn stats(&self) -> Vec<LiveTargetStats> {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Ends every push (each gets a few seconds to send what it has).
    pub async fn finish(&self) {
        self.stop.cancel();
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

async fn run(
    mut settings: LiveSettings,
    pushers: Vec<(usize, Pusher)>,
    mut rx: mpsc::Receiver<(SlotMedia, FrameFormat)>,
    stats: Arc<Mutex<Vec<LiveTargetStats>>>,
    stop: CancellationToken,
) {
    let (slots, mut pushers): (Vec<usize>, Vec<Pusher>) = pushers.into_iter().unzip();
    let fps = settings.fps.max(1);
    let proxy = route::proxy_for(pushers.iter().map(Pusher::url), &settings.egress).await;
    let proxy_addr = proxy.as_ref().map(|p| p.addr());
    let period = Duration::from_secs_f64(1.0 / f64::from(fps));
    let mut began: Option<Instant> = None;
    let mut last: Option<Arc<[u8]>> = None;
    let mut sent: u64 = 0;
    // Silence for the frames that have none (no sound recorded, or the stream holds still).
    let silence: Arc<[u8]> = Arc::from(vec![
        0u8;
        crate::audio::timeline::samples_for_slot(0, fps) * 4
            + 4
    ]);
    let silence_for = |k: u64| -> Arc<[u8]> {
        let n = crate::audio::timeline::samples_for_slot(k, fps) * 4;
        Arc::from(&silence[..n.min(silence.len())])
    };
    let publish = |pushers: &[Pusher]| {
        if let Ok(mut s) = stats.lock() {
            for (slot, p) in slots.iter().zip(pushers) {
                if let Some(s) = s.get_mut(*slot) {
                    *s = p.stats.clone();
                }
            }
        }
    };
    loop {
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            s = rx.recv() => match s {
                Some(s) => Some(s),
                None => break,
            },
            _ = tokio::time::sleep(period) => None,
        };
        let now = Instant::now();
        if let Some((slot, input)) = slot {
            settings.input = input;
            let t0 = *began.get_or_insert(now);
            if pace(now.duration_since(t0).as_secs_f64(), sent, fps) != Pace::Ahead {
                let pcm = slot.pcm.clone().unwrap_or_else(|| silence_for(sent));
                for p in pushers.iter_mut() {
                    p.send(&slot.image, &pcm);
                }
                sent += 1;
            }
            last = Some(slot.image);
        }
        if let (Some(t0), Some(image)) = (began, last.as_ref())
            && let Pace::Fill(n) = pace(now.duration_since(t0).as_secs_f64(), sent, fps)
        {
            // At most 2 s at once: a long stall is caught up over the next rounds.
            for _ in 0..n.min(u64::from(fps) * 2) {
                let pcm = silence_for(sent);
                for p in pushers.iter_mut() {
                    p.send(image, &pcm);
                }
                sent += 1;
            }
        }
        if began.is_some() {
            for p in pushers.iter_mut() {
                p.poll(&settings, now, proxy_addr);
            }
            publish(&pushers);
        }
    }
    for p in pushers.iter_mut() {
        p.finish(Duration::from_secs(5)).await;
    }
    publish(&pushers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_stream_keeps_its_own_clock() {
        // On time, or a little late: nothing to do.
        assert_eq!(pace(1.0, 30, 30), Pace::OnTime);
        assert_eq!(pace(1.9, 30, 30), Pace::OnTime);
        // Frames stopped for more than a second (a pause): the last picture fills the gap.
        assert_eq!(pace(3.0, 30, 30), Pace::Fill(30));
        assert_eq!(pace(10.0, 270, 30), Pace::OnTime);
        // A burst after a stall that was filled: drop what would run ahead.
        assert_eq!(pace(2.0, 75, 30), Pace::OnTime);
        assert_eq!(pace(2.0, 76, 30), Pace::Ahead);
    }
}
