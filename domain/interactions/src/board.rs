//! The board: every interaction's current state and the queues' waiting order, folded from
//! `interaction.events`. Pure: no I/O, no clock; the same events always give the same board.
//!
//! The queue index is maintained incrementally (each event moves at most one entry);
//! [`Board::queue_view_from_scratch`] recomputes it naively and exists so tests can prove
//! the two agree.
//!
//! Only live work stays: with [`Board::evicting_after`], an interaction stopped longer than the
//! window leaves the board, measured in *log time* (the latest `occurred_at` the board has
//! applied, never the wall clock), so a replay and the live fold evict alike. Its id stays in
//! [`EndedIds`], a compact exact index, so [`Board::has_seen`] still refuses a duplicate
//! months later.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use contract::event::{AgentId, AgentReason, EventPayload, InteractionEvent, LockHolderKind, MediaType, PartyRole};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Submitted, not yet placed in a queue.
    New,
    /// Parked in its queue, waiting for routing.
    Waiting,
    /// Offered to an agent who has not answered yet; still counts in its queue.
    Offered,
    /// Owned by an agent.
    Assigned,
    /// Done; kept for lookups, never in a queue.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub holder: String,
    pub holder_kind: LockHolderKind,
    pub since: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferInfo {
    pub agent_id: String,
    pub offered_at: i64,
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub id: String,
    pub media_type: MediaType,
    pub origin: String,
    pub status: Status,
    /// The queue it is in, or was last in while an agent holds it.
    pub queue: Option<String>,
    pub priority: i32,
    pub properties: BTreeMap<String, String>,
    pub contact_id: Option<String>,
    pub content_ref: Option<String>,
    pub parent_interaction_id: Option<String>,
    pub submitted_at: i64,
    /// When it entered its current queue: the age that orders equal priorities.
    pub queued_at: i64,
    pub lock: Option<LockInfo>,
    pub offer: Option<OfferInfo>,
    pub owner: Option<String>,
    /// Consulting or conferenced agents besides the owner.
    pub parties: BTreeMap<String, PartyRole>,
    pub stop_reason: Option<String>,
    /// Agents who rejected, let time out or lost an offer of it (the router prefers others).
    pub declined_by: BTreeSet<String>,
    pub updated_at: i64,
    pub rejected_commands: u32,
    /// When it stopped (log time): the start of its eviction window.
    #[serde(default)]
    pub stopped_at: Option<i64>,
}

impl Interaction {
    fn in_queue(&self) -> bool {
        matches!(self.status, Status::Waiting | Status::Offered) && self.queue.is_some()
    }
}

/// Position in a queue: higher priority first, then longer waiting, then id (a total order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey {
    priority: Reverse<i32>,
    queued_at: i64,
    id: String,
}

/// The ids of interactions that left the board: 128 bits of each id's SHA-256 (16 bytes an
/// id, exact in practice: a false match needs about 2^64 ids). Never shrinks: an id is
/// refused as a duplicate forever, as before eviction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndedIds(HashSet<u128>);

