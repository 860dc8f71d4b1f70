//! Session mode: an SMS conversation is a chat session on `chat.events`, so agents handle it
//! with the chat server like any chat (join, whisper, consult, end, idle timeout, transcript
//! in UCS).
//!
//! - In: an SMS from a number with an active session (`origin = "sms:<number>"`) is the
//!   customer's message in it (event id from the gateway's message id: a redelivery is one
//!   message); from any other number it starts a session (its id derived from that first
//!   message) and submits the chat interaction to `[sms] session_queue`.
//! - Out: [`relay`] turns each message an agent writes to the customer into an SMS
//!   interaction in the send queue, its id derived from the chat event's id, so it is sent once
//!   however often the relay runs. Stateless: both sides are decided from the projections.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::{Audience, Sessions};
use chat_server::{Publisher, SharedSessions, event_id};
use contract::chat::{ChatPayload, ChatRole, MessagePosted, ParticipantJoined, SessionStarted, Visibility};
use contract::command::{CommandPayload, MediaType, Submit};
use floor::SharedFloor;
use interaction_server::client::CommandClient;
use plumbing::CancellationToken;
use queues::board::Board;

/// How long to wait for a submitted SMS to show on the floor before submitting it again.
const PATIENCE: Duration = Duration::from_secs(10);

fn origin(phone: &str) -> String {
    format!("sms:{phone}")
}

/// The active session of `phone`, if any.
pub fn active_session(sessions: &Sessions, phone: &str) -> Option<String> {
    let origin = origin(phone);
    sessions.active().find(|s| s.origin.as_deref() == Some(origin.as_str())).map(|s| s.id.clone())
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
    let existing = active_session(&sessions.read(), phone);
    let message = ChatPayload::MessagePosted(MessagePosted {
        participant_id: chat_server::CUSTOMER.into(),
        text: text.to_owned(),
        visibility: Visibility::All,
        client_message_id: Some(gateway_message_id.to_owned()),
    });
    let publish_error = |e: chat_server::PublishError| e.to_string();
    let message_id = |session: &str| event_id(session, &format!("message:customer:{gateway_message_id}"));
    if let Some(session) = existing {
        publisher.publish(&session, message_id(&session), message).await.map_err(publish_error)?;
        return Ok(session);
    }
    let session = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:sms-session:{gateway_message_id}").as_bytes()).to_string();
    let started = ChatPayload::SessionStarted(SessionStarted {
        interaction_id: session.clone(),
        customer_name: phone.to_owned(),
        customer_email: None,
        subject: Some("SMS".into()),
        origin: origin(phone),
        // No token: the customer is on the phone, not on a socket; no hash matches "".
        customer_token_sha256: String::new(),
    });
    let joined = ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: chat_server::CUSTOMER.into(), role: ChatRole::Customer, display_name: phone.to_owned(), agents_only: false });
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
pub fn due(sessions: &Sessions, board: &Board, send_queue: &str) -> Vec<(String, Submit)> {
    let mut out = Vec::new();
    for s in sessions.all() {
        let Some(phone) = s.origin.as_deref().and_then(|o| o.strip_prefix("sms:")) else { continue };
        for e in s.since(0, Audience::Customer) {
            let ChatPayload::MessagePosted(m) = &e.event.payload else { continue };
            let from_agent = s.participants.get(&m.participant_id).is_some_and(|p| p.role == ChatRole::Agent);
            if !from_agent {
                continue;
            }
            let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:sms-relay:{}", e.event.event_id).as_bytes()).to_string();
            if board.interaction(&id).is_some() {
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

/// Every second, submits what [`due`] lists, until `shutdown`.
pub async fn relay(sessions: Arc<SharedSessions>, floor: Arc<SharedFloor>, commands: CommandClient, send_queue: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut submitted: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !sessions.caught_up() || !floor.caught_up() {
            continue;
        }
        let due = due(&sessions.read(), floor.read().board(), &send_queue);
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
