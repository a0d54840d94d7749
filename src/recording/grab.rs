//! The `x11` capture backend's frame source: reads the recording's virtual display (where a
//! headful Chromium paints) once per output slot.
//!
//! Each grab is one X `GetImage` of the whole screen, into memory shared with the server
//! (MIT-SHM) where the server allows it, else over the socket. The X server handles one request
//! at a time, so a grab never sees half of a paint. Grabs are aligned to the pacer's slot grid
//! (`align`), so every slot gets one picture: no frame is stamped late, skipped or shown twice
//! because two clocks beat against each other.
//!
//! Each slot's grab is taken half a slot after the slot instant, in the middle of the time the
//! frame is on screen when the video plays (from its slot instant to the next), while the slot's
//! sound starts at its instant. A screen change at time `t` then first shows in the slot whose
//! instant is nearest `t` (within half a slot either way, no bias). Grabbing on the slot instant
//! itself shows every change up to a whole slot late, half a slot (16.7 ms at 30 fps) on
//! average, so the sound came early against the picture by that much.
//!
//! Grab instants are moved a few ms off those mid-slot instants to where the browser's paints
//! do not land (`paint_phase`): the X server's DAMAGE events say when the screen changes.
//!
//! The grabber runs on its own thread: a busy recorder or encoder cannot delay a grab. When the
//! recorder does not keep up, grabs are dropped (the pacer repeats the previous picture) rather
//! than queued without bound.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use x11rb::connection::{Connection, RequestConnection as _};
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
use x11rb::rust_connection::RustConnection;

use super::paint_phase::GrabOffset;
use crate::clock::wall_now;
use crate::media::delta::Chain;
use crate::media::pacer::Frame;

/// What the grab thread and its owner share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// While set, nothing is grabbed (the browser is being replaced or the page reopened).
    hold: AtomicBool,
    /// `f64` bits of an instant that grabs are aligned to (0: not aligned yet).
    phase: AtomicU64,
    /// Grabs dropped because the recorder had not taken the previous ones.
    dropped: AtomicU64,
    failure: Mutex<Option<String>>,
    /// Wakes the grab thread when `phase` or `stop` change (an eventfd), so that it does not
    /// sleep through them until a grab instant of the old grid.
    wake: Wake,
}

/// An eventfd that one side signals and the grab thread waits on beside the X connection.
#[derive(Debug)]
struct Wake(Option<std::os::fd::OwnedFd>);

impl Default for Wake {
    fn default() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers; a valid result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // Without one (descriptors exhausted), grabs wait out their old instant as before.
        // SAFETY: a non-negative result is a descriptor nothing else owns.
        Self((fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }
}

impl Wake {
    fn signal(&self) {
        use std::os::fd::AsRawFd;
        if let Some(fd) = &self.0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our own eventfd.
            unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Clears the signal; whether there was one.
    fn take(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else { return false };
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our own non-blocking eventfd.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) == 8 }
    }
}

/// Reads the screen of an X display at a fixed rate; stops when dropped.
#[derive(Debug)]
pub(super) struct DisplayGrabber {
    shared: Arc<Shared>,
}

impl DisplayGrabber {
    /// Connects to `display` (with its cookie) and starts grabbing its top-left `width`×`height` pixels `fps`
    /// times a second into `frames`, as BGRX or (`i420`) converted to I420. Fails at once if
    /// the display cannot be opened or is smaller.
    pub(super) fn start(
        display: &crate::browser::VirtualDisplay,
        width: u32,
        height: u32,
        fps: u32,
        i420: bool,
        frames: mpsc::Sender<Frame>,
    ) -> Result<Self, String> {
        let (conn, screen) = display.connect()?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .ok_or("the display has no screen")?;
        let (w, h) = (root.width_in_pixels, root.height_in_pixels);
        if u32::from(w) < width || u32::from(h) < height {
            return Err(format!(
                "the display is {w}x{h}, smaller than the recording's {width}x{height}"
            ));
        }
        // The top-left width×height pixels are the picture.
        let (w, h) = (width as u16, height as u16);
        let root = root.root;
        let len = usize::from(w) * usize::from(h) * 4;
        let shm = match ShmSegment::attach(&conn, len) {
            Ok(seg) => Some(seg),
            Err(why) => {
                tracing::info!(%why, "no shared memory with the X server; grabbing over its socket");
                None
            }
        };
        let damage = match watch_paints(&conn, root) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(%why, "no DAMAGE events from the X server; grabbing in the middle of each slot");
                false
            }
        };
        let shared = Arc::new(Shared::default());
        let grab = Grab {
            conn,
            shm,
            damage,
            offset: GrabOffset::default(),
            chain: Chain::default(),
            root,
            width: w,
            height: h,
            i420,
            period: 1.0 / f64::from(fps.max(1)),
            shared: shared.clone(),
            frames,
        };
        std::thread::Builder::new()
            .name("x11-grab".into())
            .spawn(move || grab.run())
            .map_err(|e| format!("cannot start the grab thread: {e}"))?;
        Ok(Self { shared })
    }

    /// Grabs at `instant + k / fps` from now on (the pacer's slot instants).
    pub(super) fn align(&self, instant: f64) {
        self.shared
            .phase
            .store(instant.to_bits(), Ordering::Relaxed);
        self.shared.wake.signal();
    }

    /// Stops (`true`) or resumes (`false`) grabbing, e.g. while a new browser starts.
    pub(super) fn hold(&self, on: bool) {
        self.shared.hold.store(on, Ordering::Relaxed);
    }

    /// A handle that resumes grabbing later (from a task that waits for a page to reopen).
    pub(super) fn release_handle(&self) -> impl FnOnce() + Send + 'static {
        let shared = self.shared.clone();
        move || shared.hold.store(false, Ordering::Relaxed)
    }

    /// Why grabbing stopped (the display went away), once it has.
    pub(super) fn failure(&self) -> Option<String> {
        self.shared.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Grabs dropped because the recorder was behind.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for DisplayGrabber {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.signal();
    }
}

