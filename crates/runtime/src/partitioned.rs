//! A service that owns partitions: it consumes them as a consumer-group member (or by static
//! assignment) and writes each partition's output through a [`PartitionWriter`], idempotent or
//! transactional (one `transactional.id` per partition, the consumed offsets committed in the
//! same transaction). The Interaction Server's loop is built on it; it sees owned
//! [`Record`]s and these types, never rdkafka's.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::headers::Lineage;
use rdkafka::error::KafkaError;

use crate::kafka::{self, GroupConsumer, KafkaSetupError, RebalanceLog};
use crate::record::Record;

/// A Kafka call of a partition owner failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct OwnerError {
    what: &'static str,
    source: KafkaError,
}

impl OwnerError {
    fn of(what: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self { what, source }
    }

    /// A newer producer with the same `transactional.id` (ProducerFenced / epoch), or a newer
    /// group generation refusing the offsets (KIP-447): the partition belongs to someone else.
    pub fn fenced(&self) -> bool {
        matches!(&self.source, KafkaError::Transaction(t) if t.is_fatal())
            || matches!(
                self.source.rdkafka_error_code(),
                Some(Code::ProducerFenced | Code::InvalidProducerEpoch | Code::UnknownMemberId | Code::IllegalGeneration | Code::Fenced)
            )
    }
}

/// A consumer of one topic's partitions: a group member (see [`kafka::group_consumer`]) that
/// can also be assigned partitions by hand.
pub struct PartitionReader {
    consumer: GroupConsumer,
}

impl PartitionReader {
    /// The reader and the log of its group's rebalances.
    pub fn new(settings: &KafkaSettings, group_id: &str) -> Result<(Self, RebalanceLog), KafkaSetupError> {
        let (consumer, rebalances) = kafka::group_consumer(settings, group_id)?;
        Ok((Self { consumer }, rebalances))
    }

    pub fn partition_count(&self, topic: &str) -> Result<i32, crate::topics::TopicError> {
        crate::topics::partition_count(self.consumer.client(), topic)
    }

    /// Joins the group for `topic`'s partitions.
    pub fn subscribe(&self, topic: &str) -> Result<(), OwnerError> {
        self.consumer.subscribe(&[topic]).map_err(OwnerError::of("subscribing"))
    }

    /// The group's committed offset of each of `partitions` that has one (none when the group
    /// cannot be asked).
    pub fn committed(&self, topic: &str, partitions: &[i32]) -> HashMap<i32, i64> {
        let mut asked = TopicPartitionList::new();
        for &p in partitions {
            asked.add_partition(topic, p);
        }
        let Ok(committed) = kafka::blocking(|| self.consumer.committed_offsets(asked, Duration::from_secs(10))) else {
            return HashMap::new();
        };
        committed
            .elements_for_topic(topic)
            .iter()
            .filter_map(|e| Some((e.partition(), e.offset().to_raw().filter(|o| *o >= 0)?)))
            .collect()
    }

    /// Reads exactly `starts` (partition, first offset), outside the group's assignment.
    pub fn assign(&self, topic: &str, starts: &[(i32, i64)]) -> Result<(), OwnerError> {
        let mut assignment = TopicPartitionList::new();
        for &(p, offset) in starts {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(offset))
                .map_err(OwnerError::of("assigning partitions"))?;
        }
        self.consumer.assign(&assignment).map_err(OwnerError::of("assigning partitions"))
    }

    /// Reads `partition` again from `offset` (records already fetched past it are dropped):
    /// after its transaction failed, its commands since the last commit are handled again.
    pub fn rewind(&self, topic: &str, partition: i32, offset: i64) -> Result<(), OwnerError> {
        kafka::blocking(|| self.consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10)))
            .map_err(OwnerError::of("rewinding a partition"))
    }

    /// The partitions of `topic` this reader is assigned now.
    pub fn assigned(&self, topic: &str) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|tpl| tpl.elements_for_topic(topic).iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    /// The next record of the assigned partitions; a broker outage is waited out
    /// ([`kafka::Outage`]), only a fatal error is returned.
    pub async fn recv(&self) -> Result<Record, OwnerError> {
        let mut outage = kafka::Outage::new("consuming");
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    outage.over();
                    return Ok(Record::of(&message));
                }
                Err(e) => outage.ride_out(e).await.map_err(OwnerError::of("consuming"))?,
            }
        }
    }

    /// Marks the record at `offset` processed (committed by the next auto-commit): see
    /// [`kafka::store_processed`].
    pub fn store_processed(&self, topic: &str, partition: i32, offset: i64) -> Result<(), OwnerError> {
        kafka::store_processed(&self.consumer, topic, partition, offset).map_err(OwnerError::of("storing an offset"))
    }

    /// Commits the stored offsets now (a clean stop without transactions).
    pub fn commit_stored(&self) -> Result<(), OwnerError> {
        self.consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            .map_err(OwnerError::of("committing offsets"))
    }
}