impl EndedIds {
    /// The 128-bit key an id is remembered by.
    pub fn key(id: &str) -> u128 {
        let digest = Sha256::digest(id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        u128::from_le_bytes(bytes)
    }

    pub fn insert(&mut self, id: &str) {
        self.0.insert(Self::key(id));
    }

    pub fn contains(&self, id: &str) -> bool {
        !self.0.is_empty() && self.0.contains(&Self::key(id))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The index as one base64 string of sorted 16-byte keys (compact in a JSON snapshot).
    fn encode(&self) -> String {
        let mut keys: Vec<u128> = self.0.iter().copied().collect();
        keys.sort_unstable();
        let bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(text).ok()?;
        if bytes.len() % 16 != 0 {
            return None;
        }
        Some(Self(bytes.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16]))).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Board {
    interactions: BTreeMap<String, Interaction>,
    queues: BTreeMap<String, BTreeSet<QueueKey>>,
    events_applied: u64,
    /// Events that did not fit the interaction's state (e.g. for an unknown id); applied as a
    /// no-op so a projection never stops on them, and counted so they are visible.
    anomalies: u64,
    /// How long a stopped interaction stays (log time, ms); `None` keeps everything.
    keep_stopped_ms: Option<i64>,
    /// The latest `occurred_at` applied: the board's clock.
    clock: i64,
    /// Stopped interactions by stop time: the next to leave first.
    stopped: BTreeSet<(i64, String)>,
    ended: EndedIds,
    /// Events for interactions that had already left (late facts, e.g. a delivery receipt).
    late_events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    pub queue: String,
    pub counts: QueueCounts,
    /// In serving order.
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    pub total: usize,
    pub waiting: usize,
    pub offered: usize,
    pub locked: usize,
    /// `queued_at` of the longest-waiting interaction.
    pub oldest_queued_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueSummary {
    pub queue: String,
    pub counts: QueueCounts,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// A board that lets an interaction go `keep_stopped_ms` (log time) after it stopped.
    pub fn evicting_after(keep_stopped_ms: i64) -> Self {
        Self { keep_stopped_ms: Some(keep_stopped_ms.max(0)), ..Self::default() }
    }

    /// [`Board::evicting_after`] the window, or [`Board::new`] (keep everything) without one.
    pub fn with_window(keep_stopped_ms: Option<i64>) -> Self {
        keep_stopped_ms.map_or_else(Self::new, Self::evicting_after)
    }

    pub fn keep_stopped_ms(&self) -> Option<i64> {
        self.keep_stopped_ms
    }

    /// The earliest time still inside the eviction window at `now` (`i64::MIN` without one):
    /// periodic work about stopped things looks no further back.
    pub fn window_start(&self, now: i64) -> i64 {
        self.keep_stopped_ms.map_or(i64::MIN, |keep| now.saturating_sub(keep))
    }

    /// Whether `id` was ever submitted: on the board, or stopped and gone.
    pub fn has_seen(&self, id: &str) -> bool {
        self.interactions.contains_key(id) || self.ended.contains(id)
    }

    /// Whether `id` stopped and left the board (its history is in the log and UCS).
    pub fn has_left(&self, id: &str) -> bool {
        !self.interactions.contains_key(id) && self.ended.contains(id)
    }

    /// Interactions on the board (live, or stopped within the window).
    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    /// Interactions that stopped and left.
    pub fn evicted(&self) -> usize {
        self.ended.len()
    }

    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// The latest event time applied (Unix ms).
    pub fn clock(&self) -> i64 {
        self.clock
    }

    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    pub fn interaction(&self, id: &str) -> Option<&Interaction> {
        self.interactions.get(id)
    }

    pub fn interactions(&self) -> impl Iterator<Item = &Interaction> {
        self.interactions.values()
    }

    /// The interactions in some queue (waiting or offered), from the index: what routing
    /// looks at, without walking every interaction ever seen.
    pub fn queued(&self) -> impl Iterator<Item = &Interaction> {
        self.queues.values().flatten().filter_map(|k| self.interactions.get(&k.id))
    }

    /// Where `id` waits: its queue and its 1-based place in serving order.
    pub fn position(&self, id: &str) -> Option<(&str, usize)> {
        let interaction = self.interactions.get(id).filter(|i| i.in_queue())?;
        let queue = interaction.queue.as_deref()?;
        let place = self.queues.get(queue)?.iter().position(|k| k.id == id)?;
        Some((queue, place + 1))
    }

    /// Fold one event into the board. Total: any event, in any order, is safe to apply.
    pub fn apply(&mut self, event: &InteractionEvent) {
        self.events_applied += 1;
        let at = event.occurred_at;
        self.clock = self.clock.max(at);
        self.apply_to_interaction(event);
        self.evict_due();
    }

    /// Lets go of the interactions whose window has passed on the board's clock.
    fn evict_due(&mut self) {
        let Some(keep) = self.keep_stopped_ms else { return };
        while let Some((stopped_at, _)) = self.stopped.first() {
            if stopped_at.saturating_add(keep) >= self.clock {
                break;
            }
            let Some((_, id)) = self.stopped.pop_first() else { break };
            self.interactions.remove(&id);
            self.ended.insert(&id);
        }
    }

    fn apply_to_interaction(&mut self, event: &InteractionEvent) {
        let id = event.interaction_id.as_str();
        let at = event.occurred_at;
        if let EventPayload::Submitted(s) = &event.payload {
            if self.has_seen(id) {
                self.anomalies += 1;
                return;
            }
            self.interactions.insert(
                id.to_owned(),
                Interaction {
                    id: id.to_owned(),
                    media_type: s.media_type,
                    origin: s.origin.clone(),
                    status: Status::New,
                    queue: None,
                    priority: s.priority,
                    properties: s.properties.clone(),
                    contact_id: s.contact_id.clone(),
                    content_ref: s.content_ref.clone(),
                    parent_interaction_id: s.parent_interaction_id.clone(),
                    submitted_at: at,
                    queued_at: at,
                    lock: None,
                    offer: None,
                    owner: None,
                    parties: BTreeMap::new(),
                    stop_reason: None,
                    declined_by: BTreeSet::new(),
                    updated_at: at,
                    rejected_commands: 0,
                    stopped_at: None,
                },
            );
            return;
        }
        let Some(interaction) = self.interactions.get_mut(id) else {
            if self.ended.contains(id) {
                self.late_events += 1;
            } else {
                self.anomalies += 1;
            }
            return;
        };
        let stopped_before = interaction.stopped_at;
        let before = queue_position(interaction);
        interaction.updated_at = at;
        match &event.payload {
            EventPayload::Submitted(_) => {}
            EventPayload::PlacedInQueue(p) => {
                interaction.queue = Some(p.queue.clone());
                interaction.queued_at = at;
                interaction.status = Status::Waiting;
                interaction.offer = None;
                interaction.owner = None;
            }
            EventPayload::PropertiesChanged(p) => {
                interaction
                    .properties
                    .extend(p.set.iter().map(|(k, v)| (k.clone(), v.clone())));
                for key in &p.removed {
                    interaction.properties.remove(key);
                }
                if let Some(priority) = p.priority {
                    interaction.priority = priority;
                }
            }
            EventPayload::Locked(l) => {
                interaction.lock = Some(LockInfo {
                    holder: l.holder.clone(),
                    holder_kind: l.holder_kind,
                    since: at,
                });
            }
            EventPayload::Unlocked(_) => interaction.lock = None,
            EventPayload::OfferedToAgent(o) => {
                interaction.status = Status::Offered;
                interaction.offer = Some(OfferInfo {
                    agent_id: o.agent_id.clone(),
                    offered_at: at,
                    timeout_ms: o.timeout_ms,
                });
            }
            EventPayload::OfferAccepted(_) => interaction.offer = None,
            EventPayload::OfferRejected(AgentReason { agent_id, .. })
            | EventPayload::OfferTimedOut(AgentId { agent_id })
            | EventPayload::OfferRevoked(AgentReason { agent_id, .. }) => {
                interaction.declined_by.insert(agent_id.clone());
                interaction.offer = None;
                interaction.status = Status::Waiting;
            }
            EventPayload::Assigned(a) => {
                interaction.status = Status::Assigned;
                interaction.owner = Some(a.agent_id.clone());
                interaction.offer = None;
                interaction.lock = None;
            }
            EventPayload::PartyJoined(p) => {
                interaction.parties.insert(p.agent_id.clone(), p.role);
            }
            EventPayload::PartyLeft(p) => {
                interaction.parties.remove(&p.agent_id);
            }
            EventPayload::Transferred(_) | EventPayload::ReturnedToQueue(_) => {
                interaction.owner = None;
                interaction.parties.clear();
            }
            EventPayload::Stopped(s) => {
                interaction.status = Status::Stopped;
                interaction.stopped_at.get_or_insert(at);
                interaction.stop_reason = Some(s.reason.clone());
                interaction.offer = None;
                interaction.lock = None;
                interaction.owner = None;
                interaction.parties.clear();
            }
            EventPayload::CommandRejected(_) => interaction.rejected_commands += 1,
        }
        if interaction.status != Status::Stopped {
            interaction.stopped_at = None;
        }
        let stopped_after = interaction.stopped_at;
        let after = queue_position(interaction);
        if stopped_before != stopped_after {
            if let Some(t) = stopped_before {
                self.stopped.remove(&(t, id.to_owned()));
            }
            if let Some(t) = stopped_after {
                self.stopped.insert((t, id.to_owned()));
            }
        }
        if before != after {
            if let Some((queue, key)) = before
                && let Some(set) = self.queues.get_mut(&queue) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.queues.remove(&queue);
                    }
                }
            if let Some((queue, key)) = after {
                self.queues.entry(queue).or_default().insert(key);
            }
        }
    }

    /// Names of the queues that hold at least one interaction, with their counts.
    pub fn queue_summaries(&self) -> Vec<QueueSummary> {
        self.queues
            .iter()
            .map(|(queue, keys)| QueueSummary {
                queue: queue.clone(),
                counts: self.counts(keys.iter().filter_map(|k| self.interactions.get(&k.id))),
            })
            .collect()
    }

    /// One queue's interactions in serving order, from the incremental index.
    pub fn queue_view(&self, queue: &str) -> QueueView {
        let interactions: Vec<Interaction> = self
            .queues
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(|k| self.interactions.get(&k.id).cloned())
            .collect();
        QueueView {
            queue: queue.to_owned(),
            counts: self.counts(interactions.iter()),
            interactions,
        }
    }

    /// The same view recomputed from the interactions alone, ignoring the index: the reference
    /// the incremental index is tested against.
    pub fn queue_view_from_scratch(&self, queue: &str) -> QueueView {
        let mut interactions: Vec<Interaction> = self
            .interactions
            .values()
            .filter(|i| i.in_queue() && i.queue.as_deref() == Some(queue))
            .cloned()
            .collect();
        interactions.sort_by_key(|i| (Reverse(i.priority), i.queued_at, i.id.clone()));
        QueueView {
            queue: queue.to_owned(),
            counts: self.counts(interactions.iter()),
            interactions,
        }
    }

    /// Every queue name that appears in the index or on any queued interaction.
    pub fn queue_names(&self) -> BTreeSet<String> {
        self.queues
            .keys()
            .cloned()
            .chain(self.interactions.values().filter_map(|i| i.queue.clone()))
            .collect()
    }

    fn counts<'a>(&self, interactions: impl Iterator<Item = &'a Interaction>) -> QueueCounts {
        let mut counts = QueueCounts::default();
        for i in interactions {
            counts.total += 1;
            match i.status {
                Status::Offered => counts.offered += 1,
                _ => counts.waiting += 1,
            }
            if i.lock.is_some() {
                counts.locked += 1;
            }
            counts.oldest_queued_at = Some(
                counts
                    .oldest_queued_at
                    .map_or(i.queued_at, |o| o.min(i.queued_at)),
            );
        }
        counts
    }
}

