//! A synthetic but complete log for the UCS tests and benchmarks: interactions that live
//! their whole life (submit → queue → offer → accept → assign → stop), agents logging in,
//! chat transcripts, contacts, contents, notes, categories and standard responses, encoded
//! exactly as the services encode them.

use std::collections::BTreeMap;

use contract::AvroMessage;
use contract::agent::{AgentEvent, AgentPayload, LoggedIn, Ready};
use contract::chat::{ChatEvent, ChatPayload, ChatRole, MessagePosted, ParticipantJoined, Visibility};
use contract::command::MediaType;
use contract::event::{AgentId, EventPayload, InteractionEvent, OfferedToAgent, PlacedInQueue, Stopped, Submitted};
use contract::ucs::{
    CategorySaved, ContactIdentified, ContentAdded, ContentRole, IdentityKind, NoteAdded, StandardResponseSaved,
    UcsEvent, UcsPayload,
};
use runtime::topics;

/// One record to produce: the topic's name in `infra/topics.toml`, its key and Avro bytes.
pub struct FixtureRecord {
    pub topic: &'static str,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What the UCS tables must hold after projecting [`log`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Expected {
    pub interactions: i64,
    pub interaction_events: i64,
    pub agents: i64,
    pub chat_lines: i64,
    pub contacts: i64,
    pub contents: i64,
    pub notes: i64,
    pub categories: i64,
    pub standard_responses: i64,
    pub records: i64,
}

const AGENTS: usize = 10;
const LIFE: [&str; 6] = ["Submitted", "PlacedInQueue", "OfferedToAgent", "OfferAccepted", "Assigned", "Stopped"];

