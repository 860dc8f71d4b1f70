//! Kafka clients, configured the same way for every service.
//!
//! - The producer is idempotent with `acks=all` and the murmur2 partitioner (so Java and
//!   Kafka Streams clients agree on which partition a key lives in).
//! - Consumers never store an offset by themselves (`enable.auto.offset.store=false`): a
//!   service calls [`store_processed`] once a record's outcome is safely in Kafka, and the
//!   stored offsets are committed in the background.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaSettings;

pub use rdkafka::consumer::CommitMode;
pub use rdkafka::types::RDKafkaErrorCode;
pub use rdkafka::producer::DeliveryFuture;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error(
        "no Kafka bootstrap servers configured (set kafka.bootstrap_servers or SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS)"
    )]
    NoBootstrap,
    #[error("cannot create Kafka {what}: {source}")]
    Client {
        what: &'static str,
        source: KafkaError,
    },
}

fn base_config(settings: &KafkaSettings) -> Result<ClientConfig, KafkaSetupError> {
    if settings.bootstrap_servers.trim().is_empty() {
        return Err(KafkaSetupError::NoBootstrap);
    }
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    overlay(&mut config, &settings.client);
    Ok(config)
}

/// Applies configured librdkafka settings over Switchboard's defaults.
fn overlay(config: &mut ClientConfig, configured: &std::collections::BTreeMap<String, String>) {
    for (k, v) in configured {
        config.set(k, v);
    }
}

/// An idempotent producer (`acks=all`, murmur2 partitioner).
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaSetupError> {
    let mut config = base_config(settings)?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    overlay(&mut config, &settings.producer);
    config.create().map_err(|source| KafkaSetupError::Client {
        what: "producer",
        source,
    })
}

/// A transactional producer (`transactional.id` = the deployment's prefix + `id`): a newer
/// producer with the same id fences this one. `message.timeout.ms` may not exceed the
/// transaction timeout, and librdkafka's socket timeout follows it.
pub fn transactional_producer(
    settings: &KafkaSettings,
    id: &str,
    transaction_timeout_ms: u64,
) -> Result<FutureProducer, KafkaSetupError> {
    let mut config = base_config(settings)?;
    let timeout = transaction_timeout_ms.to_string();
    config
        .set("transactional.id", format!("{}{id}", settings.topic_prefix))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .set("transaction.timeout.ms", &timeout)
        .set("message.timeout.ms", &timeout)
        .set("socket.timeout.ms", &timeout);
    overlay(&mut config, &settings.producer);
    config.create().map_err(|source| KafkaSetupError::Client {
        what: "transactional producer",
        source,
    })
}

/// Records which partitions a group consumer lost and gained, so a service can drop or
/// rebuild their state as soon as the group decides (not at the next record).
#[derive(Default, Clone)]
pub struct RebalanceLog {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    assigned: Arc<Mutex<Vec<(String, i32)>>>,
    /// Woken on every assignment or revocation.
    changed: Arc<tokio::sync::Notify>,
    /// Set once the first assignment (possibly empty) arrived: the member joined the group.
    joined: Arc<std::sync::atomic::AtomicBool>,
}

