//! MPEG-TS packets as the live relay rewrites them: the recording's encoded stream is passed on
//! as it is, except for its timestamps (moved by an offset, so stretches spliced in for pauses
//! keep the stream's clock running) and its continuity counters (renumbered, so the pieces read
//! as one stream).
//!
//! Hand-written: the relay touches three fields of each packet in place (PCR, PTS/DTS, the
//! counter) and must never copy or re-mux the payload; a demuxer crate would parse far more than
//! that and give back owned packets.

use std::collections::HashMap;

/// Bytes in a transport stream packet.
pub(crate) const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// Timestamps are 33 bits of a 90 kHz clock.
const WRAP: u64 = 1 << 33;
/// Ticks a second.
pub(crate) const HZ: u64 = 90_000;
/// Ticks of one AAC frame (1024 samples at 48 kHz), the sound's packet length.
pub(crate) const AAC_FRAME_TICKS: u64 = 1920;

/// What the relay needs to know about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PacketInfo {
    pub(crate) pid: u16,
    /// The packet starts a PES packet (a picture or a run of sound frames).
    pub(crate) starts_pes: bool,
    /// That PES is video (stream ids 0xE0-0xEF).
    pub(crate) video: bool,
    /// Its presentation time, as written (before any offset).
    pub(crate) pts: Option<u64>,
    /// The packet starts a random access point (a keyframe).
    pub(crate) random_access: bool,
}

/// Where the payload begins, the PCR's offset if there is one, and the random-access flag.
fn layout(p: &[u8]) -> Option<(Option<usize>, Option<usize>, bool)> {
    if p.len() != PACKET || p[0] != SYNC {
        return None;
    }
    let control = (p[3] >> 4) & 3;
    let mut at = 4;
    let mut pcr = None;
    let mut random_access = false;
    if control & 2 != 0 {
        let len = usize::from(p[4]);
        if len > 0 {
            let flags = p[5];
            random_access = flags & 0x40 != 0;
            if flags & 0x10 != 0 && len >= 7 {
                pcr = Some(6);
            }
        }
        at = 5 + len;
    }
    let payload = (control & 1 != 0 && at < PACKET).then_some(at);
    Some((payload, pcr, random_access))
}

/// The PTS offset (and DTS offset) in a packet whose payload at `at` starts a PES packet.
fn pes_stamps(p: &[u8], at: usize) -> Option<(u8, usize, Option<usize>)> {
    let h = p.get(at..at + 9)?;
    if h[0..3] != [0, 0, 1] {
        return None;
    }
    let stream_id = h[3];
    let flags = h[7] >> 6;
    let pts = (flags & 2 != 0 && at + 14 <= PACKET).then_some(at + 9);
    let dts = (flags == 3 && at + 19 <= PACKET).then_some(at + 14);
    Some((stream_id, pts?, dts))
}

