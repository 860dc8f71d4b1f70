//! The dead-letter topic: a record a service cannot decode or process is copied there byte
//! for byte, with its original headers and `dlq.*` headers saying why and where it came from.
//! The service stores the original's offset only after the copy is acknowledged, so a record
//! is always either processed or parked, never dropped.

use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::FutureProducer;

use crate::kafka::{self, DeliveryFuture};

pub const REASON: &str = "dlq.reason";
pub const SOURCE_TOPIC: &str = "dlq.source.topic";
pub const SOURCE_PARTITION: &str = "dlq.source.partition";
pub const SOURCE_OFFSET: &str = "dlq.source.offset";
pub const PARKED_BY: &str = "dlq.parked.by";
/// For input that never was a Kafka record (an inbound mail, a web request): where it came from.
pub const SOURCE: &str = "dlq.source";

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    service: String,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String, service: impl Into<String>) -> Self {
        Self {
            producer,
            topic,
            service: service.into(),
        }
    }

    /// Enqueues input that never was a Kafka record (an inbound mail that cannot become an
    /// interaction) with `reason` and its `source`; await the future before letting the
    /// input go.
    pub fn park_input(
        &self,
        key: &str,
        payload: &[u8],
        reason: &str,
        source: &str,
    ) -> Result<DeliveryFuture, rdkafka::error::KafkaError> {
        tracing::warn!(key, source, reason, "parking input in the dead-letter topic");
        let mut headers = OwnedHeaders::new();
        for (key, value) in [(REASON, reason), (SOURCE, source), (PARKED_BY, self.service.as_str())] {
            headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
        }
        kafka::send(&self.producer, &self.topic, None, key, payload, headers)
    }

    /// Enqueues a copy of `message` with `reason`; await the future before storing the offset.
    pub fn park(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<DeliveryFuture, rdkafka::error::KafkaError> {
        self.park_with(&self.producer, message, reason)
    }

    /// [`DeadLetters::park`] through `producer` (a transactional one: the copy is parked in the
    /// same transaction as the source offset).
    pub fn park_with(
        &self,
        producer: &FutureProducer,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<DeliveryFuture, rdkafka::error::KafkaError> {
        self.park_record_with(producer, &crate::record::Record::of(message), reason)
    }

    /// [`DeadLetters::park_with`] of an owned record.
    pub fn park_record_with(
        &self,
        producer: &FutureProducer,
        record: &crate::record::Record,
        reason: &str,
    ) -> Result<DeliveryFuture, rdkafka::error::KafkaError> {
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            reason,
            "parking record in the dead-letter topic"
        );
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: Some(value.as_slice()) });
        }
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        for (key, value) in [
            (REASON, reason),
            (SOURCE_TOPIC, record.topic.as_str()),
            (SOURCE_PARTITION, partition.as_str()),
            (SOURCE_OFFSET, offset.as_str()),
            (PARKED_BY, self.service.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let key = record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        kafka::send(producer, &self.topic, None, &key, &record.payload, headers)
    }
}
