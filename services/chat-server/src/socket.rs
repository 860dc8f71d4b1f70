//! One WebSocket: authenticate, resume from the client's last sequence number, then relay the
//! session's events out and the client's frames in (as events on `chat.events`).

use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chat::{Audience, Sequenced};
use contract::chat::{ChatPayload, MessagePosted, SessionEnded, TranscriptRequested, TypingChanged, Visibility};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::{CUSTOMER, ChatServer, error, event_id, token_hash};

/// Who is on the other end of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id: String,
    pub role: contract::chat::ChatRole,
    /// A consulted agent or a supervisor: not shown to the customer.
    pub agents_only: bool,
}

impl Party {
    fn audience(&self) -> Audience {
        if self.role == contract::chat::ChatRole::Customer { Audience::Customer } else { Audience::Agents }
    }
}

/// The party a token stands for in `session`: the customer (the session's token), or an agent
/// or supervisor (a desk token) whom the floor shows on the chat interaction.
/// `staff` is who the process's gatekeeper says a desk token stands for (the session checked
/// against the staff directory: not logged out, the role as it is now).
fn identify(server: &ChatServer, session: &str, token: &str, customer_hash: &str, staff: Option<&StaffMember>) -> Result<Party, (StatusCode, String)> {
    if customer_hash == token_hash(token) {
        return Ok(Party { id: CUSTOMER.into(), role: contract::chat::ChatRole::Customer, agents_only: false });
    }
    let desk = staff.ok_or_else(|| (StatusCode::UNAUTHORIZED, "the token is not valid for this chat".to_owned()))?;
    let floor = server.floor().read();
    let interaction = floor.board().interaction(session).ok_or((StatusCode::FORBIDDEN, format!("{} is not on this chat", desk.user)))?;
    if interaction.owner.as_deref() == Some(desk.user.as_str()) {
        return Ok(Party { id: desk.user.clone(), role: contract::chat::ChatRole::Agent, agents_only: false });
    }
    if let Some(role) = interaction.parties.get(&desk.user) {
        // A consult is private to agents; a conference is with the customer.
        let agents_only = *role == contract::command::PartyRole::Consult;
        return Ok(Party { id: desk.user.clone(), role: contract::chat::ChatRole::Agent, agents_only });
    }
    if desk.supervisor {
        return Ok(Party { id: desk.user.clone(), role: contract::chat::ChatRole::Supervisor, agents_only: true });
    }
    Err((StatusCode::FORBIDDEN, format!("{} is not on this chat", desk.user)))
}

/// A desk user, as the gatekeeper found them.
pub struct StaffMember {
    user: String,
    supervisor: bool,
}

/// Who a desk token stands for now: through the process's gatekeeper (the staff directory),
/// or by its signature alone where no gatekeeper runs (unit tests).
async fn staff_member(server: &ChatServer, gate: Option<&runtime::routes::Gate>, token: &str) -> Option<StaffMember> {
    use runtime::routes::{Caller, StaffRole};
    match gate {
        Some(gate) => match gate.0.token_caller(token).await {
            Caller::Staff { user, role } => Some(StaffMember { user, supervisor: matches!(role, StaffRole::Supervisor | StaffRole::Admin) }),
            _ => None,
        },
        None => server.desk_keys().verify(token, contract::now_millis()).ok().map(|s| StaffMember { user: s.user, supervisor: s.role.is_supervisor() }),
    }
}

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Frame {
    Resume { after: u64 },
    Message {
        text: String,
        client_message_id: String,
        /// `agents`: a whisper (agents only).
        #[serde(default)]
        visibility: Option<String>,
    },
    /// An agent leaves (a consult ends); the chat goes on.
    Leave,
    Typing { typing: bool },
    End,
    Transcript { email: String },
}

/// How long a just-started session may take to show up in this instance's projection.
const SESSION_WAIT: Duration = Duration::from_secs(10);

/// How long this instance's floor may lag behind the desk that just let an agent accept.
const FLOOR_WAIT: Duration = Duration::from_secs(2);