/// The grab thread's state.
struct Grab {
    conn: RustConnection,
    shm: Option<ShmSegment>,
    /// Whether the server reports paints (DAMAGE events) on `conn`.
    damage: bool,
    offset: GrabOffset,
    /// The grabs as the pacer holds them: each as its differences from the one before.
    chain: Chain,
    root: u32,
    width: u16,
    height: u16,
    /// Frames are I420 (converted from the grab) rather than the grab's BGRX.
    i420: bool,
    period: f64,
    shared: Arc<Shared>,
    frames: mpsc::Sender<Frame>,
}

impl Grab {
    fn run(mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = wall_now();
            // Half a slot after each slot instant: the middle of the time its frame is shown.
            let centre = self.period / 2.0;
            let phase = f64::from_bits(self.shared.phase.load(Ordering::Relaxed)) + centre;
            let offset = self.offset.choose(phase, self.period, now);
            let due = next_instant(phase + offset, self.period, now);
            let realigned = self.wait_until(due);
            if self.shared.stop.load(Ordering::Relaxed) {
                return;
            }
            if realigned {
                // The grid moved (the recording started or resumed): a grab now would stand
                // for an instant of the old grid, and at the start the first slot's own grab
                // would then come too late and see the same paint as the second's.
                continue;
            }
            if self.shared.hold.load(Ordering::Relaxed) {
                continue;
            }
            let at = wall_now();
            let image = match self.read_screen() {
                Ok(image) => image,
                Err(e) => return self.fail(e),
            };
            // Paints reported while the grab was read coincided with it.
            self.note_paints(Some(at));
            tracing::trace!(target: "pagecast::timing", grabbed = at, took_ms = (wall_now() - at) * 1000.0, offset_ms = offset * 1000.0, "grab");
            let frame = Frame {
                // The slot instant the grab stands for, so the pacer puts it in that slot.
                painted_at: at - offset - centre,
                image: self.chain.hold(image),
            };
            match self.frames.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Sleeps until `due`, noting the paints the server reports meanwhile as they arrive.
    /// Returns early, with `true`, when woken (a new grid, or stop).
    fn wait_until(&mut self, due: f64) -> bool {
        use std::os::fd::AsRawFd;
        loop {
            self.note_paints(None);
            if self.shared.wake.take() {
                return true;
            }
            let left = due - wall_now();
            if left <= 0.0 || self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            let mut fds = [libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            }; 2];
            if self.damage {
                fds[0].fd = self.conn.stream().as_raw_fd();
            }
            if let Some(wake) = &self.shared.wake.0 {
                fds[1].fd = wake.as_raw_fd();
            }
            let timeout = libc::timespec {
                tv_sec: left.trunc() as libc::time_t,
                tv_nsec: (left.fract() * 1e9) as libc::c_long,
            };
            // SAFETY: two valid pollfds (a negative fd is ignored), a valid timeout and no
            // signal mask.
            unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &timeout, std::ptr::null()) };
        }
    }

    /// Notes every paint (DAMAGE event) that has arrived, at `at` or else when it is read.
    fn note_paints(&mut self, at: Option<f64>) {
        while let Ok(Some(event)) = self.conn.poll_for_event() {
            if matches!(event, Event::DamageNotify(_)) {
                let at = at.unwrap_or_else(wall_now);
                tracing::trace!(target: "pagecast::timing", painted = at, "damage");
                self.offset.paint(at);
            }
        }
    }

    /// One picture of the whole screen, in the buffer the frame keeps: copied once, or
    /// converted to I420 on the way.
    fn read_screen(&self) -> Result<Arc<[u8]>, String> {
        let e = |e: &dyn std::fmt::Display| format!("reading the virtual display failed: {e}");
        match &self.shm {
            Some(seg) => {
                let reply = self
                    .conn
                    .shm_get_image(
                        self.root,
                        0,
                        0,
                        self.width,
                        self.height,
                        !0,
                        ImageFormat::Z_PIXMAP.into(),
                        seg.id,
                        0,
                    )
                    .map_err(|x| e(&x))?
                    .reply()
                    .map_err(|x| e(&x))?;
                let n = (reply.size as usize).min(seg.len);
                self.keep(&seg.bytes()[..n], reply.depth)
            }
            None => {
                let reply = self
                    .conn
                    .get_image(
                        ImageFormat::Z_PIXMAP,
                        self.root,
                        0,
                        0,
                        self.width,
                        self.height,
                        !0,
                    )
                    .map_err(|x| e(&x))?
                    .reply()
                    .map_err(|x| e(&x))?;
                self.keep(&reply.data, reply.depth)
            }
        }
    }

    /// The frame's buffer for the pixels the server returned (`depth` bits a pixel).
    fn keep(&self, pixels: &[u8], depth: u8) -> Result<Arc<[u8]>, String> {
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        if pixels.len() != w as usize * h as usize * 4 {
            return Err(format!(
                "the display returned {} bytes for a {w}x{h} screen (depth {depth}); 24-bit colour is needed",
                pixels.len(),
            ));
        }
        if self.i420 {
            super::i420::from_bgrx(pixels, w, h)
        } else {
            Ok(Arc::from(pixels))
        }
    }

    fn fail(&self, why: String) {
        if !self.shared.stop.load(Ordering::Relaxed)
            && let Ok(mut f) = self.shared.failure.lock()
        {
            tracing::warn!(error = %why, "the display grab stopped");
            *f = Some(why);
        }
    }
}

