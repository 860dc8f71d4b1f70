//! The board: every interaction's current state and the queues' waiting order, folded from
//! `interaction.events`. Pure: no I/O, no clock; the same events always give the same board.
//!
//! The queue index is maintained incrementally (each event moves at most one entry);
//! [`Board::queue_view_from_scratch`] recomputes it naively and exists so tests can prove
//! the two agree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Board {
    interactions: BTreeMap<String, Interaction>,
    queues: BTreeMap<String, BTreeSet<QueueKey>>,
    events_applied: u64,
    /// Events that did not fit the interaction's state (e.g. for an unknown id); applied as a
    /// no-op so a projection never stops on them, and counted so they are visible.
    anomalies: u64,
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
        let id = event.interaction_id.as_str();
        let at = event.occurred_at;
        if let EventPayload::Submitted(s) = &event.payload {
            if self.interactions.contains_key(id) {
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
                },
            );
            return;
        }
        let Some(interaction) = self.interactions.get_mut(id) else {
            self.anomalies += 1;
            return;
        };
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
                interaction.stop_reason = Some(s.reason.clone());
                interaction.offer = None;
                interaction.lock = None;
                interaction.owner = None;
                interaction.parties.clear();
            }
            EventPayload::CommandRejected(_) => interaction.rejected_commands += 1,
        }
        let after = queue_position(interaction);
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
}

impl Board {
    pub fn snapshot(&self) -> BoardSnapshot {
        BoardSnapshot {
            interactions: self.interactions.values().cloned().collect(),
            events_applied: self.events_applied,
            anomalies: self.anomalies,
        }
    }

    /// The board a snapshot was taken of, its queue index rebuilt.
    pub fn restore(snapshot: BoardSnapshot) -> Self {
        let mut board = Self { events_applied: snapshot.events_applied, anomalies: snapshot.anomalies, ..Self::default() };
        for interaction in snapshot.interactions {
            if let Some((queue, key)) = queue_position(&interaction) {
                board.queues.entry(queue).or_default().insert(key);
            }
            board.interactions.insert(interaction.id.clone(), interaction);
        }
        board
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