/// A board as a snapshot stores it: the interactions and counters (the queue index is derived
/// from them on restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardSnapshot {
    interactions: Vec<Interaction>,
    events_applied: u64,
    anomalies: u64,
    keep_stopped_ms: Option<i64>,
    clock: i64,
    /// [`EndedIds`], encoded.
    ended: String,
    late_events: u64,
}

impl Board {
    pub fn snapshot(&self) -> BoardSnapshot {
        BoardSnapshot {
            interactions: self.interactions.values().cloned().collect(),
            events_applied: self.events_applied,
            anomalies: self.anomalies,
            keep_stopped_ms: self.keep_stopped_ms,
            clock: self.clock,
            ended: self.ended.encode(),
            late_events: self.late_events,
        }
    }

    /// The board a snapshot was taken of, its indexes rebuilt; `None` if the snapshot is
    /// unreadable or was taken with another eviction window than `keep_stopped_ms` (it could
    /// hold interactions a fold with this window would have let go, or lack ones it keeps).
    pub fn restore(snapshot: BoardSnapshot, keep_stopped_ms: Option<i64>) -> Option<Self> {
        if snapshot.keep_stopped_ms != keep_stopped_ms.map(|k| k.max(0)) {
            return None;
        }
        let mut board = Self {
            events_applied: snapshot.events_applied,
            anomalies: snapshot.anomalies,
            keep_stopped_ms: snapshot.keep_stopped_ms,
            clock: snapshot.clock,
            ended: EndedIds::decode(&snapshot.ended)?,
            late_events: snapshot.late_events,
            ..Self::default()
        };
        for interaction in snapshot.interactions {
            if let Some((queue, key)) = queue_position(&interaction) {
                board.queues.entry(queue).or_default().insert(key);
            }
            if let Some(t) = interaction.stopped_at {
                board.stopped.insert((t, interaction.id.clone()));
            }
            board.interactions.insert(interaction.id.clone(), interaction);
        }
        Some(board)
    }
}

fn queue_position(i: &Interaction) -> Option<(String, QueueKey)> {
    let queue = i.queue.as_ref().filter(|_| i.in_queue())?;
    Some((
        queue.clone(),
        QueueKey {
            priority: Reverse(i.priority),
            queued_at: i.queued_at,
            id: i.id.clone(),
        },
    ))
}