/// A page served by this server itself (the widget page, the agent desktop): the Origin's
/// host and port are the request's Host. Cross-site WebSocket hijacking needs another origin,
/// so only other origins must be listed in `[chat] allowed_origins`.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// `GET /v1/chats/{id}/ws`: a chat's socket (the token in `Authorization: Bearer`, the desk's
/// cookie, or the first frame; never in the URL).
pub async fn upgrade(
    State(server): State<ChatServer>,
    Path(session): Path<String>,
    gate: Option<axum::Extension<runtime::routes::Gate>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let gate = gate.map(|axum::Extension(gate)| gate);
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !server.settings().allowed_origins.iter().any(|o| o == origin) && !same_origin(origin, &headers) {
            return error(StatusCode::FORBIDDEN, format!("origin {origin:?} may not open chats here"));
        }
    }
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
    if server.sessions().read().has_left(&session) {
        // Ended long enough ago to have left memory: a late resume gets the reason, not a wait.
        return error(StatusCode::GONE, "this chat has ended; its transcript is kept in the contact history (UCS)");
    }
    let limit = server.settings().max_message_bytes;
    let ws = ws.max_message_size(limit.saturating_mul(2).saturating_add(1024));
    // An agent's desktop authenticates its socket with the desk's cookie; a customer's widget,
    // on another site, sends her chat's token as the first frame (`{"type": "auth", "token"}`):
    // no token in a URL (proxies log URLs). `Authorization: Bearer` is taken from clients
    // that can only do that.
    let Some(token) = bearer.or_else(|| runtime::routes::session_cookie(&headers)) else {
        return ws.on_upgrade(move |socket| authenticate_then_serve(server, gate, session, socket));
    };
    match resolve_party(&server, gate.as_ref(), &session, &token).await {
        Ok(party) => ws.on_upgrade(move |socket| serve(server, session, party, socket)),
        Err((status, reason)) => error(status, reason),
    }
}

/// How long a socket opened without a token may take to send its `auth` frame.
const AUTH_FRAME_WAIT: Duration = Duration::from_secs(10);

/// A socket opened without a credential: its first frame must be `{"type": "auth", "token"}`;
/// a refusal is an `error` frame and a close with 4000 + the HTTP status (4401, 4403, 4410).
async fn authenticate_then_serve(server: ChatServer, gate: Option<runtime::routes::Gate>, session: String, mut socket: WebSocket) {
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum First {
        Auth { token: String },
    }
    let first = match tokio::time::timeout(AUTH_FRAME_WAIT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<First>(&text).map_err(|_| "the first frame must be {\"type\": \"auth\", \"token\": ...}".to_owned()),
        Ok(_) => return,
        Err(_) => Err(format!("no auth frame within {} s", AUTH_FRAME_WAIT.as_secs())),
    };
    let resolved = match first {
        Ok(First::Auth { token }) => resolve_party(&server, gate.as_ref(), &session, &token).await,
        Err(reason) => Err((StatusCode::UNAUTHORIZED, reason)),
    };
    match resolved {
        Ok(party) => serve(server, session, party, socket).await,
        Err((status, reason)) => {
            let _ = send_json(&mut socket, json!({"type": "error", "status": status.as_u16(), "reason": reason})).await;
            let close = axum::extract::ws::CloseFrame { code: 4000 + status.as_u16(), reason: "refused".into() };
            let _ = socket.send(Message::Close(Some(close))).await;
        }
    }
}

/// The party `token` stands for in `session`, waiting briefly for a just-started session and
/// a just-accepted agent to reach this instance's projections.
async fn resolve_party(server: &ChatServer, gate: Option<&runtime::routes::Gate>, session: &str, token: &str) -> Result<Party, (StatusCode, String)> {
    let started = Instant::now();
    let mut staff: Option<Option<StaffMember>> = None;
    let deadline = started + SESSION_WAIT;
    loop {
        let known = server.sessions().read().get(session).and_then(|s| s.customer_token_sha256.clone());
        match known {
            Some(hash) => {
                if staff.is_none() && hash != token_hash(token) {
                    staff = Some(staff_member(server, gate, token).await);
                }
                match identify(server, session, token, &hash, staff.as_ref().and_then(Option::as_ref)) {
                Ok(party) => return Ok(party),
                // An agent who has just accepted on the desk: our floor may not show it yet.
                Err((StatusCode::FORBIDDEN, _)) if started.elapsed() < FLOOR_WAIT => {
                    let mut changed = server.floor().changed();
                    let _ = tokio::time::timeout(Duration::from_millis(100), changed.changed()).await;
                }
                Err(refusal) => return Err(refusal),
                }
            }
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            None => return Err((StatusCode::UNAUTHORIZED, "the token is not valid for this chat".into())),
        }
    }
}

