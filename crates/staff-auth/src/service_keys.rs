//! Service keys: how one Switchboard process proves itself to another (the e-mail server
//! writing UCS under `switchboard run`, say). A key is 256 random bits shown once when made;
//! the keys file keeps its name, scopes and SHA-256 digest only, so reading the file gives
//! nobody a key. Scopes: `read` (what an agent may read), `manage` (what a supervisor may),
//! `write` (what services write: UCS contents, contact identification, blobs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The scopes a key may carry.
pub const SCOPES: [&str; 3] = ["read", "manage", "write"];

/// What every key starts with: recognisable in a leaked log or a secret scanner.
const PREFIX: &str = "sbk_";

#[derive(Debug, thiserror::Error)]
pub enum ServiceKeyError {
    #[error("service keys file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("service keys file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("unknown scope {0:?}; scopes are read, manage and write")]
    UnknownScope(String),
    #[error("a key named {0:?} is in the file already; remove it first")]
    Duplicate(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    scopes: Vec<String>,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    keys: Vec<Entry>,
}

/// A key's holder, as the keys file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub scopes: Vec<String>,
}

/// The keys this process accepts, by digest.
#[derive(Debug, Clone, Default)]
pub struct ServiceKeys {
    by_digest: HashMap<String, Holder>,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn check_scopes(scopes: &[String]) -> Result<(), ServiceKeyError> {
    match scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        Some(unknown) => Err(ServiceKeyError::UnknownScope(unknown.clone())),
        None => Ok(()),
    }
}

fn read_file(path: &Path) -> Result<File, ServiceKeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| ServiceKeyError::Invalid { path: path.to_owned(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(source) => Err(ServiceKeyError::Io { path: path.to_owned(), source }),
    }
}

/// A new key: `sbk_` and 64 hex digits from the OS's random source.
pub fn generate() -> String {
    let bytes: Vec<u8> = (0..2).flat_map(|_| *uuid::Uuid::new_v4().as_bytes()).collect();
    format!("{PREFIX}{}", hex::encode(bytes))
}

impl ServiceKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys in `path` (none if it does not exist).
    pub fn load(path: &Path) -> Result<Self, ServiceKeyError> {
        let mut keys = Self::new();
        for entry in read_file(path)?.keys {
            check_scopes(&entry.scopes).map_err(|e| ServiceKeyError::Invalid { path: path.to_owned(), message: format!("key {:?}: {e}", entry.name) })?;
            keys.by_digest.insert(entry.sha256.to_ascii_lowercase(), Holder { name: entry.name, scopes: entry.scopes });
        }
        Ok(keys)
    }

    /// Accepts `key` too (this process's own key under `up`, never written anywhere).
    pub fn accept(&mut self, key: &str, name: &str, scopes: &[&str]) {
        self.by_digest.insert(digest(key), Holder { name: name.to_owned(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() });
    }

    /// Who holds `key`, if it is one of ours.
    pub fn holder(&self, key: &str) -> Option<&Holder> {
        if !key.starts_with(PREFIX) {
            return None;
        }
        self.by_digest.get(&digest(key))
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// Makes a key for `name` with `scopes`, adds its digest to the file at `path` (created
/// `0600` if missing) and returns the key: the only time anyone sees it.
pub fn add(path: &Path, name: &str, scopes: &[String]) -> Result<String, ServiceKeyError> {
    check_scopes(scopes)?;
    let mut file = read_file(path)?;
    if file.keys.iter().any(|k| k.name == name) {
        return Err(ServiceKeyError::Duplicate(name.to_owned()));
    }
    let key = generate();
    file.keys.push(Entry { name: name.to_owned(), scopes: scopes.to_vec(), sha256: digest(&key) });
    let text = toml::to_string_pretty(&file).map_err(|e| ServiceKeyError::Invalid { path: path.to_owned(), message: e.to_string() })?;
    crate::private_file::write(path, text.as_bytes()).map_err(|source| ServiceKeyError::Io { path: path.to_owned(), source })?;
    Ok(key)
}

/// Removes the key named `name`; whether there was one.
pub fn remove(path: &Path, name: &str) -> Result<bool, ServiceKeyError> {
    let mut file = read_file(path)?;
    let before = file.keys.len();
    file.keys.retain(|k| k.name != name);
    if file.keys.len() == before {
        return Ok(false);
    }
    let text = toml::to_string_pretty(&file).map_err(|e| ServiceKeyError::Invalid { path: path.to_owned(), message: e.to_string() })?;
    crate::private_file::write(path, text.as_bytes()).map_err(|source| ServiceKeyError::Io { path: path.to_owned(), source })?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_known_by_its_digest_only_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service-keys.toml");
        let key = add(&path, "email", &["read".into(), "write".into()]).unwrap();
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains(&key[PREFIX.len()..]), "the file holds the key itself: {file}");
        let keys = ServiceKeys::load(&path).unwrap();
        assert_eq!(keys.holder(&key), Some(&Holder { name: "email".into(), scopes: vec!["read".into(), "write".into()] }));
        assert_eq!(keys.holder(&generate()), None);
        assert_eq!(keys.holder(&key[..key.len() - 1]), None);
        assert!(matches!(add(&path, "email", &[]), Err(ServiceKeyError::Duplicate(_))));
        assert!(matches!(add(&path, "sms", &["root".into()]), Err(ServiceKeyError::UnknownScope(_))));
        assert!(remove(&path, "email").unwrap());
        assert_eq!(ServiceKeys::load(&path).unwrap().holder(&key), None);
        assert!(ServiceKeys::load(&dir.path().join("missing.toml")).unwrap().is_empty());
    }
}
