//! Puts an MP4's index (`moov`) in front of its media data without reading or moving the media
//! data, so a result whose media data went to storage while it was recorded needs only its head
//! (`ftyp`, the relocated `moov`, the `mdat` header) written at the end.
//!
//! ffmpeg's MP4 muxer without `+faststart` writes `ftyp`, an 8-byte `free` box kept for a 64-bit
//! `mdat` size, the `mdat` header and then the samples in order, and the `moov` last. Once
//! written, a sample byte never changes: only the `mdat` header is patched at the end. The head
//! made here goes in front of those same sample bytes, with every chunk offset of the index moved
//! by the difference (`stco` becomes `co64` when an offset would no longer fit in 32 bits).

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use super::MediaError;

/// Where the parts of a finished MP4 file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Layout {
    /// The `ftyp` box.
    pub ftyp: Range<u64>,
    /// The samples: the `mdat` box's payload.
    pub payload: Range<u64>,
    /// The `moov` box.
    pub moov: Range<u64>,
}

/// A box header: its type, where its payload starts and where it ends (`None`: to the end of the
/// file, as an `mdat` still being written says with size 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    payload: u64,
    end: Option<u64>,
}

fn unexpected(what: impl Into<String>) -> MediaError {
    MediaError::Unexpected(what.into())
}

/// Reads the box header at `pos`; `None` at the end of the data.
fn read_header<R: Read + Seek>(r: &mut R, pos: u64) -> Result<Option<BoxHeader>, MediaError> {
    r.seek(SeekFrom::Start(pos))
        .map_err(MediaError::io("seeking in an MP4 file"))?;
    let mut head = [0u8; 8];
    match read_full(r, &mut head)? {
        0 => return Ok(None),
        8 => {}
        n => {
            return Err(unexpected(format!(
                "an MP4 box header cut short at {n} bytes"
            )));
        }
    }
    let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let kind = [head[4], head[5], head[6], head[7]];
    let (payload, end) = match size {
        0 => (pos + 8, None),
        1 => {
            let mut large = [0u8; 8];
            if read_full(r, &mut large)? != 8 {
                return Err(unexpected("an MP4 box's 64-bit size is cut short"));
            }
            let size = u64::from_be_bytes(large);
            if size < 16 {
                return Err(unexpected(format!("an MP4 box of {size} bytes")));
            }
            (pos + 16, Some(pos + size))
        }
        s if s < 8 => return Err(unexpected(format!("an MP4 box of {s} bytes"))),
        s => (pos + 8, Some(pos + s)),
    };
    Ok(Some(BoxHeader {
        kind,
        start: pos,
        payload,
        end,
    }))
}

/// Fills `buf` as far as the data goes; returns how much was read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, MediaError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(MediaError::io("reading an MP4 file")(e)),
        }
    }
    Ok(n)
}

