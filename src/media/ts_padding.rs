//! MPEG-TS null packets that make a tiny segment readable by ffmpeg. Whatever opens a segment
//! without being told its format (the concat demuxer for every input, the HLS demuxer for a
//! playlist's first segment) probes it, and ffmpeg 5.1's MPEG-TS probe scores a file of fewer
//! than about 11 packets (2 KiB) at 0: "Invalid data found when processing input". A
//! recording stopped within its first frames of a plain page is such a file (measured: one black
//! 720p frame with its sound, 9 packets, 1692 bytes). Null packets (PID 0x1FFF) are the
//! format's own stuffing: demuxers and players discard them.

/// Bytes below which a segment may be too short to be recognised (with a wide margin).
pub(crate) const MIN_PROBED_BYTES: u64 = 8 * 1024;
/// Bytes of an MPEG-TS packet.
const PACKET: usize = 188;

/// `n` null packets: sync byte, PID 0x1FFF, payload only, then stuffing.
pub(crate) fn null_packets(n: usize) -> Vec<u8> {
    let mut p = [0xff_u8; PACKET];
    p[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    p.repeat(n)
}

/// Null packets that lift any input, however small, over [`MIN_PROBED_BYTES`].
pub(crate) fn enough() -> Vec<u8> {
    null_packets(MIN_PROBED_BYTES as usize / PACKET + 1)
}

/// What to append to a segment of `len` bytes so that it is recognised: nothing for one big
/// enough, else whole null packets up to [`MIN_PROBED_BYTES`].
pub(crate) fn for_segment(len: u64) -> Vec<u8> {
    let missing = MIN_PROBED_BYTES.saturating_sub(len) as usize;
    null_packets(missing.div_ceil(PACKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_packets_are_whole_and_lift_a_segment_over_the_floor() {
        let p = null_packets(3);
        assert_eq!(p.len(), 3 * PACKET);
        assert!(p.chunks(PACKET).all(|c| c[..4] == [0x47, 0x1f, 0xff, 0x10]));
        assert!(p.chunks(PACKET).all(|c| c[4..].iter().all(|b| *b == 0xff)));
        assert!(enough().len() as u64 >= MIN_PROBED_BYTES);
        assert!(for_segment(MIN_PROBED_BYTES).is_empty());
        assert!(for_segment(1 << 20).is_empty());
        for len in [0, 1692, MIN_PROBED_BYTES - 1] {
            let pad = for_segment(len).len() as u64;
            assert_eq!(pad % PACKET as u64, 0);
            assert!(len + pad >= MIN_PROBED_BYTES && len + pad < MIN_PROBED_BYTES + 188);
        }
    }
}
