//! HLS results are published while they are recorded, so Stop → finished does not grow with the
//! recording's length: every completed segment is put in its published form (encrypted when the
//! task asks) in its final place — the output directory for local delivery, the bucket
//! otherwise — during the record stage; the transcode stage then adds only the last segments and
//! the playlist (see [`crate::media::hls`]).
//!
//! What has been published is noted in the work directory's `published.csv` (one line per
//! segment: recorded number, recorded size, object size, object key), so a worker that continues
//! the task on the same machine, and the transcode stage, skip what is already in place. A line
//! is written only once its segment is in place; a segment published again after a crash is
//! byte for byte the same object (its IV is its recorded number).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::WorkerContext;
use crate::delivery::{ResultFile, note_stored};
use crate::media::MediaError;
use crate::media::hls::{self, HlsKey, HlsSegment};
use crate::storage::StorageError;
use crate::storage::s3::ObjectStore;
use crate::task::store::StoreError;
use crate::task::{Muxer, TaskRecord};

/// Why publishing a segment failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum PublishError {
    /// Writing its published form.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Sending it to the bucket.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A segment in its final place.
#[derive(Debug, Clone, PartialEq)]
struct Published {
    /// Size of the recorded file it was made from.
    source_size: u64,
    /// Size of the object.
    size: u64,
    /// Its key below the output root.
    key: String,
}

/// Publishes one task's HLS segments.
pub(super) struct Publisher {
    /// Where published forms are written: the output directory (local delivery) or the task's
    /// deliver directory (for the bucket).
    root: PathBuf,
    /// The result's directory below the root.
    dir: String,
    /// Segment names are `<stem>_<number>.ts`.
    stem: String,
    key: Option<HlsKey>,
    /// The result goes to a bucket.
    remote: bool,
    /// Send segments to the bucket now (the record stage); `None` leaves them in the deliver
    /// directory for the upload stage.
    store: Option<ObjectStore>,
    manifest: PathBuf,
    done: HashMap<u64, Published>,
    /// Remove each recorded file from the work directory once its segment is in place.
    remove_sources: bool,
}

/// The task's HLS key, if it asked for encryption. The outer error is the store's; the inner one
/// says why the key cannot be used.
pub(super) async fn task_key(
    ctx: &WorkerContext,
    task: &TaskRecord,
) -> Result<Result<Option<HlsKey>, String>, StoreError> {
    let secrets = ctx.store.secrets(&task.id).await?;
    Ok(match (secrets.encrypt_key, &task.spec.auth_url) {
        (Some(k), Some(uri)) => {
            HlsKey::from_hex(&k, uri).and_then(|key| match &secrets.encrypt_iv {
                Some(iv) => key.with_iv_hex(iv),
                None => Ok(key),
            })
        }
        _ => return Ok(Ok(None)),
    }
    .map(Some))
}

impl Publisher {
    /// The publisher of `task`'s segments (`None` unless its result is HLS). `store` is given to
    /// send segments to the bucket as they are published.
    pub(super) fn new(
        ctx: &WorkerContext,
        task: &TaskRecord,
        key: Option<HlsKey>,
        store: Option<ObjectStore>,
    ) -> Option<Self> {
        if task.spec.muxer != Muxer::Hls {
            return None;
        }
        let remote = ctx.cfg.storage.destination(&task.spec.output).is_some();
        let root = if remote {
            ctx.cfg.deliver_dir(&task.id)
        } else {
            ctx.cfg.output_dir.clone()
        };
        let playlist = crate::task::names::rel_path(task);
        let dir = Path::new(&playlist)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Segments are named after the playlist (`TargetName` or the default), known from the start.
        let stem = crate::task::names::known_name(&task.spec.output, Muxer::Hls)
            .unwrap_or(crate::task::names::DEFAULT_HLS_NAME)
            .to_string();
        let manifest = crate::workdir::published_list(&ctx.cfg.task_dir(&task.id));
        let done = std::fs::read_to_string(&manifest)
            .map(|text| parse_manifest(&text))
            .unwrap_or_default();
        Some(Self {
            root,
            dir,
            stem,
            key,
            remote,
            store: store.filter(|_| remote),
            manifest,
            done,
            remove_sources: false,
        })
    }

    /// Makes the publisher remove each recorded segment from the work directory once it is in
    /// its final place, so a recording's disk use stays at a few segments however long it runs.
    /// Only where nothing else needs them (not while the work directory is copied to a bucket).
    pub(super) fn removing_sources(mut self) -> Self {
        self.remove_sources = true;
        self
    }

