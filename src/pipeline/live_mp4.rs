//! MP4 results go to the bucket while they are recorded, so Stop → finished does not grow with
//! the recording's length.
//!
//! During the record stage a live remux (see [`crate::media::remux`]) turns the encoder's
//! segments into an MP4 file in the work directory as they complete, with its samples first and
//! its index last. Every 2 s, each whole part of samples on disk goes up as one part of a
//! multipart upload: parts 2, 3, …, because part 1 is kept for the head. At the end the
//! transcode stage moves the index to the front (see [`crate::media::faststart`]), sends part 1
//! (the head and the first part of samples) and the tail, and completes the upload: a
//! `+faststart` MP4 made of the very samples already in the bucket.
//!
//! The upload goes to the result's key when the task names its file (`TargetName`). Otherwise
//! the name is the stop time, unknown while recording, so the parts go to
//! `<TargetDir>/<TaskID>.mp4.part` and the finished object is copied to its name inside the
//! storage (nothing is sent again) and the staging object deleted.
//!
//! This is an optimisation with a safe way back: anything unusual (the encoder restarted, a
//! takeover, the remux failing, a storage error at the end) abandons the upload and the result
//! is made from the segments as before.
//!
//! The state lives in the work directory (`live-mp4.json`), so the transcode stage of any worker
//! on the node can finish it, and a worker that finds an unfinished one aborts its upload.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::types::CompletedPart;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::delivery::{ResultFile, note_stored};
use crate::media::faststart;
use crate::media::remux::LiveRemux;
use crate::media::segments::{completed_segments, parse_segment_list, segment_lists};
use crate::storage::StorageError;
use crate::storage::s3::ObjectStore;
use crate::task::TaskRecord;
use crate::workdir;

/// How long ffmpeg may take to write the index once its input ended.
const FINISH_LIMIT: Duration = Duration::from_secs(60);

/// What has been done so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LiveState {
    /// The object the parts go to.
    key: String,
    /// The multipart upload, once the first part went up.
    upload_id: Option<String>,
    /// The segment list (one encoder) whose segments are fed to the remux.
    list: String,
    /// How many of its segments were fed.
    fed: usize,
    /// Where the samples start in the live file.
    payload_start: Option<u64>,
    /// Bytes per part.
    part_size: u64,
    /// Parts 2, 3, … sent so far, in order.
    parts: Vec<SentPart>,
    /// The remux wrote its index: the transcode stage can finish the upload.
    finished: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SentPart {
    number: i32,
    etag: Option<String>,
    len: u64,
}

impl LiveState {
    /// Where in the samples the next part starts (part 1 holds the first `part_size` bytes).
    fn next_offset(&self) -> u64 {
        self.part_size + self.parts.iter().map(|p| p.len).sum::<u64>()
    }

    fn completed_parts(&self) -> Vec<CompletedPart> {
        self.parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .set_e_tag(p.etag.clone())
                    .build()
            })
            .collect()
    }

    fn load(work_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(workdir::live_mp4_state(work_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, work_dir: &Path) -> std::io::Result<()> {
        let tmp = workdir::live_mp4_state_tmp(work_dir);
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, workdir::live_mp4_state(work_dir))
    }
}

/// Why the live upload cannot go on.
#[derive(Debug)]
enum Trouble {
    /// Give it up: the result is made from the segments.
    Abandon(String),
    /// Try again in the next round.
    Retry(StorageError),
}

impl From<StorageError> for Trouble {
    fn from(e: StorageError) -> Self {
        if e.is_retryable() {
            Trouble::Retry(e)
        } else {
            Trouble::Abandon(e.to_string())
        }
    }
}

fn abandon(why: impl std::fmt::Display) -> Trouble {
    Trouble::Abandon(why.to_string())
}

/// The object key the parts of `task`'s MP4 go to while it is recorded: its name when it is known
/// already, else a staging key named after the task.
pub(super) fn upload_key(task: &TaskRecord) -> String {
    use crate::task::names;
    if names::known_name(&task.spec.output, task.spec.muxer).is_some() {
        return names::rel_path(task);
    }
    format!(
        "{}/{}.mp4.part",
        names::result_dir(&task.id, &task.spec.output),
        task.id
    )
}

