//! Interactions and agents in one fold. An agent's offers, owned interactions and consults are
//! read off the board after each interaction event (before and after are compared), so the load
//! the router checks against capacity is exactly what the log says, never a second count.
//! Pure: no I/O, no clock; total: any event in any order is applied without a panic.

use std::collections::{BTreeMap, BTreeSet};

use contract::agent::{AgentEvent, AgentPayload};
use contract::command::MediaType;
use contract::event::InteractionEvent;
use queues::board::{Board, BoardSnapshot, Interaction};
use serde::{Deserialize, Serialize};

use crate::library::Library;
use crate::stats::Stats;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub logged_in: bool,
    pub place: Option<String>,
    pub skills: BTreeMap<String, i32>,
    /// Media type name to the most interactions held at once (offers count).
    pub capacity: BTreeMap<String, i32>,
    /// Media the agent is ready for.
    pub ready: BTreeSet<String>,
    /// Media the agent is not ready for, with the reason given.
    pub not_ready: BTreeMap<String, String>,
    /// Interactions offered to the agent and not yet answered, with their media.
    pub offers: BTreeMap<String, MediaType>,
    /// Interactions the agent owns.
    pub owned: BTreeMap<String, MediaType>,
    /// Interactions the agent joined as consult or conference party (not counted in load).
    pub parties: BTreeSet<String>,
    /// Since when the agent has held nothing (or logged in / became ready): longest-idle order.
    pub idle_since: i64,
    pub handled: u64,
    pub updated_at: i64,
    /// When the agent last logged out (None: still in, or never logged in: a supervisor who
    /// pulled an interaction is an owner without agent events).
    pub logged_out_at: Option<i64>,
}

impl Agent {
    fn new(id: &str, at: i64) -> Self {
        Self {
            id: id.to_owned(),
            logged_in: false,
            place: None,
            skills: BTreeMap::new(),
            capacity: BTreeMap::new(),
            ready: BTreeSet::new(),
            not_ready: BTreeMap::new(),
            offers: BTreeMap::new(),
            owned: BTreeMap::new(),
            parties: BTreeSet::new(),
            idle_since: at,
            handled: 0,
            updated_at: at,
            logged_out_at: None,
        }
    }

    /// Offers plus owned interactions of `media`.
    pub fn load(&self, media: MediaType) -> i32 {
        let count = |m: &BTreeMap<String, MediaType>| m.values().filter(|&&x| x == media).count();
        i32::try_from(count(&self.offers) + count(&self.owned)).unwrap_or(i32::MAX)
    }

    pub fn total_load(&self) -> usize {
        self.offers.len() + self.owned.len()
    }

    pub fn capacity_for(&self, media: MediaType) -> i32 {
        self.capacity.get(media.as_str()).copied().unwrap_or(0)
    }

    /// Logged in, ready for `media` and below capacity for it.
    pub fn can_take(&self, media: MediaType) -> bool {
        self.logged_in && self.ready.contains(media.as_str()) && self.load(media) < self.capacity_for(media)
    }

    /// Share of capacity in use over all media (least-busy order).
    pub fn occupancy(&self) -> f64 {
        let capacity: i32 = self.capacity.values().sum();
        if capacity <= 0 {
            return 1.0;
        }
        self.total_load() as f64 / f64::from(capacity)
    }

    /// One word for dashboards and time-in-state statistics.
    pub fn state_name(&self) -> &'static str {
        if !self.logged_in {
            "logged_out"
        } else if self.total_load() > 0 {
            "busy"
        } else if !self.ready.is_empty() {
            "ready"
        } else {
            "not_ready"
        }
    }
}

/// Which interaction and agents an event changed (for push notifications).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched {
    pub interaction_id: Option<String>,
    pub agents: BTreeSet<String>,
    /// The command (or agent event's cause) behind the event.
    pub causation_id: Option<String>,
    /// Set when the event is the Interaction Server refusing the command: its reason.
    pub rejected: Option<String>,
    /// The last event of its command's set: the floor now shows the command's whole outcome.
    pub last_of_set: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Floor {
    board: Board,
    agents: BTreeMap<String, Agent>,
    /// Per command partition, the highest command offset whose outcome is on the events topic.
    reflected: BTreeMap<i32, i64>,
    stats: Stats,
    agent_events: u64,
    library: Library,
    trend: crate::trend::Trend,
}