    fn key_of(&self, number: u64) -> String {
        let name = hls::segment_file_name(&self.stem, number);
        if self.dir.is_empty() {
            name
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// Whether `seg` is in its final place already.
    fn is_done(&self, seg: &HlsSegment, source_size: u64) -> bool {
        let Some(p) = self.done.get(&seg.number) else {
            return false;
        };
        p.source_size == source_size
            && p.key == self.key_of(seg.number)
            && (self.remote
                || std::fs::metadata(self.root.join(&p.key)).is_ok_and(|m| m.len() == p.size))
    }

    /// Publishes every segment of `segments` not yet in its final place (in the deliver
    /// directory only, when the result goes to a bucket and no store was given). Returns how
    /// many were published.
    pub(super) async fn publish(&mut self, segments: &[HlsSegment]) -> Result<usize, PublishError> {
        let mut count = 0;
        for seg in segments {
            let Ok(meta) = std::fs::metadata(&seg.source) else {
                continue;
            };
            if self.is_done(seg, meta.len()) {
                continue;
            }
            let key = self.key_of(seg.number);
            let staged = self.root.join(&key);
            let size = hls::stage(seg, &staged, self.key.as_ref())?;
            if self.remote {
                let Some(store) = &self.store else {
                    count += 1;
                    continue;
                };
                store.upload_file(&staged, &key).await?;
                let _ = std::fs::remove_file(&staged);
            }
            let published = Published {
                source_size: meta.len(),
                size,
                key,
            };
            self.note(seg.number, &published);
            self.done.insert(seg.number, published);
            if self.remove_sources {
                let _ = std::fs::remove_file(&seg.source);
            }
            count += 1;
        }
        if count > 0 {
            debug!(segments = count, "HLS segments published");
        }
        Ok(count)
    }

    /// Appends a line to the manifest (best effort: without it the segment is published again).
    fn note(&self, number: u64, p: &Published) {
        let line = format!("{number},{},{},{}\n", p.source_size, p.size, p.key);
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.manifest)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }

    /// Completes the result: publishes what is missing, writes the playlist `playlist_key`
    /// (below the root) and returns every file of the result, the playlist first. For a bucket,
    /// also leaves the list of objects already stored for the upload stage.
    pub(super) async fn finish(
        &mut self,
        segments: &[HlsSegment],
        playlist_key: &str,
    ) -> Result<Vec<ResultFile>, PublishError> {
        self.publish(segments).await?;
        // Every segment is in its final place, or staged beside the playlist; one whose file is
        // gone (lost with a machine, say) is left out, and the next marked as a jump.
        let mut files = Vec::with_capacity(segments.len() + 1);
        let mut included: Vec<HlsSegment> = Vec::with_capacity(segments.len());
        let mut skipped = false;
        for seg in segments {
            let key = self.key_of(seg.number);
            let file = match self.done.get(&seg.number) {
                Some(p) if p.key == key => ResultFile {
                    key,
                    size: p.size,
                    stored: self.remote,
                },
                _ => match std::fs::metadata(self.root.join(&key)) {
                    Ok(m) => ResultFile {
                        key,
                        size: m.len(),
                        stored: false,
                    },
                    Err(_) => {
                        warn!(
                            segment = seg.number,
                            "a recorded segment is missing; it is left out of the playlist"
                        );
                        skipped = true;
                        continue;
                    }
                },
            };
            let mut seg = seg.clone();
            seg.discontinuity |= std::mem::take(&mut skipped) && !included.is_empty();
            included.push(seg);
            files.push(file);
        }
        if included.is_empty() {
            return Err(
                MediaError::Unexpected("no recorded segment is left to publish".into()).into(),
            );
        }
        let text = hls::playlist(&included, &self.stem, self.key.as_ref());
        let playlist = self.root.join(playlist_key);
        if let Some(dir) = playlist.parent() {
            std::fs::create_dir_all(dir)
                .map_err(MediaError::io(format!("creating {}", dir.display())))?;
        }
        hls::write_playlist(&playlist, &text)?;
        files.insert(
            0,
            ResultFile {
                key: playlist_key.to_string(),
                size: text.len() as u64,
                stored: false,
            },
        );
        if self.remote {
            note_stored(&self.root, &files)?;
        }
        Ok(files)
    }
}

/// Parses the manifest; lines cut short by a crash are skipped.
fn parse_manifest(text: &str) -> HashMap<u64, Published> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.splitn(4, ',');
            let number = f.next()?.parse().ok()?;
            let source_size = f.next()?.parse().ok()?;
            let size = f.next()?.parse().ok()?;
            let key = f.next()?.to_string();
            (!key.is_empty()).then_some((
                number,
                Published {
                    source_size,
                    size,
                    key,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_survive_commas_and_cut_lines() {
        let m =
            parse_manifest("3,100,112,dir/a,b_000003.ts\n4,100,112\nx,1,2,k\n5,9,9,d/s_000005.ts");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&3].key, "dir/a,b_000003.ts");
        assert_eq!(m[&3].size, 112);
        assert_eq!(m[&5].source_size, 9);
    }
}