/// The live upload of one recording, run by the record stage.
pub(super) struct LiveMp4 {
    store: ObjectStore,
    work_dir: PathBuf,
    remux: Option<LiveRemux>,
    ffmpeg: PathBuf,
    state: LiveState,
}

impl LiveMp4 {
    /// A live upload of `task`'s MP4 to `store`. Leftovers of an earlier worker's live upload
    /// in `work_dir` are abandoned first: its remux died with it.
    pub(super) async fn new(
        store: ObjectStore,
        task: &TaskRecord,
        work_dir: &Path,
        ffmpeg: &Path,
        part_size: usize,
    ) -> Self {
        discard(&store, work_dir).await;
        Self {
            store,
            work_dir: work_dir.to_path_buf(),
            remux: None,
            ffmpeg: ffmpeg.to_path_buf(),
            state: LiveState {
                key: upload_key(task),
                part_size: part_size as u64,
                ..LiveState::default()
            },
        }
    }

    /// Feeds the completed segments and sends the whole parts on disk. Returns `false` once the
    /// live upload was given up.
    pub(super) async fn round(&mut self) -> bool {
        match self.step().await {
            Ok(()) => true,
            Err(Trouble::Retry(e)) => {
                warn!(error = %e, "sending the MP4 while recording failed; will retry");
                true
            }
            Err(Trouble::Abandon(why)) => {
                self.give_up(&why).await;
                false
            }
        }
    }

    /// The last round, once the recording ended: every segment fed, the index written.
    pub(super) async fn finish(mut self) {
        if !self.round().await {
            return;
        }
        let Some(remux) = self.remux.take() else {
            // Nothing was recorded.
            discard(&self.store, &self.work_dir).await;
            return;
        };
        if let Err(e) = remux.finish(FINISH_LIMIT).await {
            self.give_up(&e.to_string()).await;
            return;
        }
        self.state.finished = true;
        if let Err(e) = self.state.save(&self.work_dir) {
            self.give_up(&format!("saving its state: {e}")).await;
            return;
        }
        info!(
            key = %self.state.key,
            parts_sent = self.state.parts.len(),
            "the MP4's samples are in the bucket but for the last part"
        );
    }

    async fn give_up(&mut self, why: &str) {
        warn!(
            why,
            "the MP4 is no longer sent while recording; it is made from the segments at the end"
        );
        self.remux = None;
        discard(&self.store, &self.work_dir).await;
    }

    async fn step(&mut self) -> Result<(), Trouble> {
        self.feed().await?;
        let live = workdir::live_mp4(&self.work_dir);
        if self.state.payload_start.is_none() && live.exists() {
            let mut f = std::fs::File::open(&live).map_err(abandon)?;
            self.state.payload_start = faststart::payload_start(&mut f).map_err(abandon)?;
        }
        let Some(start) = self.state.payload_start else {
            return Ok(());
        };
        let on_disk = std::fs::metadata(&live).map_err(abandon)?.len();
        loop {
            let from = self.state.next_offset();
            let len = self.state.part_size;
            if start + from + len > on_disk {
                return Ok(());
            }
            let bytes = read_range(&live, start + from, len).map_err(abandon)?;
            let upload_id = match &self.state.upload_id {
                Some(id) => id.clone(),
                None => {
                    let id = self.store.start_multipart(&self.state.key).await?;
                    self.state.upload_id = Some(id.clone());
                    self.save()?;
                    id
                }
            };
            let number = self.state.parts.len() as i32 + 2;
            let part = self
                .store
                .upload_part(&self.state.key, &upload_id, number, bytes)
                .await?;
            self.state.parts.push(SentPart {
                number,
                etag: part.e_tag().map(str::to_string),
                len,
            });
            self.save()?;
            debug!(part = number, bytes = len, "MP4 part sent while recording");
        }
    }

    fn save(&self) -> Result<(), Trouble> {
        self.state
            .save(&self.work_dir)
            .map_err(|e| abandon(format!("saving its state: {e}")))
    }