/// The life of `interactions` interactions (every 4th a chat with a 3-line transcript), with
/// one contact per 3 interactions, one content part and one note per 5th interaction.
pub fn log(interactions: usize, seed: u64) -> (Vec<FixtureRecord>, Expected) {
    let mut out = Vec::new();
    let mut expected = Expected::default();
    let t0 = 1_700_000_000_000 + (seed as i64 % 1000) * 1_000_000;
    for a in 0..AGENTS {
        let agent_id = format!("agent-{seed}-{a}");
        for (i, payload) in [
            AgentPayload::LoggedIn(LoggedIn {
                place: Some(format!("desk-{a}")),
                skills: BTreeMap::from([("english".to_owned(), 5)]),
                capacity: BTreeMap::from([("email".to_owned(), 5), ("chat".to_owned(), 2)]),
            }),
            AgentPayload::Ready(Ready { media: vec!["email".into(), "chat".into()] }),
        ]
        .into_iter()
        .enumerate()
        {
            let event = AgentEvent {
                event_id: format!("{agent_id}/{i}"),
                agent_id: agent_id.clone(),
                occurred_at: t0 + i as i64,
                causation_id: None,
                payload,
            };
            out.push(record(topics::AGENT_EVENTS, &agent_id, &event));
        }
        expected.agents += 1;
    }
    for (c, (name, value)) in [("Billing", "billing"), ("Returns", "returns")].into_iter().enumerate() {
        let id = format!("cat-{seed}-{c}");
        out.push(ucs(&id, t0, UcsPayload::CategorySaved(CategorySaved { category_id: id.clone(), name: name.into(), parent_id: None })));
        let rid = format!("resp-{seed}-{c}");
        out.push(ucs(
            &rid,
            t0,
            UcsPayload::StandardResponseSaved(StandardResponseSaved {
                response_id: rid.clone(),
                name: format!("{value} answer"),
                category_id: Some(id),
                subject: Some(format!("About your {value}")),
                body_text: format!("Thank you for writing about {value}."),
                body_html: None,
                media: vec!["email".into()],
            }),
        ));
        expected.categories += 1;
        expected.standard_responses += 1;
    }
    for n in 0..interactions {
        let interaction_id = format!("int-{seed}-{n}");
        let at = t0 + 10_000 + n as i64 * 10;
        let agent_id = format!("agent-{seed}-{}", n % AGENTS);
        let chat = n % 4 == 0;
        let contact_id = if n % 3 == 0 {
            let email = format!("customer{n}@example.com");
            let contact_id = ucs_contact_id(&email);
            out.push(ucs(
                &contact_id,
                at,
                UcsPayload::ContactIdentified(ContactIdentified {
                    contact_id: contact_id.clone(),
                    identity_kind: IdentityKind::Email,
                    identity_value: email,
                    display_name: Some(format!("Customer {n}")),
                }),
            ));
            expected.contacts += 1;
            Some(contact_id)
        } else {
            None
        };
        let command_id = format!("cmd-{seed}-{n}");
        let payloads = [
            EventPayload::Submitted(Submitted {
                media_type: if chat { MediaType::Chat } else { MediaType::Email },
                origin: "fixture".into(),
                priority: (n % 5) as i32,
                properties: BTreeMap::from([("subject".to_owned(), format!("Question {n}"))]),
                contact_id,
                content_ref: None,
                parent_interaction_id: (n % 7 == 6).then(|| format!("int-{seed}-{}", n - 1)),
                submitted_by: "fixture".into(),
            }),
            EventPayload::PlacedInQueue(PlacedInQueue { queue: "inbound".into(), previous_queue: None, reason: "submitted".into() }),
            EventPayload::OfferedToAgent(OfferedToAgent { agent_id: agent_id.clone(), timeout_ms: 30_000 }),
            EventPayload::OfferAccepted(AgentId { agent_id: agent_id.clone() }),
            EventPayload::Assigned(AgentId { agent_id: agent_id.clone() }),
            EventPayload::Stopped(Stopped { reason: "done".into(), stopped_by: agent_id.clone() }),
        ];
        debug_assert_eq!(payloads.len(), LIFE.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            let step_command = format!("{command_id}/{i}");
            let event = InteractionEvent {
                event_id: InteractionEvent::id_for(&step_command, 0),
                interaction_id: interaction_id.clone(),
                occurred_at: at + i as i64,
                causation_id: step_command,
                command_partition: 0,
                command_offset: (n * LIFE.len() + i) as i64,
                index: 0,
                set_size: 1,
                payload,
            };
            out.push(record(topics::INTERACTION_EVENTS, &interaction_id, &event));
            expected.interaction_events += 1;
        }
        expected.interactions += 1;
        if chat {
            let lines = [
                ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: "customer".into(), role: ChatRole::Customer, display_name: "Customer".into(), agents_only: false }),
                ChatPayload::MessagePosted(MessagePosted { participant_id: "customer".into(), text: format!("Hello, question {n}"), visibility: Visibility::All, client_message_id: None }),
                ChatPayload::MessagePosted(MessagePosted { participant_id: agent_id.clone(), text: "Happy to help".into(), visibility: Visibility::All, client_message_id: None }),
            ];
            for (i, payload) in lines.into_iter().enumerate() {
                let event = ChatEvent { event_id: format!("{interaction_id}/chat/{i}"), session_id: interaction_id.clone(), occurred_at: at + i as i64, payload };
                out.push(record(topics::CHAT_EVENTS, &interaction_id, &event));
                expected.chat_lines += 1;
            }
        }
        if n % 5 == 0 {
            out.push(ucs(
                &interaction_id,
                at,
                UcsPayload::ContentAdded(ContentAdded {
                    interaction_id: interaction_id.clone(),
                    part_index: 0,
                    role: ContentRole::TextBody,
                    mime_type: "text/plain".into(),
                    size: 20,
                    blob_ref: None,
                    filename: None,
                    text: Some(format!("Body of question {n}")),
                }),
            ));
            out.push(ucs(
                &interaction_id,
                at,
                UcsPayload::NoteAdded(NoteAdded {
                    note_id: format!("note-{seed}-{n}"),
                    contact_id: None,
                    interaction_id: Some(interaction_id.clone()),
                    author: agent_id,
                    text: "Called back".into(),
                }),
            ));
            expected.contents += 1;
            expected.notes += 1;
        }
    }
    expected.records = out.len() as i64;
    (out, expected)
}

fn ucs_contact_id(email: &str) -> String {
    ucs::contacts::contact_id_for(IdentityKind::Email, email)
}

fn ucs(key: &str, at: i64, payload: UcsPayload) -> FixtureRecord {
    let event = UcsEvent { event_id: uuid::Uuid::new_v4().to_string(), key: key.to_owned(), occurred_at: at, issued_by: "fixture".into(), payload };
    record(topics::UCS_EVENTS, key, &event)
}

fn record<T: AvroMessage>(topic: &'static str, key: &str, message: &T) -> FixtureRecord {
    FixtureRecord {
        topic,
        key: key.to_owned(),
        // The fixture builds only valid records; a failure here is a bug in the fixture.
        #[allow(clippy::expect_used)]
        payload: message.encode().expect("fixture records encode"),
    }
}
