//! What the chat server does on its own, decided from the two projections alone (the chat
//! sessions and the floor), so it is stateless: any instance may do it, a restarted one
//! picks up where the log says things stand, and two instances doing it at once write the
//! same events (the ids are derived from the state they act on, and the session projection
//! counts a repeated event id once).
//!
//! Every second [`plan`] compares the two and lists what is missing:
//! - while a chat waits in a queue: its place, as a system notice, whenever it changes;
//! - an agent the floor no longer shows on the interaction (transfer, consult ended on the
//!   desk): she leaves the chat;
//! - with an agent in the chat and nobody writing: a warning, then the end (idle timeout);
//! - an interaction stopped while its chat goes on: the chat ends;
//! - after the end: how it ended, on the interaction (for the agent's wrap-up), and the
//!   transcript mailed if the customer asked for it (an e-mail interaction submitted to the
//!   e-mail sender's queue, its id derived from the session and the address).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chat::{Audience, SYSTEM, Session, Sessions};
use contract::chat::{ChatPayload, ChatRole, MessagePosted, ParticipantLeft, SessionEnded, Visibility};
use contract::command::{ChangeProperties, CommandPayload, MediaType, Submit};
use runtime::CancellationToken;
use crate::ChatSettings;
use queues::board::{Board, Status};

use crate::{ChatServer, event_id};

/// How long to wait for a written action to show in the projections before writing it again.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An event of a session.
    Publish { session: String, event_id: String, payload: ChatPayload },
    /// A command to the Interaction Server.
    Command { interaction: String, what: &'static str, payload: CommandPayload },
}

impl Action {
    /// Identifies an action across ticks (not done again while waiting to see it).
    fn key(&self) -> String {
        match self {
            Action::Publish { event_id, .. } => event_id.clone(),
            Action::Command { interaction, what, .. } => format!("{what}:{interaction}"),
        }
    }
}

/// The id of the e-mail interaction that mails `session`'s transcript to `email`.
pub fn transcript_mail_id(session: &str, email: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:chat:{session}:transcript-mail:{email}").as_bytes()).to_string()
}

fn notice(session: &Session, what: &str, notice_id: String, text: String) -> Action {
    Action::Publish {
        session: session.id.clone(),
        event_id: event_id(&session.id, &format!("{what}:{}", session.last_seq())),
        payload: ChatPayload::MessagePosted(MessagePosted {
            participant_id: SYSTEM.into(),
            text,
            visibility: Visibility::All,
            client_message_id: Some(notice_id),
        }),
    }
}

fn end(session: &Session, reason: String) -> Action {
    Action::Publish {
        session: session.id.clone(),
        event_id: event_id(&session.id, "ended"),
        payload: ChatPayload::SessionEnded(SessionEnded { ended_by: SYSTEM.into(), reason }),
    }
}

