//! Joins the pieces the live relay sends (the recording's segments, and still-picture clips for
//! its pauses) into one transport stream whose clock never goes back: each piece that does not
//! continue the one before is moved to start where the stream so far ends.

use std::collections::HashMap;

use super::ts::{self, AAC_FRAME_TICKS, Counters, HZ, PACKET};

/// Sound that is being counted: one PES packet's AAC (ADTS) frames.
#[derive(Debug, Default, Clone)]
struct AdtsCount {
    /// Bytes of the current frame still to skip.
    need: usize,
    /// The first bytes of a header split across packets.
    header: Vec<u8>,
    frames: u64,
    /// The bytes did not parse as ADTS: the count is a guess.
    lost: bool,
}

impl AdtsCount {
    fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() && !self.lost {
            if self.need > 0 {
                let n = self.need.min(b.len());
                self.need -= n;
                b = &b[n..];
                continue;
            }
            let n = (6 - self.header.len()).min(b.len());
            self.header.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.header.len() < 6 {
                return;
            }
            let h = &self.header;
            if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
                self.lost = true;
                return;
            }
            let len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            self.frames += 1;
            self.need = len.saturating_sub(6);
            self.header.clear();
        }
    }
}

/// One elementary stream's output so far.
#[derive(Debug, Default, Clone)]
struct Stream {
    video: bool,
    /// Presentation time of its last PES, on the output clock.
    last_pts: Option<u64>,
    /// The PES packet being passed on is dropped (it would go back in time).
    dropping: bool,
    audio: AdtsCount,
}

/// The stream's clock across pieces.
#[derive(Debug)]
pub(crate) struct Splicer {
    frame_ticks: u64,
    /// Added to each piece's timestamps (ticks; negative moves a piece earlier).
    offset: i64,
    /// The next PES starts a piece that must continue where the output ends.
    rebase: bool,
    /// The piece's first picture time, when known before its packets are (a still clip).
    anchor: Option<u64>,
    /// The piece in progress has shown its first timestamp.
    placed: bool,
    streams: HashMap<u16, Stream>,
    counters: Counters,
}

