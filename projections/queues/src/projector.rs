//! Keeps a [`Board`] current from `interaction.events`: at start it restores its latest
//! snapshot (if any) and replays every partition from where that left off (else from offset
//! 0: the board lives in memory, so a replay *is* the rebuild), then follows. It snapshots every
//! [`SNAPSHOT_EVERY`] events applied and at a clean stop.

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


use std::collections::BTreeMap;

use plumbing::snapshots::{Snapshot, SnapshotStore, position_key};

use crate::board::{Board, BoardSnapshot};

/// Events applied between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 50_000;
const SNAPSHOT_FORMAT: u32 = 1;
const SNAPSHOT_NAME: &str = "queues";

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

    fn snapshot(&self, store: &SnapshotStore, name: &str, positions: &BTreeMap<String, i64>) {
        let state = self.board().snapshot();
        let snapshot = Snapshot { format: SNAPSHOT_FORMAT, offsets: positions.clone(), taken_at: contract::now_millis(), state };
        match store.save(name, &snapshot) {
            Ok(path) => tracing::debug!(file = %path.display(), "queue projection snapshotted"),
            Err(e) => tracing::warn!(error = %e, "queue projection snapshot not written; the next start replays more"),
        }
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
    snapshots: Option<SnapshotStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topic = topics.name(topics::INTERACTION_EVENTS);
    let reader = kafka::reader(kafka_settings)?;
    // The deployment's prefix is in the topic name: one snapshot per deployment.
    let name = format!("{SNAPSHOT_NAME}-{topic}");
    let restored = snapshots.as_ref().and_then(|store| store.load::<BoardSnapshot>(&name, SNAPSHOT_FORMAT));
    let mut positions: BTreeMap<String, i64> = BTreeMap::new();
    let mut replay = match restored {
        Some(snapshot) => match kafka::Replay::from_offsets(&reader, &[topic.as_str()], &snapshot.offsets) {
            Ok(replay) => {
                *projection.board.write().unwrap_or_else(|p| p.into_inner()) = Board::restore(snapshot.state);
                positions = snapshot.offsets;
                tracing::info!(%topic, records = replay.backlog(), "queue projection restored from its snapshot");
                replay
            }
            Err(e @ kafka::ReplayError::PastTheEnd { .. }) => {
                tracing::warn!(error = %e, "queue projection snapshot does not match the log: replaying from the start");
                kafka::Replay::from_beginning(&reader, &[topic.as_str()])?
            }
            Err(e) => return Err(e.into()),
        },
        None => kafka::Replay::from_beginning(&reader, &[topic.as_str()])?,
    };
    let mut since_snapshot: u64 = 0;
    let started = Instant::now();
    let mut replayed: u64 = 0;
    if replay.caught_up() {
        projection.caught_up.store(true, Ordering::Release);
    }
    tracing::info!(%topic, records = replay.backlog(), "queue projection replaying");
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
            () = shutdown.cancelled() => {
                if let Some(store) = &snapshots && since_snapshot > 0 {
                    projection.snapshot(store, &name, &positions);
                }
                return Ok(());
            }
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
        positions.insert(position_key(message.topic(), message.partition()), message.offset() + 1);
        since_snapshot += 1;
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
        if since_snapshot >= SNAPSHOT_EVERY && let Some(store) = &snapshots {
            projection.snapshot(store, &name, &positions);
            since_snapshot = 0;
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
