//! Uploads to S3-compatible storage with aws-sdk-s3.
//!
//! Small files go up in one PUT streamed from disk; larger ones as a multipart upload whose parts
//! are read one at a time, with at most `concurrency` parts in memory. Each request is retried by
//! the SDK (standard mode: exponential backoff with jitter on throttling, 5xx, timeouts and
//! connection errors); what still fails is classified retryable or not, so the upload stage can
//! wait out an outage instead of failing the task.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::credentials::S3Clients;
use super::{Destination, StorageError, content_type};

/// Upload tuning.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Files above this size go up in parts of this size.
    pub part_size: usize,
    /// Parts in flight per file.
    pub concurrency: usize,
    /// Attempts per request.
    pub max_attempts: u32,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            concurrency: 4,
            max_attempts: 4,
        }
    }
}

/// Storage operations on one destination, through the process's shared clients.
#[derive(Clone)]
pub struct ObjectStore {
    clients: S3Clients,
    dest: Destination,
    settings: UploadSettings,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent.
    pub bytes: u64,
    /// Parts (1 for a single PUT).
    pub parts: u32,
}

impl ObjectStore {
    /// Operations on `dest` through the process's shared clients ([`super::credentials::shared`]).
    pub(crate) fn new(dest: Destination, settings: UploadSettings) -> Self {
        Self::with_clients(super::credentials::shared(), dest, settings)
    }

    /// Operations on `dest` through `clients`.
    pub fn with_clients(clients: S3Clients, dest: Destination, settings: UploadSettings) -> Self {
        Self {
            clients,
            dest,
            settings,
        }
    }

    /// The client for this destination (made once per process and destination).
    async fn client(&self) -> Client {
        self.clients
            .client(&self.dest, self.settings.max_attempts)
            .await
    }

