//! Raw pictures kept as their differences from the picture before them.
//!
//! A raw 720p picture is 1.4 MB, and most pages change a small part of the screen from one frame
//! to the next (a lesson's slide, a moving element, a clock). Two places hold many raw pictures at
//! once: the pacer's window of frames waiting for their slot (half a second, 15 pictures) and the
//! encoder's replay backlog (up to a segment). Both keep each picture as the 256-byte blocks in
//! which it differs from the one before, and make it whole again when it is needed.
//!
//! Hand-written rather than a compression crate: the difference from the previous picture is what
//! makes a page's frames small, it costs one comparison pass per frame, and the pictures are taken
//! back in order.

use std::sync::{Arc, Mutex};

/// Bytes compared and kept as a unit.
const BLOCK: usize = 256;

/// The blocks (by index) in which a picture differs from the one before it, and their bytes.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    blocks: Vec<u32>,
    data: Vec<u8>,
}

impl Delta {
    /// `next` as its differences from `prev`, or `None` when that would keep more than half of
    /// it (or the sizes differ): such a picture is better kept whole.
    pub(crate) fn between(prev: &[u8], next: &[u8]) -> Option<Self> {
        if prev.len() != next.len() {
            return None;
        }
        if std::ptr::eq(prev, next) {
            return Some(Self::default());
        }
        let budget = next.len() / 2;
        let mut d = Self::default();
        for (i, (a, b)) in prev.chunks(BLOCK).zip(next.chunks(BLOCK)).enumerate() {
            if a != b {
                d.blocks.push(i as u32);
                d.data.extend_from_slice(b);
                if d.data.len() > budget {
                    return None;
                }
            }
        }
        Some(d)
    }

    /// Bytes it takes.
    pub(crate) fn size(&self) -> usize {
        self.data.len() + self.blocks.len() * 4
    }

    /// Whether the picture is the same as the one before.
    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Writes the changed blocks into (a copy of) the picture before.
    pub(crate) fn apply(&self, buf: &mut [u8]) {
        let mut from = 0;
        for &b in &self.blocks {
            let at = b as usize * BLOCK;
            let len = BLOCK.min(buf.len().saturating_sub(at));
            if let (Some(dst), Some(src)) =
                (buf.get_mut(at..at + len), self.data.get(from..from + len))
            {
                dst.copy_from_slice(src);
            }
            from += len;
        }
    }

    /// The picture before, with this applied (shared, not copied, when nothing changed).
    pub(crate) fn onto(&self, prev: &Arc<[u8]>) -> Arc<[u8]> {
        if self.is_empty() {
            return prev.clone();
        }
        let mut buf = prev.to_vec();
        self.apply(&mut buf);
        Arc::from(buf)
    }
}

/// How many pictures in a row (a second at 30 fps, twice the pacer's window) a [`Chain`] keeps
/// as differences before it keeps one whole, so
/// that pictures no one takes (a pause drops them) cannot pile up behind the newest.
const MAX_LINKS: u32 = 30;

/// A picture held until it is needed: whole, or as its difference from the picture before it
/// (which it keeps alive until it has been made whole). Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Held(Arc<Mutex<Kept>>);

#[derive(Debug)]
enum Kept {
    Whole(Arc<[u8]>),
    After(Held, Delta),
}

impl Held {
    /// A picture kept whole (JPEG frames, the first of a chain).
    pub(crate) fn whole(image: Arc<[u8]>) -> Self {
        Self(Arc::new(Mutex::new(Kept::Whole(image))))
    }

    /// The picture, whole. The first call on a picture kept as a difference builds it (from the
    /// one before, made whole the same way) and keeps it whole from then on, letting go of the
    /// picture before; the next picture of the chain then costs one copy and its blocks.
    pub(crate) fn image(&self) -> Arc<[u8]> {
        // A panic elsewhere while holding the lock leaves the picture as it was: take it.
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let whole = match &*kept {
            Kept::Whole(image) => return image.clone(),
            Kept::After(prev, delta) => delta.onto(&prev.image()),
        };
        *kept = Kept::Whole(whole.clone());
        whole
    }