/// Where the samples of an MP4 file that ffmpeg is still writing start, once its `mdat` header is
/// on disk; `None` before that.
pub fn payload_start<R: Read + Seek>(r: &mut R) -> Result<Option<u64>, MediaError> {
    let mut pos = 0;
    while let Some(h) = read_header(r, pos)? {
        if &h.kind == b"mdat" {
            return Ok(Some(h.payload));
        }
        match h.end {
            Some(end) => pos = end,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// The layout of a finished MP4 file (one `ftyp`, one `mdat`, one `moov`; `free` boxes allowed).
pub fn layout<R: Read + Seek>(r: &mut R) -> Result<Mp4Layout, MediaError> {
    let (mut ftyp, mut payload, mut moov) = (None, None, None);
    let mut pos = 0;
    while let Some(h) = read_header(r, pos)? {
        let Some(end) = h.end else {
            return Err(unexpected(format!(
                "the MP4 box '{}' has no size (the file was not finished)",
                String::from_utf8_lossy(&h.kind)
            )));
        };
        let slot = match &h.kind {
            b"ftyp" => &mut ftyp,
            b"mdat" => &mut payload,
            b"moov" => &mut moov,
            b"free" | b"skip" | b"wide" => {
                pos = end;
                continue;
            }
            other => {
                return Err(unexpected(format!(
                    "an unexpected top-level MP4 box '{}'",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        if slot.is_some() {
            return Err(unexpected(format!(
                "more than one '{}' box",
                String::from_utf8_lossy(&h.kind)
            )));
        }
        *slot = Some(if &h.kind == b"mdat" {
            h.payload..end
        } else {
            h.start..end
        });
        pos = end;
    }
    match (ftyp, payload, moov) {
        (Some(ftyp), Some(payload), Some(moov)) => Ok(Mp4Layout {
            ftyp,
            payload,
            moov,
        }),
        _ => Err(unexpected("the MP4 file lacks its ftyp, mdat or moov box")),
    }
}

/// The head of the fast-start file: `ftyp`, then `moov` with every chunk offset moved from
/// `old_payload_start` to just after the head, then the header of an `mdat` of `payload_len`
/// bytes. The file is the head followed by the samples, unchanged.
pub fn head(
    ftyp: &[u8],
    moov: &[u8],
    old_payload_start: u64,
    payload_len: u64,
) -> Result<Vec<u8>, MediaError> {
    let mdat_header: u64 = if payload_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let old_range = old_payload_start..old_payload_start + payload_len;
    // 32-bit offsets first (the index keeps its size); 64-bit ones only if an offset needs it.
    for wide in [false, true] {
        let moov_len = relocated_len(moov, wide)?;
        let new_start = ftyp.len() as u64 + moov_len + mdat_header;
        let shift = Shift {
            from: old_range.clone(),
            to: new_start,
            wide,
        };
        let mut out = Vec::with_capacity((new_start) as usize);
        out.extend_from_slice(ftyp);
        match relocate(moov, &shift, &mut out) {
            Ok(()) => {}
            Err(Relocate::TooFar) if !wide => continue,
            Err(Relocate::TooFar) => return Err(unexpected("a chunk offset beyond 64 bits")),
            Err(Relocate::Bad(e)) => return Err(e),
        }
        if mdat_header == 8 {
            out.extend_from_slice(&((payload_len + 8) as u32).to_be_bytes());
            out.extend_from_slice(b"mdat");
        } else {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&(payload_len + 16).to_be_bytes());
        }
        debug_assert_eq!(out.len() as u64, new_start);
        return Ok(out);
    }
    Err(unexpected("the MP4 index could not be relocated"))
}

/// How chunk offsets move.
struct Shift {
    /// Where the samples were; every offset must point into this.
    from: Range<u64>,
    /// Where they start now.
    to: u64,
    /// Write `co64` instead of `stco`.
    wide: bool,
}

enum Relocate {
    /// An offset does not fit in 32 bits.
    TooFar,
    Bad(MediaError),
}

impl From<MediaError> for Relocate {
    fn from(e: MediaError) -> Self {
        Relocate::Bad(e)
    }
}

/// Boxes whose payload is boxes, on the way from `moov` to the chunk offset tables.
const CONTAINERS: [&[u8; 4]; 5] = [b"moov", b"trak", b"mdia", b"minf", b"stbl"];

/// A box inside a parent's payload: its type, header length and whole bytes.
type Child<'a> = ([u8; 4], usize, &'a [u8]);

/// The boxes in `data`.
fn children(data: &[u8]) -> Result<Vec<Child<'_>>, MediaError> {
    let mut out = Vec::new();
    let mut cur = std::io::Cursor::new(data);
    let mut pos = 0u64;
    while (pos as usize) < data.len() {
        let Some(h) = read_header(&mut cur, pos)? else {
            break;
        };
        let end = h.end.unwrap_or(data.len() as u64);
        if end > data.len() as u64 {
            return Err(unexpected(format!(
                "the MP4 box '{}' runs past its parent",
                String::from_utf8_lossy(&h.kind)
            )));
        }
        out.push((
            h.kind,
            (h.payload - h.start) as usize,
            &data[pos as usize..end as usize],
        ));
        pos = end;
    }
    Ok(out)
}

/// The length of `moov` once relocated (`wide`: with 64-bit chunk offsets).
fn relocated_len(moov: &[u8], wide: bool) -> Result<u64, MediaError> {
    let shift = Shift {
        from: 0..u64::MAX,
        to: 0,
        wide,
    };
    let mut out = Vec::with_capacity(moov.len() * 2);
    match relocate(moov, &shift, &mut out) {
        Ok(()) => Ok(out.len() as u64),
        Err(Relocate::TooFar) => Err(unexpected("a chunk offset beyond 32 bits")),
        Err(Relocate::Bad(e)) => Err(e),
    }
}

/// Writes the boxes of `data` to `out` with their chunk offsets moved.
fn relocate(data: &[u8], shift: &Shift, out: &mut Vec<u8>) -> Result<(), Relocate> {
    for (kind, header, whole) in children(data)? {
        let payload = &whole[header..];
        if CONTAINERS.contains(&&kind) {
            let mut inner = Vec::with_capacity(payload.len());
            relocate(payload, shift, &mut inner)?;
            write_box(out, &kind, &[], &inner);
        } else if &kind == b"stco" || &kind == b"co64" {
            let width = if &kind == b"stco" { 4 } else { 8 };
            let offsets = table(payload, width)?;
            let (out_kind, out_width) = if shift.wide || width == 8 {
                (b"co64", 8)
            } else {
                (b"stco", 4)
            };
            let mut body = Vec::with_capacity(8 + offsets.len() * out_width);
            body.extend_from_slice(&[0, 0, 0, 0]);
            body.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
            for o in offsets {
                if !shift.from.contains(&o) {
                    return Err(Relocate::Bad(unexpected(format!(
                        "a chunk offset ({o}) outside the media data"
                    ))));
                }
                let moved = o - shift.from.start + shift.to;
                if out_width == 4 {
                    let v = u32::try_from(moved).map_err(|_| Relocate::TooFar)?;
                    body.extend_from_slice(&v.to_be_bytes());
                } else {
                    body.extend_from_slice(&moved.to_be_bytes());
                }
            }
            write_box(out, out_kind, &[], &body);
        } else {
            out.extend_from_slice(whole);
        }
    }
    Ok(())
}

/// The entries of a chunk offset table's payload (version and flags, count, offsets).
fn table(payload: &[u8], width: usize) -> Result<Vec<u64>, MediaError> {
    if payload.len() < 8 {
        return Err(unexpected("a chunk offset table cut short"));
    }
    let count = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]) as usize;
    let entries = &payload[8..];
    if entries.len() != count * width {
        return Err(unexpected(format!(
            "a chunk offset table says {count} entries and holds {} bytes",
            entries.len()
        )));
    }
    Ok(entries
        .chunks_exact(width)
        .map(|c| {
            if width == 4 {
                u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            } else {
                u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
            }
        })
        .collect())
}

/// Appends a box of `kind` whose payload is `prefix` then `body`.
fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], prefix: &[u8], body: &[u8]) {
    let len = 8 + prefix.len() + body.len();
    match u32::try_from(len) {
        Ok(len) => {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(kind);
        }
        Err(_) => {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(&(len as u64 + 8).to_be_bytes());
        }
    }
    out.extend_from_slice(prefix);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_box(&mut out, kind, &[], body);
        out
    }

    fn stco(offsets: &[u32]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
        for o in offsets {
            body.extend_from_slice(&o.to_be_bytes());
        }
        bx(b"stco", &body)
    }

    /// ftyp, free, mdat(payload), moov(trak(mdia(minf(stbl(stsz, stco)))))
    fn sample_file(payload: &[u8], offsets_in_payload: &[u32]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
        let mut file = ftyp.clone();
        file.extend(bx(b"free", &[]));
        let start = file.len() as u32 + 8;
        file.extend(bx(b"mdat", payload));
        let abs: Vec<u32> = offsets_in_payload.iter().map(|o| o + start).collect();
        let stbl = bx(b"stbl", &[bx(b"stsz", &[0; 12]), stco(&abs)].concat());
        let moov = bx(
            b"moov",
            &[
                bx(b"mvhd", &[1; 100]),
                bx(b"trak", &bx(b"mdia", &bx(b"minf", &stbl))),
            ]
            .concat(),
        );
        file.extend(&moov);
        (file, ftyp, moov)
    }

    #[test]
    fn finds_the_parts_of_a_finished_file() {
        let (file, ftyp, moov) = sample_file(b"0123456789", &[0, 4]);
        let l = layout(&mut Cursor::new(&file)).unwrap();
        assert_eq!(&file[l.ftyp.start as usize..l.ftyp.end as usize], &ftyp[..]);
        assert_eq!(
            &file[l.payload.start as usize..l.payload.end as usize],
            b"0123456789"
        );
        assert_eq!(&file[l.moov.start as usize..l.moov.end as usize], &moov[..]);
        assert_eq!(
            payload_start(&mut Cursor::new(&file)).unwrap(),
            Some(l.payload.start)
        );
    }

    #[test]
    fn an_mdat_being_written_has_its_payload_start() {
        let mut file = bx(b"ftyp", b"isom");
        file.extend(bx(b"free", &[]));
        let expect = file.len() as u64 + 8;
        file.extend([0, 0, 0, 0]);
        file.extend(b"mdat");
        file.extend(b"samples so far");
        assert_eq!(
            payload_start(&mut Cursor::new(&file)).unwrap(),
            Some(expect)
        );
        assert_eq!(payload_start(&mut Cursor::new(&file[..20])).unwrap(), None);
        assert!(layout(&mut Cursor::new(&file)).is_err(), "not finished");
    }

    #[test]
    fn the_head_points_the_index_at_the_samples_behind_it() {
        let payload = b"AAAABBBBBBCC";
        let (file, ftyp, moov) = sample_file(payload, &[0, 4, 10]);
        let l = layout(&mut Cursor::new(&file)).unwrap();
        let head = head(&ftyp, &moov, l.payload.start, payload.len() as u64).unwrap();
        let mut fast = head.clone();
        fast.extend_from_slice(payload);
        let l2 = layout(&mut Cursor::new(&fast)).unwrap();
        assert!(l2.moov.end <= l2.payload.start, "index first");
        assert_eq!(l2.payload.start as usize, head.len());
        // The offsets now land on the same sample bytes.
        let moov2 = &fast[l2.moov.start as usize..l2.moov.end as usize];
        let pos = moov2.windows(4).position(|w| w == b"stco").unwrap();
        let offsets = table(&moov2[pos + 4..], 4).unwrap();
        let at: Vec<&[u8]> = offsets
            .iter()
            .map(|&o| &fast[o as usize..o as usize + 2])
            .collect();
        assert_eq!(at, vec![&b"AA"[..], b"BB", b"CC"]);
        assert_eq!(
            moov2.len(),
            moov.len(),
            "32-bit offsets keep the index's size"
        );
    }

    #[test]
    fn offsets_beyond_32_bits_become_co64() {
        let (_, ftyp, moov) = sample_file(&[0; 8], &[0, 4]);
        // Offsets that do not point into the samples are refused, not guessed.
        assert!(head(&ftyp, &moov, 1000, 8).is_err());
        let shift = Shift {
            from: 0..u64::MAX,
            to: u64::from(u32::MAX),
            wide: false,
        };
        assert!(matches!(
            relocate(&moov, &shift, &mut Vec::new()),
            Err(Relocate::TooFar)
        ));
        let wide = Shift {
            wide: true,
            ..shift
        };
        let mut out = Vec::new();
        assert!(relocate(&moov, &wide, &mut out).is_ok());
        assert!(out.windows(4).any(|w| w == b"co64"));
        assert_eq!(out.len(), moov.len() + 4 * 2, "two offsets grew by 4 bytes");
    }

    #[test]
    fn broken_boxes_are_errors_not_panics() {
        assert!(
            layout(&mut Cursor::new(
                &[0u8, 0, 0, 3, b'f', b't', b'y', b'p'][..]
            ))
            .is_err()
        );
        assert!(layout(&mut Cursor::new(&[0u8, 0, 0][..])).is_err());
        let mut bad = bx(b"moov", &bx(b"stco", &[0, 0, 0, 0, 0, 0, 0, 9]));
        assert!(head(&bx(b"ftyp", b""), &bad, 0, 10).is_err());
        bad.truncate(12);
        assert!(head(&bx(b"ftyp", b""), &bad, 0, 10).is_err());
    }
}
