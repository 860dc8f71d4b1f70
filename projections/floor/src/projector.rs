//! Keeps a [`Floor`] current from `interaction.events` and `agent.events` (and `ucs.events`
//! for the standard-response library, where a desk needs it): restores its snapshot and reads
//! the records after it (no snapshot: replays from offset 0; the floor lives in memory, so the
//! replay is the rebuild), then follows; snapshots every [`SNAPSHOT_EVERY`] records and at a
//! clean stop.
//! Readers wait on [`SharedFloor::changed`] or subscribe to what each event touched.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

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
    /// Per partition, the first events of a command's set whose last has not been read yet:
    /// a set is applied whole, under one lock, so no reader sees half of it (between
    /// `OfferAccepted` and `Assigned` the agent would look free, and the router offered her
    /// a second chat in that gap).
    held: Mutex<HashMap<i32, Vec<InteractionEvent>>>,
}

impl SharedFloor {
    pub fn new(service_level_threshold_ms: i64, keep_stopped_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            floor: RwLock::new(Floor::new(service_level_threshold_ms, keep_stopped_ms)),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            version: watch::channel(0).0,
            touched: broadcast::channel(4096).0,
            held: Mutex::new(HashMap::new()),
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

    /// Applies `event`, or holds it until the rest of its command's set is read (the events
    /// of one command are contiguous in their partition), then applies the set at once.
    pub fn apply_interaction_event(&self, event: &InteractionEvent) {
        let partition = event.command_partition;
        let set = {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut set = held.remove(&partition).unwrap_or_default();
            if set.first().is_some_and(|first| first.causation_id != event.causation_id) {
                // The rest of that set never came (a crash mid-set without transactions): it
                // is applied as it is rather than lost.
                self.apply_set(std::mem::take(&mut set));
            }
            set.push(event.clone());
            if event.index + 1 < event.set_size {
                held.insert(partition, set);
                return;
            }
            set
        };
        self.apply_set(set);
    }

    fn apply_set(&self, set: Vec<InteractionEvent>) {
        if set.is_empty() {
            return;
        }
        let touched: Vec<Touched> = {
            let mut floor = self.floor.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            set.iter().map(|e| floor.apply_interaction_event(e)).collect()
        };
        for t in touched {
            self.announce(t);
        }
    }

    /// Applies what is held (before a snapshot, whose offsets count it as read, and at the
    /// end of a replay).
    fn apply_held(&self) {
        let held: Vec<Vec<InteractionEvent>> =
            self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain().map(|(_, set)| set).collect();
        for set in held {
            self.apply_set(set);
        }
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
        self.floor.apply_held();
        self.floor.read().snapshot()
    }

    fn restore(&self, snapshot: FloorSnapshot) -> Result<(), String> {
        let mut floor = self.floor.floor.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keep = floor.board().keep_stopped_ms().unwrap_or(i64::MAX);
        *floor = Floor::restore(snapshot, keep).ok_or("taken with another [live] keep_stopped_s")?;
        Ok(())
    }

    fn caught_up(&self) {
        self.floor.apply_held();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use contract::agent::{AgentPayload, LoggedIn, Ready};
    use contract::command::MediaType;
    use contract::event::{AgentId, EventPayload, OfferedToAgent, PlacedInQueue, Submitted};

    use super::*;

    fn event(command: i64, index: i32, set_size: i32, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: format!("e{command}-{index}"),
            interaction_id: "chat-1".into(),
            occurred_at: 1_000 + command,
            causation_id: format!("c{command}"),
            command_partition: 0,
            command_offset: command,
            index,
            set_size,
            payload,
        }
    }

    /// Accepting an offer is two events (`OfferAccepted`, `Assigned`): between them the agent
    /// holds nothing. A reader must never see that gap, or the router offers her another chat
    /// (seen in the routing test: agent-08 held two chats, capacity one).
    #[test]
    fn no_reader_sees_half_of_a_commands_events() {
        let floor = SharedFloor::new(20_000, 3_600_000);
        let agent = |payload| AgentEvent { event_id: format!("{payload:?}"), agent_id: "ann".into(), occurred_at: 900, causation_id: None, payload };
        floor.apply_agent_event(&agent(AgentPayload::LoggedIn(LoggedIn { place: None, skills: BTreeMap::new(), capacity: BTreeMap::from([("chat".into(), 1)]) })));
        floor.apply_agent_event(&agent(AgentPayload::Ready(Ready { media: vec!["chat".into()] })));
        let submitted = Submitted { media_type: MediaType::Chat, origin: "t".into(), priority: 0, properties: BTreeMap::new(), contact_id: None, content_ref: None, parent_interaction_id: None, submitted_by: "t".into() };
        floor.apply_interaction_event(&event(0, 0, 2, EventPayload::Submitted(submitted)));
        floor.apply_interaction_event(&event(0, 1, 2, EventPayload::PlacedInQueue(PlacedInQueue { queue: "chat".into(), previous_queue: None, reason: "submitted".into() })));
        floor.apply_interaction_event(&event(1, 0, 1, EventPayload::OfferedToAgent(OfferedToAgent { agent_id: "ann".into(), timeout_ms: 2000 })));
        let load = |floor: &SharedFloor| floor.read().agent("ann").unwrap().load(MediaType::Chat);
        assert_eq!(load(&floor), 1);
        floor.apply_interaction_event(&event(2, 0, 2, EventPayload::OfferAccepted(AgentId { agent_id: "ann".into() })));
        assert_eq!(load(&floor), 1, "between the two events of the accept, the offer still counts");
        floor.apply_interaction_event(&event(2, 1, 2, EventPayload::Assigned(AgentId { agent_id: "ann".into() })));
        assert_eq!(load(&floor), 1);
        assert_eq!(floor.read().agent("ann").unwrap().owned.len(), 1);
    }
}