/// A record handed to the producer; [`Delivery::landed`] says where it landed.
pub struct Delivery(rdkafka::producer::DeliveryFuture);

impl Delivery {
    /// The record's partition and offset once the broker acknowledged it.
    pub async fn landed(self) -> Result<(i32, i64), KafkaError> {
        kafka::delivered(self.0).await
    }
}

/// Writes records to chosen partitions: idempotent, or in transactions of one
/// `transactional.id` that also commit a consumer's offsets.
#[derive(Clone)]
pub struct PartitionWriter {
    producer: FutureProducer,
}

impl PartitionWriter {
    /// An idempotent writer (see [`kafka::producer`]).
    pub fn idempotent(settings: &KafkaSettings) -> Result<Self, KafkaSetupError> {
        Ok(Self { producer: kafka::producer(settings)? })
    }

    /// A transactional writer (see [`kafka::transactional_producer`]); [`Self::init`] it first.
    pub fn transactional(settings: &KafkaSettings, id: &str, transaction_timeout_ms: u64) -> Result<Self, KafkaSetupError> {
        Ok(Self { producer: kafka::transactional_producer(settings, id, transaction_timeout_ms)? })
    }

    /// Registers the `transactional.id`: fences every older producer with it and resolves its
    /// open transaction (aborted) before returning.
    pub async fn init(&self, limit: Duration) -> Result<(), OwnerError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.init_transactions(limit))
            .await
            .map_err(|_| OwnerError { what: "initialising transactions", source: KafkaError::Canceled })?
            .map_err(OwnerError::of("initialising transactions"))
    }

    pub fn begin(&self) -> Result<(), OwnerError> {
        self.producer.begin_transaction().map_err(OwnerError::of("beginning a transaction"))
    }

    /// Commits the open transaction together with `next_offset` as `reader`'s group offset of
    /// `topic`/`partition`.
    pub async fn commit_with_offset(
        &self,
        reader: &PartitionReader,
        topic: &str,
        partition: i32,
        next_offset: i64,
        limit: Duration,
    ) -> Result<(), OwnerError> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(next_offset))
            .map_err(OwnerError::of("committing a transaction"))?;
        let group = reader
            .consumer
            .group_metadata()
            .ok_or(OwnerError { what: "committing a transaction: the consumer has no group metadata", source: KafkaError::Canceled })?;
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer.send_offsets_to_transaction(&offsets, &group, limit)?;
            producer.commit_transaction(limit)
        })
        .await
        .map_err(|_| OwnerError { what: "committing a transaction", source: KafkaError::Canceled })?
        .map_err(OwnerError::of("committing a transaction"))
    }

    pub async fn abort(&self, limit: Duration) -> Result<(), OwnerError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.abort_transaction(limit))
            .await
            .map_err(|_| OwnerError { what: "aborting a transaction", source: KafkaError::Canceled })?
            .map_err(OwnerError::of("aborting a transaction"))
    }

    /// Enqueues one record with its lineage headers.
    pub fn send(&self, topic: &str, partition: Option<i32>, key: &str, payload: &[u8], lineage: &Lineage) -> Result<Delivery, KafkaError> {
        kafka::send(&self.producer, topic, partition, key, payload, lineage.to_headers()).map(Delivery)
    }

    /// A dead-letter topic writer sharing this producer.
    pub fn dead_letters(&self, topic: String, service: &str) -> crate::dead_letter::DeadLetters {
        crate::dead_letter::DeadLetters::new(self.producer.clone(), topic, service)
    }

    /// Parks a copy of `record` in the dead-letter topic through this writer (in its open
    /// transaction, if it is transactional).
    pub fn park(&self, dead_letters: &crate::dead_letter::DeadLetters, record: &Record, reason: &str) -> Result<Delivery, KafkaError> {
        dead_letters.park_record_with(&self.producer, record, reason).map(Delivery)
    }
}