impl RebalanceLog {
    /// Partitions assigned since the last call.
    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        self.assigned
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// Resolves at the next assignment or revocation (or at once if one is unseen).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether the group has given this member an assignment yet.
    pub fn joined(&self) -> bool {
        self.joined.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        self.revoked
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<_> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(?partitions, "partitions revoked");
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(partitions);
                }
                self.changed.notify_one();
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<_> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(?partitions, "partitions assigned");
                if let Ok(mut assigned) = self.assigned.lock() {
                    assigned.extend(partitions);
                }
                self.joined.store(true, std::sync::atomic::Ordering::Release);
                self.changed.notify_one();
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

pub type GroupConsumer = StreamConsumer<RebalanceLog>;

/// A consumer-group member that starts at the earliest offset when the group has none, and
/// stores offsets only when told to. It reads `read_uncommitted`: its topic (commands) has no
/// transactional writer.
pub fn group_consumer(
    settings: &KafkaSettings,
    group_id: &str,
) -> Result<(GroupConsumer, RebalanceLog), KafkaSetupError> {
    let mut config = base_config(settings)?;
    // The deployment's prefix isolates its groups as it does its topics.
    config
        .set("group.id", format!("{}{group_id}", settings.topic_prefix))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Replicas share partitions; a rebalance moves only the partitions that must move.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Commands are written without transactions, so there is nothing uncommitted to hide;
        // and with read_committed librdkafka asks for *stable* committed offsets (KIP-447),
        // which after an unclean stop with open transactions stayed pending for minutes: the
        // assigned partitions never started fetching (6 offset queries outstanding, the
        // restarted Interaction Server took no command). Without it the group's last
        // committed offsets come back at once; a stale one only re-delivers commands the
        // events log already reflects, which the Interaction Server skips.
        .set("isolation.level", "read_uncommitted")
        .set("session.timeout.ms", "10000");
    overlay(&mut config, &settings.consumer);
    let log = RebalanceLog::default();
    let consumer =
        config
            .create_with_context(log.clone())
            .map_err(|source| KafkaSetupError::Client {
                what: "consumer",
                source,
            })?;
    Ok((consumer, log))
}

/// The group id of every [`reader`] starts with the deployment's prefix and this.
pub const READER_GROUP_PREFIX: &str = "switchboard-reader-";

/// A consumer outside any group, for reading partitions from a given offset (replays,
/// projections that rebuild from offset 0, audits). It never commits.
///
/// It reads `read_committed` and reports each partition's end as
/// `Err(KafkaError::PartitionEOF(partition))` from `recv()`: on a transactionally written
/// topic the last offsets are commit markers (and aborted records), which are never delivered,
/// so "the last record was read" is never true there; callers treat the end event with
/// [`Replay::reached_ends`] or [`is_partition_end`].
pub fn reader(settings: &KafkaSettings) -> Result<Reader, KafkaSetupError> {
    let mut config = base_config(settings)?;
    // librdkafka's assign() needs a group.id, and with one it looks up the group's
    // coordinator (never joining it): under ACLs that takes Describe on the group, which
    // infra/kafka/acls.toml grants for this prefix.
    config
        .set(
            "group.id",
            format!("{}{READER_GROUP_PREFIX}{}", settings.topic_prefix, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    overlay(&mut config, &settings.consumer);
    config.create_with_context(ReaderContext).map_err(|source| KafkaSetupError::Client {
        what: "reader",
        source,
    })
}

/// A [`reader`]: its partition ends are news for the caller, not errors to log.
pub type Reader = StreamConsumer<ReaderContext>;

pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_end(&error) {
            tracing::error!(target: "librdkafka", error = %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Assigns `reader` every partition of `topic` from `offset`.
pub fn assign_all(
    reader: &StreamConsumer<impl ConsumerContext>,
    topic: &str,
    partitions: i32,
    offset: Offset,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset)?;
    }
    reader.assign(&tpl)
}

/// Runs a blocking librdkafka call (metadata, watermarks, committed offsets: each may wait
/// seconds for a busy broker) without stalling the runtime: on a multi-threaded runtime the
/// worker hands its other tasks to another thread first. With two cores a blocking call on
/// each worker left HTTP unanswered and the UCS pool timing out for 40 s at a restart.
pub fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Each partition of `topic` with the offset one past its last record, as they are now (for
/// "wait until what was written before the start is reflected").
pub fn end_offsets(settings: &KafkaSettings, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let reader = reader(settings)?;
    let partitions = crate::topics::partition_count(reader.client(), topic)?;
    (0..partitions)
        .map(|p| Ok((p, high_watermark(&reader, topic, p).map_err(|e| anyhow::anyhow!("reading the end of {topic}/{p}: {e}"))?)))
        .collect()
}

/// The offset one past the last record of a partition (0 when empty). A leader that is moving
/// (a new topic, a broker restarting) is waited for, up to 10 s; a slow answer up to 120 s.
pub fn high_watermark<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<i64, KafkaError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let started = std::time::Instant::now();
    loop {
        match blocking(|| consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))) {
            Ok((_, high)) => return Ok(high),
            Err(e)
                if started.elapsed() < Duration::from_secs(10)
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(Code::NotLeaderForPartition | Code::LeaderNotAvailable | Code::UnknownTopicOrPartition)
                    ) =>
            {
                blocking(|| std::thread::sleep(Duration::from_millis(100)));
            }
            // A broker busy with every service replaying at start answers late: ask again.
            Err(e)
                if started.elapsed() < Duration::from_secs(120)
                    && matches!(e.rdkafka_error_code(), Some(Code::OperationTimedOut | Code::RequestTimedOut)) =>
            {
                tracing::warn!(topic, partition, error = %e, "the broker is slow to give a partition's end; asking again");
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("reading {topic} partition {partition}: {source}")]
    Kafka {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("no record from {topic} partition {partition} within {secs} s")]
    Stalled { topic: String, partition: i32, secs: u64 },
    #[error("{topic} partition {partition} ends at {end}, before offset {from}: not the log that position was taken in")]
    PastTheEnd { topic: String, partition: i32, from: i64, end: i64 },
}

/// Hands every record of one partition to `each`, in order, from the beginning to its end as
/// it is now. The end is where the reader's position reaches the high watermark: the last
/// offsets may be commit markers, which are never delivered. With `stall`, waiting longer than
/// that for a record is an error.
pub async fn read_partition(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    stall: Option<Duration>,
    each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), ReadError> {
    read_partition_from(settings, topic, partition, 0, stall, each).await.map(|_| ())
}

/// [`read_partition`] from offset `from` (a snapshot's position); returns the partition's end
/// as it was measured at the start. A `from` past that end (a log recreated since) is an error
/// the caller answers with a full replay.
pub async fn read_partition_from(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    from: i64,
    stall: Option<Duration>,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<i64, ReadError> {
    let kafka = |source| ReadError::Kafka { topic: topic.to_owned(), partition, source };
    let reader = reader(settings)?;
    let high = high_watermark(&reader, topic, partition).map_err(kafka)?;
    if from > high {
        return Err(ReadError::PastTheEnd { topic: topic.to_owned(), partition, from, end: high });
    }
    if high == 0 || from == high {
        return Ok(high);
    }
    let mut tpl = TopicPartitionList::new();
    let start = if from <= 0 { Offset::Beginning } else { Offset::Offset(from) };
    tpl.add_partition_offset(topic, partition, start).map_err(kafka)?;
    reader.assign(&tpl).map_err(kafka)?;
    while position(&reader, topic, partition).is_none_or(|at| at < high) {
        let received = match stall {
            Some(limit) => tokio::time::timeout(limit, reader.recv()).await.map_err(|_| ReadError::Stalled {
                topic: topic.to_owned(),
                partition,
                secs: limit.as_secs(),
            })?,
            None => reader.recv().await,
        };
        match received {
            Ok(message) => each(&message),
            Err(e) if is_partition_end(&e) => {}
            Err(e) => return Err(kafka(e)),
        }
    }
    Ok(high)
}

/// [`read_partition_from`] handing each record's offset and value (empty for a tombstone).
pub async fn read_partition_values_from(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    from: i64,
    stall: Option<Duration>,
    mut each: impl FnMut(i64, &[u8]),
) -> Result<i64, ReadError> {
    read_partition_from(settings, topic, partition, from, stall, |m| each(m.offset(), m.payload().unwrap_or_default())).await
}

/// [`read_partition`] handing only each record's value (empty for a tombstone).
pub async fn read_partition_values(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    stall: Option<Duration>,
    mut each: impl FnMut(&[u8]),
) -> Result<(), ReadError> {
    read_partition(settings, topic, partition, stall, |m| each(m.payload().unwrap_or_default())).await
}

/// The records of one partition whose key is `key`, from the beginning to its end as it is
/// now; the others are read and dropped.
pub async fn read_partition_keyed(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    key: &[u8],
    stall: Option<Duration>,
) -> Result<Vec<crate::record::Record>, ReadError> {
    let mut out = Vec::new();
    read_partition(settings, topic, partition, stall, |m| {
        if m.key() == Some(key) {
            out.push(crate::record::Record::of(m));
        }
    })
    .await?;
    Ok(out)
}

/// Hands the records of every partition of `topic` to `each`, from the beginning: to the
/// partitions' ends as they are at the start, or on for ever with `follow`; until `each`
/// answers false.
pub async fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    follow: bool,
    mut each: impl FnMut(crate::record::Record) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut tail = Tail::open(settings, &[topic], &std::collections::BTreeMap::new())?;
    while follow || !tail.caught_up() {
        match tail.read().await? {
            Tailed::Record(record) => {
                tail.done(&record.topic, record.partition, record.offset);
                if !each(record)? {
                    break;
                }
            }
            Tailed::End => {}
        }
    }
    Ok(())
}

/// What [`Tail::read`] found.
#[derive(Debug)]
pub enum Tailed {
    Record(crate::record::Record),
    /// The reader reached the end of a partition (a batch can stop here).
    End,
}

/// Reads several topics from given offsets (0 where none is given) as owned records, and
/// knows when it has caught up with every partition's end as it stood when it was opened:
/// the followers outside the runtime (UCS's projector, `switchboard tail`) need no rdkafka
/// type. A partition is caught up when the caller is [`Tail::done`] with its last record, or
/// when a partition-end notice finds the reader's position past its end: ask
/// [`Tail::caught_up`] after finishing the records read so far, so it means "applied".
pub struct Tail {
    reader: Reader,
    replay: Replay,
}

impl Tail {
    /// `starts` holds offsets by [`crate::snapshots::position_key`].
    pub fn open(settings: &KafkaSettings, topics: &[&str], starts: &std::collections::BTreeMap<String, i64>) -> Result<Self, ReplayError> {
        let reader = reader(settings).map_err(|e| ReplayError::Setup(Box::new(e)))?;
        let replay = Replay::from_offsets(&reader, topics, starts)?;
        Ok(Self { reader, replay })
    }

    /// Offsets between the starts and the ends at opening (records and commit markers).
    pub fn backlog(&self) -> i64 {
        self.replay.backlog()
    }

    /// Every partition's end at opening was reached, and every record before it done.
    pub fn caught_up(&self) -> bool {
        self.replay.caught_up()
    }

    /// The next record, or the end of a partition (noted: commit markers past the last record
    /// are never delivered, so the reader's position says when an end is reached).
    /// A broker outage is waited out here ([`Outage`]); only a fatal error is returned.
    pub async fn read(&mut self) -> Result<Tailed, KafkaError> {
        let mut outage = Outage::new("tailing");
        loop {
            match self.reader.recv().await {
                Ok(message) => {
                    outage.over();
                    return Ok(Tailed::Record(crate::record::Record::of(&message)));
                }
                Err(e) if is_partition_end(&e) => {
                    outage.over();
                    self.replay.reached_ends(&self.reader);
                    return Ok(Tailed::End);
                }
                Err(e) => outage.ride_out(e).await?,
            }
        }
    }

    /// The caller is finished with the record at `offset` (applied it, say).
    pub fn done(&mut self, topic: &str, partition: i32, offset: i64) {
        self.replay.read(topic, partition, offset);
    }
}

/// Whether waiting can mend `error`: a broker away or restarting, a timeout, a leader or
/// coordinator moving. Not: credentials refused, an ACL missing, a configuration librdkafka
/// refuses, a fatal producer error — those stay fatal with their reason.
pub fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => false,
        KafkaError::Transaction(t) => !t.is_fatal(),
        _ => !matches!(
            error.rdkafka_error_code(),
            Some(
                Code::TopicAuthorizationFailed
                    | Code::GroupAuthorizationFailed
                    | Code::ClusterAuthorizationFailed
                    | Code::TransactionalIdAuthorizationFailed
                    | Code::SaslAuthenticationFailed
                    | Code::Authentication
                    | Code::InvalidConfig
                    | Code::Fatal
                    | Code::UnsupportedSASLMechanism
            )
        ),
    }
}

