//! Chat sessions as a projection of `chat.events` (the seed's Chat Server state).
//!
//! The log is the session's truth and Kafka's partition order is its order: an event's
//! sequence number is its 1-based position among its session's events as they appear on
//! the partition, a record repeating an earlier `event_id` (a resend) not counted. Every
//! reader folds the same records into the same numbers, so no writer has to assign them
//! and any chat server instance can serve any session. A client that reconnects names the
//! last number it saw and gets [`Sessions::since`] that: exactly what it missed, in order.
//!
//! What a customer may see is narrower than what agents see ([`Audience`]): whispers
//! (`Visibility::Agents`) and private consults (`agents_only` participants, their joining,
//! leaving and typing) are left out of the customer's stream; the numbers stay global, so a
//! customer's stream has gaps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use contract::chat::{ChatEvent, ChatPayload, ChatRole, Visibility};
use serde::{Deserialize, Serialize};

/// The participant id of notices the chat server writes itself (greeting, queue position,
/// idle warning); such a message's `client_message_id` names the notice (`notice:<kind>…`).
pub const SYSTEM: &str = "system";

/// An event with its number in its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequenced {
    pub seq: u64,
    pub event: ChatEvent,
    /// Not for the customer: a whisper, or from a participant who was in the chat privately
    /// (`agents_only`) when it happened. Decided once, as the event is applied, so a later
    /// change (a private consult later conferenced in) does not reveal earlier events.
    #[serde(skip)]
    pub agents_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub role: ChatRole,
    pub display_name: String,
    pub agents_only: bool,
    pub present: bool,
    /// Number of the event of the latest joining (a leave is named after it, so every
    /// instance that records one leave writes the same event).
    pub joined_seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub interaction_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub subject: Option<String>,
    /// Where it started: `web-api`, or `sms:<number>` for an SMS session.
    pub origin: Option<String>,
    #[serde(skip)]
    pub customer_token_sha256: Option<String>,
    pub participants: BTreeMap<String, Participant>,
    pub typing: BTreeSet<String>,
    /// `(ended_by, reason)` once ended.
    pub ended: Option<(String, String)>,
    /// When it ended (the end event's time).
    #[serde(default)]
    pub ended_at: Option<i64>,
    pub transcript_to: Option<String>,
    pub started_at: i64,
    /// Time of the last message from a person or of an agent's joining: the idle timeout
    /// counts from it (notices do not reset it).
    pub last_activity_at: i64,
    /// The last queue-position notice sent (its `client_message_id`).
    pub position_notice: Option<String>,
    /// The `last_activity_at` an idle warning was sent for.
    pub idle_warned_for: Option<i64>,
    #[serde(skip)]
    events: Vec<Sequenced>,
    #[serde(skip)]
    event_ids: HashSet<String>,
}

/// Who is reading a session's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Customer,
    Agents,
}

impl Session {
    pub fn last_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// The client message ids of the customer's messages posted before the session's end.
    pub fn customer_messages_before_end(&self) -> impl Iterator<Item = &str> {
        self.events
            .iter()
            .take_while(|e| !matches!(e.event.payload, ChatPayload::SessionEnded(_)))
            .filter_map(|e| match &e.event.payload {
                ChatPayload::MessagePosted(m) if m.participant_id == CUSTOMER => m.client_message_id.as_deref(),
                _ => None,
            })
    }

    /// Whether `event`, applied now, is for agents only.
    fn agents_only(&self, event: &ChatEvent) -> bool {
        let private = |participant: &str| self.participants.get(participant).is_some_and(|p| p.agents_only);
        match &event.payload {
            ChatPayload::MessagePosted(m) => m.visibility == Visibility::Agents || private(&m.participant_id),
            ChatPayload::ParticipantJoined(j) => j.agents_only,
            ChatPayload::ParticipantLeft(l) => private(&l.participant_id),
            ChatPayload::TypingChanged(t) => private(&t.participant_id),
            ChatPayload::SessionStarted(_) | ChatPayload::SessionEnded(_) | ChatPayload::TranscriptRequested(_) => false,
        }
    }

