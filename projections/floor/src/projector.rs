//! Keeps a [`Floor`] current from `interaction.events` and `agent.events` (and `ucs.events`
//! for the standard-response library, where a desk needs it): restores its snapshot and reads
//! the records after it (no snapshot: replays from offset 0; the floor lives in memory, so the
//! replay is the rebuild), then follows; snapshots every [`SNAPSHOT_EVERY`] records and at a
//! clean stop.
//! Readers wait on [`SharedFloor::changed`] or subscribe to what each event touched.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use contract::AvroMessage;
use contract::agent::AgentEvent;
use contract::event::InteractionEvent;
use contract::ucs::UcsEvent;
use runtime::CancellationToken;
use runtime::config::KafkaSettings;
use runtime::follow::{Fold, Following, follow};
use runtime::snapshots::SnapshotStore;
use runtime::topics::{self, Topics};
use tokio::sync::{broadcast, watch};

use crate::floor::{Floor, FloorSnapshot, Touched};

pub struct SharedFloor {
    floor: RwLock<Floor>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
    version: watch::Sender<u64>,
    touched: broadcast::Sender<Arc<Touched>>,
}

impl SharedFloor {
    pub fn new(service_level_threshold_ms: i64, keep_stopped_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            floor: RwLock::new(Floor::new(service_level_threshold_ms, keep_stopped_ms)),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            version: watch::channel(0).0,
            touched: broadcast::channel(4096).0,
        })
    }

    /// A read view; hold it briefly (the projector waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, Floor> {
        self.floor.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True once the replay reached the end of the followed topics as they were at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Ticks after every applied interaction or agent event (the value counts them); library
    /// changes do not tick: nothing waits on them.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// What each event touched, for push to the agents involved. Slow subscribers lag and
    /// are told so by the channel; they re-read the floor.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Touched>> {
        self.touched.subscribe()
    }

    pub fn apply_interaction_event(&self, event: &InteractionEvent) {
        let touched = self
            .floor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply_interaction_event(event);
        self.announce(touched);
    }

    pub fn apply_ucs_event(&self, event: &UcsEvent) {
        self.floor.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply_ucs_event(event);
    }

    pub fn apply_agent_event(&self, event: &AgentEvent) {
        let touched = self
            .floor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply_agent_event(event);
        self.announce(touched);
    }

    fn announce(&self, touched: Touched) {
        self.version.send_modify(|v| *v += 1);
        if self.caught_up() {
            let _ = self.touched.send(Arc::new(touched));
        }
    }
}

/// Whether the floor also follows `ucs.events` into its standard-response library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// For the desk, which offers standard responses.
    Follow,
    /// Router and statistics alone: no need to replay every contact change at start.
    Skip,
}

/// Records applied between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 50_000;
/// 1: the floor with eviction.
const SNAPSHOT_FORMAT: u32 = 1;

/// The floor's fold over its topics (which one a record is from decides how it is read).
struct FloorFold<'a> {
    floor: &'a SharedFloor,
    interaction_topic: String,
    agent_topic: String,
}

impl Fold for FloorFold<'_> {
    type Snapshot = FloorSnapshot;

    fn apply(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let decoded = if topic == self.interaction_topic {
            InteractionEvent::decode(payload).map(|e| self.floor.apply_interaction_event(&e))
        } else if topic == self.agent_topic {
            AgentEvent::decode(payload).map(|e| self.floor.apply_agent_event(&e))
        } else {
            UcsEvent::decode(payload).map(|e| self.floor.apply_ucs_event(&e))
        };
        decoded.map_err(|e| {
            self.floor.undecodable.fetch_add(1, Ordering::Relaxed);
            e.to_string()
        })
    }

    fn snapshot(&self) -> FloorSnapshot {
        self.floor.read().snapshot()
    }

    fn restore(&self, snapshot: FloorSnapshot) -> Result<(), String> {
        let mut floor = self.floor.floor.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keep = floor.board().keep_stopped_ms().unwrap_or(i64::MAX);
        *floor = Floor::restore(snapshot, keep).ok_or("taken with another [live] keep_stopped_s")?;
        Ok(())
    }

    fn caught_up(&self) {
        self.floor.caught_up.store(true, Ordering::Release);
        self.floor.version.send_modify(|_| {});
    }
}

/// Follows the topics into `floor` until `shutdown`: from its snapshot (in `snapshots`) and
/// the records after it, or from offset 0.
pub async fn run(
    kafka_settings: &KafkaSettings,
    topics: &Topics,
    floor: Arc<SharedFloor>,
    library: Library,
    snapshots: Option<SnapshotStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let interaction_topic = topics.name(topics::INTERACTION_EVENTS);
    let agent_topic = topics.name(topics::AGENT_EVENTS);
    let mut followed = vec![interaction_topic.clone(), agent_topic.clone()];
    let mut name = format!("floor-{interaction_topic}");
    if library == Library::Follow {
        followed.push(topics.name(topics::UCS_EVENTS));
        name.push_str("-with-library");
    }
    let fold = FloorFold { floor: floor.as_ref(), interaction_topic, agent_topic };
    let following = Following { name, topics: followed, format: SNAPSHOT_FORMAT, snapshot_every: SNAPSHOT_EVERY, snapshots };
    follow(kafka_settings, following, &fold, shutdown).await
}

/// The queue API served from the floor's board where a process has a floor: one fold of
/// `interaction.events` for the queues, routing, the desk and statistics.
impl queues::http::BoardView for SharedFloor {
    fn with_board<R>(&self, read: impl FnOnce(&queues::board::Board) -> R) -> R {
        read(self.read().board())
    }

    fn caught_up(&self) -> bool {
        SharedFloor::caught_up(self)
    }

    fn undecodable(&self) -> u64 {
        SharedFloor::undecodable(self)
    }
}
