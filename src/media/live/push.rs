//! One push target: its ffmpeg (under the process core), the two writer threads that feed it
//! (pictures on stdin, PCM on fd 3), and the reconnect-with-backoff state machine around them.
//!
//! Nothing here may hold the recording back: pictures are handed over with `try_send`, and a
//! push that cannot take them (its target stalled) drops them and is restarted after a while.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::LiveTargetStats;
use super::route::{Connect, route};
use super::target::{
    AUDIO_FD, LiveSettings, LiveTarget, backoff, push_args, redact_in, redacted_url,
};
use crate::process::{OwnedChild, resolve_program};
use tracing::Instrument;

/// Pictures a push may have waiting for its ffmpeg: JPEG (1 s at 30 fps) or raw (0.5 s; a 720p
/// I420 picture is 1.4 MB, so a stalled target holds at most about 21 MB).
fn push_queue(input: crate::media::encoder::FrameFormat) -> usize {
    match input {
        crate::media::encoder::FrameFormat::Jpeg => 30,
        _ => 15,
    }
}
/// A push that has run this long counts as connected (ffmpeg fails fast on a refused or
/// unreachable target).
const CONNECTED_AFTER: Duration = Duration::from_secs(3);
/// A push that stayed up this long starts its backoff from the beginning when it fails.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Seconds of pictures a push may fail to take before it is restarted.
const STALLED_SECONDS: u32 = 10;

/// The states shown in `Stats.Live[].State`.
pub(super) mod state {
    /// ffmpeg is starting and connecting.
    pub(crate) const CONNECTING: &str = "connecting";
    /// The stream is up.
    pub(crate) const LIVE: &str = "live";
    /// The push failed; it is tried again after a backoff.
    pub(crate) const RETRYING: &str = "retrying";
    /// The recording ended; so did the push.
    pub(crate) const ENDED: &str = "ended";
}

/// What a running push is fed.
enum Input {
    /// Pictures (stdin) and PCM (fd 3), encoded by the push.
    Frames {
        video: SyncSender<Arc<[u8]>>,
        audio: SyncSender<Arc<[u8]>>,
    },
    /// The recording's encoded stream, from the relay.
    Stream(SyncSender<Arc<[u8]>>),
}

struct Running {
    child: OwnedChild,
    input: Input,
    since: Instant,
}

/// One target and its push, restarted as often as it fails.
pub(super) struct Pusher {
    target: LiveTarget,
    running: Option<Running>,
    /// Failures since the push was last stable (drives the backoff).
    failures: u32,
    retry_at: Option<Instant>,
    /// The next attempt's address, being resolved and checked.
    pending: Option<tokio::sync::oneshot::Receiver<Result<Connect, String>>>,
    /// Pictures (or stream chunks) in a row the push could not take.
    dropped: u32,
    /// A stream push started (or lost a chunk) and must be fed from a keyframe on.
    needs_keyframe: bool,
    /// A stream push started and has been given nothing yet.
    fresh: bool,
    pub(super) stats: LiveTargetStats,
}

impl Pusher {
    pub(super) fn new(target: LiveTarget) -> Self {
        let stats = LiveTargetStats {
            url: redacted_url(&target.url),
            state: state::CONNECTING.into(),
            attempts: 0,
            last_error: None,
        };
        Self {
            target,
            running: None,
            failures: 0,
            retry_at: None,
            pending: None,
            dropped: 0,
            needs_keyframe: true,
            fresh: false,
            stats,
        }
    }