    /// Whether `audience` is shown `event`.
    pub fn shows(audience: Audience, event: &Sequenced) -> bool {
        audience == Audience::Agents || !event.agents_only
    }

    /// Every event after `after` that `audience` may see, in order.
    pub fn since(&self, after: u64, audience: Audience) -> impl Iterator<Item = &Sequenced> {
        // Numbers are dense positions in `events`: seq n is at index n - 1.
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(self.events.len());
        self.events[start..].iter().filter(move |s| Self::shows(audience, s))
    }

    /// The transcript as kept: messages and joins/leaves, no typing.
    pub fn transcript(&self, audience: Audience) -> impl Iterator<Item = &Sequenced> {
        self.since(0, audience).filter(|s| !matches!(s.event.payload, ChatPayload::TypingChanged(_)))
    }

    fn apply(&mut self, event: ChatEvent) -> Option<Sequenced> {
        if !self.event_ids.insert(event.event_id.clone()) {
            return None;
        }
        // Before the event changes who is private (a leave must still count as private).
        let agents_only = self.agents_only(&event);
        match &event.payload {
            ChatPayload::SessionStarted(s) => {
                self.interaction_id = Some(s.interaction_id.clone());
                self.customer_name = Some(s.customer_name.clone());
                self.customer_email.clone_from(&s.customer_email);
                self.subject.clone_from(&s.subject);
                self.origin = Some(s.origin.clone());
                self.customer_token_sha256 = Some(s.customer_token_sha256.clone());
                self.started_at = event.occurred_at;
                self.last_activity_at = event.occurred_at;
            }
            ChatPayload::ParticipantJoined(j) => {
                if j.role != ChatRole::Customer {
                    self.last_activity_at = event.occurred_at;
                }
                let participant = Participant {
                    role: j.role,
                    display_name: j.display_name.clone(),
                    agents_only: j.agents_only,
                    present: true,
                    joined_seq: self.last_seq() + 1,
                };
                self.participants.insert(j.participant_id.clone(), participant);
            }
            ChatPayload::ParticipantLeft(l) => {
                if let Some(p) = self.participants.get_mut(&l.participant_id) {
                    p.present = false;
                }
                self.typing.remove(&l.participant_id);
            }
            ChatPayload::MessagePosted(m) if m.participant_id == SYSTEM => match m.client_message_id.as_deref() {
                Some(notice) if notice.starts_with("notice:position:") => self.position_notice = Some(notice.to_owned()),
                Some(notice) if notice.starts_with("notice:idle-warning") => self.idle_warned_for = Some(self.last_activity_at),
                _ => {}
            },
            ChatPayload::MessagePosted(m) => {
                self.typing.remove(&m.participant_id);
                self.last_activity_at = event.occurred_at;
            }
            ChatPayload::TypingChanged(t) => {
                if t.typing {
                    self.typing.insert(t.participant_id.clone());
                } else {
                    self.typing.remove(&t.participant_id);
                }
            }
            ChatPayload::TranscriptRequested(t) => self.transcript_to = Some(t.email.clone()),
            ChatPayload::SessionEnded(e) => {
                if self.ended.is_none() {
                    self.ended = Some((e.ended_by.clone(), e.reason.clone()));
                    self.ended_at = Some(event.occurred_at);
                }
                self.typing.clear();
            }
        }
        let sequenced = Sequenced { seq: self.last_seq() + 1, event, agents_only };
        self.events.push(sequenced.clone());
        Some(sequenced)
    }
}

