//! Writes `UcsEvent`s to `ucs.events`, keyed by the record they change, and waits for Kafka.

use contract::AvroMessage;
use contract::ucs::{UcsEvent, UcsPayload};
use plumbing::FutureProducer;
use plumbing::config::KafkaSettings;
use plumbing::headers::Lineage;
use plumbing::kafka;
use plumbing::topics::{self, Topics};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] contract::ContractError),
    #[error("Kafka did not accept the event: {0}")]
    Kafka(#[from] plumbing::KafkaError),
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    issuer: String,
}

impl Publisher {
    pub fn new(
        kafka_settings: &KafkaSettings,
        topics: &Topics,
        issuer: impl Into<String>,
    ) -> Result<Self, kafka::KafkaSetupError> {
        Ok(Self {
            producer: kafka::producer(kafka_settings)?,
            topic: topics.name(topics::UCS_EVENTS),
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
        let bytes = event.encode()?;
        let headers = Lineage::new(key)
            .caused_by(&event.event_id)
            .schema(UcsEvent::NAME)
            .to_headers();
        let delivery = kafka::send(&self.producer, &self.topic, None, key, &bytes, headers)?;
        kafka::delivered(delivery).await?;
        Ok(event.event_id)
    }
}
