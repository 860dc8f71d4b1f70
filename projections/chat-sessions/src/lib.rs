//! The chat sessions of a process, kept current from `chat.events` ([`projector`]), and the
//! one writer of chat events ([`Publisher`]): shared by the chat server and the SMS server's
//! session mode, so neither service depends on the other.

pub mod projector;

use contract::chat::{ChatEvent, ChatPayload};
use runtime::config::KafkaSettings;
use runtime::topics::{self, Topics};
use runtime::writer::Writer;

pub use projector::SharedSessions;

pub use runtime::writer::WriteError as PublishError;

/// Writes chat events (the chat server, and the SMS server for SMS sessions).
#[derive(Clone)]
pub struct Publisher {
    writer: Writer<ChatEvent>,
}

impl Publisher {
    pub fn new(kafka_settings: &KafkaSettings, topics: &Topics) -> anyhow::Result<Self> {
        Ok(Self { writer: Writer::new(kafka_settings, topics.name(topics::CHAT_EVENTS))? })
    }

    /// Writes `payload` as an event of `session` and waits for Kafka's acknowledgement.
    pub async fn publish(&self, session: &str, event_id: String, payload: ChatPayload) -> Result<(), PublishError> {
        let event = ChatEvent { event_id, session_id: session.to_owned(), occurred_at: contract::now_millis(), payload };
        self.writer.write(session, Some(&event.event_id), &event).await?;
        Ok(())
    }
}

/// The process's chat sessions, followed by one background task (made by the first service
/// that asks: the chat server, or the SMS server in session mode).
pub fn shared(ctx: &runtime::service::Context) -> anyhow::Result<std::sync::Arc<SharedSessions>> {
    ctx.shared(|ctx| {
        // Ended sessions leave memory as stopped interactions leave the boards.
        let sessions = SharedSessions::new(Some(ctx.settings.live.keep_stopped_ms()));
        let (kafka, topics, token, s, store) =
            (ctx.settings.kafka.clone(), ctx.topics.clone(), ctx.shutdown.clone(), sessions.clone(), ctx.snapshots.clone());
        ctx.background("chat sessions", async move { projector::run(&kafka, &topics, s, Some(store), token).await });
        Ok(sessions)
    })
}