/// Every session seen on the topic, with indexes of the active ones, the ended ones by end
/// time and the sessions of each origin, so periodic work walks what is live or recent, not
/// every session ever.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    sessions: HashMap<String, Session>,
    active: BTreeSet<String>,
    ended_at: BTreeSet<(i64, String)>,
    by_origin: HashMap<String, BTreeSet<String>>,
    /// Ended sessions leave memory this long after their end, in log time (`None`: never).
    keep_ended_ms: Option<i64>,
    /// The latest event time seen: the clock eviction runs on, so a replay and the live fold
    /// evict alike.
    clock: i64,
    /// Sessions that ended and left memory (128-bit keys of their ids): a late event for one
    /// is not the start of a new session.
    gone: HashSet<u128>,
    /// How many sessions ever started from each origin, evicted ones included: an SMS
    /// session's id counts them, so it must not count only what is in memory.
    started_from: HashMap<String, u64>,
    /// Customer messages of SMS sessions that left memory, by (origin, client message id),
    /// with their session: a gateway's webhook resent months later is still a duplicate.
    gone_messages: HashMap<u128, u128>,
}

/// The 128-bit key an id is remembered by once its session left memory.
fn key(parts: &[&str]) -> u128 {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, parts.join("\u{0}").as_bytes()).as_u128()
}

impl Sessions {
    /// Sessions that forget an ended session `keep_ended_ms` after its end (log time).
    pub fn evicting_after(keep_ended_ms: i64) -> Self {
        Self { keep_ended_ms: Some(keep_ended_ms), ..Self::default() }
    }

    pub fn keep_ended_ms(&self) -> Option<i64> {
        self.keep_ended_ms
    }

    /// Whether `id` is a session that ended and left memory (its transcript is in UCS).
    pub fn has_left(&self, id: &str) -> bool {
        self.gone.contains(&key(&[id]))
    }

    /// How many sessions ever started from `origin`.
    pub fn started_from(&self, origin: &str) -> u64 {
        self.started_from.get(origin).copied().unwrap_or(0)
    }

    /// The session a customer message was posted into before its end, if that session left
    /// memory.
    pub fn left_with_message(&self, origin: &str, client_message_id: &str) -> Option<String> {
        self.gone_messages.get(&key(&[origin, client_message_id])).map(|s| uuid::Uuid::from_u128(*s).to_string())
    }

    /// Forgets the sessions that ended before the window.
    fn evict(&mut self) {
        let Some(keep) = self.keep_ended_ms else { return };
        let before = self.clock.saturating_sub(keep);
        while let Some((at, id)) = self.ended_at.first().cloned() {
            if at >= before {
                break;
            }
            self.ended_at.pop_first();
            let Some(session) = self.sessions.remove(&id) else { continue };
            self.gone.insert(key(&[&id]));
            if let Some(origin) = &session.origin {
                if let Some(ids) = self.by_origin.get_mut(origin) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_origin.remove(origin);
                    }
                }
                if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                    for client_id in session.customer_messages_before_end() {
                        self.gone_messages.insert(key(&[origin, client_id]), uuid.as_u128());
                    }
                }
            }
        }
    }
}

impl Sessions {
    /// Folds one record (in partition order); `None` for a resend of an event already seen.
    pub fn apply(&mut self, event: ChatEvent) -> Option<Sequenced> {
        self.clock = self.clock.max(event.occurred_at);
        let id = event.session_id.clone();
        if !self.gone.is_empty() && self.has_left(&id) {
            // A late record of a session that ended long ago (its history is in UCS).
            return None;
        }
        let session = self.sessions.entry(id.clone()).or_insert_with(|| Session { id: id.clone(), ..Session::default() });
        let (origin_before, ended_before) = (session.origin.clone(), session.ended_at);
        let applied = session.apply(event);
        if session.origin != origin_before {
            if let Some(old) = origin_before
                && let Some(ids) = self.by_origin.get_mut(&old)
            {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_origin.remove(&old);
                }
            }
            if let Some(origin) = session.origin.clone() {
                *self.started_from.entry(origin.clone()).or_default() += 1;
                self.by_origin.entry(origin).or_default().insert(id.clone());
            }
        }
        match (ended_before, session.ended_at) {
            (None, Some(at)) => {
                self.active.remove(&id);
                self.ended_at.insert((at, id));
            }
            (None, None) => {
                self.active.insert(id);
            }
            _ => {}
        }
        self.evict();
        applied
    }

    /// Active sessions and those that ended at or after `since` (log time).
    pub fn active_or_ended_since(&self, since: i64) -> impl Iterator<Item = &Session> {
        self.active().chain(self.ended_since(since))
    }

    /// Sessions that ended at or after `since` (log time).
    pub fn ended_since(&self, since: i64) -> impl Iterator<Item = &Session> {
        self.ended_at.range((since, String::new())..).filter_map(|(_, id)| self.sessions.get(id))
    }

    /// The sessions in memory that started from `origin` (e.g. `sms:+15550100`), by id.
    pub fn of_origin<'a>(&'a self, origin: &str) -> impl Iterator<Item = &'a Session> {
        self.by_origin.get(origin).into_iter().flatten().filter_map(|id| self.sessions.get(id))
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions not ended.
    pub fn active(&self) -> impl Iterator<Item = &Session> {
        self.active.iter().filter_map(|id| self.sessions.get(id))
    }

    /// Every session.
    pub fn all(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Sessions that ended.
    pub fn ended(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().filter(|s| s.is_ended())
    }
}