    /// Bytes of picture it holds itself (not counting the picture before).
    #[cfg(test)]
    fn size(&self) -> usize {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Kept::Whole(image) => image.len(),
            Kept::After(_, delta) => delta.size(),
        }
    }
}

/// Makes the [`Held`] pictures of a stream of raw pictures, each after the one before.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// The last picture, whole, and how it is held.
    last: Option<(Arc<[u8]>, Held)>,
    /// Pictures since the last one kept whole.
    links: u32,
}

impl Chain {
    /// The next picture of the stream, held as its differences from the last one where that is
    /// small.
    pub(crate) fn hold(&mut self, image: Arc<[u8]>) -> Held {
        let after = match &self.last {
            Some((prev, held)) if self.links < MAX_LINKS => {
                Delta::between(prev, &image).map(|delta| Kept::After(held.clone(), delta))
            }
            _ => None,
        };
        let held = match after {
            Some(kept) => {
                self.links += 1;
                Held(Arc::new(Mutex::new(kept)))
            }
            None => {
                self.links = 0;
                Held::whole(image.clone())
            }
        };
        self.last = Some((image, held.clone()));
        held
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes of a test picture.
    pub(crate) const SIZE: usize = 10_000;

    /// A picture of `SIZE` bytes: grey, with `changed` bytes from `at` set to `value`.
    pub(crate) fn picture(at: usize, changed: usize, value: u8) -> Arc<[u8]> {
        let mut p = vec![128u8; SIZE];
        p[at..at + changed].fill(value);
        Arc::from(p)
    }

    #[test]
    fn a_delta_rebuilds_the_picture_or_declines_a_large_change() {
        let (a, b) = (picture(0, 10, 1), picture(5000, 300, 2));
        let d = Delta::between(&a, &b).unwrap();
        assert_eq!(d.blocks.len(), 3);
        assert_eq!(&*d.onto(&a), &*b);
        assert!(Delta::between(&a, &picture(0, 6000, 9)).is_none());
        assert!(Delta::between(&a, &a[..SIZE - 1]).is_none());
        let same = Delta::between(&a, &a.clone()).unwrap();
        assert!(same.is_empty() && Arc::ptr_eq(&same.onto(&a), &a));
    }

    #[test]
    fn held_pictures_come_back_exactly_in_any_order_and_some_never() {
        let mut chain = Chain::default();
        let pictures: Vec<Arc<[u8]>> = (0..40).map(|i| picture(i * 200, 100, i as u8)).collect();
        let held: Vec<Held> = pictures.iter().map(|p| chain.hold(p.clone())).collect();
        // All but the first (and one in `MAX_LINKS` + 1) are small.
        assert_eq!(held[0].size(), SIZE);
        assert!(held[1].size() < 1000);
        assert_eq!(held[MAX_LINKS as usize + 1].size(), SIZE);
        // Some taken late, some out of order, some never (dropped in a pause).
        for i in [3, 2, 30, 10, 11, 39] {
            assert_eq!(&*held[i].image(), &*pictures[i], "picture {i}");
        }
        // Taken once, a picture is whole and lets go of the one before.
        assert_eq!(held[10].size(), SIZE);
    }

    #[test]
    fn pictures_no_one_takes_do_not_pile_up() {
        let mut chain = Chain::default();
        let first = chain.hold(picture(0, 10, 0));
        let weak = Arc::downgrade(&first.0);
        drop(first);
        for i in 1..=MAX_LINKS + 1 {
            drop(chain.hold(picture(i as usize * 300, 10, i as u8)));
        }
        // The chain started again with a whole picture: the first one is gone.
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_picture_that_changes_everywhere_is_held_whole() {
        let mut chain = Chain::default();
        chain.hold(picture(0, 10, 1));
        let h = chain.hold(picture(0, 9000, 7));
        assert_eq!(h.size(), SIZE);
    }
}