/// Rides out transient consumer errors: librdkafka reconnects by itself (with its own
/// growing back-off) and reports each failed attempt through `recv()`; those reports are
/// logged (the first of a run, then every 30 s) and passed over. No pause here: the reports
/// queue up during an outage, and pausing on each would leave the consumer draining old
/// reports long after the broker is back (seen: two minutes behind after a 20 s outage). A
/// fatal error is returned.
pub struct Outage {
    since: Option<std::time::Instant>,
    logged: Option<std::time::Instant>,
    what: &'static str,
}

impl Outage {
    pub fn new(what: &'static str) -> Self {
        Self { since: None, logged: None, what }
    }

    /// `Err(error)` back when it is fatal; otherwise notes it and returns `Ok`.
    pub async fn ride_out(&mut self, error: KafkaError) -> Result<(), KafkaError> {
        if !is_transient(&error) {
            return Err(error);
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        if self.logged.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
            tracing::warn!(what = self.what, error = %error, for_s = since.elapsed().as_secs(), "Kafka unreachable or refusing for now; retrying");
            self.logged = Some(std::time::Instant::now());
        }
        tokio::task::yield_now().await;
        Ok(())
    }

    /// A record came through: the outage (if any) is over.
    pub fn over(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(what = self.what, after_s = since.elapsed().as_secs(), "Kafka reachable again");
        }
        self.logged = None;
    }
}