/// The agent ids an interaction involves: (offered to, owner, parties).
fn involvement(i: Option<&Interaction>) -> (Option<String>, Option<String>, BTreeSet<String>) {
    match i {
        None => (None, None, BTreeSet::new()),
        Some(i) => (
            i.offer.as_ref().map(|o| o.agent_id.clone()),
            i.owner.clone(),
            i.parties.keys().cloned().collect(),
        ),
    }
}

/// A floor as a snapshot stores it (the board's derived indexes are rebuilt on restore).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorSnapshot {
    board: BoardSnapshot,
    agents: Vec<Agent>,
    reflected: BTreeMap<i32, i64>,
    stats: Stats,
    agent_events: u64,
    library: Library,
    trend: crate::trend::Trend,
}

impl Floor {
    pub fn snapshot(&self) -> FloorSnapshot {
        FloorSnapshot {
            board: self.board.snapshot(),
            agents: self.agents.values().cloned().collect(),
            reflected: self.reflected.clone(),
            stats: self.stats.clone(),
            agent_events: self.agent_events,
            library: self.library.clone(),
            trend: self.trend.clone(),
        }
    }

    /// The floor a snapshot was taken of; `None` if it was taken with another eviction window.
    pub fn restore(snapshot: FloorSnapshot, keep_stopped_ms: i64) -> Option<Self> {
        Some(Self {
            board: Board::restore(snapshot.board, Some(keep_stopped_ms))?,
            agents: snapshot.agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
            reflected: snapshot.reflected,
            stats: snapshot.stats,
            agent_events: snapshot.agent_events,
            library: snapshot.library,
            trend: snapshot.trend,
        })
    }

    /// `keep_stopped_ms`: how long a stopped interaction stays on the floor's board (log time).
    pub fn new(service_level_threshold_ms: i64, keep_stopped_ms: i64) -> Self {
        Self {
            board: Board::evicting_after(keep_stopped_ms),
            stats: Stats::new(service_level_threshold_ms),
            ..Self::default()
        }
    }

    /// Standard responses and categories (from `ucs.events`).
    pub fn library(&self) -> &Library {
        &self.library
    }

