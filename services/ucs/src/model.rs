//! The pure part of the projection: how events change a row. No SQL here, so the same fold
//! runs in the projector, in a rebuild and in unit tests.
//!
//! Every value comes from the event (times are `occurred_at`, never the clock), so replaying
//! the same log always yields the same rows.

use std::collections::BTreeMap;

use contract::agent::{AgentEvent, AgentPayload};
use contract::event::{EventPayload, InteractionEvent};

use crate::db::Value;

/// A row of `interactions`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InteractionRow {
    pub id: String,
    pub media_type: Option<String>,
    pub origin: Option<String>,
    pub status: String,
    pub queue: Option<String>,
    pub agent_id: Option<String>,
    pub contact_id: Option<String>,
    pub subject: Option<String>,
    pub priority: i64,
    pub properties: BTreeMap<String, String>,
    pub content_ref: Option<String>,
    pub parent_id: Option<String>,
    pub submitted_by: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: i64,
    pub stopped_at: Option<i64>,
    pub stop_reason: Option<String>,
    /// Events applied: a duplicate applied twice would show here.
    pub event_count: i64,
}

pub const INTERACTION_COLUMNS: &[&str] = &[
    "id",
    "media_type",
    "origin",
    "status",
    "queue",
    "agent_id",
    "contact_id",
    "subject",
    "priority",
    "properties",
    "content_ref",
    "parent_id",
    "submitted_by",
    "created_at",
    "updated_at",
    "stopped_at",
    "stop_reason",
    "event_count",
];

impl InteractionRow {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            status: "new".into(),
            ..Self::default()
        }
    }

    pub fn to_values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.media_type.clone().into(),
            self.origin.clone().into(),
            self.status.clone().into(),
            self.queue.clone().into(),
            self.agent_id.clone().into(),
            self.contact_id.clone().into(),
            self.subject.clone().into(),
            self.priority.into(),
            json(&self.properties).into(),
            self.content_ref.clone().into(),
            self.parent_id.clone().into(),
            self.submitted_by.clone().into(),
            self.created_at.into(),
            self.updated_at.into(),
            self.stopped_at.into(),
            self.stop_reason.clone().into(),
            self.event_count.into(),
        ]
    }

    /// Applies one event and returns its history row.
    pub fn apply(&mut self, event: &InteractionEvent, log_partition: i32, log_offset: i64) -> HistoryRow {
        self.updated_at = event.occurred_at;
        self.event_count += 1;
        let mut involved_agent: Option<&str> = None;
        match &event.payload {
            EventPayload::Submitted(s) => {
                self.media_type = Some(s.media_type.as_str().to_owned());
                self.origin = Some(s.origin.clone());
                self.priority = i64::from(s.priority);
                self.properties = s.properties.clone();
                self.subject = s.properties.get("subject").cloned();
                self.contact_id = s.contact_id.clone();
                self.content_ref = s.content_ref.clone();
                self.parent_id = s.parent_interaction_id.clone();
                self.submitted_by = Some(s.submitted_by.clone());
                self.created_at = Some(event.occurred_at);
            }
            EventPayload::PlacedInQueue(p) => {
                self.queue = Some(p.queue.clone());
                self.status = "waiting".into();
                self.agent_id = None;
            }
            EventPayload::PropertiesChanged(p) => {
                for (k, v) in &p.set {
                    self.properties.insert(k.clone(), v.clone());
                }
                for k in &p.removed {
                    self.properties.remove(k);
                }
                if let Some(priority) = p.priority {
                    self.priority = i64::from(priority);
                }
                self.subject = self.properties.get("subject").cloned();
            }
            EventPayload::Locked(_) | EventPayload::Unlocked(_) => {}
            EventPayload::OfferedToAgent(o) => {
                self.status = "offered".into();
                involved_agent = Some(&o.agent_id);
            }
            EventPayload::OfferAccepted(a) | EventPayload::OfferTimedOut(a) => {
                involved_agent = Some(&a.agent_id);
                if matches!(event.payload, EventPayload::OfferTimedOut(_)) {
                    self.status = "waiting".into();
                }
            }
            EventPayload::OfferRejected(a) | EventPayload::OfferRevoked(a) => {
                self.status = "waiting".into();
                involved_agent = Some(&a.agent_id);
            }
            EventPayload::Assigned(a) => {
                self.status = "assigned".into();
                self.agent_id = Some(a.agent_id.clone());
                involved_agent = Some(&a.agent_id);
            }
            EventPayload::PartyJoined(p) => involved_agent = Some(&p.agent_id),
            EventPayload::PartyLeft(a) => involved_agent = Some(&a.agent_id),
            EventPayload::Transferred(t) => {
                self.agent_id = None;
                self.status = "waiting".into();
                involved_agent = t.to_agent_id.as_deref().or(Some(&t.from_agent_id));
            }
            EventPayload::ReturnedToQueue(r) => {
                self.agent_id = None;
                self.status = "waiting".into();
                involved_agent = Some(&r.agent_id);
            }
            EventPayload::Stopped(s) => {
                self.status = "stopped".into();
                self.stopped_at = Some(event.occurred_at);
                self.stop_reason = Some(s.reason.clone());
                self.agent_id = None;
            }
            EventPayload::CommandRejected(_) => {}
        }
        HistoryRow {
            event_id: event.event_id.clone(),
            interaction_id: event.interaction_id.clone(),
            log_partition: i64::from(log_partition),
            log_offset,
            occurred_at: event.occurred_at,
            kind: event.payload.kind().to_owned(),
            queue: self.queue.clone(),
            agent_id: involved_agent
                .map(str::to_owned)
                .or_else(|| self.agent_id.clone()),
            causation_id: event.causation_id.clone(),
            detail: serde_json::to_string(&event.payload).unwrap_or_default(),
        }
    }
}