    /// Sends the remux every newly completed segment of the one encoder it follows.
    async fn feed(&mut self) -> Result<(), Trouble> {
        let lists = segment_lists(&self.work_dir).map_err(abandon)?;
        let list = match lists.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => return Err(abandon("the encoder was restarted (a new clock)")),
        };
        let name = list
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.state.list.is_empty() {
            self.state.list = name;
        } else if self.state.list != name {
            return Err(abandon("the encoder was restarted (a new clock)"));
        }
        let text = std::fs::read_to_string(list).map_err(abandon)?;
        let records = parse_segment_list(&text);
        for record in records.iter().skip(self.state.fed) {
            let path = self.work_dir.join(&record.name);
            if self.remux.is_none() {
                let live = workdir::live_mp4(&self.work_dir);
                self.remux = Some(LiveRemux::start(&self.ffmpeg, &live).map_err(abandon)?);
            }
            if let Some(remux) = self.remux.as_mut() {
                remux.feed(&path).await.map_err(abandon)?;
            }
            self.state.fed += 1;
        }
        Ok(())
    }
}

fn read_range(path: &Path, from: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Abandons whatever live upload `work_dir` holds: aborts its multipart upload, removes its
/// files.
pub(super) async fn discard(store: &ObjectStore, work_dir: &Path) {
    if let Some(state) = LiveState::load(work_dir)
        && let Some(id) = &state.upload_id
    {
        store.abort_multipart(&state.key, id).await;
    }
    let _ = std::fs::remove_file(workdir::live_mp4_state(work_dir));
    let _ = std::fs::remove_file(workdir::live_mp4(work_dir));
}

/// The transcode stage's end of the live upload: makes the `+faststart` MP4 `final_key` from the
/// live file, sending only what is not in the bucket yet. `None` when there is no finished live
/// upload, or it cannot be completed (it is then abandoned): the caller makes the result from
/// the segments.
pub(super) async fn complete(
    store: &ObjectStore,
    work_dir: &Path,
    deliver_dir: &Path,
    final_key: &str,
) -> Option<ResultFile> {
    let state = LiveState::load(work_dir)?;
    let outcome = if state.finished {
        finish_upload(store, &state, work_dir, deliver_dir, final_key).await
    } else {
        Err("its recording ended before the remux wrote the index".to_string())
    };
    match outcome {
        Ok(file) => {
            let _ = std::fs::remove_file(workdir::live_mp4_state(work_dir));
            let _ = std::fs::remove_file(workdir::live_mp4(work_dir));
            Some(file)
        }
        Err(why) => {
            warn!(
                why,
                "the MP4 sent while recording cannot be used; making it from the segments"
            );
            discard(store, work_dir).await;
            None
        }
    }
}

async fn finish_upload(
    store: &ObjectStore,
    state: &LiveState,
    work_dir: &Path,
    deliver_dir: &Path,
    final_key: &str,
) -> Result<ResultFile, String> {
    // Every recorded segment must be in the live file.
    let lists = segment_lists(work_dir).map_err(|e| e.to_string())?;
    let listed = match lists.as_slice() {
        [one]
            if one
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == state.list) =>
        {
            completed_segments(work_dir)
                .map_err(|e| e.to_string())?
                .len()
        }
        _ => return Err("the recorded segments are not the ones it followed".into()),
    };
    if listed != state.fed {
        return Err(format!(
            "{listed} segments were recorded and {} were remuxed",
            state.fed
        ));
    }
    let live = workdir::live_mp4(work_dir);
    let mut file = std::fs::File::open(&live).map_err(|e| format!("{}: {e}", live.display()))?;
    let layout = faststart::layout(&mut file).map_err(|e| e.to_string())?;
    if state
        .payload_start
        .is_some_and(|s| s != layout.payload.start)
    {
        return Err("the samples moved in the live file".into());
    }
    let read = |r: std::ops::Range<u64>| {
        read_range(&live, r.start, r.end - r.start)
            .map_err(|e| format!("reading {}: {e}", live.display()))
    };
    let payload_len = layout.payload.end - layout.payload.start;
    let head = faststart::head(
        &read(layout.ftyp.clone())?,
        &read(layout.moov.clone())?,
        layout.payload.start,
        payload_len,
    )
    .map_err(|e| e.to_string())?;
    let size = head.len() as u64 + payload_len;
    let Some(upload_id) = &state.upload_id else {
        // Shorter than two parts: nothing went up yet. Write the file for the upload stage.
        let path = deliver_dir.join(final_key);
        write_file(&path, &head, &live, layout.payload.clone())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        info!(bytes = size, "MP4 made from the live remux");
        return Ok(ResultFile {
            key: final_key.to_string(),
            size,
            stored: false,
        });
    };
    let sent_until = state.next_offset();
    if sent_until > payload_len {
        return Err("more was sent than the file holds".into());
    }
    let key = &state.key;
    let mut parts = state.completed_parts();
    // Part 1: the head and the first samples.
    let mut first = head;
    first.extend(read(
        layout.payload.start..layout.payload.start + state.part_size.min(payload_len),
    )?);
    parts.push(
        store
            .upload_part(key, upload_id, 1, first)
            .await
            .map_err(|e| e.to_string())?,
    );
    // The tail: what was written since the last part.
    let mut from = sent_until;
    let mut number = state.parts.len() as i32 + 2;
    while from < payload_len {
        let len = state.part_size.min(payload_len - from);
        let start = layout.payload.start + from;
        let bytes = read(start..start + len)?;
        parts.push(
            store
                .upload_part(key, upload_id, number, bytes)
                .await
                .map_err(|e| e.to_string())?,
        );
        from += len;
        number += 1;
    }
    store
        .complete_multipart(key, upload_id, parts)
        .await
        .map_err(|e| e.to_string())?;
    let placed = place(store, key, final_key, size).await;
    if let Err(e) = &placed
        && key != final_key
    {
        let _ = store.delete(key).await;
        return Err(e.clone());
    }
    placed?;
    let file = ResultFile {
        key: final_key.to_string(),
        size,
        stored: true,
    };
    note_stored(deliver_dir, std::slice::from_ref(&file)).map_err(|e| e.to_string())?;
    info!(
        bytes = size,
        parts_at_stop = number - state.parts.len() as i32 - 1,
        "MP4 completed in the bucket"
    );
    Ok(file)
}

