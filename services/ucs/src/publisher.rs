//! Writes `UcsEvent`s to `ucs.events`, keyed by the record they change, and waits for Kafka.

use contract::ucs::{UcsEvent, UcsPayload};
use runtime::config::KafkaSettings;
use runtime::kafka;
use runtime::topics::{self, Topics};
use runtime::writer::Writer;

pub use runtime::writer::WriteError as PublishError;

#[derive(Clone)]
pub struct Publisher {
    writer: Writer<UcsEvent>,
    issuer: String,
}

impl Publisher {
    pub fn new(
        kafka_settings: &KafkaSettings,
        topics: &Topics,
        issuer: impl Into<String>,
    ) -> Result<Self, kafka::KafkaSetupError> {
        Ok(Self {
            writer: Writer::new(kafka_settings, topics.name(topics::UCS_EVENTS))?,
            issuer: issuer.into(),
        })
    }

    /// Publishes and returns the event id; `event_id` is random unless given (deterministic
    /// ids make a repeated request recognisable).
    pub async fn publish(
        &self,
        key: &str,
        payload: UcsPayload,
        event_id: Option<String>,
    ) -> Result<String, PublishError> {
        let event = UcsEvent {
            event_id: event_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            key: key.to_owned(),
            occurred_at: contract::now_millis(),
            issued_by: self.issuer.clone(),
            payload,
        };
        self.writer.write(key, Some(&event.event_id), &event).await?;
        Ok(event.event_id)
    }
}
