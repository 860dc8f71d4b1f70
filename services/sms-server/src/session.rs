//! Session mode: an SMS conversation is a chat session on `chat.events`, so agents handle it
//! with the chat server like any chat (join, whisper, consult, end, idle timeout, transcript
//! in UCS).
//!
//! - In: an SMS from a number with an active session (`origin = "sms:<number>"`) is the
//!   customer's message in it (event id from the gateway's message id: a redelivery is one
//!   message); from any other number it starts a session (its id derived from the
//!   number and its count of sessions, see [`place`]) and submits the chat interaction to
//!   `[sms] session_queue`.
//! - Out: [`relay`] turns each message an agent writes to the customer into an SMS
//!   interaction in the send queue, its id derived from the chat event's id, so it is sent once
//!   however often the relay runs. Stateless: both sides are decided from the projections.
//! - Races between the log and the projection: two first SMS of a number name one session
//!   ([`place`]); an SMS written into a session its writer did not yet know had ended is
//!   carried into the number's next session by the relay ([`strays`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::{Audience, Sessions};
use chat::event_id;
use chat_sessions::{Publisher, SharedSessions};
use contract::chat::{ChatPayload, ChatRole, MessagePosted, ParticipantJoined, SessionStarted, Visibility};
use contract::command::{CommandPayload, MediaType, Submit};
use floor::SharedFloor;
use runtime::commands::CommandClient;
use runtime::CancellationToken;
use queues::board::Board;

/// How long to wait for a submitted SMS to show on the floor before submitting it again.
const PATIENCE: Duration = Duration::from_secs(10);

fn origin(phone: &str) -> String {
    format!("sms:{phone}")
}

/// Where an inbound SMS goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Start this session with the SMS (or finish starting it: every write is idempotent).
    Open(String),
    /// Post it into this active session.
    Into(String),
    /// Already posted into this session, which has ended since: nothing to write.
    Done(String),
}

/// The customer's SMS in `session` by gateway message id, those before its end only (a
/// message written after the end, by an instance that had not seen the end yet, is a stray:
/// see [`strays`]).
fn posted_before_end(session: &chat::Session) -> Vec<(String, String)> {
    session
        .since(0, Audience::Agents)
        .take_while(|e| !matches!(e.event.payload, ChatPayload::SessionEnded(_)))
        .filter_map(|e| match &e.event.payload {
            ChatPayload::MessagePosted(m) if m.participant_id == chat::CUSTOMER => m.client_message_id.clone().map(|id| (id, m.text.clone())),
            _ => None,
        })
        .collect()
}

fn sessions_of<'a>(sessions: &'a Sessions, phone: &str) -> Vec<&'a chat::Session> {
    sessions.of_origin(&origin(phone)).collect()
}

/// Decides [`Place`] from the projection alone, so every instance decides alike. A new
/// session's id is derived from the number and how many sessions it ever had (evicted ones
/// included): two SMS from a new number that arrive before either session shows both name
/// the same session, and its opening events and interaction are written once (their ids
/// repeat). An SMS already posted into a session that has since left memory is `Done`.
pub fn place(sessions: &Sessions, phone: &str, gateway_message_id: &str) -> Place {
    if let Some(session) = sessions.left_with_message(&origin(phone), gateway_message_id) {
        return Place::Done(session);
    }
    let mine = sessions_of(sessions, phone);
    for s in &mine {
        if let Some(at) = posted_before_end(s).iter().position(|(id, _)| id == gateway_message_id) {
            return match (s.is_ended(), at) {
                (true, _) => Place::Done(s.id.clone()),
                (false, 0) => Place::Open(s.id.clone()),
                (false, _) => Place::Into(s.id.clone()),
            };
        }
    }
    if let Some(active) = mine.iter().find(|s| !s.is_ended()) {
        return Place::Into(active.id.clone());
    }
    let before = sessions.started_from(&origin(phone));
    Place::Open(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:sms-session:{phone}:{before}").as_bytes()).to_string())
}

/// A customer's SMS written into a session after its end (the writer's projection had not
/// caught up with the end): `(phone, gateway message id, text)`, until it is posted before the
/// end of some session of the number. [`relay`] carries each into the number's next session,
/// so no SMS is lost to that race.
///
/// Looks at sessions that ended at or after `since` (a stray is carried within seconds).
pub fn strays(sessions: &Sessions, since: i64) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for s in sessions.ended_since(since) {
        let Some(phone) = s.origin.as_deref().and_then(|o| o.strip_prefix("sms:")) else { continue };
        let after_end = s.since(0, Audience::Agents).skip_while(|e| !matches!(e.event.payload, ChatPayload::SessionEnded(_))).filter_map(|e| match &e.event.payload {
            ChatPayload::MessagePosted(m) if m.participant_id == chat::CUSTOMER => m.client_message_id.clone().map(|id| (id, m.text.clone())),
            _ => None,
        });
        for (id, text) in after_end {
            let placed = sessions_of(sessions, phone).iter().any(|other| posted_before_end(other).iter().any(|(posted, _)| *posted == id));
            if !placed {
                out.push((phone.to_owned(), id, text));
            }
        }
    }
    out
}