    /// Uploads `path` as `key` and confirms the stored size.
    pub async fn upload_file(&self, path: &Path, key: &str) -> Result<Uploaded, StorageError> {
        let io = |source| StorageError::Io {
            path: path.display().to_string(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        let uploaded = if size as usize <= self.settings.part_size {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            self.client()
                .await
                .put_object()
                .bucket(&self.dest.bucket)
                .key(key)
                .content_type(content_type(key))
                .content_length(size as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| request_error("upload", key, e))?;
            Uploaded {
                bytes: size,
                parts: 1,
            }
        } else {
            self.multipart(path, key, size).await?
        };
        let stored = self.size_of(key).await?;
        if stored != Some(size) {
            return Err(StorageError::SizeMismatch {
                key: key.to_string(),
                expected: size,
                actual: stored.unwrap_or(0),
            });
        }
        debug!(key, bytes = size, parts = uploaded.parts, "uploaded");
        Ok(uploaded)
    }

    /// The size of `key` in storage, `None` when it does not exist.
    pub(crate) async fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self
            .client()
            .await
            .head_object()
            .bucket(&self.dest.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(request_error("check", key, e)),
        }
    }

    /// Keys and sizes of every object whose key starts with `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client()
                .await
                .list_objects_v2()
                .bucket(&self.dest.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| request_error("list", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push((key.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Downloads `key` into `path` (written beside it first, then renamed into place).
    pub(crate) async fn download_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let io = |source| StorageError::Io {
            path: path.display().to_string(),
            source,
        };
        let obj = self
            .client()
            .await
            .get_object()
            .bucket(&self.dest.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| request_error("download", key, e))?;
        let partial = path.with_extension("download");
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut body = obj.body.into_async_read();
        let bytes = tokio::io::copy(&mut body, &mut file).await.map_err(io)?;
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io)?;
        tokio::fs::rename(&partial, path).await.map_err(io)?;
        Ok(bytes)
    }

    /// Deletes `key` (no error if it is already gone).
    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client()
            .await
            .delete_object()
            .bucket(&self.dest.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("delete", key, e))
    }

    /// Whether the bucket can be reached with these credentials.
    pub(crate) async fn check_bucket(&self) -> Result<(), StorageError> {
        self.client()
            .await
            .head_bucket()
            .bucket(&self.dest.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("reach bucket", &self.dest.bucket, e))
    }

    /// The URL a client fetches `key` from: presigned when configured and no public base is set.
    pub(crate) async fn url_of(&self, key: &str) -> Result<String, StorageError> {
        match (self.dest.presign, &self.dest.public_base) {
            (Some(expires), None) => {
                let config = PresigningConfig::expires_in(expires).map_err(|e| {
                    StorageError::Config(format!("presigning period {expires:?}: {e}"))
                })?;
                let req = self
                    .client()
                    .await
                    .get_object()
                    .bucket(&self.dest.bucket)
                    .key(key)
                    .presigned(config)
                    .await
                    .map_err(|e| request_error("presign", key, e))?;
                Ok(req.uri().to_string())
            }
            _ => Ok(self.dest.object_url(key)),
        }
    }

    async fn multipart(&self, path: &Path, key: &str, size: u64) -> Result<Uploaded, StorageError> {
        let upload_id = self.start_multipart(key).await?;
        let sent = match self.upload_parts(path, key, &upload_id).await {
            Ok(parts) => {
                let count = parts.len() as u32;
                self.complete_multipart(key, &upload_id, parts)
                    .await
                    .map(|()| count)
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(count) => Ok(Uploaded {
                bytes: size,
                parts: count,
            }),
            Err(e) => {
                self.abort_multipart(key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Starts a multipart upload of `key` and returns its id.
    pub(crate) async fn start_multipart(&self, key: &str) -> Result<String, StorageError> {
        let created = self
            .client()
            .await
            .create_multipart_upload()
            .bucket(&self.dest.bucket)
            .key(key)
            .content_type(content_type(key))
            .send()
            .await
            .map_err(|e| request_error("start multipart upload of", key, e))?;
        created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| StorageError::Request {
                operation: "start multipart upload of",
                key: key.to_string(),
                message: "the storage returned no upload id".into(),
                retryable: false,
            })
    }

    /// Sends part `number` (from 1) of upload `upload_id`; returns the part as completed.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<CompletedPart, StorageError> {
        let len = bytes.len() as i64;
        let out = self
            .client()
            .await
            .upload_part()
            .bucket(&self.dest.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| request_error("upload part of", key, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }

    /// Completes upload `upload_id` of `key` from `parts` (in any order).
    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        parts.sort_by_key(|p| p.part_number());
        self.client()
            .await
            .complete_multipart_upload()
            .bucket(&self.dest.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("complete multipart upload of", key, e))
    }

    /// Aborts upload `upload_id` of `key`, best effort: a dangling upload only costs storage
    /// until the bucket's lifecycle rule removes it.
    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) {
        if let Err(abort) = self
            .client()
            .await
            .abort_multipart_upload()
            .bucket(&self.dest.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            warn!(key, error = %DisplayErrorContext(&abort), "aborting a multipart upload failed");
        }
    }

    /// Copies `from` to `to` inside the bucket (the storage copies; nothing is downloaded).
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.client()
            .await
            .copy_object()
            .bucket(&self.dest.bucket)
            .key(to)
            .copy_source(format!("{}/{}", self.dest.bucket, super::encode_key(from)))
            .content_type(content_type(to))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("copy to", to, e))
    }

    /// Reads the file part by part and uploads with at most `concurrency` parts in flight.
    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let io = |source| StorageError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut in_flight = FuturesUnordered::new();
        let mut done = Vec::new();
        let mut number = 0i32;
        loop {
            let mut buf = Vec::with_capacity(self.settings.part_size);
            let n = (&mut file)
                .take(self.settings.part_size as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(io)?;
            if n == 0 {
                break;
            }
            number += 1;
            let part = number;
            in_flight.push(self.upload_part(key, upload_id, part, buf));
            if in_flight.len() >= self.settings.concurrency.max(1)
                && let Some(r) = in_flight.next().await
            {
                done.push(r?);
            }
            if n < self.settings.part_size {
                break;
            }
        }
        while let Some(r) = in_flight.next().await {
            done.push(r?);
        }
        Ok(done)
    }
}

/// Classifies an SDK error: connection problems, timeouts, throttling and 5xx may pass.
fn request_error<E>(
    operation: &'static str,
    key: &str,
    e: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    // No credentials anywhere is the operator's to fix; a credentials endpoint that failed may
    // answer later. Either way the message says so, not "dispatch failure".
    if let Some((message, retryable)) = super::credentials::credentials_failure(&e) {
        return StorageError::Request {
            operation,
            key: key.to_string(),
            message,
            retryable,
        };
    }
    let retryable = match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            status >= 500 || status == 429 || status == 408
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    StorageError::Request {
        operation,
        key: key.to_string(),
        message: DisplayErrorContext(&e).to_string(),
        retryable,
    }
}
