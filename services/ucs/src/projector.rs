//! Follows the interaction, agent, chat and UCS topics into the SQL read model.
//!
//! It reads every partition from the offset stored in `projector_offsets` (no consumer group:
//! the database, not Kafka, remembers where it is), gathers a batch of up to `batch_size`
//! records or `batch_linger_ms`, and applies it with [`batch::apply`] in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use runtime::config::KafkaSettings;

use crate::UcsSettings;
use runtime::snapshots::position_key;
use runtime::topics::Topics;
use runtime::{CancellationToken, kafka};
use sqlx::Row;

use crate::batch::{self, Record, Source};
use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Log(kafka::ReplayError),
    #[error("reading the topics: {0}")]
    Read(String),
    #[error("{0} (run `switchboard topics create`)")]
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
        // Where the database says each partition's next record is.
        let starts: BTreeMap<String, i64> = self
            .stored_offsets()
            .await?
            .into_iter()
            .filter_map(|(topic, partition, next)| Some((position_key(&topic, i32::try_from(partition).ok()?), next)))
            .collect();
        let sources: Vec<(String, Source)> = Source::ALL.iter().map(|&source| (self.topics.name(source.topic()), source)).collect();
        let names: Vec<&str> = sources.iter().map(|(topic, _)| topic.as_str()).collect();
        let mut tail = kafka::Tail::open(&self.kafka, &names, &starts).map_err(|e| match e {
            kafka::ReplayError::Topic(e) => ProjectorError::Topic(e.to_string()),
            other => ProjectorError::Log(other),
        })?;
        let backlog = tail.backlog();
        tracing::info!(database = %self.db.display_url(), backlog, "UCS projector starting");
        let started = Instant::now();
        let mut last_report = Instant::now();
        if tail.caught_up() {
            self.status.caught_up.store(true, Ordering::Release);
            if until == Until::CaughtUp {
                return Ok(());
            }
        }
        let linger = Duration::from_millis(self.settings.batch_linger_ms);
        let batch_size = self.settings.batch_size.max(1);
        let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
        let to_record = |r: runtime::record::Record| -> Option<Record> {
            let source = sources.iter().find(|(t, _)| *t == r.topic)?.1;
            Some(Record { source, topic: r.topic, partition: r.partition, offset: r.offset, payload: r.payload })
        };
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                read = tail.read() => read.map_err(|e| ProjectorError::Read(e.to_string()))?,
            };
            let first = match first {
                kafka::Tailed::End => {
                    if tail.caught_up() && !self.status.caught_up() {
                        self.status.caught_up.store(true, Ordering::Release);
                        tracing::info!(records = self.status.applied(), "UCS projector caught up");
                        if until == Until::CaughtUp {
                            return Ok(());
                        }
                    }
                    continue;
                }
                kafka::Tailed::Record(record) => record,
            };
            let mut read = vec![first];
            let deadline = tokio::time::Instant::now() + linger;
            while read.len() < batch_size {
                match tokio::time::timeout_at(deadline, tail.read()).await {
                    // A partition's end stops the batch: it may complete the catch-up (seen
                    // once not noticed inside a batch: after a restart with 320,000 events,
                    // UCS never became ready).
                    Ok(Ok(kafka::Tailed::End)) | Err(_) => break,
                    Ok(Ok(kafka::Tailed::Record(record))) => read.push(record),
                    Ok(Err(e)) => return Err(ProjectorError::Read(e.to_string())),
                }
            }
            batch.extend(read.into_iter().filter_map(to_record));
            self.apply_with_retry(&batch, &shutdown).await?;
            for record in &batch {
                tail.done(&record.topic, record.partition, record.offset);
            }
            batch.clear();
            if !self.status.caught_up() {
                if tail.caught_up() {
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