/// A row of `interaction_history`: the queue and agent trail.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub event_id: String,
    pub interaction_id: String,
    pub log_partition: i64,
    pub log_offset: i64,
    pub occurred_at: i64,
    pub kind: String,
    pub queue: Option<String>,
    pub agent_id: Option<String>,
    pub causation_id: String,
    pub detail: String,
}

pub const HISTORY_COLUMNS: &[&str] = &[
    "event_id",
    "interaction_id",
    "log_partition",
    "log_offset",
    "occurred_at",
    "kind",
    "queue",
    "agent_id",
    "causation_id",
    "detail",
];

impl HistoryRow {
    pub fn to_values(&self) -> Vec<Value> {
        vec![
            self.event_id.clone().into(),
            self.interaction_id.clone().into(),
            self.log_partition.into(),
            self.log_offset.into(),
            self.occurred_at.into(),
            self.kind.clone().into(),
            self.queue.clone().into(),
            self.agent_id.clone().into(),
            self.causation_id.clone().into(),
            self.detail.clone().into(),
        ]
    }
}

/// A row of `agents`: the latest state of each agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentRow {
    pub id: String,
    pub state: String,
    pub place: Option<String>,
    pub skills: BTreeMap<String, i32>,
    pub capacity: BTreeMap<String, i32>,
    pub ready_media: Vec<String>,
    pub reason: Option<String>,
    pub updated_at: i64,
    pub event_count: i64,
}

pub const AGENT_COLUMNS: &[&str] = &[
    "id",
    "state",
    "place",
    "skills",
    "capacity",
    "ready_media",
    "reason",
    "updated_at",
    "event_count",
];

impl AgentRow {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            state: "logged_out".into(),
            ..Self::default()
        }
    }

    pub fn apply(&mut self, event: &AgentEvent) {
        self.updated_at = event.occurred_at;
        self.event_count += 1;
        match &event.payload {
            AgentPayload::LoggedIn(l) => {
                self.state = "logged_in".into();
                self.place = l.place.clone();
                self.skills = l.skills.clone();
                self.capacity = l.capacity.clone();
                self.ready_media.clear();
                self.reason = None;
            }
            AgentPayload::Ready(r) => {
                self.state = "ready".into();
                self.ready_media = r.media.clone();
                self.reason = None;
            }
            AgentPayload::NotReady(n) => {
                self.state = "not_ready".into();
                self.ready_media.retain(|m| !n.media.contains(m) && !n.media.is_empty());
                self.reason = Some(n.reason.clone());
            }
            AgentPayload::LoggedOut(l) => {
                self.state = "logged_out".into();
                self.ready_media.clear();
                self.reason = l.reason.clone();
            }
        }
    }

    pub fn to_values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.state.clone().into(),
            self.place.clone().into(),
            json(&self.skills).into(),
            json(&self.capacity).into(),
            json(&self.ready_media).into(),
            self.reason.clone().into(),
            self.updated_at.into(),
            self.event_count.into(),
        ]
    }
}

