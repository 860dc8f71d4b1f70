//! Snapshots of in-memory state, so a restart reads only the tail of its topics.
//!
//! A snapshot is a JSON file in `<data_dir>/snapshots/`, named by the state it holds, written
//! atomically (a temporary file renamed over the old one). It records a format version and the
//! input offsets it reflects (the next offset to read, per topic-partition). Files, not a
//! compacted topic: a snapshot is a cache of what the log says, so one lost with its machine
//! costs a full replay and nothing else; files need no ACLs, no schema in `schemas/`, and are
//! read at local-disk speed. A missing, unreadable, corrupt or older-format snapshot is logged
//! and the caller replays from offset 0: never a wrong state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A stored state with what it reflects.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot<T> {
    /// The state's format; one a reader does not know means a full replay.
    pub format: u32,
    /// Per `topic/partition`, the first offset *not* reflected in `state`.
    pub offsets: BTreeMap<String, i64>,
    /// When it was taken (milliseconds since the epoch), for operators.
    pub taken_at: i64,
    pub state: T,
}

/// The key of one topic-partition in [`Snapshot::offsets`].
pub fn position_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Where a process's snapshots live.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The snapshot `name` if there is a usable one of `format`; otherwise `None`, with the
    /// reason logged (the caller replays from the start).
    pub fn load<T: DeserializeOwned>(&self, name: &str, format: u32) -> Option<Snapshot<T>> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(snapshot = %path.display(), "no snapshot yet: replaying from the start");
                return None;
            }
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), error = %e, "snapshot unreadable: replaying from the start");
                return None;
            }
        };
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        match serde_json::from_slice::<Version>(&bytes) {
            Ok(v) if v.format == format => {}
            Ok(v) => {
                tracing::warn!(snapshot = %path.display(), found = v.format, expected = format, "snapshot of another format: replaying from the start");
                return None;
            }
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), error = %e, "snapshot corrupt: replaying from the start");
                return None;
            }
        }
        match serde_json::from_slice(&bytes) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), error = %e, "snapshot corrupt: replaying from the start");
                None
            }
        }
    }

    /// Writes `snapshot` as `name`, replacing the previous one only once it is complete.
    pub fn save<T: Serialize>(&self, name: &str, snapshot: &Snapshot<T>) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(name);
        let temporary = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn saved_loads_and_other_formats_or_corruption_do_not() {
        let dir = std::env::temp_dir().join(format!("switchboard-snapshots-{}", std::process::id()));
        let store = SnapshotStore::new(&dir);
        assert!(store.load::<Vec<u32>>("a/b", 1).is_none());
        let snapshot = Snapshot { format: 1, offsets: BTreeMap::from([(position_key("t", 0), 42)]), taken_at: 7, state: vec![1u32, 2] };
        store.save("a/b", &snapshot).unwrap();
        let loaded = store.load::<Vec<u32>>("a/b", 1).unwrap();
        assert_eq!((loaded.offsets, loaded.state), (snapshot.offsets.clone(), vec![1, 2]));
        assert!(store.load::<Vec<u32>>("a/b", 2).is_none(), "an older or newer format is not used");
        assert!(store.load::<String>("a/b", 1).is_none(), "a state that does not parse is not used");
        std::fs::write(store.path("a/b"), b"{\"format\": 1, \"offs").unwrap();
        assert!(store.load::<Vec<u32>>("a/b", 1).is_none(), "a torn file is not used");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