/// What is due, given the sessions and the floor at `now` (Unix ms). Walks the active sessions
/// and those ended within the board's eviction window (what follows an end — recording it on
/// the interaction, the transcript mail — is due within seconds), never every session ever.
pub fn plan(sessions: &Sessions, board: &Board, settings: &ChatSettings, now: i64) -> Vec<Action> {
    let mut actions = Vec::new();
    for s in sessions.active_or_ended_since(board.window_start(now)) {
        let Some(interaction_id) = s.interaction_id.as_deref() else { continue };
        // A chat whose interaction the floor does not know yet has nothing due.
        let Some(interaction) = board.interaction(interaction_id) else { continue };
        if s.is_ended() {
            after_the_end(s, board, settings, &mut actions);
            continue;
        }
        if interaction.status == Status::Stopped {
            let why = interaction.stop_reason.as_deref().unwrap_or("stopped");
            actions.push(end(s, format!("the interaction was closed ({why})")));
            continue;
        }
        if settings.queue_position_notices
            && let Some((queue, place)) = board.position(interaction_id)
        {
            let id = format!("notice:position:{queue}:{place}");
            if s.position_notice.as_deref() != Some(id.as_str()) {
                let text = if place == 1 { "You are next in the queue.".to_owned() } else { format!("You are number {place} in the queue.") };
                actions.push(notice(s, "position", id, text));
            }
        }
        for (who, p) in &s.participants {
            let on_floor = interaction.owner.as_deref() == Some(who.as_str()) || interaction.parties.contains_key(who);
            // The floor changed after she joined and no longer shows her: transferred away,
            // or her consult was ended on the desk. (Older floor states are not evidence.)
            let joined_at = s.since(p.joined_seq.saturating_sub(1), Audience::Agents).next().map_or(i64::MAX, |e| e.event.occurred_at);
            if p.present && p.role == ChatRole::Agent && !on_floor && interaction.updated_at > joined_at {
                actions.push(Action::Publish {
                    session: s.id.clone(),
                    event_id: event_id(&s.id, &format!("left:{who}:{}", p.joined_seq)),
                    payload: ChatPayload::ParticipantLeft(ParticipantLeft { participant_id: who.clone(), reason: "no longer on the interaction".into() }),
                });
            }
        }
        let agent_in_chat = s.participants.values().any(|p| p.present && p.role == ChatRole::Agent && !p.agents_only);
        if settings.idle_timeout_s > 0 && agent_in_chat {
            let idle_ms = now.saturating_sub(s.last_activity_at);
            let timeout_ms = i64::try_from(settings.idle_timeout_s.saturating_mul(1000)).unwrap_or(i64::MAX);
            let warning_ms = i64::try_from(settings.idle_warning_s.saturating_mul(1000)).unwrap_or(i64::MAX);
            if idle_ms >= timeout_ms {
                actions.push(end(s, format!("nobody wrote for {} s", settings.idle_timeout_s)));
            } else if idle_ms >= warning_ms && s.idle_warned_for != Some(s.last_activity_at) {
                let left = (timeout_ms - idle_ms).div_euclid(1000).max(1);
                let text = format!("This chat will close in {left} s unless someone writes.");
                actions.push(notice(s, "idle-warning", format!("notice:idle-warning:{}", s.last_activity_at), text));
            }
        }
    }
    actions
}

fn after_the_end(s: &Session, board: &Board, settings: &ChatSettings, actions: &mut Vec<Action>) {
    let Some(interaction_id) = s.interaction_id.as_deref() else { return };
    let Some(interaction) = board.interaction(interaction_id) else { return };
    let Some((by, reason)) = s.ended.clone() else { return };
    if !interaction.properties.contains_key("chat_ended_at") && interaction.status != Status::Stopped {
        let at = s.since(0, Audience::Agents).find(|e| matches!(e.event.payload, ChatPayload::SessionEnded(_))).map_or(0, |e| e.event.occurred_at);
        let set = BTreeMap::from([
            ("chat_ended_by".to_owned(), by),
            ("chat_end_reason".to_owned(), reason),
            ("chat_ended_at".to_owned(), at.to_string()),
        ]);
        actions.push(Action::Command {
            interaction: interaction_id.to_owned(),
            what: "ended",
            payload: CommandPayload::ChangeProperties(ChangeProperties { set, remove: vec![], priority: None }),
        });
    }
    // Only to the address the chat was started with (a request recorded before that rule
    // for another address is not mailed).
    let started_with = |e: &&String| s.customer_email.as_deref().is_some_and(|c| c.trim().eq_ignore_ascii_case(e.trim()));
    if let Some(email) = s.transcript_to.as_ref().filter(started_with) {
        let mail = transcript_mail_id(&s.id, email);
        if !board.has_seen(&mail) {
            let subject = match &s.subject {
                Some(subject) => format!("Your chat transcript: {subject}"),
                None => "Your chat transcript".to_owned(),
            };
            let properties = BTreeMap::from([
                ("reply_text".to_owned(), transcript_text(s)),
                ("to".to_owned(), email.clone()),
                ("subject".to_owned(), subject),
                ("chat_session".to_owned(), s.id.clone()),
            ]);
            actions.push(Action::Command {
                interaction: mail,
                what: "transcript-mail",
                payload: CommandPayload::Submit(Submit {
                    media_type: MediaType::Email,
                    origin: "chat-server".into(),
                    target_queue: settings.transcript_queue.clone(),
                    priority: 0,
                    properties,
                    contact_id: interaction.contact_id.clone(),
                    content_ref: None,
                    parent_interaction_id: Some(interaction_id.to_owned()),
                }),
            });
        }
    }
}