/// Puts an inbound SMS into its session, starting one if needed; returns the session id.
pub async fn inbound(
    sessions: &SharedSessions,
    publisher: &Publisher,
    commands: &CommandClient,
    queue: &str,
    phone: &str,
    gateway_message_id: &str,
    text: &str,
) -> Result<String, String> {
    if !sessions.caught_up() {
        return Err("the SMS sessions are still being replayed".into());
    }
    let place = place(&sessions.read(), phone, gateway_message_id);
    let message = ChatPayload::MessagePosted(MessagePosted {
        participant_id: chat::CUSTOMER.into(),
        text: text.to_owned(),
        visibility: Visibility::All,
        client_message_id: Some(gateway_message_id.to_owned()),
    });
    let publish_error = |e: chat_sessions::PublishError| e.to_string();
    let message_id = |session: &str| event_id(session, &format!("message:customer:{gateway_message_id}"));
    let session = match place {
        Place::Done(session) => return Ok(session),
        Place::Into(session) => {
            publisher.publish(&session, message_id(&session), message).await.map_err(publish_error)?;
            return Ok(session);
        }
        Place::Open(session) => session,
    };
    let started = ChatPayload::SessionStarted(SessionStarted {
        interaction_id: session.clone(),
        customer_name: phone.to_owned(),
        customer_email: None,
        subject: Some("SMS".into()),
        origin: origin(phone),
        // No token: the customer is on the phone, not on a socket; no hash matches "".
        customer_token_sha256: String::new(),
    });
    let joined = ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: chat::CUSTOMER.into(), role: ChatRole::Customer, display_name: phone.to_owned(), agents_only: false });
    for (id, payload) in [(event_id(&session, "started"), started), (event_id(&session, "customer-joined"), joined), (message_id(&session), message)] {
        publisher.publish(&session, id, payload).await.map_err(publish_error)?;
    }
    let submit = CommandPayload::Submit(Submit {
        media_type: MediaType::Chat,
        origin: "sms-server".into(),
        target_queue: queue.to_owned(),
        priority: 0,
        properties: BTreeMap::from([
            ("channel".to_owned(), "sms".to_owned()),
            ("from".to_owned(), phone.to_owned()),
            ("customer_name".to_owned(), phone.to_owned()),
            ("subject".to_owned(), "SMS".to_owned()),
        ]),
        contact_id: None,
        content_ref: None,
        parent_interaction_id: None,
    });
    commands.send(&commands.command(&session, submit)).await.map_err(|e| e.to_string())?;
    Ok(session)
}

