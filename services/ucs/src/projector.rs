//! Follows the interaction, agent, chat and UCS topics into the SQL read model.
//!
//! It reads every partition from the offset stored in `projector_offsets` (no consumer group:
//! the database, not Kafka, remembers where it is), gathers a batch of up to `batch_size`
//! records or `batch_linger_ms`, and applies it with [`batch::apply`] in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runtime::config::{KafkaSettings, UcsSettings};
use runtime::topics::{self, Topics};
use runtime::{CancellationToken, Consumer, Message, Offset, TopicPartitionList, kafka};
use sqlx::Row;

use crate::batch::{self, Record, Source};
use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error("Kafka: {0}")]
    Client(#[from] runtime::KafkaError),
    #[error("topic {0} is missing or has no partitions (run `switchboard topics create`)")]
    Topic(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// What readiness checks and progress reports look at.
#[derive(Debug, Default)]
pub struct ProjectorStatus {
    caught_up: AtomicBool,
    applied: AtomicU64,
    skipped: AtomicU64,
    duplicates: AtomicU64,
}

impl ProjectorStatus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// True once the projector reached the end of every partition as it was at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// When to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Follow the topics until shut down (the service).
    Shutdown,
    /// Return once every partition is read up to its end at start (a rebuild).
    CaughtUp,
}

pub struct Projector {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub settings: UcsSettings,
    pub db: Db,
    pub status: Arc<ProjectorStatus>,
}

impl Projector {
    pub async fn run(&self, until: Until, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let reader = kafka::reader(&self.kafka)?;
        let stored = self.stored_offsets().await?;
        let mut assignment = TopicPartitionList::new();
        // (source, full topic name) by full topic name.
        let mut sources: Vec<(String, Source)> = Vec::new();
        let mut remaining: Vec<(String, i32, i64)> = Vec::new();
        for source in Source::ALL {
            let topic = self.topics.name(source.topic());
            let partitions = topics::partition_count(reader.client(), &topic)
                .map_err(|_| ProjectorError::Topic(topic.clone()))?;
            if partitions == 0 {
                return Err(ProjectorError::Topic(topic));
            }
            for p in 0..partitions {
                let from = stored
                    .iter()
                    .find(|(t, sp, _)| *t == topic && *sp == i64::from(p))
                    .map(|(_, _, next)| *next)
                    .unwrap_or(0);
                let high = kafka::high_watermark(&reader, &topic, p)?;
                if high > from {
                    remaining.push((topic.clone(), p, high));
                }
                assignment.add_partition_offset(&topic, p, Offset::Offset(from))?;
            }
            sources.push((topic, source));
        }
        reader.assign(&assignment)?;
        let backlog: i64 = remaining
            .iter()
            .map(|(t, p, high)| {
                let from = stored
                    .iter()
                    .find(|(st, sp, _)| st == t && *sp == i64::from(*p))
                    .map_or(0, |(_, _, n)| *n);
                high - from
            })
            .sum();
        tracing::info!(database = %self.db.display_url(), backlog, "UCS projector starting");
        let started = Instant::now();
        let mut last_report = Instant::now();
        if remaining.is_empty() {
            self.status.caught_up.store(true, Ordering::Release);
            if until == Until::CaughtUp {
                return Ok(());
            }
        }
        let linger = Duration::from_millis(self.settings.batch_linger_ms);
        let batch_size = self.settings.batch_size.max(1);
        let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = reader.recv() => message,
            };
            let first = match first {
                Err(e) if kafka::is_partition_end(&e) => {
                    note_ends(&mut remaining, &reader);
                    if remaining.is_empty() && !self.status.caught_up() {
                        self.status.caught_up.store(true, Ordering::Release);
                        tracing::info!(records = self.status.applied(), "UCS projector caught up");
                        if until == Until::CaughtUp {
                            return Ok(());
                        }
                    }
                    continue;
                }
                other => other?,
            };
            let to_record = |m: &runtime::BorrowedMessage<'_>| -> Option<Record> {
                let source = sources.iter().find(|(t, _)| t == m.topic())?.1;
                Some(Record {
                    source,
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                })
            };
            batch.extend(to_record(&first));
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, reader.recv()).await {
                    Ok(Err(e)) if kafka::is_partition_end(&e) => {
                        // The end is reported once: note it here too, or a partition whose
                        // last offset is a commit marker never counts as caught up (seen
                        // after a restart with 320,000 events: UCS never became ready).
                        note_ends(&mut remaining, &reader);
                        break;
                    }
                    Ok(message) => batch.extend(to_record(&message?)),
                    Err(_) => break,
                }
            }
            self.apply_with_retry(&batch, &shutdown).await?;
            for record in &batch {
                remaining.retain(|(t, p, high)| {
                    !(*t == record.topic && *p == record.partition && record.offset + 1 >= *high)
                });
            }
            batch.clear();
            if !self.status.caught_up() {
                if remaining.is_empty() {
                    self.status.caught_up.store(true, Ordering::Release);
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    let applied = self.status.applied();
                    tracing::info!(
                        records = applied,
                        seconds = format!("{secs:.1}"),
                        per_second = (applied as f64 / secs) as u64,
                        "UCS projector caught up"
                    );
                    if until == Until::CaughtUp {
                        return Ok(());
                    }
                } else if last_report.elapsed() >= Duration::from_secs(5) {
                    last_report = Instant::now();
                    tracing::info!(
                        applied = self.status.applied(),
                        backlog,
                        "UCS projector catching up"
                    );
                }
            }
        }
    }

    /// A database outage pauses the projector instead of killing the process: the batch is
    /// retried until it lands or the service stops (the records are still in Kafka).
    async fn apply_with_retry(
        &self,
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectorError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match batch::apply(&self.db, batch).await {
                Ok(outcome) => {
                    self.status.applied.fetch_add(outcome.applied, Ordering::Relaxed);
                    self.status.skipped.fetch_add(outcome.skipped, Ordering::Relaxed);
                    self.status
                        .duplicates
                        .fetch_add(outcome.duplicates, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, records = batch.len(), "UCS batch failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(e.into()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn stored_offsets(&self) -> Result<Vec<(String, i64, i64)>, ProjectorError> {
        let rows = sqlx::query("SELECT topic, partition_id, next_offset FROM projector_offsets")
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("topic")?, r.try_get("partition_id")?, r.try_get("next_offset")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// On a partition-end notice: drops every partition whose reader position reached its end at
/// start. Past the last record there may be commit markers, never delivered, so the position
/// says it, not the last offset read.
fn note_ends(remaining: &mut Vec<(String, i32, i64)>, reader: &kafka::Reader) {
    remaining.retain(|(t, p, high)| kafka::position(reader, t, *p).is_none_or(|at| at < *high));
}