/// `HH:MM:SS` (UTC) of a Unix-ms time.
fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    format!("{:02}:{:02}:{:02}", secs.div_euclid(3600).rem_euclid(24), secs.div_euclid(60).rem_euclid(60), secs.rem_euclid(60))
}

/// The transcript as the customer saw it (no whispers, no private consults, no typing), as
/// plain text: the text is stored as sent; a mail body needs no escaping.
pub fn transcript_text(s: &Session) -> String {
    let name = |who: &str| -> String {
        if who == SYSTEM {
            return "Notice".into();
        }
        s.participants.get(who).map_or_else(|| who.to_owned(), |p| p.display_name.clone())
    };
    let mut out = String::new();
    let _ = writeln!(out, "Chat transcript{}", s.subject.as_deref().map(|t| format!(": {t}")).unwrap_or_default());
    let _ = writeln!(out, "(times in UTC)\n");
    for e in s.transcript(Audience::Customer) {
        let at = clock(e.event.occurred_at);
        let line = match &e.event.payload {
            ChatPayload::MessagePosted(m) => format!("[{at}] {}: {}", name(&m.participant_id), m.text),
            ChatPayload::ParticipantJoined(j) => format!("[{at}] {} joined", j.display_name),
            ChatPayload::ParticipantLeft(l) => format!("[{at}] {} left", name(&l.participant_id)),
            ChatPayload::SessionEnded(end) => format!("[{at}] The chat ended: {}", end.reason),
            ChatPayload::SessionStarted(_) | ChatPayload::TypingChanged(_) | ChatPayload::TranscriptRequested(_) => continue,
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

pub async fn run(server: ChatServer, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut done: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !server.sessions().caught_up() || !server.floor().caught_up() {
            continue;
        }
        let due = {
            let sessions = server.sessions().read();
            let floor = server.floor().read();
            plan(&sessions, floor.board(), server.settings(), contract::now_millis())
        };
        for action in due {
            let key = action.key();
            if done.get(&key).is_some_and(|at| at.elapsed() < PATIENCE) {
                continue;
            }
            let outcome = match action {
                Action::Publish { session, event_id, payload } => server.publish(&session, event_id, payload).await.map_err(|e| e.to_string()),
                Action::Command { interaction, payload, .. } => {
                    let command = server.commands().command(&interaction, payload);
                    server.commands().send(&command).await.map(|_| ()).map_err(|e| e.to_string())
                }
            };
            match outcome {
                Ok(()) => {
                    done.insert(key, Instant::now());
                }
                Err(e) => tracing::warn!(action = %key, error = %e, "chat upkeep: not written; will retry"),
            }
        }
        done.retain(|_, at| at.elapsed() < PATIENCE * 6);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::chat::{ChatEvent, ParticipantJoined, SessionStarted, TranscriptRequested};
    use contract::command::{AgentRef, CommandPayload as C, JoinParty, PartyRole, Transfer};
    use contract::event::InteractionEvent;
    use interactions::partition::{Outcome, PartitionState};

    struct World {
        sessions: Sessions,
        state: PartitionState,
        offset: i64,
        clock: i64,
        settings: ChatSettings,
    }

    impl World {
        fn new() -> Self {
            let settings = ChatSettings { idle_warning_s: 60, idle_timeout_s: 90, ..ChatSettings::default() };
            Self { sessions: Sessions::default(), state: PartitionState::default(), offset: 0, clock: 1_000_000, settings }
        }

        fn chat(&mut self, id: &str, payload: ChatPayload) {
            self.clock += 1000;
            self.sessions.apply(ChatEvent { event_id: id.into(), session_id: "s1".into(), occurred_at: self.clock, payload });
        }

        fn command(&mut self, interaction: &str, payload: CommandPayload) -> Vec<InteractionEvent> {
            self.clock += 1000;
            self.offset += 1;
            let command = contract::command::InteractionCommand {
                command_id: format!("c{}", self.offset),
                interaction_id: interaction.into(),
                issued_at: self.clock,
                issued_by: "test".into(),
                payload,
            };
            match self.state.handle(0, self.offset, &command) {
                Outcome::Emit { events, .. } => events,
                other => panic!("{other:?}"),
            }
        }

        fn plan(&self) -> Vec<Action> {
            plan(&self.sessions, &self.state.board, &self.settings, self.clock)
        }

        /// Applies the plan's chat events, as the projection would read them back.
        fn apply_plan(&mut self) -> Vec<Action> {
            let actions = self.plan();
            for a in &actions {
                if let Action::Publish { event_id, payload, .. } = a {
                    self.chat(event_id, payload.clone());
                }
            }
            actions
        }
    }

    fn submit(queue: &str) -> CommandPayload {
        C::Submit(Submit {
            media_type: MediaType::Chat,
            origin: "chat-server".into(),
            target_queue: queue.into(),
            priority: 0,
            properties: BTreeMap::new(),
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
        })
    }

    fn started(world: &mut World, email: Option<&str>) {
        world.chat(
            "e-start",
            ChatPayload::SessionStarted(SessionStarted {
                interaction_id: "s1".into(),
                customer_name: "Ada".into(),
                customer_email: email.map(str::to_owned),
                subject: Some("Billing".into()),
                origin: "web-api".into(),
                customer_token_sha256: "ab".into(),
            }),
        );
        world.chat("e-joined", ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: "customer".into(), role: ChatRole::Customer, display_name: "Ada".into(), agents_only: false }));
    }

    fn joined(world: &mut World, who: &str, agents_only: bool) {
        world.chat(&format!("join-{who}"), ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: who.into(), role: ChatRole::Agent, display_name: who.into(), agents_only }));
    }

    fn texts(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Publish { payload: ChatPayload::MessagePosted(m), .. } => Some(m.text.clone()),
                Action::Publish { payload: ChatPayload::SessionEnded(e), .. } => Some(format!("end: {}", e.reason)),
                Action::Publish { payload: ChatPayload::ParticipantLeft(l), .. } => Some(format!("left: {}", l.participant_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_waiting_customer_hears_each_new_place_once() {
        let mut w = World::new();
        w.command("other", submit("chat-inbound"));
        w.command("other", submit("chat-inbound"));
        started(&mut w, None);
        assert!(w.plan().is_empty(), "the floor does not know the chat yet");
        w.command("s1", submit("chat-inbound"));
        assert_eq!(texts(&w.apply_plan()), ["You are number 2 in the queue."]);
        assert!(w.plan().is_empty(), "said once");
        w.command("other", C::Stop(contract::command::Stop { reason: "done".into() }));
        assert_eq!(texts(&w.apply_plan()), ["You are next in the queue."]);
        assert!(w.plan().is_empty());
    }

    #[test]
    fn an_agent_the_floor_no_longer_shows_leaves_and_a_consult_stays() {
        let mut w = World::new();
        started(&mut w, None);
        w.command("s1", submit("chat-inbound"));
        w.command("s1", C::Offer(contract::command::Offer { agent_id: "ann".into(), timeout_ms: 60_000 }));
        w.command("s1", C::AcceptOffer(AgentRef { agent_id: "ann".into() }));
        w.apply_plan();
        joined(&mut w, "ann", false);
        w.command("s1", C::JoinParty(JoinParty { agent_id: "bob".into(), role: PartyRole::Consult }));
        joined(&mut w, "bob", true);
        assert!(w.plan().is_empty(), "both are on the floor: {:?}", w.plan());
        w.command("s1", C::LeaveParty(AgentRef { agent_id: "bob".into() }));
        assert_eq!(texts(&w.apply_plan()), ["left: bob"]);
        w.command("s1", C::Transfer(Transfer { from_agent_id: "ann".into(), to_agent_id: Some("cy".into()), to_queue: None }));
        let left = texts(&w.plan());
        assert!(left.contains(&"left: ann".to_owned()), "{left:?}");
    }

    #[test]
    fn a_floor_older_than_the_join_is_no_reason_to_leave() {
        let mut w = World::new();
        started(&mut w, None);
        w.command("s1", submit("chat-inbound"));
        // The agent joined (another instance saw her accept) before this floor caught up.
        joined(&mut w, "ann", false);
        assert!(texts(&w.plan()).iter().all(|t| !t.starts_with("left")), "{:?}", w.plan());
    }

    #[test]
    fn idle_chats_are_warned_then_ended_and_a_message_resets_the_clock() {
        let mut w = World::new();
        started(&mut w, None);
        w.command("s1", submit("chat-inbound"));
        w.command("s1", C::Offer(contract::command::Offer { agent_id: "ann".into(), timeout_ms: 60_000 }));
        w.command("s1", C::AcceptOffer(AgentRef { agent_id: "ann".into() }));
        joined(&mut w, "ann", false);
        w.clock += 59_000;
        assert!(w.plan().is_empty());
        w.clock += 2_000;
        let warned = texts(&w.apply_plan());
        assert_eq!(warned.len(), 1);
        assert!(warned[0].starts_with("This chat will close in"), "{warned:?}");
        assert!(w.plan().is_empty(), "warned once");
        w.chat("m1", ChatPayload::MessagePosted(MessagePosted { participant_id: "customer".into(), text: "still here".into(), visibility: Visibility::All, client_message_id: None }));
        w.clock += 61_000;
        assert_eq!(texts(&w.apply_plan()).len(), 1, "warned again after the new message");
        w.clock += 30_000;
        assert_eq!(texts(&w.apply_plan()), ["end: nobody wrote for 90 s"]);
    }

    #[test]
    fn after_the_end_the_interaction_is_told_and_the_transcript_is_mailed_once() {
        let mut w = World::new();
        started(&mut w, Some("ada@example.com"));
        w.command("s1", submit("chat-inbound"));
        w.command("s1", C::Offer(contract::command::Offer { agent_id: "ann".into(), timeout_ms: 60_000 }));
        w.command("s1", C::AcceptOffer(AgentRef { agent_id: "ann".into() }));
        joined(&mut w, "ann", false);
        w.chat("m1", ChatPayload::MessagePosted(MessagePosted { participant_id: "ann".into(), text: "<b>Hello</b>".into(), visibility: Visibility::All, client_message_id: None }));
        w.chat("m2", ChatPayload::MessagePosted(MessagePosted { participant_id: "ann".into(), text: "psst".into(), visibility: Visibility::Agents, client_message_id: None }));
        w.chat("t", ChatPayload::TranscriptRequested(TranscriptRequested { email: "ada@example.com".into() }));
        w.chat("end", ChatPayload::SessionEnded(SessionEnded { ended_by: "ann".into(), reason: "ann ended the chat".into() }));
        let actions = w.plan();
        let mail = transcript_mail_id("s1", "ada@example.com");
        let submitted = actions.iter().find_map(|a| match a {
            Action::Command { interaction, payload: C::Submit(s), .. } if *interaction == mail => Some(s.clone()),
            _ => None,
        });
        let submitted = submitted.unwrap();
        assert_eq!(submitted.target_queue, "outbound-send");
        assert_eq!(submitted.properties["to"], "ada@example.com");
        let text = &submitted.properties["reply_text"];
        assert!(text.contains("ann: <b>Hello</b>"), "stored as sent: {text}");
        assert!(!text.contains("psst"), "no whispers: {text}");
        assert!(actions.iter().any(|a| matches!(a, Action::Command { what: "ended", .. })));
        for a in actions {
            if let Action::Command { interaction, payload, .. } = a {
                w.command(&interaction, payload);
            }
        }
        assert!(w.plan().is_empty(), "done once: {:?}", w.plan());
    }

    #[test]
    fn a_closed_interaction_ends_its_chat() {
        let mut w = World::new();
        started(&mut w, None);
        w.command("s1", submit("chat-inbound"));
        w.command("s1", C::Stop(contract::command::Stop { reason: "spam".into() }));
        assert_eq!(texts(&w.plan()), ["end: the interaction was closed (spam)"]);
    }
}
