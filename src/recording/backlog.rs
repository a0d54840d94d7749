//! The live encoder's replay backlog: the frames sent since its last completed segment, kept so
//! that a restarted ffmpeg can encode them again (see `encoder::ResilientEncoder`).
//!
//! Raw pictures (x11 capture) are 1.4 MB each at 720p, and a 2 s segment holds 60 of them. Most
//! pages change a small part of the screen from one frame to the next (a lesson's slide, a
//! moving element, a clock), so each raw picture but the oldest is kept as the blocks in which it
//! differs from the picture before it: the bench page's backlog fell from its 48 MiB bound to a
//! few MB. A picture that differs in more than half its bytes is kept whole, and the bound still
//! holds for pages that change everywhere. JPEG pictures (screencast) are small and kept whole.
//!
//! The differences are `media::delta`'s, the same as the pacer's window keeps.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::media::delta::Delta;
use crate::media::encoder::SlotMedia;

/// Frames kept whatever their size (the backlog's floor).
const MIN_FRAMES: usize = 4;

/// How one frame's picture is kept.
enum Stored {
    Whole(Arc<[u8]>),
    /// Its differences from the picture before it.
    Delta(Delta),
}

impl Stored {
    fn bytes(&self) -> usize {
        match self {
            Stored::Whole(p) => p.len(),
            Stored::Delta(d) => d.size(),
        }
    }
}

struct Entry {
    pcm: Option<Arc<[u8]>>,
    picture: Stored,
}

/// The frames sent to the current encoder and not yet in a completed segment.
pub(super) struct Backlog {
    entries: VecDeque<Entry>,
    /// The newest picture, whole: the next delta is taken against it.
    newest: Option<Arc<[u8]>>,
    /// Bytes the kept pictures take.
    bytes: usize,
    limit: usize,
    delta: bool,
}