/// Sessions as a snapshot stores them: each session's events in order (its state is a fold
/// of them, so a restore folds them again and gets the same numbers), and what is remembered
/// of the sessions that left memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsSnapshot {
    sessions: Vec<Vec<ChatEvent>>,
    keep_ended_ms: Option<i64>,
    clock: i64,
    /// Keys of the sessions that left, as 32 hex digits.
    gone: Vec<String>,
    started_from: BTreeMap<String, u64>,
    /// (message key, session id) of the customer messages of SMS sessions that left.
    gone_messages: Vec<(String, String)>,
}

impl Sessions {
    pub fn snapshot(&self) -> SessionsSnapshot {
        let mut ids: Vec<&String> = self.sessions.keys().collect();
        ids.sort();
        let hex = |k: &u128| format!("{k:032x}");
        let mut gone: Vec<String> = self.gone.iter().map(hex).collect();
        gone.sort();
        let mut gone_messages: Vec<(String, String)> = self.gone_messages.iter().map(|(k, v)| (hex(k), hex(v))).collect();
        gone_messages.sort();
        SessionsSnapshot {
            sessions: ids.into_iter().filter_map(|id| self.sessions.get(id)).map(|s| s.events.iter().map(|e| e.event.clone()).collect()).collect(),
            keep_ended_ms: self.keep_ended_ms,
            clock: self.clock,
            gone,
            started_from: self.started_from.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            gone_messages,
        }
    }

    /// The sessions of `snapshot`, if it was taken with the same window (`keep_ended_ms`):
    /// another window would have evicted other sessions, so only a full replay is right.
    pub fn restore(snapshot: SessionsSnapshot, keep_ended_ms: Option<i64>) -> Result<Self, String> {
        if snapshot.keep_ended_ms != keep_ended_ms {
            return Err(format!("taken with another window for ended sessions ({:?} ms, now {keep_ended_ms:?} ms)", snapshot.keep_ended_ms));
        }
        let parse = |k: &str| u128::from_str_radix(k, 16).map_err(|e| format!("a key {k:?} in the snapshot: {e}"));
        let mut sessions = Self { keep_ended_ms, ..Self::default() };
        // The sessions kept had not ended before the window at the snapshot's clock, so
        // folding them again (at an earlier clock) evicts none of them.
        for event in snapshot.sessions.into_iter().flatten() {
            sessions.apply(event);
        }
        sessions.clock = snapshot.clock;
        sessions.gone = snapshot.gone.iter().map(|k| parse(k)).collect::<Result<_, _>>()?;
        sessions.started_from = snapshot.started_from.into_iter().collect();
        sessions.gone_messages = snapshot.gone_messages.iter().map(|(k, v)| Ok((parse(k)?, parse(v)?))).collect::<Result<_, String>>()?;
        Ok(sessions)
    }
}

/// The participant id of a session's customer.
pub const CUSTOMER: &str = "customer";