/// Whether a reader's error is the end of a partition (see [`reader`]), not a failure.
pub fn is_partition_end(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_)) || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
}

/// The position of `reader` in a partition (the next offset it will read), if it has one.
pub fn position<C: ConsumerContext>(reader: &StreamConsumer<C>, topic: &str, partition: i32) -> Option<i64> {
    reader.position().ok()?.find_partition(topic, partition)?.offset().to_raw().filter(|o| *o >= 0)
}

/// Marks the record at `offset` processed: the next auto-commit commits `offset + 1`, the next
/// offset to read. librdkafka's `rd_kafka_offset_store` adds the one itself; adding it here too
/// committed one past, and after a restart the first new record of each partition was skipped
/// without a trace (the Interaction Server on Tansu took no new command).
pub fn store_processed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), KafkaError> {
    consumer.store_offset(topic, partition, offset)
}

pub fn admin(
    settings: &KafkaSettings,
) -> Result<AdminClient<DefaultClientContext>, KafkaSetupError> {
    base_config(settings)?
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "admin client",
            source,
        })
}

/// Enqueues one record; the returned future resolves when the broker acknowledged it.
pub fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: &[u8],
    headers: OwnedHeaders,
) -> Result<DeliveryFuture, KafkaError> {
    let mut record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer.send_result(record).map_err(|(e, _)| e)
}

