//! UCS's settings, `[ucs]`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use runtime::config::{ConfigError, redact_url, secret_from_file};


/// The Universal Contact Server: its SQL read model and claim-check blob store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UcsSettings {
    /// `sqlite://PATH` or `postgres://...`; unset: `sqlite://<data_dir>/ucs.db`.
    pub database_url: Option<String>,
    /// A file holding `database_url` (a secret: it carries the password).
    pub database_url_file: Option<PathBuf>,
    /// Content-addressed blobs; unset: `<data_dir>/blobs`.
    pub blob_dir: Option<PathBuf>,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Most records the projector writes in one SQL transaction.
    pub batch_size: usize,
    /// How long the projector waits to fill a batch, in milliseconds.
    pub batch_linger_ms: u64,
    pub max_connections: u32,
}

impl Default for UcsSettings {
    fn default() -> Self {
        Self {
            database_url: None,
            database_url_file: None,
            blob_dir: None,
            max_blob_bytes: 25 * 1024 * 1024,
            batch_size: 2000,
            batch_linger_ms: 20,
            max_connections: 8,
        }
    }
}

impl UcsSettings {
    pub fn database_url(&self, data_dir: &Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ucs.db").display()))
    }

    pub fn blob_dir(&self, data_dir: &Path) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("blobs"))
    }
}

impl runtime::config::Section for UcsSettings {
    const NAME: &'static str = "ucs";

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        secret_from_file(&mut self.database_url, self.database_url_file.take(), "ucs.database_url")
    }

    fn redacted(&self) -> Self {
        Self { database_url: self.database_url.as_deref().map(redact_url), ..self.clone() }
    }
}
