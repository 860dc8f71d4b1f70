//! Keeps the chat sessions current from `chat.events`: restores its snapshot and reads the
//! records after it, or replays from offset 0 (the sessions live in memory, so the replay is
//! the rebuild), then follows. Every new event is
//! broadcast with its sequence number to the sockets, which pick their session's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use chat::{Sequenced, Sessions, SessionsSnapshot};
use contract::AvroMessage;
use contract::chat::ChatEvent;
use runtime::CancellationToken;
use runtime::config::KafkaSettings;
use runtime::follow::{Fold, Following, follow};
use runtime::snapshots::SnapshotStore;
use runtime::topics::{self, Topics};
use tokio::sync::broadcast;

pub struct SharedSessions {
    sessions: RwLock<Sessions>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
    /// Per session with an open socket, the channel of its new events: an event reaches only
    /// its own session's sockets (never every socket to filter).
    live: Mutex<HashMap<String, broadcast::Sender<Arc<Sequenced>>>>,
}

impl SharedSessions {
    /// Sessions that keep an ended session `keep_ended_ms` after its end (log time); `None`
    /// keeps every one (tests).
    pub fn new(keep_ended_ms: Option<i64>) -> Arc<Self> {
        Arc::new(Self {
            sessions: RwLock::new(keep_ended_ms.map_or_else(Sessions::default, Sessions::evicting_after)),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// A read view; hold it briefly (the projector waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, Sessions> {
        self.sessions.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// New events of `session`, as they are applied.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<Arc<Sequenced>> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Channels of sessions whose sockets all closed (and that had no event since).
        live.retain(|_, channel| channel.receiver_count() > 0);
        live.entry(session.to_owned()).or_insert_with(|| broadcast::channel(1024).0).subscribe()
    }

    pub fn apply(&self, event: ChatEvent) {
        let session = event.session_id.clone();
        let applied = self.sessions.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(event);
        if let Some(sequenced) = applied {
            let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // No receiver left: every socket of the session has closed.
            if let Some(channel) = live.get(&session)
                && channel.send(Arc::new(sequenced)).is_err()
            {
                live.remove(&session);
            }
        }
    }
}

/// Records applied between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 50_000;
/// 2: ended sessions leave memory; what is remembered of them is in the snapshot.
const SNAPSHOT_FORMAT: u32 = 2;

impl Fold for SharedSessions {
    type Snapshot = SessionsSnapshot;

    fn apply(&self, _topic: &str, payload: &[u8]) -> Result<(), String> {
        match ChatEvent::decode(payload) {
            Ok(event) => {
                SharedSessions::apply(self, event);
                Ok(())
            }
            Err(e) => {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    fn snapshot(&self) -> SessionsSnapshot {
        self.read().snapshot()
    }

    fn restore(&self, snapshot: SessionsSnapshot) -> Result<(), String> {
        let mut sessions = self.sessions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *sessions = Sessions::restore(snapshot, sessions.keep_ended_ms())?;
        Ok(())
    }

    fn caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
        tracing::info!(sessions = self.read().len(), "chat sessions caught up");
    }
}

/// Follows `chat.events` into `sessions` until `shutdown`: from its snapshot and the records
/// after it, or from offset 0.
pub async fn run(kafka_settings: &KafkaSettings, topics: &Topics, sessions: Arc<SharedSessions>, snapshots: Option<SnapshotStore>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topic = topics.name(topics::CHAT_EVENTS);
    let following = Following { name: format!("chat-sessions-{topic}"), topics: vec![topic], format: SNAPSHOT_FORMAT, snapshot_every: SNAPSHOT_EVERY, snapshots };
    follow(kafka_settings, following, sessions.as_ref(), shutdown).await
}