/// Waits for a delivery and turns every failure into a [`KafkaError`].
pub async fn delivered(future: DeliveryFuture) -> Result<(i32, i64), KafkaError> {
    match future.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// The partition Kafka's default partitioner (Java's, and librdkafka's `murmur2_random`, which
/// the producer here is set to) puts `key` in: `(murmur2(key) & 0x7fffffff) % partitions`.
/// Written out because rdkafka does not expose librdkafka's partitioners; tools use it to read
/// one interaction's partition instead of scanning all of them. Checked against the real
/// producer in `tests/e2e/tests/ucs_audit.rs`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = (murmur2(key) as u32) & 0x7fff_ffff;
    (positive % partitions.max(1) as u32) as i32
}

/// Kafka's `Utils.murmur2`.
pub fn murmur2(key: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ (key.len() as u32);
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    /// The cases of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Setup(Box<KafkaSetupError>),
    #[error(transparent)]
    Topic(#[from] crate::topics::TopicError),
    #[error("reading the end of {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error("{topic} partition {partition} ends at {end}, before offset {start}: not the log that position was taken in")]
    PastTheEnd { topic: String, partition: i32, start: i64, end: i64 },
}

/// A replay from offset 0 of in-memory projections: assigns every partition of the topics
/// from the beginning and remembers where each ended at that moment, so the projection can
/// say when it has caught up with the log as it stood at start.
#[derive(Debug)]
pub struct Replay {
    /// `(topic, partition, offset one past its last record)` not reached yet.
    remaining: Vec<(String, i32, i64)>,
    /// Offsets between the starts and the ends at start (records and commit markers).
    backlog: i64,
}

impl Replay {
    pub fn from_beginning<C: ConsumerContext>(reader: &StreamConsumer<C>, topics: &[&str]) -> Result<Self, ReplayError> {
        Self::from_offsets(reader, topics, &std::collections::BTreeMap::new())
    }

    /// Like [`Replay::from_beginning`], but each partition named in `starts` (by
    /// `snapshots::position_key`) from its offset there: a snapshot's tail. An offset past a
    /// partition's end (a log recreated since) is [`ReplayError::PastTheEnd`].
    pub fn from_offsets<C: ConsumerContext>(
        reader: &StreamConsumer<C>,
        topics: &[&str],
        starts: &std::collections::BTreeMap<String, i64>,
    ) -> Result<Self, ReplayError> {
        let mut remaining = Vec::new();
        let mut backlog = 0;
        let mut assignment = TopicPartitionList::new();
        for &topic in topics {
            let kafka = |source| ReplayError::Kafka { topic: topic.to_owned(), source };
            for partition in 0..crate::topics::partition_count(reader.client(), topic)? {
                let high = high_watermark(reader, topic, partition).map_err(kafka)?;
                let start = starts.get(&crate::snapshots::position_key(topic, partition)).copied().unwrap_or(0);
                if start > high {
                    return Err(ReplayError::PastTheEnd { topic: topic.to_owned(), partition, start, end: high });
                }
                if high > start {
                    remaining.push((topic.to_owned(), partition, high));
                    backlog += high - start;
                }
                let offset = if start > 0 { Offset::Offset(start) } else { Offset::Beginning };
                assignment.add_partition_offset(topic, partition, offset).map_err(kafka)?;
            }
        }
        reader.assign(&assignment).map_err(|source| ReplayError::Kafka { topic: topics.join(", "), source })?;
        Ok(Self { remaining, backlog })
    }

    /// Records in the log at start, to replay.
    pub fn backlog(&self) -> i64 {
        self.backlog
    }

    pub fn caught_up(&self) -> bool {
        self.remaining.is_empty()
    }

    /// On a partition end from the reader: notes every partition whose position reached its
    /// end at start (past commit markers and aborted records, which are never delivered);
    /// `true` exactly when that completes the replay.
    pub fn reached_ends<C: ConsumerContext>(&mut self, reader: &StreamConsumer<C>) -> bool {
        if self.remaining.is_empty() {
            return false;
        }
        let Ok(positions) = reader.position() else { return false };
        self.remaining.retain(|(topic, partition, high)| {
            positions
                .find_partition(topic, *partition)
                .and_then(|e| e.offset().to_raw())
                .is_none_or(|position| position < *high)
        });
        self.remaining.is_empty()
    }

    /// Notes a record read; `true` exactly when it is the one that completes the replay.
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        if self.remaining.is_empty() {
            return false;
        }
        self.remaining.retain(|(t, p, high)| !(t == topic && *p == partition && offset + 1 >= *high));
        self.remaining.is_empty()
    }
}

