//! Delivery vocabulary shared by the stages that make, publish, upload and serve results, and by
//! the task's wire view: the files of a result and which of them are in the bucket already
//! (`ResultFile`, the deliver directory's `stored.csv`), the store a result goes to
//! (`result_store`), and the signed URLs of local results ([`signed_url`]).
//!
//! A leaf below `task`: nothing here knows the task record (result *names* are the task's, see
//! [`crate::task::names`]).

pub mod signed_url;

use std::collections::HashMap;
use std::path::Path;

use crate::media::MediaError;
use crate::storage::s3::ObjectStore;
use crate::storage::{Destination, OutputTarget, StorageConfig, StorageError};
use crate::url_guard::UrlPolicy;

/// One file of an HLS result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResultFile {
    /// Key below the output root.
    pub(crate) key: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Already in the bucket (not in the deliver directory).
    pub(crate) stored: bool,
}

/// Notes in `deliver_dir`, for the upload stage, which of `files` are in the bucket already.
pub(crate) fn note_stored(deliver_dir: &Path, files: &[ResultFile]) -> Result<(), MediaError> {
    let list: String = files
        .iter()
        .filter(|f| f.stored)
        .map(|f| format!("{},{}\n", f.size, f.key))
        .collect();
    std::fs::create_dir_all(deliver_dir).map_err(MediaError::io(format!(
        "creating {}",
        deliver_dir.display()
    )))?;
    // No result object can have this name: every object key has a directory.
    let path = crate::workdir::stored_list(deliver_dir);
    std::fs::write(&path, list).map_err(MediaError::io(format!("writing {}", path.display())))
}

/// The objects a transcode found already in the bucket (key → size), from `deliver_dir`.
pub(crate) fn stored_objects(deliver_dir: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(crate::workdir::stored_list(deliver_dir))
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let (size, key) = l.split_once(',')?;
                    Some((key.to_string(), size.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The store for a task's result at `dest`. The task's endpoint and bucket (`output`) are checked
/// against the allow-lists first (Start did, but the settings may have changed since; the
/// server's credentials never go to a place they do not allow), and a task-chosen endpoint
/// against the URL rules (`policy`): it is a place pagecast connects to.
pub(crate) async fn result_store(
    storage: &StorageConfig,
    policy: &UrlPolicy,
    output: &OutputTarget,
    dest: &Destination,
) -> Result<ObjectStore, StorageError> {
    storage
        .check_target(output)
        .map_err(|why| StorageError::Config(format!("the task's Output.{} {why}", why.field())))?;
    if let Some(endpoint) = &output.endpoint {
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("https://{endpoint}")
        };
        crate::url_guard::check_url(&url, policy)
            .await
            .map_err(|why| StorageError::Config(format!("the Output.S3.Endpoint {why}")))?;
    }
    Ok(ObjectStore::new(dest.clone(), storage.upload_settings()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            crate::workdir::stored_list(dir.path()),
            "10,t/a_000001.ts\nbad\n",
        )
        .unwrap();
        let got = stored_objects(dir.path());
        assert_eq!(got.len(), 1);
        assert_eq!(got["t/a_000001.ts"], 10);
        assert!(stored_objects(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn noted_files_are_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = |key: &str, stored| ResultFile {
            key: key.into(),
            size: 7,
            stored,
        };
        note_stored(dir.path(), &[file("t/a.ts", true), file("t/b.ts", false)]).unwrap();
        let got = stored_objects(dir.path());
        assert_eq!(got.len(), 1);
        assert_eq!(got["t/a.ts"], 7);
    }
}