/// The SMS interactions that carry agents' messages to the customer and are not on the
/// floor yet: `(interaction id, submit)`.
///
/// Looks at active sessions and those ended within the board's eviction window.
pub fn due(sessions: &Sessions, board: &Board, send_queue: &str, now: i64) -> Vec<(String, Submit)> {
    let mut out = Vec::new();
    for s in sessions.active_or_ended_since(board.window_start(now)) {
        let Some(phone) = s.origin.as_deref().and_then(|o| o.strip_prefix("sms:")) else { continue };
        for e in s.since(0, Audience::Customer) {
            let ChatPayload::MessagePosted(m) = &e.event.payload else { continue };
            let from_agent = s.participants.get(&m.participant_id).is_some_and(|p| p.role == ChatRole::Agent);
            if !from_agent {
                continue;
            }
            let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:sms-relay:{}", e.event.event_id).as_bytes()).to_string();
            if board.has_seen(&id) {
                continue;
            }
            let properties = BTreeMap::from([
                ("to".to_owned(), phone.to_owned()),
                ("reply_text".to_owned(), m.text.clone()),
                ("chat_session".to_owned(), s.id.clone()),
                ("author_agent".to_owned(), m.participant_id.clone()),
            ]);
            let submit = Submit {
                media_type: MediaType::Sms,
                origin: "sms-server".into(),
                target_queue: send_queue.to_owned(),
                priority: 0,
                properties,
                contact_id: None,
                content_ref: None,
                parent_interaction_id: s.interaction_id.clone(),
            };
            out.push((id, submit));
        }
    }
    out
}

/// What [`relay`] needs: the projections it compares, and the writers.
pub struct Relay {
    pub sessions: Arc<SharedSessions>,
    pub floor: Arc<SharedFloor>,
    pub commands: CommandClient,
    pub publisher: Publisher,
    /// `[sms] send_queue`: agents' messages go out from here.
    pub send_queue: String,
    /// `[sms] session_queue`: where a stray SMS's new session is submitted.
    pub session_queue: String,
}