/// Deterministic event id within a session, so a retried write is the same event.
pub fn event_id(session: &str, what: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:chat:{session}:{what}").as_bytes()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::chat::{MessagePosted, ParticipantJoined, SessionStarted, TypingChanged};

    fn event(id: &str, session: &str, payload: ChatPayload) -> ChatEvent {
        ChatEvent { event_id: id.into(), session_id: session.into(), occurred_at: 1000, payload }
    }

    fn message(id: &str, who: &str, text: &str, visibility: Visibility) -> ChatEvent {
        event(id, "s1", ChatPayload::MessagePosted(MessagePosted { participant_id: who.into(), text: text.into(), visibility, client_message_id: Some(id.into()) }))
    }

    fn joined(id: &str, who: &str, role: ChatRole, agents_only: bool) -> ChatEvent {
        event(id, "s1", ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: who.into(), role, display_name: who.into(), agents_only }))
    }

    fn conversation() -> Vec<ChatEvent> {
        vec![
            event(
                "e0",
                "s1",
                ChatPayload::SessionStarted(SessionStarted {
                    interaction_id: "i1".into(),
                    customer_name: "Ada".into(),
                    customer_email: Some("ada@example.com".into()),
                    subject: None,
                    origin: "web-api".into(),
                    customer_token_sha256: "ab".into(),
                }),
            ),
            joined("e1", "customer", ChatRole::Customer, false),
            message("e2", "customer", "hello", Visibility::All),
            joined("e3", "ann", ChatRole::Agent, false),
            event("e4", "s1", ChatPayload::TypingChanged(TypingChanged { participant_id: "ann".into(), typing: true })),
            message("e5", "ann", "hi Ada", Visibility::All),
            joined("e6", "bob", ChatRole::Agent, true),
            message("e7", "bob", "she is a VIP", Visibility::Agents),
            event("e8", "s1", ChatPayload::TypingChanged(TypingChanged { participant_id: "bob".into(), typing: true })),
            message("e9", "customer", "thanks", Visibility::All),
        ]
    }

    #[test]
    fn numbers_are_positions_and_resends_are_not_counted() {
        let mut sessions = Sessions::default();
        let mut numbers = vec![];
        for e in conversation() {
            numbers.push(sessions.apply(e).unwrap().seq);
        }
        assert_eq!(numbers, (1..=10).collect::<Vec<u64>>());
        assert_eq!(sessions.apply(message("e5", "ann", "hi Ada", Visibility::All)), None, "a resend is the same event");
        let s = sessions.get("s1").unwrap();
        assert_eq!(s.last_seq(), 10);
        assert!(s.typing.contains("bob") && !s.typing.contains("ann"), "a message ends its author's typing: {:?}", s.typing);
    }

    #[test]
    fn resume_gives_exactly_what_was_missed_and_customers_never_see_whispers() {
        let mut sessions = Sessions::default();
        for e in conversation() {
            sessions.apply(e);
        }
        let s = sessions.get("s1").unwrap();
        let agent_view: Vec<u64> = s.since(4, Audience::Agents).map(|e| e.seq).collect();
        assert_eq!(agent_view, [5, 6, 7, 8, 9, 10]);
        let customer_view: Vec<&str> = s.since(4, Audience::Customer).map(|e| e.event.event_id.as_str()).collect();
        assert_eq!(customer_view, ["e4", "e5", "e9"], "no private consult, whisper or its typing");
        assert_eq!(s.since(10, Audience::Agents).count(), 0);
        assert_eq!(s.since(99, Audience::Agents).count(), 0);
    }

    #[test]
    fn a_private_consult_stays_private_when_the_agent_is_later_conferenced_in() {
        let mut sessions = Sessions::default();
        for e in conversation() {
            sessions.apply(e);
        }
        sessions.apply(event("e10", "s1", ChatPayload::ParticipantLeft(contract::chat::ParticipantLeft { participant_id: "bob".into(), reason: "left".into() })));
        sessions.apply(joined("e11", "bob", ChatRole::Agent, false));
        sessions.apply(message("e12", "bob", "Bob from billing here", Visibility::All));
        let s = sessions.get("s1").unwrap();
        let customer_view: Vec<&str> = s.since(0, Audience::Customer).map(|e| e.event.event_id.as_str()).collect();
        assert_eq!(customer_view, ["e0", "e1", "e2", "e3", "e4", "e5", "e9", "e11", "e12"], "the consult's leave and whisper stay hidden");
        assert_eq!(s.participants["bob"].joined_seq, 12);
    }

    proptest::proptest! {
        /// However the records are resent, every reader numbers them the same, densely,
        /// and a resume from any point is the suffix of the whole stream.
        #[test]
        fn any_resend_pattern_numbers_the_same(resends in proptest::collection::vec(0usize..10, 0..20), cut in 0u64..12) {
            let original = conversation();
            let mut with_resends = Vec::new();
            for (i, e) in original.iter().enumerate() {
                with_resends.push(e.clone());
                for r in resends.iter().filter(|r| **r <= i) {
                    with_resends.push(original[*r].clone());
                }
            }
            let (mut a, mut b) = (Sessions::default(), Sessions::default());
            for e in original { a.apply(e); }
            for e in with_resends { b.apply(e); }
            let whole: Vec<(u64, String)> = a.get("s1").unwrap().since(0, Audience::Agents).map(|s| (s.seq, s.event.event_id.clone())).collect();
            let other: Vec<(u64, String)> = b.get("s1").unwrap().since(0, Audience::Agents).map(|s| (s.seq, s.event.event_id.clone())).collect();
            proptest::prop_assert_eq!(&whole, &other);
            let resumed: Vec<u64> = b.get("s1").unwrap().since(cut, Audience::Agents).map(|s| s.seq).collect();
            let expected: Vec<u64> = whole.iter().map(|(n, _)| *n).filter(|n| *n > cut).collect();
            proptest::prop_assert_eq!(resumed, expected);
        }

        /// Sessions snapshotted after any prefix of a stream (two sessions, resends
        /// included), stored as JSON, restored and given the rest equal the sessions of the
        /// whole stream, numbers and all.
        #[test]
        fn snapshot_plus_the_tail_equals_a_full_replay(
            raw in proptest::collection::vec((proptest::prelude::any::<ChatEvent>(), 0..4usize, 0..30usize, 0..3_000i64), 0..60),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            window in proptest::option::of(0..4_000i64),
        ) {
            let events: Vec<ChatEvent> = raw.into_iter().map(|(mut e, session, id, at)| {
                e.session_id = ["s1", "s2", "s3", "s4"][session].into();
                e.event_id = format!("e{id}");
                e.occurred_at = at;
                e
            }).collect();
            let cut = cut.index(events.len() + 1);
            let fresh = || window.map_or_else(Sessions::default, Sessions::evicting_after);
            let (mut full, mut prefix) = (fresh(), fresh());
            for (n, e) in events.iter().enumerate() {
                full.apply(e.clone());
                if n < cut {
                    prefix.apply(e.clone());
                }
            }
            let stored = serde_json::to_string(&prefix.snapshot()).unwrap();
            let mut continued = Sessions::restore(serde_json::from_str(&stored).unwrap(), window).unwrap();
            for e in &events[cut..] {
                continued.apply(e.clone());
            }
            proptest::prop_assert_eq!(&continued, &full);
            // The indexes agree with a scan of every session.
            let ids = |it: &mut dyn Iterator<Item = &Session>| it.map(|s| s.id.clone()).collect::<BTreeSet<String>>();
            proptest::prop_assert_eq!(ids(&mut full.active()), ids(&mut full.all().filter(|s| !s.is_ended())));
            proptest::prop_assert_eq!(ids(&mut full.ended_since(i64::MIN)), ids(&mut full.ended()));
            for origin in full.all().filter_map(|s| s.origin.clone()) {
                proptest::prop_assert_eq!(ids(&mut full.of_origin(&origin)), ids(&mut full.all().filter(|s| s.origin.as_ref() == Some(&origin))));
            }
        }
    }
}