fn read_stamp(b: &[u8]) -> u64 {
    (u64::from((b[0] >> 1) & 7) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// Writes a 33-bit stamp, keeping the 4-bit prefix and the marker bits.
fn write_stamp(b: &mut [u8], v: u64) {
    let v = v % WRAP;
    b[0] = (b[0] & 0xf0) | (((v >> 30) & 7) as u8) << 1 | 1;
    b[1] = (v >> 22) as u8;
    b[2] = ((((v >> 15) & 0x7f) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = (((v & 0x7f) as u8) << 1) | 1;
}

/// Reads what the relay needs from a packet; `None` for a packet that is not one (no sync byte).
pub(crate) fn inspect(p: &[u8]) -> Option<PacketInfo> {
    let (payload, _, random_access) = layout(p)?;
    let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let mut info = PacketInfo {
        pid,
        random_access,
        ..PacketInfo::default()
    };
    if p[1] & 0x40 != 0
        && let Some(at) = payload
        && let Some((stream_id, pts, _)) = pes_stamps(p, at)
    {
        info.starts_pes = true;
        info.video = (0xe0..=0xef).contains(&stream_id);
        info.pts = Some(read_stamp(&p[pts..pts + 5]));
    }
    Some(info)
}

/// The bytes of a packet that belong to its PES's data: its payload, after the PES header when
/// the packet starts one.
pub(crate) fn pes_data(p: &[u8]) -> Option<&[u8]> {
    let (payload, _, _) = layout(p)?;
    let at = payload?;
    if p[1] & 0x40 == 0 {
        return p.get(at..);
    }
    let header_len = usize::from(*p.get(at + 8)?);
    p.get(at + 9 + header_len..)
}

/// Moves every timestamp in a packet (PCR, PTS, DTS) `offset` ticks later.
pub(crate) fn shift(p: &mut [u8], offset: u64) {
    if offset == 0 {
        return;
    }
    let Some((payload, pcr, _)) = layout(p) else {
        return;
    };
    if let Some(at) = pcr {
        let b = &mut p[at..at + 6];
        let base = (u64::from(b[0]) << 25)
            | (u64::from(b[1]) << 17)
            | (u64::from(b[2]) << 9)
            | (u64::from(b[3]) << 1)
            | u64::from(b[4] >> 7);
        let base = (base + offset) % WRAP;
        b[0] = (base >> 25) as u8;
        b[1] = (base >> 17) as u8;
        b[2] = (base >> 9) as u8;
        b[3] = (base >> 1) as u8;
        b[4] = (b[4] & 0x7f) | (((base & 1) as u8) << 7);
    }
    if p[1] & 0x40 != 0
        && let Some(at) = payload
        && let Some((_, pts, dts)) = pes_stamps(p, at)
    {
        for at in std::iter::once(pts).chain(dts) {
            let v = read_stamp(&p[at..at + 5]);
            write_stamp(&mut p[at..at + 5], v + offset);
        }
    }
}

/// Continuity counters made continuous across pieces that each start theirs anew.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    last: HashMap<u16, u8>,
}

impl Counters {
    /// Gives the packet the next counter of its PID (packets without payload repeat the last).
    pub(crate) fn renumber(&mut self, p: &mut [u8]) {
        let Some((payload, _, _)) = layout(p) else {
            return;
        };
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let next = match (self.last.get(&pid), payload.is_some()) {
            (Some(&c), true) => (c + 1) & 0x0f,
            (Some(&c), false) => c,
            (None, _) => p[3] & 0x0f,
        };
        self.last.insert(pid, next);
        p[3] = (p[3] & 0xf0) | next;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet on `pid` starting a PES of `stream_id` with these stamps (and a PCR if given).
    pub(crate) fn pes_packet(
        pid: u16,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        pcr: Option<u64>,
    ) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET];
        p[0] = SYNC;
        p[1] = 0x40 | ((pid >> 8) as u8 & 0x1f);
        p[2] = pid as u8;
        let mut at = 4;
        if let Some(pcr) = pcr {
            p[3] = 0x30; // adaptation field and payload, counter 0
            p[4] = 7;
            p[5] = 0x50; // random access, PCR
            p[6] = (pcr >> 25) as u8;
            p[7] = (pcr >> 17) as u8;
            p[8] = (pcr >> 9) as u8;
            p[9] = (pcr >> 1) as u8;
            p[10] = (((pcr & 1) as u8) << 7) | 0x7e;
            p[11] = 0;
            at = 12;
        } else {
            p[3] = 0x10;
        }
        p[at..at + 4].copy_from_slice(&[0, 0, 1, stream_id]);
        p[at + 4] = 0;
        p[at + 5] = 0;
        p[at + 6] = 0x80;
        p[at + 7] = if dts.is_some() { 0xc0 } else { 0x80 };
        p[at + 8] = if dts.is_some() { 10 } else { 5 };
        p[at + 9] = if dts.is_some() { 0x30 } else { 0x20 };
        write_stamp(&mut p[at + 9..at + 14], pts);
        if let Some(dts) = dts {
            p[at + 14] = 0x10;
            write_stamp(&mut p[at + 14..at + 19], dts);
        }
        p
    }

    fn pcr_of(p: &[u8]) -> u64 {
        (u64::from(p[6]) << 25)
            | (u64::from(p[7]) << 17)
            | (u64::from(p[8]) << 9)
            | (u64::from(p[9]) << 1)
            | u64::from(p[10] >> 7)
    }

    #[test]
    fn stamps_are_read_and_moved_with_their_markers_kept() {
        let mut p = pes_packet(0x100, 0xe0, 127_920, Some(124_920), Some(120_000));
        let info = inspect(&p).unwrap();
        assert_eq!(
            info,
            PacketInfo {
                pid: 0x100,
                starts_pes: true,
                video: true,
                pts: Some(127_920),
                random_access: true,
            }
        );
        shift(&mut p, 3 * HZ);
        assert_eq!(inspect(&p).unwrap().pts, Some(127_920 + 3 * HZ));
        assert_eq!(read_stamp(&p[26..31]), 124_920 + 3 * HZ, "DTS moved too");
        assert_eq!(pcr_of(&p), 120_000 + 3 * HZ);
        // Prefix nibbles and marker bits survive.
        assert_eq!(p[21] >> 4, 3);
        assert_eq!(p[26] >> 4, 1);
        assert_eq!(p[21] & 1, 1);
        assert_eq!(p[10] & 0x7e, 0x7e, "PCR reserved bits kept");
    }

    #[test]
    fn stamps_wrap_at_33_bits() {
        let mut p = pes_packet(0x101, 0xc0, WRAP - 10, None, None);
        shift(&mut p, 25);
        let info = inspect(&p).unwrap();
        assert_eq!(info.pts, Some(15));
        assert!(!info.video && info.starts_pes && !info.random_access);
    }

    #[test]
    fn packets_that_start_nothing_are_left_alone() {
        let mut p = pes_packet(0x100, 0xe0, 1000, None, None);
        p[1] &= !0x40; // a continuation packet: its bytes are payload, not a header
        let before = p.clone();
        shift(&mut p, HZ);
        assert_eq!(p, before);
        assert_eq!(inspect(&p).unwrap().pts, None);
        // Not a packet at all.
        assert!(inspect(&[0u8; PACKET]).is_none());
        assert!(inspect(&[SYNC; 10]).is_none());
    }

    #[test]
    fn counters_continue_across_pieces() {
        let mut c = Counters::default();
        let mut seen = Vec::new();
        for _piece in 0..2 {
            for _ in 0..10 {
                let mut p = pes_packet(0x100, 0xe0, 0, None, None);
                c.renumber(&mut p);
                seen.push(p[3] & 0x0f);
            }
        }
        let want: Vec<u8> = (0..20).map(|i| i % 16).collect();
        assert_eq!(seen, want);
        // A packet with no payload repeats the counter.
        let mut p = pes_packet(0x100, 0xe0, 0, None, None);
        p[3] = 0x20;
        c.renumber(&mut p);
        assert_eq!(p[3] & 0x0f, 3);
    }
}