/// Every second, submits what [`due`] lists and carries [`strays`] over, until `shutdown`.
pub async fn relay(relay: Relay, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Relay { sessions, floor, commands, publisher, send_queue, session_queue } = relay;
    let mut submitted: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !sessions.caught_up() || !floor.caught_up() {
            continue;
        }
        let now = contract::now_millis();
        let strays = strays(&sessions.read(), floor.read().board().window_start(now));
        for (phone, gateway_message_id, text) in strays {
            match inbound(&sessions, &publisher, &commands, &session_queue, &phone, &gateway_message_id, &text).await {
                Ok(session) => tracing::info!(%session, %gateway_message_id, "SMS written after its session ended, carried over"),
                Err(e) => tracing::warn!(%gateway_message_id, error = %e, "stray SMS not carried over; will retry"),
            }
        }
        let due = due(&sessions.read(), floor.read().board(), &send_queue, now);
        for (id, submit) in due {
            if submitted.get(&id).is_some_and(|at| at.elapsed() < PATIENCE) {
                continue;
            }
            match commands.send(&commands.command(&id, CommandPayload::Submit(submit))).await {
                Ok(_) => {
                    submitted.insert(id, Instant::now());
                }
                Err(e) => tracing::warn!(interaction = %id, error = %e, "SMS relay: not submitted; will retry"),
            }
        }
        submitted.retain(|_, at| at.elapsed() < PATIENCE * 6);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::chat::{ChatEvent, SessionEnded};

    const PHONE: &str = "+447911123456";

    fn apply(sessions: &mut Sessions, session: &str, id: &str, payload: ChatPayload) {
        sessions.apply(ChatEvent { event_id: id.into(), session_id: session.into(), occurred_at: 1000, payload });
    }

    fn open(sessions: &mut Sessions, session: &str, first_sms: &str) {
        let started = SessionStarted { interaction_id: session.into(), customer_name: PHONE.into(), customer_email: None, subject: None, origin: origin(PHONE), customer_token_sha256: String::new() };
        apply(sessions, session, &format!("{session}-started"), ChatPayload::SessionStarted(started));
        sms(sessions, session, first_sms);
    }

    fn sms(sessions: &mut Sessions, session: &str, gateway_id: &str) {
        let m = MessagePosted { participant_id: chat::CUSTOMER.into(), text: "hi".into(), visibility: Visibility::All, client_message_id: Some(gateway_id.into()) };
        apply(sessions, session, &format!("{session}-{gateway_id}"), ChatPayload::MessagePosted(m));
    }

    #[test]
    fn a_number_has_one_session_at_a_time_and_redeliveries_land_where_they_landed() {
        let mut sessions = Sessions::default();
        let first = place(&sessions, PHONE, "SM1");
        let Place::Open(s1) = first.clone() else { panic!("{first:?}") };
        assert_eq!(place(&sessions, PHONE, "SM2"), first, "a second SMS before the session shows names the same session");
        assert_ne!(place(&sessions, "+447911000000", "SM3"), first, "another number, another session");

        open(&mut sessions, &s1, "SM1");
        assert_eq!(place(&sessions, PHONE, "SM1"), Place::Open(s1.clone()), "a redelivered first SMS finishes the opening");
        assert_eq!(place(&sessions, PHONE, "SM2"), Place::Into(s1.clone()));
        sms(&mut sessions, &s1, "SM2");
        assert_eq!(place(&sessions, PHONE, "SM2"), Place::Into(s1.clone()), "a redelivery is the same event");

        apply(&mut sessions, &s1, "end", ChatPayload::SessionEnded(SessionEnded { ended_by: "ann".into(), reason: "done".into() }));
        assert_eq!(place(&sessions, PHONE, "SM2"), Place::Done(s1.clone()), "nothing is written into an ended session");
        let next = place(&sessions, PHONE, "SM4");
        assert!(matches!(&next, Place::Open(s2) if *s2 != s1), "after the end, a new session: {next:?}");
        assert!(strays(&sessions, 0).is_empty());

        // SM5 written into s1 after its end (its writer had not seen the end): a stray, placed
        // like a new SMS, until the next session has it.
        sms(&mut sessions, &s1, "SM5");
        assert_eq!(strays(&sessions, 0), [(PHONE.to_owned(), "SM5".to_owned(), "hi".to_owned())]);
        assert!(strays(&sessions, 1001).is_empty(), "a session that ended before the window is not looked at");
        let Place::Open(s2) = place(&sessions, PHONE, "SM5") else { panic!() };
        assert_eq!(Place::Open(s2.clone()), next, "the number's next session");
        open(&mut sessions, &s2, "SM5");
        assert!(strays(&sessions, 0).is_empty());
    }

    /// Once an ended session left memory, a resent webhook of one of its SMS is still
    /// `Done`, and the number's next session is not named like it (the count survives).
    #[test]
    fn an_evicted_session_still_refuses_its_sms_and_its_id_is_not_reused() {
        let mut sessions = Sessions::evicting_after(60_000);
        let Place::Open(s1) = place(&sessions, PHONE, "SM1") else { panic!() };
        open(&mut sessions, &s1, "SM1");
        apply(&mut sessions, &s1, "end", ChatPayload::SessionEnded(SessionEnded { ended_by: "ann".into(), reason: "done".into() }));
        // An hour of log time later (another number's SMS), s1 has left memory.
        let other = "+447911000000";
        let Place::Open(o) = place(&sessions, other, "SMX") else { panic!() };
        let started = SessionStarted { interaction_id: o.clone(), customer_name: other.into(), customer_email: None, subject: None, origin: origin(other), customer_token_sha256: String::new() };
        sessions.apply(ChatEvent { event_id: "o-started".into(), session_id: o, occurred_at: 1000 + 3_600_000, payload: ChatPayload::SessionStarted(started) });
        assert!(sessions.get(&s1).is_none() && sessions.has_left(&s1), "s1 left memory");
        assert_eq!(place(&sessions, PHONE, "SM1"), Place::Done(s1.clone()), "a webhook resent after the eviction");
        let next = place(&sessions, PHONE, "SM9");
        assert!(matches!(&next, Place::Open(s2) if *s2 != s1), "a new session, not the evicted one's id: {next:?}");
        // A late record of s1 does not bring it back.
        sms(&mut sessions, &s1, "SM10");
        assert!(sessions.get(&s1).is_none());
    }
}