async fn send_json(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    socket.send(Message::Text(value.to_string().into())).await.is_ok()
}

fn event_frame(s: &Sequenced) -> serde_json::Value {
    json!({ "type": "event", "seq": s.seq, "event": s.event })
}

/// What `audience` has not seen after `after`, and the number it has seen up to once those
/// are sent; read under one lock, so no event falls between the two.
fn missed_since(server: &ChatServer, session: &str, after: u64, audience: Audience) -> (Vec<serde_json::Value>, u64) {
    let sessions = server.sessions().read();
    let Some(s) = sessions.get(session) else { return (Vec::new(), after) };
    (s.since(after, audience).map(event_frame).collect(), s.last_seq().max(after))
}

async fn serve(server: ChatServer, session: String, party: Party, mut socket: WebSocket) {
    let mut live = server.sessions().subscribe(&session);
    let audience = party.audience();
    // An agent (or supervisor) joins the chat when first connecting, or again after leaving.
    let present = server.sessions().read().get(&session).is_some_and(|s| s.participants.get(&party.id).is_some_and(|p| p.present));
    if !present && party.role != contract::chat::ChatRole::Customer {
        let last = server.sessions().read().get(&session).map_or(0, chat::Session::last_seq);
        let joined = ChatPayload::ParticipantJoined(contract::chat::ParticipantJoined {
            participant_id: party.id.clone(),
            role: party.role,
            display_name: party.id.clone(),
            agents_only: party.agents_only,
        });
        if let Err(e) = server.publish(&session, event_id(&session, &format!("joined:{}:{last}", party.id)), joined).await {
            let _ = send_json(&mut socket, json!({"type": "error", "reason": format!("could not join: {e}")})).await;
            return;
        }
    }
    let mut last_sent: Option<u64> = None;
    let settings = server.settings().clone();
    let mut window_start = Instant::now();
    let mut frames_in_window = 0u32;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                if window_start.elapsed() >= Duration::from_millis(settings.rate_window_ms) {
                    window_start = Instant::now();
                    frames_in_window = 0;
                }
                frames_in_window += 1;
                if frames_in_window > settings.max_frames_per_window {
                    let reason = format!("too fast: at most {} frames per {} ms; this one was dropped", settings.max_frames_per_window, settings.rate_window_ms);
                    if !send_json(&mut socket, json!({"type": "error", "reason": reason})).await { return }
                    continue;
                }
                let frame: Frame = match serde_json::from_str(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        if !send_json(&mut socket, json!({"type": "error", "reason": format!("unreadable frame: {e}")})).await { return }
                        continue;
                    }
                };
                if let Frame::Resume { after } = frame {
                    let (missed, last) = missed_since(&server, &session, after, audience);
                    for frame in missed {
                        if !send_json(&mut socket, frame).await { return }
                    }
                    last_sent = Some(last);
                    continue;
                }
                if let Err(reason) = handle(&server, &session, &party, frame).await
                    && !send_json(&mut socket, json!({"type": "error", "reason": reason})).await
                {
                    return;
                }
            }
            event = live.recv() => {
                let Some(sent) = last_sent else { continue };
                match event {
                    Ok(s) if s.event.session_id == session && s.seq > sent => {
                        let shown = chat::Session::shows(audience, &s);
                        last_sent = Some(s.seq);
                        if shown && !send_json(&mut socket, event_frame(&s)).await { return }
                        // An agent who left (or was taken off the interaction): this socket is done.
                        if let ChatPayload::ParticipantLeft(left) = &s.event.payload
                            && left.participant_id == party.id
                        {
                            let _ = send_json(&mut socket, json!({"type": "closed", "reason": format!("you left the chat ({})", left.reason)})).await;
                            let _ = socket.send(Message::Close(None)).await;
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Missed broadcasts: catch up from the projection, as a resume would.
                        let (missed, last) = missed_since(&server, &session, sent, audience);
                        for frame in missed {
                            if !send_json(&mut socket, frame).await { return }
                        }
                        last_sent = Some(last);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// A client's frame as an event; `Err` is the reason it was refused.
async fn handle(server: &ChatServer, session: &str, party: &Party, frame: Frame) -> Result<(), String> {
    let ended = server.sessions().read().get(session).is_none_or(chat::Session::is_ended);
    // A transcript may still be asked for once the chat has ended.
    if ended && !matches!(frame, Frame::Transcript { .. }) {
        return Err("the chat has ended".into());
    }
    let who = party.id.clone();
    let is_customer = party.role == contract::chat::ChatRole::Customer;
    let (id, payload) = match frame {
        Frame::Resume { .. } => return Ok(()),
        Frame::Message { text, client_message_id, visibility } => {
            let limit = server.settings().max_message_bytes;
            if text.len() > limit {
                return Err(format!("message is {} bytes; the limit is {limit}", text.len()));
            }
            if text.trim().is_empty() {
                return Err("message is empty".into());
            }
            if client_message_id.is_empty() || client_message_id.len() > 100 {
                return Err("client_message_id must be 1 to 100 characters".into());
            }
            let default = if party.agents_only { "agents" } else { "all" };
            let visibility = match (visibility.as_deref().unwrap_or(default), is_customer, party.agents_only) {
                ("all", _, false) => Visibility::All,
                ("agents", false, _) => Visibility::Agents,
                ("all", _, true) => return Err("a private consult cannot write to the customer".into()),
                (other, _, _) => return Err(format!("visibility {other:?} is not allowed here")),
            };
            (
                event_id(session, &format!("message:{who}:{client_message_id}")),
                ChatPayload::MessagePosted(MessagePosted { participant_id: who.clone(), text, visibility, client_message_id: Some(client_message_id) }),
            )
        }
        Frame::Typing { typing } => (uuid::Uuid::new_v4().to_string(), ChatPayload::TypingChanged(TypingChanged { participant_id: who.clone(), typing })),
        Frame::Leave if !is_customer => {
            let joined = server.sessions().read().get(session).and_then(|s| s.participants.get(&who).map(|p| p.joined_seq)).unwrap_or(0);
            // A consulted or conferenced agent also leaves the interaction on the floor.
            let on_floor_as_party = server.floor().read().board().interaction(session).is_some_and(|i| i.parties.contains_key(&who));
            if on_floor_as_party {
                let commands = server.commands();
                let leave = commands.command(session, contract::command::CommandPayload::LeaveParty(contract::command::AgentRef { agent_id: who.clone() }));
                commands.send(&leave).await.map_err(|e| format!("not recorded, send it again: {e}"))?;
            }
            (event_id(session, &format!("left:{who}:{joined}")), ChatPayload::ParticipantLeft(contract::chat::ParticipantLeft { participant_id: who.clone(), reason: "left".into() }))
        }
        Frame::Leave => return Err("a customer ends the chat instead (`end`)".into()),
        Frame::End => {
            let reason = if is_customer { "the customer ended the chat".to_owned() } else { format!("{who} ended the chat") };
            (event_id(session, "ended"), ChatPayload::SessionEnded(SessionEnded { ended_by: who.clone(), reason }))
        }
        Frame::Transcript { email } => {
            // Else one chat would be a mail relay: any text, to any address, in our name.
            if !is_customer {
                return Err("only the customer asks for the transcript".into());
            }
            let (started_with, asked) = {
                let sessions = server.sessions().read();
                let s = sessions.get(session);
                (s.and_then(|s| s.customer_email.clone()), s.is_some_and(|s| s.transcript_to.is_some()))
            };
            let Some(address) = started_with else {
                return Err("this chat was started without an e-mail address, so no transcript can be mailed".into());
            };
            if !email.trim().eq_ignore_ascii_case(address.trim()) {
                return Err("a transcript is mailed only to the address this chat was started with".into());
            }
            if asked {
                return Err("the transcript is already asked for; it is mailed once, when the chat ends".into());
            }
            (event_id(session, &format!("transcript:{address}")), ChatPayload::TranscriptRequested(TranscriptRequested { email: address }))
        }
    };
    server.publish(session, id, payload).await.map_err(|e| format!("not recorded, send it again: {e}"))
}