impl Splicer {
    pub(crate) fn new(fps: u32) -> Self {
        Self {
            frame_ticks: HZ / u64::from(fps.max(1)),
            offset: 0,
            rebase: false,
            anchor: None,
            placed: true,
            streams: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// A new piece starts. `continues`: its timestamps follow the previous piece's (the next
    /// segment of the same encoder); otherwise it is placed where the output ends.
    pub(crate) fn begin(&mut self, continues: bool) {
        self.rebase = !continues;
        self.anchor = None;
        self.placed = false;
    }

    /// A new piece whose whole bytes are at hand (a still clip): placed by its first picture,
    /// so its pictures follow the output's last picture to the frame (its sound may start a
    /// little before its pictures, as encoders make it).
    pub(crate) fn begin_whole(&mut self, piece: &[u8]) {
        self.begin(false);
        self.anchor = piece
            .chunks_exact(PACKET)
            .filter_map(ts::inspect)
            .find(|i| i.starts_pes && i.video)
            .and_then(|i| i.pts);
    }

    /// Where one stream's output ends: a picture lasts one frame, sound as many AAC frames as
    /// its last PES held.
    fn stream_end(&self, s: &Stream) -> Option<u64> {
        let pts = s.last_pts?;
        Some(if s.video {
            pts + self.frame_ticks
        } else {
            pts + s.audio.frames.max(1) * AAC_FRAME_TICKS
        })
    }

    /// Where the output ends: the latest end of any stream.
    pub(crate) fn end(&self) -> Option<u64> {
        self.streams
            .values()
            .filter_map(|s| self.stream_end(s))
            .max()
    }

    /// Where the output's pictures end (where its sound ends, without pictures). A piece is
    /// placed here: the pictures' clock is the stream's, and sound that would overlap is left
    /// out by [`Splicer::process`].
    fn picture_end(&self) -> Option<u64> {
        self.streams
            .values()
            .filter(|s| s.video)
            .filter_map(|s| self.stream_end(s))
            .max()
            .or_else(|| self.end())
    }

    /// Whether a PES at `out_pts` on `pid` would start before the stream's output ends (more
    /// than half a frame early: consecutive packets meet to the tick, give or take rounding).
    fn goes_back(&self, pid: u16, out_pts: u64) -> bool {
        let Some(s) = self.streams.get(&pid) else {
            return false;
        };
        let slack = if s.video {
            self.frame_ticks / 2
        } else {
            AAC_FRAME_TICKS / 2
        };
        self.stream_end(s).is_some_and(|end| out_pts + slack < end)
    }

    /// Rewrites whole packets in place and returns the bytes to send: PES packets that would go
    /// back in time (the first sound of a piece overlapping the one before) are left out.
    pub(crate) fn process(&mut self, chunk: &mut [u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for p in chunk.chunks_exact_mut(PACKET) {
            let Some(info) = ts::inspect(p) else {
                continue;
            };
            if info.starts_pes
                && let Some(pts) = info.pts
            {
                self.place(info.pid, pts);
                let out_pts = pts as i64 + self.offset;
                let back = out_pts < 0 || self.goes_back(info.pid, out_pts as u64);
                let stream = self.streams.entry(info.pid).or_default();
                stream.video = info.video;
                stream.dropping = back;
                if !back {
                    stream.last_pts = Some(out_pts as u64);
                    stream.audio = AdtsCount::default();
                }
            }
            let Some(stream) = self.streams.get_mut(&info.pid) else {
                // Tables (PAT, PMT) and anything before a stream's first PES.
                self.emit(p, &mut out);
                continue;
            };
            if stream.dropping {
                continue;
            }
            if !stream.video
                && let Some(payload) = ts::pes_data(p)
            {
                stream.audio.feed(payload);
            }
            self.emit(p, &mut out);
        }
        out
    }

    fn emit(&mut self, p: &mut [u8], out: &mut Vec<u8>) {
        ts::shift(p, self.offset.rem_euclid(1 << 33) as u64);
        self.counters.renumber(p);
        out.extend_from_slice(p);
    }

    /// Sets the offset at a piece's first timestamp: moved to the output's end if it must be,
    /// or if its timestamps went back (an encoder that started again).
    fn place(&mut self, pid: u16, pts: u64) {
        if self.placed {
            return;
        }
        self.placed = true;
        let Some(end) = self.picture_end() else {
            return;
        };
        let anchor = self.anchor.take().unwrap_or(pts);
        if self.rebase || self.goes_back(pid, (pts as i64 + self.offset).max(0) as u64) {
            self.offset = end as i64 - anchor as i64;
        }
        self.rebase = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::ts::tests::pes_packet;
    use super::*;

    const V: u16 = 0x100;
    const A: u16 = 0x101;

    fn pts_of(bytes: &[u8]) -> Vec<(u16, u64)> {
        bytes
            .chunks_exact(PACKET)
            .filter_map(|p| {
                let i = ts::inspect(p)?;
                Some((i.pid, i.pts?))
            })
            .collect()
    }

    /// A sound PES holding `frames` ADTS frames of 7 bytes (a header each).
    fn audio_packet(pts: u64, frames: usize) -> Vec<u8> {
        let mut p = pes_packet(A, 0xc0, pts, None, None);
        let at = 4 + 9 + 5;
        p[at..].fill(0);
        for f in 0..frames {
            p[at + f * 7..at + f * 7 + 7].copy_from_slice(&[0xff, 0xf1, 0x50, 0x80, 0, 0xff, 0xfc]);
        }
        p
    }

    fn piece(start: u64, frames: u64) -> Vec<u8> {
        let mut b = Vec::new();
        for k in 0..frames {
            b.extend(pes_packet(V, 0xe0, start + k * 3000, None, None));
            if k % 4 == 0 {
                b.extend(audio_packet(start + k * 3000, 3));
            }
        }
        b
    }

    #[test]
    fn adts_frames_are_counted_across_packets() {
        let mut c = AdtsCount::default();
        let mut frame = vec![0xff, 0xf1, 0x50, 0x80, 0, 0, 0xfc];
        frame[4] = (300 >> 3) as u8;
        frame[5] = ((300 & 7) << 5) as u8 | 0x1f;
        frame.resize(300, 0);
        let bytes: Vec<u8> = frame.iter().chain(frame.iter()).copied().collect();
        for part in bytes.chunks(100) {
            c.feed(part);
        }
        assert_eq!(c.frames, 2);
        assert!(!c.lost);
        c.feed(&[0, 1, 2, 3, 4, 5]);
        assert!(c.lost, "not ADTS: the count stops");
    }

    #[test]
    fn continuing_segments_keep_their_timestamps() {
        let mut s = Splicer::new(30);
        s.begin(true);
        let mut a = piece(127_920, 60);
        let out = s.process(&mut a);
        s.begin(true);
        let mut b = piece(127_920 + 60 * 3000, 60);
        let out2 = s.process(&mut b);
        assert_eq!(pts_of(&out)[0], (V, 127_920));
        assert_eq!(pts_of(&out2)[0], (V, 127_920 + 180_000));
        assert_eq!(out.len() + out2.len(), a.len() + b.len(), "nothing dropped");
    }

    #[test]
    fn a_still_clip_and_the_segment_after_it_continue_the_clock() {
        let mut s = Splicer::new(30);
        s.begin(true);
        s.process(&mut piece(127_920, 60));
        let end = s.end().unwrap();
        assert_eq!(end, 127_920 + 60 * 3000);
        // A one-second clip made by another ffmpeg starts at its own 1.42 s.
        s.begin(false);
        let clip = s.process(&mut piece(127_920, 30));
        assert_eq!(pts_of(&clip)[0], (V, end));
        // The recording resumes with its next segment: placed after the clip, not at its own
        // (earlier) time.
        s.begin(false);
        let seg = s.process(&mut piece(127_920 + 120 * 3000, 60));
        assert_eq!(pts_of(&seg)[0].1, end + 30 * 3000);
        let all: Vec<u64> = pts_of(&seg)
            .iter()
            .filter(|(p, _)| *p == V)
            .map(|x| x.1)
            .collect();
        assert!(all.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn an_encoder_started_again_is_placed_after_what_was_sent() {
        let mut s = Splicer::new(30);
        s.begin(true);
        s.process(&mut piece(127_920, 45));
        let pictures_end = 127_920 + 45 * 3000;
        // A new encoder's segment starts at its own beginning again.
        s.begin(true);
        let out = s.process(&mut piece(127_920, 10));
        assert_eq!(pts_of(&out)[0], (V, pictures_end));
    }

    #[test]
    fn sound_that_would_overlap_is_left_out() {
        let mut s = Splicer::new(30);
        s.begin(true);
        // A picture and one sound frame at 1 s: the pictures end at 1 s + 1 frame.
        let mut a = pes_packet(V, 0xe0, HZ, None, None);
        a.extend(audio_packet(HZ, 1));
        s.process(&mut a);
        let end = HZ + 3000;
        // The next piece's pictures follow the last picture. Its first sound is 30 ms earlier
        // than its first picture, so it would overlap the sound sent: left out; the next fits.
        s.begin(false);
        let mut b = pes_packet(V, 0xe0, 127_920, None, None);
        b.extend(audio_packet(127_920 - 2700, 1));
        b.extend(audio_packet(127_920 - 2700 + 1920, 1));
        let out = s.process(&mut b);
        assert_eq!(pts_of(&out), vec![(V, end), (A, end - 2700 + 1920)]);
    }

    #[test]
    fn a_piece_starting_with_sound_that_went_back_is_placed_after_the_output() {
        let mut s = Splicer::new(30);
        s.begin(true);
        s.process(&mut piece(HZ, 30));
        let end = s.end().unwrap();
        s.begin(true);
        let mut b = audio_packet(100, 1);
        b.extend(pes_packet(V, 0xe0, 100, None, None));
        assert_eq!(pts_of(&s.process(&mut b)), vec![(A, end), (V, end)]);
    }

    #[test]
    fn still_clips_follow_each_other_to_the_frame() {
        // A clip whose sound starts 21 ms before its pictures (as ffmpeg makes them): its
        // pictures go on from the last picture, one clip after the other, with no drift.
        let mut clip = audio_packet(126_000, 3);
        for k in 0..30 {
            clip.extend(pes_packet(V, 0xe0, 127_920 + k * 3000, None, None));
        }
        let mut s = Splicer::new(30);
        s.begin(true);
        s.process(&mut clip.clone());
        let end = 127_920 + 30 * 3000;
        for n in 0..3 {
            s.begin_whole(&clip);
            let out = s.process(&mut clip.clone());
            let got = pts_of(&out);
            assert_eq!(got[1], (V, end + n * HZ), "clip {n}");
            assert_eq!(got[0], (A, end + n * HZ - 1920), "clip {n}");
        }
    }
}
