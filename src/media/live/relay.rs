//! The live relay: follows the recording's segments as its encoder writes them and passes their
//! packets to the pushes that carry the recording's own stream, so a push costs a remux, not an
//! encode. While the recording holds still (a pause, a stall), it splices in a clip of the last
//! picture with silence, one a second, and goes back to the recording at its next segment (a
//! keyframe: the segment in progress refers to pictures the clip replaced).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::push::Pusher;
use super::splice::Splicer;
use super::still::{CLIP_SECONDS, StillSpec, make_clip};
use super::ts::PACKET;
use super::{HOLD_SECONDS, LastPicture, LiveSettings, LiveTargetStats};
use crate::workdir::segment_file_name;

/// How often the segment being written is read.
const TICK: Duration = Duration::from_millis(20);

/// Where the recording's segments are, and how its still clips are made.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) dir: PathBuf,
    pub(crate) first_segment: u64,
    pub(crate) still: StillSpec,
}

/// Reads the segments in order as they grow.
struct Follower {
    dir: PathBuf,
    number: u64,
    file: Option<std::fs::File>,
    /// Bytes of a packet not yet whole.
    partial: Vec<u8>,
}

impl Follower {
    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_file_name(number))
    }

    /// The whole packets written since the last call, each run with whether it starts a
    /// segment. A segment is complete once the next one exists (the encoder closes one before it
    /// opens the next), so the next is looked for before the current is read.
    fn poll(&mut self) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        // Bounded: a burst of segments (a relay that fell behind) is read over a few ticks.
        for _ in 0..8 {
            let mut starts = false;
            if self.file.is_none() {
                match std::fs::File::open(self.path(self.number)) {
                    Ok(f) => {
                        self.file = Some(f);
                        self.partial.clear();
                        starts = true;
                    }
                    // Not written yet, or gone (delivered and removed): skip to a later one.
                    Err(_) if self.path(self.number + 1).exists() => {
                        self.number += 1;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let complete =
                self.path(self.number + 1).exists() || self.path(self.number + 2).exists();
            if let Some(f) = self.file.as_mut() {
                let _ = f.read_to_end(&mut self.partial);
            }
            let whole = self.partial.len() / PACKET * PACKET;
            if whole > 0 || starts {
                let rest = self.partial.split_off(whole);
                let bytes = std::mem::replace(&mut self.partial, rest);
                out.push((starts, bytes));
            }
            if !complete {
                break;
            }
            self.file = None;
            self.number += 1;
        }
        out
    }
}

/// A pause's still picture, sent once a second.
struct Still {
    since: Instant,
    sent: u32,
    clip: Vec<u8>,
}

/// Sends the pieces to the pushes and keeps the current piece for pushes that start in it.
struct Fanout {
    pushers: Vec<Pusher>,
    /// The output since the current piece began (its tables and keyframe first).
    piece: Vec<u8>,
}

impl Fanout {
    fn send(&mut self, bytes: Vec<u8>, starts: bool) {
        if starts {
            self.piece.clear();
        }
        self.piece.extend_from_slice(&bytes);
        if bytes.is_empty() {
            return;
        }
        let chunk: Arc<[u8]> = Arc::from(bytes);
        for p in self.pushers.iter_mut().filter(|p| !p.fresh()) {
            p.send_stream(&chunk, starts);
        }
    }

    /// A push that has just started gets the current piece from its beginning.
    fn start_fresh(&mut self) {
        if self.piece.is_empty() {
            return;
        }
        let mut chunk: Option<Arc<[u8]>> = None;
        for p in self.pushers.iter_mut().filter(|p| p.fresh()) {
            let c = chunk.get_or_insert_with(|| Arc::from(self.piece.as_slice()));
            p.send_stream(c, true);
        }
    }
}

/// Runs the relay until `stop`; then sends what the segments still hold and ends the pushes.
pub(super) async fn run(
    source: Source,
    mut settings: LiveSettings,
    pushers: Vec<(usize, Pusher)>,
    stats: Arc<Mutex<Vec<LiveTargetStats>>>,
    picture: LastPicture,
    stop: CancellationToken,
) {
    let (slots, pushers): (Vec<usize>, Vec<Pusher>) = pushers.into_iter().unzip();
    settings.sound = source.still.encoder.audio;
    let proxy = super::route::proxy_for(pushers.iter().map(Pusher::url), &settings.egress).await;
    let proxy_addr = proxy.as_ref().map(|p| p.addr());
    let mut follow = Follower {
        dir: source.dir.clone(),
        number: source.first_segment,
        file: None,
        partial: Vec::new(),
    };
    let mut splice = Splicer::new(source.still.fps);
    let mut out = Fanout {
        pushers,
        piece: Vec::new(),
    };
    let mut last_data: Option<Instant> = None;
    // While a still runs, the rest of the segment in progress is not sent (the clip replaced
    // the pictures it refers to); the next segment ends the still.
    let mut still: Option<Still> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publish = |out: &Fanout| {
        if let Ok(mut s) = stats.lock() {
            for (slot, p) in slots.iter().zip(&out.pushers) {
                if let Some(s) = s.get_mut(*slot) {
                    *s = p.stats.clone();
                }
            }
        }
    };
    loop {
        let stopping = tokio::select! {
            biased;
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let now = Instant::now();
        for (starts, mut bytes) in follow.poll() {
            last_data = Some(now);
            if starts {
                // A keyframe: after a still, the recording is placed where the stream is.
                splice.begin(still.is_none());
                still = None;
            } else if still.is_some() {
                continue;
            }
            let bytes = splice.process(&mut bytes);
            out.send(bytes, starts);
        }
        if stopping {
            break;
        }
        let held = last_data.is_some_and(|t| now.duration_since(t).as_secs_f64() >= HOLD_SECONDS);
        if still.is_none() && held {
            match still_clip(&source.still, &source.dir, &picture).await {
                Ok(clip) => {
                    still = Some(Still {
                        since: now,
                        sent: 0,
                        clip,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no still picture for the live stream's pause");
                    // Tried again a second later.
                    last_data = Some(now);
                }
            }
        }
        if let Some(s) = still.as_mut() {
            let due = s.since + Duration::from_secs(u64::from(s.sent * CLIP_SECONDS));
            if now >= due {
                let mut clip = s.clip.clone();
                splice.begin_whole(&clip);
                let bytes = splice.process(&mut clip);
                out.send(bytes, true);
                s.sent += 1;
            }
        }
        for p in out.pushers.iter_mut() {
            p.poll(&settings, now, proxy_addr);
        }
        out.start_fresh();
        publish(&out);
    }
    for p in out.pushers.iter_mut() {
        p.finish(Duration::from_secs(5)).await;
    }
    publish(&out);
}

async fn still_clip(
    spec: &StillSpec,
    dir: &Path,
    picture: &LastPicture,
) -> Result<Vec<u8>, String> {
    let last = picture.lock().ok().and_then(|p| p.clone());
    let Some((image, input)) = last else {
        return Err("no picture recorded yet".into());
    };
    make_clip(spec, input, &image, &dir.join(".live-still")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![fill; n * PACKET];
        for p in v.chunks_mut(PACKET) {
            p[0] = 0x47;
        }
        v
    }

    #[test]
    fn segments_are_read_in_order_as_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let seg = |n: u64| dir.path().join(segment_file_name(n));
        let mut f = Follower {
            dir: dir.path().to_path_buf(),
            number: 4,
            file: None,
            partial: Vec::new(),
        };
        assert!(f.poll().is_empty(), "nothing written yet");
        // An older segment (before this recording) is not read.
        std::fs::write(seg(3), packets(1, 3)).unwrap();
        std::fs::write(seg(4), packets(2, 4)).unwrap();
        let got = f.poll();
        assert_eq!(got.len(), 1);
        assert!(got[0].0);
        assert_eq!(got[0].1.len(), 2 * PACKET);
        // Half a packet more: not sent until whole.
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(seg(4))
            .unwrap();
        w.write_all(&packets(1, 4)[..100]).unwrap();
        assert!(f.poll().is_empty());
        w.write_all(&packets(1, 4)[100..]).unwrap();
        let got = f.poll();
        assert_eq!((got[0].0, got[0].1.len()), (false, PACKET));
        // The next segment begins: the rest of the current one, then the new one.
        w.write_all(&packets(1, 4)).unwrap();
        std::fs::write(seg(5), packets(3, 5)).unwrap();
        let got: Vec<(bool, usize)> = f.poll().iter().map(|(s, b)| (*s, b.len())).collect();
        assert_eq!(got, vec![(false, PACKET), (true, 3 * PACKET)]);
        // A segment removed before it was read is skipped.
        std::fs::write(seg(7), packets(1, 7)).unwrap();
        std::fs::write(seg(6), packets(1, 6)).unwrap();
        std::fs::remove_file(seg(6)).unwrap();
        let got: Vec<(bool, u8)> = f.poll().iter().map(|(s, b)| (*s, b[1])).collect();
        assert_eq!(got, vec![(true, 7)]);
    }
}