/// Asks the server for an event each time anything is drawn on `root`.
fn watch_paints(conn: &RustConnection, root: u32) -> Result<(), String> {
    if conn
        .extension_information(damage::X11_EXTENSION_NAME)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err("the server has no DAMAGE extension".into());
    }
    conn.damage_query_version(1, 1)
        .map_err(|e| e.to_string())?
        .reply()
        .map_err(|e| e.to_string())?;
    let id = conn.generate_id().map_err(|e| e.to_string())?;
    conn.damage_create(id, root, damage::ReportLevel::RAW_RECTANGLES)
        .map_err(|e| e.to_string())?
        .check()
        .map_err(|e| e.to_string())
}

/// A System V shared memory segment the X server writes screen images into (what MIT-SHM
/// offers); detached when dropped, and freed by the kernel once the server detaches too.
struct ShmSegment {
    id: u32,
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the segment is used by one thread at a time (created on the recorder's, then moved to
// the grab thread); the mapping itself is valid from any thread of the process.
unsafe impl Send for ShmSegment {}

impl ShmSegment {
    fn attach(conn: &RustConnection, len: usize) -> Result<Self, String> {
        use x11rb::protocol::shm;
        shm::query_version(conn)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| format!("the server has no MIT-SHM: {e}"))?;
        // SAFETY: shmget only creates a segment; no memory of ours is touched.
        let shmid = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if shmid < 0 {
            return Err(format!("shmget: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: maps the segment just created at an address the kernel chooses.
        let addr = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
        // Marked for removal at once: the kernel frees it when the last process detaches, so
        // neither a crash of ours nor of the server's can leak it.
        // SAFETY: IPC_RMID takes no buffer.
        unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
        if addr as isize == -1 {
            return Err(format!("shmat: {}", std::io::Error::last_os_error()));
        }
        let mut seg = Self { id: 0, addr, len };
        let id = conn.generate_id().map_err(|e| e.to_string())?;
        conn.shm_attach(id, shmid as u32, false)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| format!("the server cannot attach shared memory: {e}"))?;
        seg.id = id;
        Ok(seg)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` bytes for as long as `self` lives (detached in Drop). The
        // server writes into it only while a ShmGetImage request is being handled, and we read
        // only after its reply has arrived.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        // SAFETY: `addr` came from shmat and is detached once.
        unsafe { libc::shmdt(self.addr) };
    }
}

/// The first instant at or after `now` on the grid `phase + k * period` (`phase` 0: the grid of
/// whole periods since the epoch). A grab never waits a whole period for an instant that is
/// only a hair away.
fn next_instant(phase: f64, period: f64, now: f64) -> f64 {
    let k = ((now - phase) / period - 1e-6).ceil();
    phase + k * period
}

#[cfg(test)]
mod tests {
    use super::next_instant;

    #[test]
    fn grabs_land_on_the_slot_grid() {
        let p = 1.0 / 30.0;
        // Just after a slot instant: the next one.
        let t = next_instant(100.0, p, 100.0 + 0.001);
        assert!((t - (100.0 + p)).abs() < 1e-9);
        // Exactly on an instant: that instant, not the next one.
        let t = next_instant(100.0, p, 100.0 + 3.0 * p);
        assert!((t - (100.0 + 3.0 * p)).abs() < 1e-9);
        // A phase in the future (a resume's new grid) still yields a grid point.
        let t = next_instant(200.0, p, 199.99);
        assert!(t >= 199.99 && ((t - 200.0) / p - ((t - 200.0) / p).round()).abs() < 1e-6);
    }
}
