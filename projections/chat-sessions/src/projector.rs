//! Keeps the chat sessions current from `chat.events`: replays from offset 0 at start (the
//! sessions live in memory, so the replay is the rebuild), then follows. Every new event is
//! broadcast with its sequence number to the sockets, which pick their session's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use anyhow::Context;
use chat::{Sequenced, Sessions};
use contract::AvroMessage;
use contract::chat::ChatEvent;
use plumbing::config::KafkaSettings;
use plumbing::kafka;
use plumbing::topics::{self, Topics};
use plumbing::{CancellationToken, Message};
use tokio::sync::broadcast;

pub struct SharedSessions {
    sessions: RwLock<Sessions>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
    live: broadcast::Sender<Arc<Sequenced>>,
}

impl SharedSessions {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            sessions: RwLock::new(Sessions::default()),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            live: broadcast::channel(16_384).0,
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

    /// New events of every session, as they are applied.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Sequenced>> {
        self.live.subscribe()
    }

    pub fn apply(&self, event: ChatEvent) {
        let applied = self.sessions.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(event);
        if let Some(sequenced) = applied {
            let _ = self.live.send(Arc::new(sequenced));
        }
    }
}

/// Follows `chat.events` into `sessions` until `shutdown`.
pub async fn run(kafka_settings: &KafkaSettings, topics: &Topics, sessions: Arc<SharedSessions>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let reader = kafka::reader(kafka_settings)?;
    let topic = topics.name(topics::CHAT_EVENTS);
    let mut replay = kafka::Replay::from_beginning(&reader, &[topic.as_str()])?;
    if replay.caught_up() {
        sessions.caught_up.store(true, Ordering::Release);
    }
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = reader.recv() => message,
        };
        let message = match message {
            Err(e) if kafka::is_partition_end(&e) => {
                if replay.reached_ends(&reader) {
                    sessions.caught_up.store(true, Ordering::Release);
                    tracing::info!(sessions = sessions.read().len(), "chat sessions caught up");
                }
                continue;
            }
            other => other.context("reading chat.events")?,
        };
        match ChatEvent::decode(message.payload().unwrap_or_default()) {
            Ok(event) => sessions.apply(event),
            Err(e) => {
                sessions.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::error!(partition = message.partition(), offset = message.offset(), error = %e, "undecodable chat event skipped");
            }
        }
        if replay.read(message.topic(), message.partition(), message.offset()) {
            sessions.caught_up.store(true, Ordering::Release);
            tracing::info!(sessions = sessions.read().len(), "chat sessions caught up");
        }
    }
}