    pub fn apply_ucs_event(&mut self, event: &contract::ucs::UcsEvent) {
        self.library.apply(event);
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queue depth and service level per minute over the last `minutes` (see [`crate::trend`]).
    pub fn trend(&self, now: i64, minutes: i64) -> crate::trend::TrendView {
        let current = crate::trend::sample_of(&self.board.queue_summaries(), self.stats.queue_totals());
        self.trend.view(now, minutes, current)
    }

    pub fn agent_events(&self) -> u64 {
        self.agent_events
    }

    /// The highest offset of `interaction.commands` partition `p` whose outcome is reflected.
    pub fn reflected(&self, partition: i32) -> Option<i64> {
        self.reflected.get(&partition).copied()
    }

    pub fn apply_interaction_event(&mut self, event: &InteractionEvent) -> Touched {
        let id = event.interaction_id.as_str();
        let at = event.occurred_at;
        let reflected = self.reflected.entry(event.command_partition).or_insert(-1);
        *reflected = (*reflected).max(event.command_offset);

        let (board, stats) = (&self.board, &self.stats);
        self.trend.before_event(at, || crate::trend::sample_of(&board.queue_summaries(), stats.queue_totals()));
        let before = self.board.interaction(id).cloned();
        self.board.apply(event);
        let after = self.board.interaction(id).cloned();
        let (offer_before, owner_before, parties_before) = involvement(before.as_ref());
        let (offer_after, owner_after, parties_after) = involvement(after.as_ref());
        let media = after.as_ref().or(before.as_ref()).map(|i| i.media_type);

        let mut touched = Touched {
            interaction_id: Some(id.to_owned()),
            agents: BTreeSet::new(),
            causation_id: Some(event.causation_id.clone()),
            rejected: match &event.payload {
                contract::event::EventPayload::CommandRejected(r) => Some(r.reason.clone()),
                _ => None,
            },
            last_of_set: event.index + 1 >= event.set_size,
        };
        if let Some(media) = media {
            if offer_before != offer_after {
                if let Some(a) = &offer_before {
                    self.agent_mut(a, at).offers.remove(id);
                    touched.agents.insert(a.clone());
                }
                if let Some(a) = &offer_after {
                    self.agent_mut(a, at).offers.insert(id.to_owned(), media);
                    touched.agents.insert(a.clone());
                }
            }
            if owner_before != owner_after {
                if let Some(a) = &owner_before {
                    let agent = self.agent_mut(a, at);
                    agent.owned.remove(id);
                    agent.handled += 1;
                    touched.agents.insert(a.clone());
                }
                if let Some(a) = &owner_after {
                    self.agent_mut(a, at).owned.insert(id.to_owned(), media);
                    touched.agents.insert(a.clone());
                }
            }
            for a in parties_before.symmetric_difference(&parties_after) {
                let agent = self.agent_mut(a, at);
                if parties_after.contains(a) {
                    agent.parties.insert(id.to_owned());
                } else {
                    agent.parties.remove(id);
                }
                touched.agents.insert(a.clone());
            }
        }
        // Owner and offer are part of what every involved agent sees (e.g. a property change).
        touched.agents.extend(offer_after.into_iter().chain(owner_after));
        self.stats.on_interaction_event(event, before.as_ref(), after.as_ref());
        for a in &touched.agents {
            if let Some(agent) = self.agents.get_mut(a) {
                if agent.total_load() == 0 && (offer_before.as_ref() == Some(a) || owner_before.as_ref() == Some(a)) {
                    agent.idle_since = at;
                }
                agent.updated_at = at;
                self.stats.on_agent_state(a, agent.state_name(), at);
            }
        }
        touched
    }

    pub fn apply_agent_event(&mut self, event: &AgentEvent) -> Touched {
        self.agent_events += 1;
        let at = event.occurred_at;
        let agent = self.agent_mut(&event.agent_id, at);
        agent.updated_at = at;
        match &event.payload {
            AgentPayload::LoggedIn(l) => {
                agent.logged_in = true;
                agent.logged_out_at = None;
                agent.place = l.place.clone();
                agent.skills = l.skills.clone();
                agent.capacity = l.capacity.clone();
                agent.ready.clear();
                agent.not_ready.clear();
                agent.idle_since = at;
            }
            AgentPayload::Ready(r) => {
                for m in &r.media {
                    agent.not_ready.remove(m);
                    if agent.ready.insert(m.clone()) && agent.total_load() == 0 {
                        agent.idle_since = at;
                    }
                }
            }
            AgentPayload::NotReady(n) => {
                for m in &n.media {
                    agent.ready.remove(m);
                    agent.not_ready.insert(m.clone(), n.reason.clone());
                }
            }
            AgentPayload::LoggedOut(_) => {
                agent.logged_in = false;
                agent.logged_out_at = Some(at);
                agent.ready.clear();
                agent.not_ready.clear();
            }
        }
        let state = agent.state_name();
        self.stats.on_agent_state(&event.agent_id, state, at);
        Touched {
            interaction_id: None,
            agents: BTreeSet::from([event.agent_id.clone()]),
            causation_id: event.causation_id.clone(),
            rejected: None,
            last_of_set: true,
        }
    }

    fn agent_mut(&mut self, id: &str, at: i64) -> &mut Agent {
        self.agents
            .entry(id.to_owned())
            .or_insert_with(|| Agent::new(id, at))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::agent::{LoggedIn, LoggedOut, Ready};
    use contract::event::{AgentId, AgentReason, EventPayload, LockHolderKind, Locked, OfferedToAgent, PlacedInQueue, Stopped, Submitted};

    fn ev(id: &str, at: i64, offset: i64, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: format!("{id}-{offset}"),
            interaction_id: id.into(),
            occurred_at: at,
            causation_id: format!("c{offset}"),
            command_partition: 0,
            command_offset: offset,
            index: 0,
            set_size: 1,
            payload,
        }
    }

    fn agent_ev(agent: &str, at: i64, payload: AgentPayload) -> AgentEvent {
        AgentEvent {
            event_id: format!("{agent}-{at}"),
            agent_id: agent.into(),
            occurred_at: at,
            causation_id: None,
            payload,
        }
    }

    fn submitted(id: &str, at: i64, media: MediaType) -> [InteractionEvent; 2] {
        [
            ev(id, at, at, EventPayload::Submitted(Submitted {
                media_type: media,
                origin: "t".into(),
                priority: 0,
                properties: BTreeMap::new(),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
                submitted_by: "t".into(),
            })),
            ev(id, at, at, EventPayload::PlacedInQueue(PlacedInQueue {
                queue: "q".into(),
                previous_queue: None,
                reason: "submitted".into(),
            })),
        ]
    }

    #[test]
    fn load_follows_offers_and_ownership_and_frees_on_stop() {
        let mut floor = Floor::new(20_000, 3_600_000);
        floor.apply_agent_event(&agent_ev("ann", 1, AgentPayload::LoggedIn(LoggedIn {
            place: None,
            skills: BTreeMap::new(),
            capacity: BTreeMap::from([("email".into(), 2)]),
        })));
        floor.apply_agent_event(&agent_ev("ann", 2, AgentPayload::Ready(Ready { media: vec!["email".into()] })));
        for e in submitted("i1", 10, MediaType::Email).iter().chain(&submitted("i2", 11, MediaType::Email)) {
            floor.apply_interaction_event(e);
        }
        fn ann(floor: &Floor) -> Agent {
            floor.agent("ann").unwrap().clone()
        }
        assert!(ann(&floor).can_take(MediaType::Email));
        assert!(!ann(&floor).can_take(MediaType::Chat), "no chat capacity");
        let offer = |_id: &str| EventPayload::OfferedToAgent(OfferedToAgent { agent_id: "ann".into(), timeout_ms: 1000 });
        floor.apply_interaction_event(&ev("i1", 20, 20, offer("i1")));
        floor.apply_interaction_event(&ev("i2", 21, 21, offer("i2")));
        assert_eq!(ann(&floor).load(MediaType::Email), 2);
        assert!(!ann(&floor).can_take(MediaType::Email), "at capacity");
        floor.apply_interaction_event(&ev("i2", 22, 22, EventPayload::OfferRejected(AgentReason {
            agent_id: "ann".into(),
            reason: "busy".into(),
        })));
        floor.apply_interaction_event(&ev("i1", 23, 23, EventPayload::OfferAccepted(AgentId { agent_id: "ann".into() })));
        let touched = floor.apply_interaction_event(&ev("i1", 23, 23, EventPayload::Assigned(AgentId { agent_id: "ann".into() })));
        assert!(touched.agents.contains("ann"));
        assert_eq!(ann(&floor).owned.keys().collect::<Vec<_>>(), ["i1"]);
        assert_eq!(ann(&floor).load(MediaType::Email), 1);
        assert_eq!(ann(&floor).state_name(), "busy");
        floor.apply_interaction_event(&ev("i1", 30, 30, EventPayload::Stopped(Stopped {
            reason: "done".into(),
            stopped_by: "ann".into(),
        })));
        assert_eq!(ann(&floor).load(MediaType::Email), 0);
        assert_eq!(ann(&floor).idle_since, 30);
        assert_eq!(ann(&floor).handled, 1);
        assert_eq!(floor.reflected(0), Some(30));
        floor.apply_agent_event(&agent_ev("ann", 40, AgentPayload::LoggedOut(LoggedOut { reason: None })));
        assert!(!ann(&floor).can_take(MediaType::Email));
        let stats = floor.stats().agent_view("ann", 50).unwrap();
        // not ready 1..2, ready 2..20 and 30..40, busy 20..30 (offers count), logged out 40..50.
        let expected = BTreeMap::from([("busy", 10), ("logged_out", 10), ("not_ready", 1), ("ready", 28)]);
        let got: BTreeMap<&str, i64> = stats.ms_in_state.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_stop_in_queue_by_its_lock_holder_is_processed_not_abandoned() {
        let mut floor = Floor::new(20_000, 3_600_000);
        for e in submitted("sent", 10, MediaType::Email).iter().chain(&submitted("gone", 11, MediaType::Email)) {
            floor.apply_interaction_event(e);
        }
        // A sender claims its mail with a lock, sends it and stops it: finished work.
        floor.apply_interaction_event(&ev("sent", 20, 20, EventPayload::Locked(Locked { holder: "email-sender".into(), holder_kind: LockHolderKind::Router })));
        floor.apply_interaction_event(&ev("sent", 21, 21, EventPayload::Stopped(Stopped { reason: "sent".into(), stopped_by: "email-sender".into() })));
        // Stopped while waiting by someone else (locked by another, too): abandoned.
        floor.apply_interaction_event(&ev("gone", 22, 22, EventPayload::Locked(Locked { holder: "sue".into(), holder_kind: LockHolderKind::Supervisor })));
        floor.apply_interaction_event(&ev("gone", 23, 23, EventPayload::Stopped(Stopped { reason: "customer left".into(), stopped_by: "chat-server".into() })));
        let totals = &floor.stats().queue_totals()["q"];
        assert_eq!((totals.processed, totals.abandoned, totals.entered), (1, 1, 2));
    }
}
