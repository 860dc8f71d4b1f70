//! Keeps a [`Board`] current from `interaction.events`: at start it replays every partition
//! from offset 0 (the board lives in memory, so a replay *is* the rebuild), then follows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

use anyhow::Context;
use contract::AvroMessage;
use contract::event::InteractionEvent;
use plumbing::config::KafkaSettings;
use plumbing::kafka;
use plumbing::topics::{self, Topics};
use plumbing::{CancellationToken, Message};


use crate::board::Board;

/// A board shared between the projector and its readers.
#[derive(Default)]
pub struct Projection {
    board: RwLock<Board>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
}

impl Projection {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A read view of the board; hold it briefly.
    pub fn board(&self) -> RwLockReadGuard<'_, Board> {
        self.board
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True once the replay reached the end of the log as it was at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Records skipped because they could not be decoded.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    fn apply(&self, event: &InteractionEvent) {
        self.board
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply(event);
    }
}

/// Follows `interaction.events` into `projection` until `shutdown`.
pub async fn run(
    kafka_settings: &KafkaSettings,
    topics: &Topics,
    projection: Arc<Projection>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topic = topics.name(topics::INTERACTION_EVENTS);
    let reader = kafka::reader(kafka_settings)?;
    let mut replay = kafka::Replay::from_beginning(&reader, &[topic.as_str()])?;
    let started = Instant::now();
    let mut replayed: u64 = 0;
    if replay.caught_up() {
        projection.caught_up.store(true, Ordering::Release);
    }
    tracing::info!(%topic, records = replay.backlog(), "queue projection replaying from offset 0");
    let caught_up_log = |replayed: u64| {
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            events = replayed,
            seconds = secs,
            events_per_sec = (replayed as f64 / secs.max(1e-9)) as u64,
            "queue projection caught up"
        );
    };
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = reader.recv() => message,
        };
        let message = match message {
            Err(e) if kafka::is_partition_end(&e) => {
                if !projection.caught_up() && replay.reached_ends(&reader) {
                    projection.caught_up.store(true, Ordering::Release);
                    caught_up_log(replayed);
                }
                continue;
            }
            other => other.context("reading interaction events")?,
        };
        match InteractionEvent::decode(message.payload().unwrap_or_default()) {
            Ok(event) => projection.apply(&event),
            Err(e) => {
                projection.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    partition = message.partition(),
                    offset = message.offset(),
                    error = %e,
                    "undecodable interaction event skipped"
                );
            }
        }
        if !projection.caught_up() {
            replayed += 1;
            if replay.read(message.topic(), message.partition(), message.offset()) {
                projection.caught_up.store(true, Ordering::Release);
                caught_up_log(replayed);
            }
        }
    }
}
