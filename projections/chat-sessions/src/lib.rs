//! The chat sessions of a process, kept current from `chat.events` ([`projector`]), and the
//! one writer of chat events ([`Publisher`]): shared by the chat server and the SMS server's
//! session mode, so neither service depends on the other.

pub mod projector;

use contract::AvroMessage;
use contract::chat::{ChatEvent, ChatPayload};
use plumbing::FutureProducer;
use plumbing::config::KafkaSettings;
use plumbing::headers::Lineage;
use plumbing::kafka;
use plumbing::topics::{self, Topics};

pub use projector::SharedSessions;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding a chat event: {0}")]
    Encode(String),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// Writes chat events (the chat server, and the SMS server for SMS sessions).
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    pub fn new(kafka_settings: &KafkaSettings, topics: &Topics) -> anyhow::Result<Self> {
        Ok(Self { producer: kafka::producer(kafka_settings)?, topic: topics.name(topics::CHAT_EVENTS) })
    }

    /// Writes `payload` as an event of `session` and waits for Kafka's acknowledgement.
    pub async fn publish(&self, session: &str, event_id: String, payload: ChatPayload) -> Result<(), PublishError> {
        let event = ChatEvent { event_id, session_id: session.to_owned(), occurred_at: contract::now_millis(), payload };
        let bytes = event.encode().map_err(|e| PublishError::Encode(e.to_string()))?;
        let headers = Lineage::new(session).caused_by(&event.event_id).schema(ChatEvent::NAME).to_headers();
        let delivery = kafka::send(&self.producer, &self.topic, None, session, &bytes, headers).map_err(|e| PublishError::Kafka(e.to_string()))?;
        kafka::delivered(delivery).await.map_err(|e| PublishError::Kafka(e.to_string()))?;
        Ok(())
    }
}
