//! The one way a service writes a record: [`Writer<T>`] encodes a contract message, adds the
//! lineage headers (`traceparent`, causation and correlation ids, schema name), sends it keyed
//! by its entity id and waits for the broker's acknowledgement (`acks=all`).

use std::marker::PhantomData;

use contract::AvroMessage;

use crate::config::KafkaSettings;
use crate::headers::Lineage;
use crate::kafka::{self, KafkaSetupError};
use crate::FutureProducer;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot encode the {schema} record: {source}")]
    Encode { schema: &'static str, source: contract::ContractError },
    #[error("Kafka did not accept the {schema} record on {topic}: {detail}")]
    Kafka { schema: &'static str, topic: String, detail: String },
}

/// Writes `T` records to one topic.
pub struct Writer<T> {
    producer: FutureProducer,
    topic: String,
    message: PhantomData<fn(T)>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Self { producer: self.producer.clone(), topic: self.topic.clone(), message: PhantomData }
    }
}

impl<T: AvroMessage> Writer<T> {
    /// A writer with its own idempotent producer.
    pub fn new(settings: &KafkaSettings, topic: impl Into<String>) -> Result<Self, KafkaSetupError> {
        Ok(Self { producer: kafka::producer(settings)?, topic: topic.into(), message: PhantomData })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `message` keyed by `key` (caused by `causation_id`, when something caused it) and
    /// waits until Kafka has it; returns its partition and offset.
    pub async fn write(&self, key: &str, causation_id: Option<&str>, message: &T) -> Result<(i32, i64), WriteError> {
        let kafka_error = |e: crate::KafkaError| WriteError::Kafka { schema: T::NAME, topic: self.topic.clone(), detail: e.to_string() };
        let bytes = message.encode().map_err(|source| WriteError::Encode { schema: T::NAME, source })?;
        let mut lineage = Lineage::new(key);
        if let Some(cause) = causation_id {
            lineage = lineage.caused_by(cause);
        }
        let headers = lineage.schema(T::NAME).to_headers();
        let delivery = kafka::send(&self.producer, &self.topic, None, key, &bytes, headers).map_err(kafka_error)?;
        kafka::delivered(delivery).await.map_err(kafka_error)
    }
}