impl Backlog {
    /// A backlog holding at most `limit` bytes of pictures (but at least a few frames);
    /// `delta`: pictures are raw and kept as their differences.
    pub(super) fn new(limit: usize, delta: bool) -> Self {
        Self {
            entries: VecDeque::new(),
            newest: None,
            bytes: 0,
            limit,
            delta,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes the kept pictures take.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps a frame just sent; drops the oldest ones past the byte limit.
    pub(super) fn push(&mut self, slot: &SlotMedia) {
        let picture = match &self.newest {
            Some(prev) if self.delta && !self.entries.is_empty() => {
                Delta::between(prev, &slot.image)
                    .map_or_else(|| Stored::Whole(slot.image.clone()), Stored::Delta)
            }
            _ => Stored::Whole(slot.image.clone()),
        };
        self.bytes += picture.bytes();
        self.entries.push_back(Entry {
            pcm: slot.pcm.clone(),
            picture,
        });
        self.newest = Some(slot.image.clone());
        while self.bytes > self.limit && self.entries.len() > MIN_FRAMES {
            self.drop_front(1);
        }
    }

    /// The oldest kept frame.
    pub(super) fn front(&self) -> Option<SlotMedia> {
        let e = self.entries.front()?;
        match &e.picture {
            Stored::Whole(p) => Some(SlotMedia {
                image: p.clone(),
                pcm: e.pcm.clone(),
            }),
            // The front is always whole (`drop_front` keeps it so).
            Stored::Delta(_) => None,
        }
    }

    /// Drops the `n` oldest frames (those now in a completed segment, or past the limit).
    pub(super) fn drop_front(&mut self, n: usize) {
        let n = n.min(self.entries.len());
        if n == 0 {
            return;
        }
        // The new front's picture, whole, if it is kept as a delta.
        let whole = match self.entries.get(n) {
            Some(Entry {
                picture: Stored::Delta(_),
                ..
            }) => Some(self.picture_at(n)),
            _ => None,
        };
        for e in self.entries.drain(..n) {
            self.bytes -= e.picture.bytes();
        }
        if let (Some(front), Some(whole)) = (self.entries.front_mut(), whole) {
            self.bytes -= front.picture.bytes();
            front.picture = Stored::Whole(whole);
            self.bytes += front.picture.bytes();
        }
        if self.entries.is_empty() {
            self.newest = None;
        }
    }

    /// Every kept frame, oldest first, each picture whole again (made one at a time, as the
    /// replay takes them); the backlog is left empty.
    pub(super) fn take(&mut self) -> impl Iterator<Item = SlotMedia> + use<> {
        let entries = std::mem::take(&mut self.entries);
        self.bytes = 0;
        self.newest = None;
        let mut current: Option<Arc<[u8]>> = None;
        entries.into_iter().filter_map(move |e| {
            let image = match e.picture {
                Stored::Whole(p) => p,
                Stored::Delta(d) => d.onto(current.as_ref()?),
            };
            current = Some(image.clone());
            Some(SlotMedia { image, pcm: e.pcm })
        })
    }

    /// The whole picture of entry `i`: the nearest whole one at or before it, with the deltas
    /// after it applied.
    fn picture_at(&self, i: usize) -> Arc<[u8]> {
        let start = (0..=i)
            .rev()
            .find(|&j| matches!(self.entries[j].picture, Stored::Whole(_)))
            .unwrap_or(0);
        let Stored::Whole(base) = &self.entries[start].picture else {
            return Arc::from(Vec::new());
        };
        let mut buf: Option<Vec<u8>> = None;
        for e in self.entries.range(start + 1..=i) {
            if let Stored::Delta(d) = &e.picture
                && !d.is_empty()
            {
                d.apply(buf.get_or_insert_with(|| base.to_vec()));
            }
        }
        buf.map_or_else(|| base.clone(), Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::delta::tests::{SIZE, picture};

    fn slot(image: Arc<[u8]>, n: u8) -> SlotMedia {
        SlotMedia {
            image,
            pcm: Some(Arc::from(vec![n; 4])),
        }
    }

    #[test]
    fn replay_gives_back_every_frame_exactly() {
        let mut b = Backlog::new(usize::MAX, true);
        let frames: Vec<SlotMedia> = (0..20u8)
            .map(|i| slot(picture(usize::from(i) * 300, 100, i), i))
            .collect();
        for f in &frames {
            b.push(f);
        }
        // Kept as differences: far less than 20 whole pictures.
        assert!(b.bytes() < 3 * SIZE, "{} bytes", b.bytes());
        let back: Vec<SlotMedia> = b.take().collect();
        assert_eq!(back.len(), 20);
        for (a, f) in back.iter().zip(&frames) {
            assert_eq!(&a.image[..], &f.image[..]);
            assert_eq!(a.pcm.as_deref(), f.pcm.as_deref());
        }
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }

    #[test]
    fn dropping_the_oldest_keeps_the_rest_exact() {
        let mut b = Backlog::new(usize::MAX, true);
        let frames: Vec<SlotMedia> = (0..10u8)
            .map(|i| slot(picture(usize::from(i) * 500, 700, i + 1), i))
            .collect();
        for f in &frames {
            b.push(f);
        }
        b.drop_front(4);
        assert_eq!(b.len(), 6);
        assert_eq!(&b.front().unwrap().image[..], &frames[4].image[..]);
        // More frames after the drop still chain onto the right picture.
        let more = slot(picture(9000, 500, 99), 10);
        b.push(&more);
        let back: Vec<SlotMedia> = b.take().collect();
        let want: Vec<&SlotMedia> = frames[4..].iter().chain([&more]).collect();
        assert_eq!(back.len(), want.len());
        for (a, f) in back.iter().zip(want) {
            assert_eq!(&a.image[..], &f.image[..]);
        }
    }

    #[test]
    fn pictures_that_change_everywhere_are_whole_and_bounded() {
        // Each picture differs in every byte from the one before: no delta, and the byte limit
        // (three pictures) keeps the floor of four frames.
        let mut b = Backlog::new(3 * SIZE, true);
        let frames: Vec<SlotMedia> = (0..8u8)
            .map(|i| slot(Arc::from(vec![i; SIZE]), i))
            .collect();
        for f in &frames {
            b.push(f);
        }
        assert_eq!(b.len(), MIN_FRAMES);
        assert_eq!(b.bytes(), MIN_FRAMES * SIZE);
        let back: Vec<SlotMedia> = b.take().collect();
        for (a, f) in back.iter().zip(&frames[4..]) {
            assert_eq!(&a.image[..], &f.image[..]);
        }
    }

    #[test]
    fn a_repeated_picture_costs_nothing_and_comes_back_shared() {
        let mut b = Backlog::new(usize::MAX, true);
        let p = picture(0, 10, 1);
        for i in 0..5 {
            b.push(&slot(p.clone(), i));
        }
        assert_eq!(b.bytes(), SIZE);
        let back: Vec<SlotMedia> = b.take().collect();
        assert!(back.iter().all(|s| Arc::ptr_eq(&s.image, &p)));
    }

    #[test]
    fn the_byte_limit_drops_the_oldest_and_rebuilds_the_front() {
        // Each picture differs from the one before in 4 blocks (the old square back to grey,
        // the new one): 1040 bytes with their indices. The limit holds the front and 5 deltas.
        let mut b = Backlog::new(SIZE + 5 * 1040 + 10, true);
        let frames: Vec<SlotMedia> = (0..10u8)
            .map(|i| slot(picture(usize::from(i) * 512, 512, i + 1), i))
            .collect();
        for f in &frames {
            b.push(f);
        }
        assert_eq!(b.bytes(), SIZE + 5 * 1040);
        let kept = b.len();
        assert_eq!(kept, 6);
        assert_eq!(&b.front().unwrap().image[..], &frames[10 - kept].image[..]);
        let back: Vec<SlotMedia> = b.take().collect();
        for (a, f) in back.iter().zip(&frames[10 - kept..]) {
            assert_eq!(&a.image[..], &f.image[..]);
        }
    }

    #[test]
    fn jpeg_pictures_are_kept_whole() {
        let mut b = Backlog::new(usize::MAX, false);
        let p = picture(0, 10, 1);
        let q = picture(20, 10, 2);
        b.push(&slot(p.clone(), 0));
        b.push(&slot(q.clone(), 1));
        assert_eq!(b.bytes(), 2 * SIZE);
        let back: Vec<SlotMedia> = b.take().collect();
        assert!(Arc::ptr_eq(&back[0].image, &p) && Arc::ptr_eq(&back[1].image, &q));
    }
}