/// librdkafka's version and `builtin.features` (ssl, sasl_scram, zstd, ...), for the start-up
/// log: a client built without a feature fails only when a setting needs it.
pub fn client_library() -> String {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    format!("librdkafka {version} ({features})")
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("Kafka at {bootstrap} refused Switchboard's credentials: {reason}")]
    Authentication { bootstrap: String, reason: String },
    #[error("cannot reach Kafka at {bootstrap} within {secs} s: {reason}")]
    Unreachable {
        bootstrap: String,
        secs: u64,
        reason: String,
    },
}

/// Remembers the errors librdkafka reports in the background (it retries failed connections and
/// authentications quietly; a metadata request just times out).
#[derive(Default)]
struct ErrorLog(Mutex<Vec<(KafkaError, String)>>);

impl ClientContext for ErrorLog {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((error, reason.to_owned()));
        }
    }
}

impl ConsumerContext for ErrorLog {}

/// Connects with the configured client settings and asks for metadata, so a wrong address,
/// TLS setting or password is a clear error at start (within `limit`) instead of a service
/// that waits forever.
pub fn check_connection(settings: &KafkaSettings, limit: Duration) -> Result<(), ConnectError> {
    let config = base_config(settings)?;
    let bootstrap = settings.bootstrap_servers.clone();
    let client: rdkafka::consumer::BaseConsumer<ErrorLog> = config
        .create_with_context(ErrorLog::default())
        .map_err(|source| KafkaSetupError::Client { what: "client", source })?;
    let started = std::time::Instant::now();
    let mut last: String;
    loop {
        match client.fetch_metadata(None, Duration::from_millis(1000)) {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => last = "metadata without brokers".into(),
            Err(e) => last = e.to_string(),
        }
        // Errors reach the context only while the client is polled.
        let _ = client.poll(Duration::from_millis(100));
        let seen = client.context().0.lock().map(|v| v.clone()).unwrap_or_default();
        if let Some((_, reason)) = seen.iter().rev().find(|(e, _)| {
            matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::Authentication))
        }) {
            return Err(ConnectError::Authentication { bootstrap, reason: reason.clone() });
        }
        if let Some((_, reason)) = seen.last() {
            last = reason.clone();
        }
        if started.elapsed() >= limit {
            return Err(ConnectError::Unreachable { bootstrap, secs: limit.as_secs(), reason: last });
        }
    }
}