    /// Hands one picture and its samples to the push, if it runs and can take them.
    pub(super) fn send(&mut self, image: &Arc<[u8]>, pcm: &Arc<[u8]>) {
        let Some(Running {
            input: Input::Frames { video, audio },
            ..
        }) = self.running.as_ref()
        else {
            return;
        };
        match video.try_send(image.clone()) {
            Ok(()) => {
                self.dropped = 0;
                // Same depth as the picture queue, read by ffmpeg in step with it.
                let _ = audio.try_send(pcm.clone());
            }
            Err(TrySendError::Full(_)) => self.dropped += 1,
            // The writer stopped (ffmpeg is gone): `poll` notices the exit.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Whether this push carries the recording's encoded stream (fed by the relay).
    pub(super) fn copies(&self) -> bool {
        self.target.copies()
    }

    /// Whether a stream push has just started and been given nothing: the relay gives it the
    /// current piece from its start.
    pub(super) fn fresh(&self) -> bool {
        self.running.is_some() && self.fresh
    }

    /// Hands a chunk of the encoded stream to the push; `from_keyframe`: the chunk starts a
    /// piece (its tables and a keyframe), from which a push that lost data can go on.
    pub(super) fn send_stream(&mut self, chunk: &Arc<[u8]>, from_keyframe: bool) {
        let Some(Running {
            input: Input::Stream(tx),
            ..
        }) = self.running.as_ref()
        else {
            return;
        };
        if self.needs_keyframe && !from_keyframe {
            // Counted as lost, so a push that stays stuck is still found stalled.
            self.dropped += 1;
            return;
        }
        match tx.try_send(chunk.clone()) {
            Ok(()) => {
                self.dropped = 0;
                self.needs_keyframe = false;
                self.fresh = false;
            }
            Err(TrySendError::Full(_)) => {
                // The rest of this piece would not decode without the chunk lost.
                self.dropped += 1;
                self.needs_keyframe = true;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The target's URL (secret).
    pub(super) fn url(&self) -> &str {
        &self.target.url
    }

    /// Starts, watches and restarts the push. `now` is the feed's clock; `proxy` the egress
    /// proxy for RTMPS to a name (see `route`).
    pub(super) fn poll(&mut self, s: &LiveSettings, now: Instant, proxy: Option<SocketAddr>) {
        if let Some(run) = self.running.as_mut() {
            let failed = if let Some(status) = run.child.try_wait() {
                let said = redact_in(&last_lines(&run.child.tail().text()), &self.target.url);
                Some(if said.is_empty() {
                    format!("ffmpeg exited with {status}")
                } else {
                    said
                })
            } else if self.dropped > STALLED_SECONDS * s.fps.max(1) {
                Some(format!(
                    "the target took no data for {STALLED_SECONDS} s; reconnecting"
                ))
            } else {
                None
            };
            let up = now.saturating_duration_since(run.since);
            match failed {
                Some(why) => {
                    if up >= STABLE_AFTER {
                        self.failures = 0;
                    }
                    self.fail(why, now);
                }
                None if up >= CONNECTED_AFTER => {
                    self.stats.state = state::LIVE.into();
                    if up >= STABLE_AFTER {
                        self.failures = 0;
                    }
                }
                None => {}
            }
            return;
        }
        if let Some(rx) = self.pending.as_mut() {
            use tokio::sync::oneshot::error::TryRecvError;
            let decided = match rx.try_recv() {
                Ok(decided) => decided,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Closed) => Err("the target's address was not decided".into()),
            };
            self.pending = None;
            let started = decided.and_then(|to| {
                if self.target.copies() {
                    spawn_copy(s, &self.target, &to)
                } else {
                    spawn(s, &self.target, &to)
                }
            });
            match started {
                Ok(run) => {
                    tracing::info!(url = %self.stats.url, attempt = self.stats.attempts, "live push starting");
                    self.running = Some(Running { since: now, ..run });
                    self.dropped = 0;
                    self.needs_keyframe = true;
                    self.fresh = true;
                }
                Err(why) => self.fail(redact_in(&why, &self.target.url), now),
            }
            return;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.stats.attempts += 1;
        self.stats.state = state::CONNECTING.into();
        // Every attempt resolves and checks the target's host again, off the feed's loop (a
        // slow resolver must not hold the other targets back).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (url, policy) = (self.target.url.clone(), s.egress.clone());
        tokio::spawn(
            async move {
                let _ = tx.send(route(&url, &policy, proxy).await);
            }
            .in_current_span(),
        );
        self.pending = Some(rx);
    }

    fn fail(&mut self, why: String, now: Instant) {
        // Dropping the child kills and reaps what is left of ffmpeg; its writers then stop.
        self.running = None;
        self.failures += 1;
        let wait = backoff(self.failures);
        tracing::warn!(url = %self.stats.url, error = %why, retry_in_s = wait.as_secs(), "live push failed; reconnecting after a pause");
        self.retry_at = Some(now + wait);
        self.stats.state = state::RETRYING.into();
        self.stats.last_error = Some(why);
    }

    /// Ends the push: its inputs close, ffmpeg sends what it has and exits (killed after
    /// `limit`).
    pub(super) async fn finish(&mut self, limit: Duration) {
        if let Some(run) = self.running.take() {
            let Running {
                mut child, input, ..
            } = run;
            drop(input);
            let _ = child.wait_or_kill(limit).await;
        }
        self.stats.state = state::ENDED.into();
    }
}

/// The last two of ffmpeg's lines (the error, and what led to it).
fn last_lines(tail: &str) -> String {
    let parts: Vec<&str> = tail.split(" | ").collect();
    parts[parts.len().saturating_sub(2)..].join(" | ")
}

/// Starts the ffmpeg of one attempt (`args`, to where `to` says): stdin piped, and a second
/// input on fd 3 with `pcm`; its lines are logged with the stream key hidden (ffmpeg quotes its
/// output URL in errors).
fn start_ffmpeg(
    s: &LiveSettings,
    target: &LiveTarget,
    to: &Connect,
    args: Vec<String>,
    pcm: bool,
) -> Result<(OwnedChild, std::fs::File, Option<std::io::PipeWriter>), String> {
    let exe = resolve_program("ffmpeg", &s.ffmpeg).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let (url, used) = (target.url.clone(), to.url.clone());
    let log = move |line: &str| {
        tracing::debug!(target: "pagecast::ffmpeg", "{}", redact_in(&redact_in(line, &used), &url));
    };
    let (mut child, pcm_out) = if pcm {
        let (child, out) = OwnedChild::spawn_with_input("ffmpeg", cmd, AUDIO_FD, log)
            .map_err(|e| e.to_string())?;
        (child, Some(out))
    } else {
        let child = OwnedChild::spawn("ffmpeg", cmd, log).map_err(|e| e.to_string())?;
        (child, None)
    };
    let stdin = match child.take_stdin_file() {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(format!("ffmpeg's input: {e}")),
        None => return Err("ffmpeg's input is not a pipe".into()),
    };
    Ok((child, stdin, pcm_out))
}

/// A queue of `depth` buffers and the thread that writes them into `sink` (a pipe ffmpeg
/// reads). The thread ends when the queue closes (the push ends) or ffmpeg stops reading.
fn writer(
    name: &str,
    mut sink: impl Write + Send + 'static,
    depth: usize,
) -> Result<SyncSender<Arc<[u8]>>, String> {
    let (tx, rx) = sync_channel::<Arc<[u8]>>(depth);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(buf) = rx.recv() {
                if sink.write_all(&buf).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("could not start a live writer thread: {e}"))?;
    Ok(tx)
}

/// A push that encodes its own stream: pictures on stdin, PCM on fd 3.
fn spawn(s: &LiveSettings, target: &LiveTarget, to: &Connect) -> Result<Running, String> {
    let (child, stdin, pcm_out) = start_ffmpeg(s, target, to, push_args(s, target, to), true)?;
    let pcm_out = pcm_out.ok_or("ffmpeg's sound input is not a pipe")?;
    let video = writer("live-video", stdin, push_queue(s.input))?;
    let audio = writer("live-audio", pcm_out, push_queue(s.input))?;
    Ok(Running {
        child,
        input: Input::Frames { video, audio },
        since: Instant::now(),
    })
}

/// A push that carries the recording's stream: MPEG-TS chunks from the relay on stdin.
fn spawn_copy(s: &LiveSettings, target: &LiveTarget, to: &Connect) -> Result<Running, String> {
    let args = super::copy::copy_args(to, s.sound, s.ca_file.as_deref());
    let (child, stdin, _) = start_ffmpeg(s, target, to, args, false)?;
    let stream = writer("live-stream", stdin, super::copy::QUEUE)?;
    Ok(Running {
        child,
        input: Input::Stream(stream),
        since: Instant::now(),
    })
}
