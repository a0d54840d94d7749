//! One recording's audio path: a fresh null sink, `parec` reading its monitor, and the timeline
//! the samples are placed on as they arrive.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io::Read;

use tracing::{debug, warn};

use super::AudioError;
use super::pulse::{AudioSettings, Sink, server};
use super::timeline::{AudioTimeline, CHANNELS, RATE};
use crate::clock::wall_now;
use crate::process::OwnedChild;

/// A running capture. Dropping it stops `parec` and removes the sink.
pub(crate) struct AudioCapture {
    // Field order is drop order: parec goes (and with it the reader thread, at end of file)
    // before the sink is unloaded.
    parec: OwnedChild,
    timeline: Arc<Mutex<AudioTimeline>>,
    sink: Sink,
}

impl std::fmt::Debug for AudioCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioCapture")
            .field("sink", &self.sink.name())
            .finish()
    }
}

impl AudioCapture {
    /// Creates the recording's sink and starts recording its monitor.
    pub(crate) async fn start(settings: &AudioSettings) -> Result<Self, AudioError> {
        let server = server(settings).await?;
        let sink = Sink::create(server.clone()).await?;
        let mut cmd = tokio::process::Command::new(server.parec());
        cmd.envs(server.client_env())
            .arg(format!("--server={}", server.address()))
            .arg(format!("--device={}.monitor", sink.name()))
            .args([
                "--raw",
                "--format=s16le",
                &format!("--rate={RATE}"),
                &format!("--channels={CHANNELS}"),
                // Small fragments: each arrival time bounds the samples' play time tightly.
                "--latency-msec=10",
                "--client-name=pagecast",
            ])
            .arg(format!("--stream-name={}", sink.name()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut parec = OwnedChild::spawn("parec", cmd, |_| {})?;
        let stdout = parec
            .take_stdout_file()
            .ok_or_else(|| AudioError::Sink("parec's output was not captured".into()))?
            .map_err(|e| AudioError::Sink(format!("parec's output: {e}")))?;
        let timeline = Arc::new(Mutex::new(AudioTimeline::new()));
        // A thread of its own: arrival times are the measurement, so reads must not wait for a
        // busy async runtime. It ends when parec does.
        let shared = timeline.clone();
        std::thread::Builder::new()
            .name("parec-reader".into())
            .spawn(move || read_into(stdout, shared))
            .map_err(|e| AudioError::Sink(format!("could not start the capture thread: {e}")))?;
        debug!(sink = %sink.name(), "audio capture started");
        Ok(Self {
            parec,
            timeline,
            sink,
        })
    }

    /// Environment that routes a browser's sound into this capture's sink.
    pub(crate) fn browser_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PULSE_SERVER".to_string(),
                self.sink.server().address().to_string(),
            ),
            ("PULSE_SINK".to_string(), self.sink.name().to_string()),
        ];
        env.extend(self.sink.server().client_env());
        env
    }

    /// The sink's name.
    pub(crate) fn sink_name(&self) -> &str {
        self.sink.name()
    }

    /// Waits (up to `limit`) until audio flows, restarting the fresh sink's timer so that it
    /// does at once. Returns whether it flows.
    pub(crate) async fn wait_until_live(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut next_kick = Instant::now() + Duration::from_millis(100);
        loop {
            if self.has_data() {
                return true;
            }
            if Instant::now() >= deadline {
                warn!(sink = %self.sink.name(), tail = %self.parec.tail().text(),
                    "no audio arrived within {} s; the recording starts with silence", limit.as_secs_f64());
                return false;
            }
            if Instant::now() >= next_kick {
                if let Err(e) = self.sink.kick().await {
                    debug!(error = %e, "could not restart the sink's timer");
                }
                next_kick = Instant::now() + Duration::from_millis(300);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn has_data(&self) -> bool {
        self.timeline.lock().map(|t| t.has_data()).unwrap_or(false)
    }

    /// Exactly `n` sample frames (s16le stereo) played from wall time `start` on.
    pub(crate) fn take(&self, start: f64, n: usize) -> Vec<u8> {
        match self.timeline.lock() {
            Ok(mut t) => t.take(start, n),
            Err(_) => vec![0; n * super::timeline::FRAME_BYTES],
        }
    }

    /// Whether parec is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.parec.try_wait().is_none()
    }
}

/// Reads parec's output, stamping every chunk with its arrival on the wall clock.
fn read_into(mut out: std::fs::File, timeline: Arc<Mutex<AudioTimeline>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match out.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let now = wall_now();
                if let Ok(mut t) = timeline.lock() {
                    t.push(&buf[..n], now);
                    if t.chunks() % 100 == 0 {
                        tracing::trace!(target: "pagecast::timing", t0 = t.t0(), lag_ms = t.newest().map(|n| (now - n) * 1000.0), "audio");
                    }
                }
            }
        }
    }
    debug!("audio capture ended");
}