/// JSON text of a value that always serialises (maps of strings, lists of strings).
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::event::{AgentId, PlacedInQueue, Stopped, Submitted};
    use contract::command::MediaType;

    fn event(i: i32, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: InteractionEvent::id_for("c", i),
            interaction_id: "i-1".into(),
            occurred_at: 1_000 + i64::from(i),
            causation_id: "c".into(),
            command_partition: 0,
            command_offset: 0,
            index: i,
            set_size: 1,
            payload,
        }
    }

    #[test]
    fn an_interaction_life_leaves_a_trail() {
        let mut row = InteractionRow::new("i-1");
        let events = [
            EventPayload::Submitted(Submitted {
                media_type: MediaType::Email,
                origin: "smtp".into(),
                priority: 3,
                properties: [("subject".to_owned(), "Refund".to_owned())].into(),
                contact_id: Some("k-1".into()),
                content_ref: None,
                parent_interaction_id: None,
                submitted_by: "email-server".into(),
            }),
            EventPayload::PlacedInQueue(PlacedInQueue {
                queue: "inbound".into(),
                previous_queue: None,
                reason: "submitted".into(),
            }),
            EventPayload::Assigned(AgentId {
                agent_id: "ann".into(),
            }),
            EventPayload::Stopped(Stopped {
                reason: "done".into(),
                stopped_by: "ann".into(),
            }),
        ];
        let trail: Vec<HistoryRow> = events
            .into_iter()
            .enumerate()
            .map(|(i, p)| row.apply(&event(i as i32, p), 0, i as i64))
            .collect();
        assert_eq!(row.status, "stopped");
        assert_eq!(row.subject.as_deref(), Some("Refund"));
        assert_eq!(row.created_at, Some(1_000));
        assert_eq!(row.stopped_at, Some(1_003));
        assert_eq!(row.event_count, 4);
        assert_eq!(trail[1].queue.as_deref(), Some("inbound"));
        assert_eq!(trail[2].agent_id.as_deref(), Some("ann"));
        let kinds: Vec<&str> = trail.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(kinds, ["Submitted", "PlacedInQueue", "Assigned", "Stopped"]);
    }

    /// Over random command streams decided by the Interaction Server's own state machine, the
    /// contact store's row of each interaction agrees with the board after every command:
    /// status, queue, agent, priority, properties, stop reason; and each event adds one trail
    /// row (a double apply would show in `event_count`).
    mod against_the_board {
        use super::super::InteractionRow;
        use contract::command::*;
        use interactions::board::Status;
        use interactions::partition::{Outcome, PartitionState};
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
            proptest::sample::select(items).prop_map(str::to_owned)
        }

        fn payload() -> impl Strategy<Value = CommandPayload> {
            let agent = || pick(&["ann", "bob"]);
            prop_oneof![
                (pick(&["inbound", "vip"]), 0..3i32).prop_map(|(target_queue, priority)| CommandPayload::Submit(Submit {
                    media_type: MediaType::Email,
                    origin: "t".into(),
                    target_queue,
                    priority,
                    properties: BTreeMap::from([("subject".into(), "hi".into())]),
                    contact_id: None,
                    content_ref: None,
                    parent_interaction_id: None,
                })),
                agent().prop_map(|agent_id| CommandPayload::Offer(Offer { agent_id, timeout_ms: 1000 })),
                agent().prop_map(|agent_id| CommandPayload::AcceptOffer(AgentRef { agent_id })),
                agent().prop_map(|agent_id| CommandPayload::RejectOffer(AgentReason { agent_id, reason: "busy".into() })),
                agent().prop_map(|agent_id| CommandPayload::TimeOutOffer(AgentRef { agent_id })),
                (agent(), proptest::option::of(agent()), proptest::option::of(pick(&["inbound", "vip"])))
                    .prop_map(|(from_agent_id, to_agent_id, to_queue)| CommandPayload::Transfer(Transfer { from_agent_id, to_agent_id, to_queue })),
                agent().prop_map(|agent_id| CommandPayload::ReturnToQueue(ReturnToQueue { agent_id, queue: None })),
                pick(&["inbound", "vip"]).prop_map(|queue| CommandPayload::MoveToQueue(MoveToQueue { queue, reason: "sup".into() })),
                (0..5i32, pick(&["a", "b"])).prop_map(|(p, v)| CommandPayload::ChangeProperties(ChangeProperties { set: BTreeMap::from([("k".into(), v)]), remove: vec![], priority: Some(p) })),
                Just(CommandPayload::Stop(Stop { reason: "done".into() })),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn rows_agree_with_the_board(commands in proptest::collection::vec((pick(&["i1", "i2"]), payload()), 1..60)) {
                let mut state = PartitionState::default();
                let mut rows: BTreeMap<String, InteractionRow> = BTreeMap::new();
                let mut trail = 0i64;
                for (n, (id, payload)) in commands.into_iter().enumerate() {
                    let command = InteractionCommand { command_id: format!("c{n}"), interaction_id: id.clone(), issued_at: 1_000 + n as i64, issued_by: "t".into(), payload };
                    let Outcome::Emit { events, .. } = state.handle(0, n as i64, &command) else { continue };
                    for e in &events {
                        if state.board.interaction(&e.interaction_id).is_some() {
                            rows.entry(e.interaction_id.clone()).or_insert_with(|| InteractionRow::new(&e.interaction_id)).apply(e, 0, trail);
                            trail += 1;
                        }
                    }
                    let (Some(i), Some(row)) = (state.board.interaction(&id), rows.get(&id)) else { continue };
                    let status = match i.status {
                        Status::New | Status::Waiting => "waiting",
                        Status::Offered => "offered",
                        Status::Assigned => "assigned",
                        Status::Stopped => "stopped",
                    };
                    prop_assert_eq!(row.status.as_str(), status, "{:?}", i);
                    prop_assert_eq!(&row.queue, &i.queue);
                    prop_assert_eq!(&row.agent_id, &i.owner);
                    prop_assert_eq!(row.priority, i64::from(i.priority));
                    prop_assert_eq!(&row.properties, &i.properties);
                    prop_assert_eq!(&row.stop_reason, &i.stop_reason);
                }
                let applied: i64 = rows.values().map(|r| r.event_count).sum();
                prop_assert_eq!(applied, trail);
            }
        }
    }
}