/// Checks the completed object's size and, if it was uploaded under a staging key, copies it to
/// `final_key` inside the storage and removes the staging object.
async fn place(store: &ObjectStore, key: &str, final_key: &str, size: u64) -> Result<(), String> {
    let check = |got: Option<u64>, k: &str| {
        if got == Some(size) {
            Ok(())
        } else {
            Err(format!("{k} holds {got:?} bytes, not {size}"))
        }
    };
    check(store.size_of(key).await.map_err(|e| e.to_string())?, key)?;
    if key == final_key {
        return Ok(());
    }
    store
        .copy(key, final_key)
        .await
        .map_err(|e| e.to_string())?;
    check(
        store.size_of(final_key).await.map_err(|e| e.to_string())?,
        final_key,
    )?;
    if let Err(e) = store.delete(key).await {
        warn!(key, error = %e, "removing the staging object failed");
    }
    Ok(())
}

/// Writes `head` and then the `payload` range of `source` to `path`.
fn write_file(
    path: &Path,
    head: &[u8],
    source: &Path,
    payload: std::ops::Range<u64>,
) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::File::create(path)?;
    out.write_all(head)?;
    let mut src = std::fs::File::open(source)?;
    src.seek(SeekFrom::Start(payload.start))?;
    let copied = std::io::copy(&mut src.take(payload.end - payload.start), &mut out)?;
    if copied != payload.end - payload.start {
        return Err(std::io::Error::other(
            "the live file is shorter than its index says",
        ));
    }
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_first_part_kept_for_the_head() {
        let mut s = LiveState {
            part_size: 10,
            ..LiveState::default()
        };
        assert_eq!(s.next_offset(), 10);
        s.parts.push(SentPart {
            number: 2,
            etag: Some("e".into()),
            len: 10,
        });
        assert_eq!(s.next_offset(), 20);
        assert_eq!(s.completed_parts()[0].part_number(), Some(2));
    }

    #[test]
    fn state_survives_a_restart_of_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let s = LiveState {
            key: "d/t.mp4.part".into(),
            upload_id: Some("u".into()),
            list: "segments-000000.csv".into(),
            fed: 3,
            payload_start: Some(48),
            part_size: 8,
            parts: vec![],
            finished: true,
        };
        s.save(dir.path()).unwrap();
        assert_eq!(LiveState::load(dir.path()), Some(s));
        std::fs::write(workdir::live_mp4_state(dir.path()), "{cut").unwrap();
        assert_eq!(
            LiveState::load(dir.path()),
            None,
            "a damaged state is no state"
        );
    }
}
