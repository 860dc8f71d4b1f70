//! Keeps a [`Board`] current from `interaction.events`: at start it restores its latest
//! snapshot (if any) and replays every partition from where that left off (else from offset
//! 0: the board lives in memory, so a replay *is* the rebuild), then follows. It snapshots every
//! [`SNAPSHOT_EVERY`] events applied and at a clean stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use contract::AvroMessage;
use contract::event::InteractionEvent;
use runtime::CancellationToken;
use runtime::config::KafkaSettings;
use runtime::follow::{Fold, Following, follow};
use runtime::snapshots::SnapshotStore;
use runtime::topics::{self, Topics};

use crate::board::{Board, BoardSnapshot};

/// Events applied between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 50_000;
/// 2: eviction (the board's window, clock and ended ids).
const SNAPSHOT_FORMAT: u32 = 2;
const SNAPSHOT_NAME: &str = "queues";

/// A board shared between the projector and its readers.
pub struct Projection {
    board: RwLock<Board>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
}

impl Projection {
    /// A projection whose board lets stopped interactions go after `keep_stopped_ms` (log time).
    pub fn new(keep_stopped_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            board: RwLock::new(Board::evicting_after(keep_stopped_ms)),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
        })
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

}

impl Fold for Projection {
    type Snapshot = BoardSnapshot;

    fn apply(&self, _topic: &str, payload: &[u8]) -> Result<(), String> {
        match InteractionEvent::decode(payload) {
            Ok(event) => {
                self.board.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(&event);
                Ok(())
            }
            Err(e) => {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    fn snapshot(&self) -> BoardSnapshot {
        self.board().snapshot()
    }

    fn restore(&self, snapshot: BoardSnapshot) -> Result<(), String> {
        let mut board = self.board.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *board = Board::restore(snapshot, board.keep_stopped_ms()).ok_or("taken with another [live] keep_stopped_s")?;
        Ok(())
    }

    fn caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
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
    let following = Following {
        // The deployment's prefix is in the topic name: one snapshot per deployment.
        name: format!("{SNAPSHOT_NAME}-{topic}"),
        topics: vec![topic],
        format: SNAPSHOT_FORMAT,
        snapshot_every: SNAPSHOT_EVERY,
        snapshots,
    };
    follow(kafka_settings, following, projection.as_ref(), shutdown).await
}
