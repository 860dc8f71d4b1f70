//! The claim-check store: large content (attachments, MMS media, raw e-mail) stored once
//! under its sha-256, before the event that references it (`sha256:<hex>`) is emitted.
//!
//! Files under `<blob_dir>/sha256/<first two hex>/<hex>`, like git's object store: written to
//! a temporary file, hashed while written, then renamed into place, so a reader never sees a
//! partial blob and two writers of the same content agree. Blobs live outside the SQL read
//! model on purpose: `switchboard ucs rebuild` recreates the database from the log, and the
//! log holds only references.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is larger than the limit of {limit} bytes (ucs.max_blob_bytes)")]
    TooLarge { limit: u64 },
    #[error("'{0}' is not a blob reference: expected sha256: and 64 lower-case hex digits")]
    BadReference(String),
    #[error("the upload was cut off: {0}")]
    Upload(String),
    #[error("blob store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredBlob {
    /// `sha256:<hex>`: put it in the event instead of the content.
    pub reference: String,
    pub size: u64,
    /// False when the same content was already stored.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl BlobStore {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Stores a stream of chunks; fails with [`BlobError::TooLarge`] as soon as it passes the
    /// limit, keeping nothing.
    pub async fn put_stream<S, E>(&self, mut chunks: S) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<bytes_chunk::Chunk, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staging = self.dir.join("staging");
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|source| io(&staging, source))?;
        let temp = tempfile::NamedTempFile::new_in(&staging).map_err(|source| io(&staging, source))?;
        let (std_file, temp_path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| BlobError::Upload(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(BlobError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| io(&temp_path, source))?;
        }
        file.sync_all().await.map_err(|source| io(&temp_path, source))?;
        drop(file);
        let hex = hex::encode(hasher.finalize());
        let path = self.path_of(&hex);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(StoredBlob {
                reference: format!("sha256:{hex}"),
                size,
                created: false,
            });
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| io(parent, source))?;
        }
        temp_path
            .persist(&path)
            .map_err(|e| io(&path, e.error))?;
        Ok(StoredBlob {
            reference: format!("sha256:{hex}"),
            size,
            created: true,
        })
    }

    pub async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        let chunk: Result<bytes_chunk::Chunk, std::convert::Infallible> =
            Ok(bytes_chunk::Chunk::copy_from_slice(bytes));
        self.put_stream(futures::stream::iter([chunk])).await
    }

    /// The content, or `None` when no blob has that reference.
    pub async fn get(&self, reference: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let hex = parse_reference(reference)?;
        let path = self.path_of(hex);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io(&path, source)),
        }
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.dir.join("sha256").join(&hex[..2]).join(hex)
    }
}

/// The hex digest of a `sha256:<64 hex>` reference.
pub fn parse_reference(reference: &str) -> Result<&str, BlobError> {
    let bad = || BlobError::BadReference(reference.chars().take(100).collect());
    let hex = reference.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(bad())
    }
}

fn io(path: &Path, source: std::io::Error) -> BlobError {
    BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The chunk type of HTTP bodies (axum's `Bytes`), named once here.
pub mod bytes_chunk {
    pub type Chunk = axum::body::Bytes;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_content_same_reference_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 10);
        let first = store.put(b"hello").await.unwrap();
        assert_eq!(
            first.reference,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(first.created);
        let again = store.put(b"hello").await.unwrap();
        assert_eq!(again.reference, first.reference);
        assert!(!again.created);
        assert_eq!(store.get(&first.reference).await.unwrap().unwrap(), b"hello");
        let err = store.put(b"more than ten bytes").await.unwrap_err();
        assert!(err.to_string().contains("larger than the limit of 10 bytes"), "{err}");
        assert!(matches!(store.get("sha256:xyz").await, Err(BlobError::BadReference(_))));
        let absent = format!("sha256:{}", "0".repeat(64));
        assert_eq!(store.get(&absent).await.unwrap(), None);
        // Nothing half-written is left behind by the refused upload.
        let staged = std::fs::read_dir(dir.path().join("staging")).unwrap().count();
        assert_eq!(staged, 0);
    }
}
