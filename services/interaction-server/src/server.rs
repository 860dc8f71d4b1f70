//! The consume–decide–produce loop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contract::AvroMessage;
use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use runtime::CancellationToken;
use runtime::config::KafkaSettings;
use runtime::dead_letter::DeadLetters;
use runtime::headers::{Lineage, continue_trace_of};
use runtime::health::{Progress, Status};
use runtime::kafka;
use runtime::partitioned::{Delivery, PartitionReader, PartitionWriter};
use runtime::record::Record;
use runtime::snapshots::{Snapshot, SnapshotStore, position_key};
use runtime::topics::{self, Topics};
use tracing::Instrument;

use crate::settings::{Assignment, InteractionServerSettings};
use crate::partition::{Outcome, PartitionState, Recovering, Retention};

/// Commands whose events are written but not yet acknowledged; past this, wait for acks.
const MAX_IN_FLIGHT: usize = 20_000;
/// How long a partition whose commit failed is tried again before the server gives up.
const REOPEN_PATIENCE: Duration = Duration::from_secs(600);
/// How long a transactional call (init, commit, abort) may take before it counts as failed.
const TRANSACTION_CALL: Duration = Duration::from_secs(30);

/// A command's outcome acknowledged: its partition, offset, and the offset of its last event
/// (none for a duplicate or a dead letter).
type Acked = BoxFuture<'static, anyhow::Result<(i32, i64, Option<i64>)>>;

/// The format of this server's partition snapshots (`interactions::partition::PartitionSnapshot`).
/// 2: eviction (the board's window, clock and ended ids; command ids with their time).
/// 3: command ids kept as 128-bit keys.
const SNAPSHOT_FORMAT: u32 = 3;

/// Runs until `shutdown` is cancelled, then finishes in-flight writes and commits offsets.
///
/// Two ways to write, chosen by the broker ([`InteractionServerSettings::transactions`]):
/// - **transactions** (Apache Kafka): per partition a producer with its own
///   `transactional.id`; each batch's events, dead letters and command offsets are committed
///   together. A newer owner of the partition (after a rebalance or a restart) fences the
///   older at once and aborts its open transaction, so a stalled "zombie" can never add to the
///   log once its partition has moved; readers see only committed batches.
/// - **idempotent writes** (Tansu): events carry the command offset and deterministic ids;
///   recovery from the log skips what is reflected (see `partition.rs`).
pub async fn run(
    kafka_settings: &KafkaSettings,
    topics: &Topics,
    settings: &InteractionServerSettings,
    retention: Retention,
    snapshots: Option<SnapshotStore>,
    progress: Progress,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let group_id = settings.group_id.as_str();
    let assignment = settings.assignment(kafka_settings.broker);
    let transactional = settings.transactions(kafka_settings.broker);
    let commands_topic = topics.name(topics::INTERACTION_COMMANDS);
    let events_topic = topics.name(topics::INTERACTION_EVENTS);
    let producer = PartitionWriter::idempotent(kafka_settings)?;
    let dead_letters = producer.dead_letters(topics.name(topics::DEAD_LETTER), "interaction-server");
    let (consumer, rebalances) = PartitionReader::new(kafka_settings, group_id)?;

    let command_partitions = consumer.partition_count(&commands_topic)?;
    let event_partitions = consumer.partition_count(&events_topic)?;
    if command_partitions != event_partitions {
        bail!(
            "{commands_topic} has {command_partitions} partitions but {events_topic} has {event_partitions}; \
             they must match (each command's events go to its partition number)"
        );
    }
    let mut server = Server {
        kafka_settings,
        settings,
        retention,
        group_id: group_id.to_owned(),
        consumer: &consumer,
        producer,
        dead_letters,
        commands_topic: commands_topic.clone(),
        events_topic: events_topic.clone(),
        partitions: HashMap::new(),
        transactions: transactional.then(HashMap::new),
        in_flight: FuturesOrdered::new(),
        processed: 0,
        last_report: Instant::now(),
        last_command: Instant::now(),
        progress,
        events_read: std::sync::atomic::AtomicU64::new(0),
        snapshots: snapshots.filter(|_| settings.snapshot_every_events > 0),
        written: HashMap::new(),
    };
    server.progress.set(Status::not_yet("joining the consumer group").with("group_id", group_id));
    match assignment {
        Assignment::Group => {
            consumer.subscribe(&commands_topic).context("subscribing to commands")?;
        }
        Assignment::Static => {
            let owned: Vec<i32> = match &settings.partitions {
                Some(list) => list.clone(),
                None => (0..command_partitions).collect(),
            };
            if let Some(bad) = owned.iter().find(|p| !(0..command_partitions).contains(*p)) {
                bail!("partition {bad} does not exist: {commands_topic} has {command_partitions}");
            }
            // The group's committed offset can be past the log's resume point (records parked
            // in the dead-letter topic write no event), never before it.
            let committed = consumer.committed(&commands_topic, &owned);
            server.open_partitions(&owned).await?;
            let mut starts = Vec::new();
            for &p in &owned {
                let committed = committed.get(&p).copied().unwrap_or(0);
                let rebuilt = server.partitions.get(&p).map_or(0, PartitionState::resume_at);
                let resume = rebuilt.max(committed);
                tracing::info!(partition = p, rebuilt, committed, resume, "consuming commands from");
                starts.push((p, resume));
            }
            consumer.assign(&commands_topic, &starts).context("assigning command partitions")?;
            server.report_ready(&owned);
        }
    }
    tracing::info!(%commands_topic, %events_topic, group_id, ?assignment, transactional, "interaction server started");

    let result = server.run_loop(&shutdown, &rebalances).await;
    let drained = server.drain().await;
    let committed = if result.is_ok() { server.commit_open(true).await } else { Ok(()) };
    if result.is_ok() && drained.is_ok() && committed.is_ok() {
        // A clean stop: the next start reads nothing but what comes after.
        server.snapshot_due(true);
    }
    if !transactional && let Err(e) = consumer.commit_stored() {
        tracing::debug!(error = %e, "final offset commit");
    }
    tracing::info!(processed = server.processed, "interaction server stopped");
    result.and(drained).and(committed)
}

/// One partition's transactional producer and its open transaction.
struct Transaction {
    producer: PartitionWriter,
    /// The open transaction's events, resolved by the time it commits.
    deliveries: Vec<Delivery>,
    /// When the open transaction began; `None`: no transaction open.
    open_since: Option<Instant>,
    /// The command offset to commit with it (one past the last command handled).
    next_offset: i64,
    commands: usize,
}

impl Transaction {
    fn begin(&mut self) -> anyhow::Result<()> {
        if self.open_since.is_none() {
            self.producer.begin()?;
            self.open_since = Some(Instant::now());
            self.commands = 0;
        }
        Ok(())
    }

    fn handled(&mut self, offset: i64) {
        self.next_offset = offset + 1;
        self.commands += 1;
    }
}

struct Server<'a> {
    kafka_settings: &'a KafkaSettings,
    settings: &'a InteractionServerSettings,
    retention: Retention,
    group_id: String,
    consumer: &'a PartitionReader,
    producer: PartitionWriter,
    dead_letters: DeadLetters,
    commands_topic: String,
    events_topic: String,
    partitions: HashMap<i32, PartitionState>,
    /// Per owned partition, with transactions on.
    transactions: Option<HashMap<i32, Transaction>>,
    in_flight: FuturesOrdered<Acked>,
    processed: u64,
    last_report: Instant,
    /// When the last command arrived (transactions are committed once commands pause).
    last_command: Instant,
    /// Readiness: ready once the partitions it owns are rebuilt and it consumes.
    progress: Progress,
    /// Events read while rebuilding partitions (progress while not ready).
    events_read: std::sync::atomic::AtomicU64,
    snapshots: Option<SnapshotStore>,
    /// Per owned partition: one past its last event this server knows is in the log, and how
    /// many it wrote since its last snapshot.
    written: HashMap<i32, Written>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Written {
    next_offset: i64,
    since_snapshot: u64,
}

impl Server<'_> {
    async fn run_loop(
        &mut self,
        shutdown: &CancellationToken,
        rebalances: &kafka::RebalanceLog,
    ) -> anyhow::Result<()> {
        loop {
            let commit_at = self.next_commit_at();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(acked) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.acked(acked?);
                }
                () = tokio::time::sleep_until(commit_at.unwrap_or_else(Instant::now).into()), if commit_at.is_some() => {
                    // A revoked partition's transaction is aborted, not committed.
                    self.rebalanced(rebalances).await?;
                    self.commit_open(false).await?;
                    self.snapshot_due(false);
                }
                () = rebalances.changed() => {
                    self.rebalanced(rebalances).await?;
                }
                message = self.consumer.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => {
                    let message = message.context("consuming commands")?;
                    self.rebalanced(rebalances).await?;
                    let partition = message.partition;
                    self.last_command = Instant::now();
                    self.handle(&message).await?;
                    if self.transactions.as_ref().and_then(|t| t.get(&partition)).is_some_and(|t| t.commands >= self.settings.transaction_max_commands) {
                        self.commit_open(false).await?;
                        self.snapshot_due(false);
                    }
                }
            }
            if self.transactions.is_none() && self.in_flight.is_empty() {
                self.snapshot_due(false);
            }
            if self.last_report.elapsed() > Duration::from_secs(10) {
                tracing::info!(
                    processed = self.processed,
                    in_flight = self.in_flight.len(),
                    "progress"
                );
                self.last_report = Instant::now();
            }
        }
    }

    /// `last_event` (and all before it) of `partition` is in the log.
    fn wrote(&mut self, partition: i32, last_event: i64) {
        let written = self.written.entry(partition).or_default();
        written.next_offset = written.next_offset.max(last_event + 1);
    }

    /// Snapshots each owned partition that wrote `snapshot_every_events` since its last one
    /// (with `all`, every one that wrote anything). Only between transactions (or with no
    /// write in flight), so the state is exactly the log below the recorded offset: one past
    /// the last event this server saw acknowledged, never the log's end, which a newer owner
    /// may already have written past.
    fn snapshot_due(&mut self, all: bool) {
        let Some(store) = &self.snapshots else { return };
        let every = self.settings.snapshot_every_events.max(1);
        for (&partition, written) in &mut self.written {
            let due = if all { written.since_snapshot > 0 } else { written.since_snapshot >= every };
            let open = self.transactions.as_ref().and_then(|t| t.get(&partition)).is_some_and(|t| t.open_since.is_some());
            if !due || open || (self.transactions.is_none() && !self.in_flight.is_empty()) {
                continue;
            }
            let Some(state) = self.partitions.get(&partition).and_then(PartitionState::snapshot) else { continue };
            let started = Instant::now();
            let snapshot = Snapshot {
                format: SNAPSHOT_FORMAT,
                offsets: std::collections::BTreeMap::from([(position_key(&self.events_topic, partition), written.next_offset)]),
                taken_at: contract::now_millis(),
                state,
            };
            match store.save(&snapshot_name(&self.events_topic, partition), &snapshot) {
                Ok(path) => {
                    written.since_snapshot = 0;
                    tracing::info!(partition, next_offset = written.next_offset, file = %path.display(), ms = started.elapsed().as_millis() as u64, "partition state snapshotted");
                }
                Err(e) => tracing::warn!(partition, error = %e, "partition snapshot not written; the next start replays more"),
            }
        }
    }

    /// Drops the state of revoked partitions and rebuilds that of assigned ones, as soon as
    /// the group decides (an idle partition is ready before its first command arrives).
    async fn rebalanced(&mut self, rebalances: &kafka::RebalanceLog) -> anyhow::Result<()> {
        let revoked = rebalances.take_revoked();
        let assigned = rebalances.take_assigned();
        // Called for every command: nothing changed and already said ready, nothing to do.
        if revoked.is_empty() && assigned.is_empty() && self.progress.is_ready() {
            return Ok(());
        }
        if !revoked.is_empty() {
            // Finish what was written for the old assignment before rebuilding.
            self.drain().await?;
            for (_, partition) in revoked {
                self.partitions.remove(&partition);
                self.written.remove(&partition);
                self.close_transaction(partition).await;
            }
        }
        let mut assigned: Vec<i32> = assigned
            .into_iter()
            .filter(|(topic, p)| *topic == self.commands_topic && !self.partitions.contains_key(p))
            .map(|(_, p)| p)
            .collect();
        assigned.sort_unstable();
        assigned.dedup();
        if !assigned.is_empty() {
            self.open_partitions(&assigned).await?;
        }
        if rebalances.joined() {
            let mut owned: Vec<i32> = self.partitions.keys().copied().collect();
            owned.sort_unstable();
            self.report_ready(&owned);
        }
        Ok(())
    }

    fn report_ready(&self, owned: &[i32]) {
        self.progress.set(
            Status::ready()
                .with("partitions", owned)
                .with("events_read_at_start", self.events_read.load(std::sync::atomic::Ordering::Relaxed)),
        );
    }

    fn acked(&mut self, (partition, offset, last_event): (i32, i64, Option<i64>)) {
        self.processed += 1;
        if let Some(last_event) = last_event {
            self.wrote(partition, last_event);
        }
        if let Err(e) = self.consumer.store_processed(&self.commands_topic, partition, offset) {
            tracing::debug!(partition, offset, error = %e, "offset not stored (partition revoked?)");
        }
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(acked) = self.in_flight.next().await {
            self.acked(acked?);
        }
        Ok(())
    }

    /// Takes partitions on: with transactions, first fences any earlier owner (its open
    /// transaction is aborted), then rebuilds the state from the committed log. Several
    /// partitions (a new assignment) at once, overlapping their round trips to the broker.
    async fn open_partitions(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let transactional = self.transactions.is_some();
        self.progress.set(Status::not_yet("rebuilding partition state from the events log").with("partitions", partitions));
        let (progress, events_read, snapshots, retention) = (&self.progress, &self.events_read, self.snapshots.as_ref(), self.retention);
        let opened = futures::future::join_all(partitions.iter().map(|&partition| {
            let (kafka_settings, settings, events_topic) = (self.kafka_settings, self.settings, self.events_topic.as_str());
            let id = format!("{}-{partition}", self.group_id);
            async move {
                let transaction = if transactional {
                    let producer = PartitionWriter::transactional(kafka_settings, &id, settings.transaction_timeout_ms)?;
                    producer
                        .init(TRANSACTION_CALL)
                        .await
                        .with_context(|| format!("initialising transactions for partition {partition} (transactional.id {id})"))?;
                    Some(Transaction { producer, deliveries: Vec::new(), open_since: None, next_offset: 0, commands: 0 })
                } else {
                    None
                };
                let state = recover(kafka_settings, events_topic, partition, retention, snapshots, progress, partitions, events_read).await?;
                anyhow::Ok((partition, transaction, state))
            }
        }))
        .await;
        for result in opened {
            let (partition, transaction, state) = result?;
            if let (Some(transactions), Some(transaction)) = (&mut self.transactions, transaction) {
                transactions.insert(partition, transaction);
            }
            let (state, next_offset) = state;
            log_recovered(partition, &state, &self.events_topic);
            self.partitions.insert(partition, state);
            // A start from a snapshot plus its tail counts as nothing new to snapshot.
            self.written.insert(partition, Written { next_offset, since_snapshot: 0 });
        }
        Ok(())
    }

    /// A revoked partition's open transaction is aborted (its new owner redoes the commands
    /// from the last committed offset) and its producer dropped.
    async fn close_transaction(&mut self, partition: i32) {
        let Some(transaction) = self.transactions.as_mut().and_then(|t| t.remove(&partition)) else { return };
        if transaction.open_since.is_some() {
            let aborted = transaction.producer.abort(TRANSACTION_CALL).await;
            tracing::info!(partition, ?aborted, "partition revoked: its open transaction aborted");
        }
    }

    /// When the open transactions are due for commit: `transaction_linger_ms` after the last
    /// command, or `transaction_max_ms` after the oldest began, whichever comes first.
    fn next_commit_at(&self) -> Option<Instant> {
        let oldest = self.transactions.as_ref()?.values().filter_map(|t| t.open_since).min()?;
        let idle = self.last_command + Duration::from_millis(self.settings.transaction_linger_ms);
        Some(idle.min(oldest + Duration::from_millis(self.settings.transaction_max_ms)))
    }

    /// Commits every open transaction, each with its partition's command offset, in parallel.
    /// A partition whose commit failed is taken on again from the log (see
    /// [`Self::reopen_after_failed_commit`]); the others go on.
    async fn commit_open(&mut self, stopping: bool) -> anyhow::Result<()> {
        let Some(transactions) = &mut self.transactions else { return Ok(()) };
        let (consumer, commands_topic) = (self.consumer, self.commands_topic.as_str());
        let mut commits = Vec::new();
        for (&partition, transaction) in transactions.iter_mut() {
            if transaction.open_since.is_none() {
                continue;
            }
            let producer = transaction.producer.clone();
            let (commands, next_offset) = (transaction.commands, transaction.next_offset);
            let deliveries = std::mem::take(&mut transaction.deliveries);
            transaction.open_since = None;
            commits.push(async move {
                let result = producer.commit_with_offset(consumer, commands_topic, partition, next_offset, TRANSACTION_CALL).await;
                // Committed: every event is in the log; where the last one landed.
                let mut last = None;
                if result.is_ok() {
                    for delivery in deliveries {
                        if let Ok((_, at)) = delivery.landed().await {
                            last = last.max(Some(at));
                        }
                    }
                }
                (partition, commands, result, last)
            });
        }
        let mut failed = Vec::new();
        for (partition, commands, result, last) in futures::future::join_all(commits).await {
            match result {
                Ok(()) => {
                    self.processed += commands as u64;
                    if let Some(last) = last {
                        self.wrote(partition, last);
                    }
                }
                Err(e) => {
                    // Fenced (a newer owner, or a rebalance changed the group's generation while
                    // the transaction was open) or the broker failed the commit: either way the
                    // batch is not in the log, and this partition's state ran ahead of it.
                    tracing::warn!(partition, commands, error = %e, fenced = e.fenced(), "transaction aborted, not committed: its events and offsets are not in the log; the partition is taken on again");
                    failed.push(partition);
                }
            }
        }
        for partition in failed {
            self.reopen_after_failed_commit(partition, !stopping).await?;
        }
        Ok(())
    }

    /// After `partition`'s transaction failed to commit, its state holds decisions whose
    /// events are not in the log. The state is dropped; if the group still gives this server
    /// the partition, it is rebuilt from the log (a new producer with the same
    /// `transactional.id` fences the old one and aborts what it left open) and its commands
    /// are read again from the committed offset. If the partition moved, its new owner does
    /// that (and does it at the next start when this server is stopping: `take_on` false).
    /// Only a failure to take it on again ends the server.
    async fn reopen_after_failed_commit(&mut self, partition: i32, take_on: bool) -> anyhow::Result<()> {
        self.partitions.remove(&partition);
        self.written.remove(&partition);
        if let Some(transaction) = self.transactions.as_mut().and_then(|t| t.remove(&partition)) {
            // Best effort: the next owner's init aborts it anyway.
            if let Err(e) = transaction.producer.abort(TRANSACTION_CALL).await {
                tracing::debug!(partition, error = %e, "aborting the failed transaction");
            }
        }
        if !take_on {
            return Ok(());
        }
        if !self.consumer.assigned(&self.commands_topic).contains(&partition) {
            tracing::info!(partition, "partition no longer assigned here: its new owner redoes the aborted commands");
            return Ok(());
        }
        // The broker may be away (the commit failed for that): try again with back-off for as
        // long as an outage may reasonably last, then give up (a restart recovers from the log).
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        loop {
            match self.open_partitions(&[partition]).await {
                Ok(()) => break,
                Err(e) if started.elapsed() < REOPEN_PATIENCE => {
                    tracing::warn!(partition, error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "cannot take the partition on again yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e.context(format!("taking partition {partition} on again for {} s", REOPEN_PATIENCE.as_secs()))),
            }
        }
        let committed = self.consumer.committed(&self.commands_topic, &[partition]);
        let rebuilt = self.partitions.get(&partition).map_or(0, PartitionState::resume_at);
        let resume = rebuilt.max(committed.get(&partition).copied().unwrap_or(0));
        self.consumer
            .rewind(&self.commands_topic, partition, resume)
            .with_context(|| format!("reading partition {partition} again from offset {resume}"))?;
        tracing::info!(partition, resume, "partition taken on again after a failed commit");
        let mut owned: Vec<i32> = self.partitions.keys().copied().collect();
        owned.sort_unstable();
        self.report_ready(&owned);
        Ok(())
    }

    async fn handle(&mut self, message: &Record) -> anyhow::Result<()> {
        let (partition, offset) = (message.partition, message.offset);
        if !self.partitions.contains_key(&partition) {
            // Take on every newly assigned partition together, not one per first command.
            let mut new: Vec<i32> = self.consumer.assigned(&self.commands_topic);
            new.retain(|p| !self.partitions.contains_key(p));
            if !new.contains(&partition) {
                new.push(partition);
            }
            self.open_partitions(&new).await?;
        }
        let command = match InteractionCommand::decode(&message.payload) {
            Ok(command) => command,
            Err(e) => return self.park(message, &format!("cannot decode InteractionCommand: {e}")),
        };
        let key = message.key.as_deref().map(String::from_utf8_lossy);
        if key.as_deref() != Some(command.interaction_id.as_str()) {
            return self.park(
                message,
                &format!(
                    "record key {key:?} does not match interaction_id {:?}; commands must be keyed by interaction id",
                    command.interaction_id
                ),
            );
        }
        let span = tracing::info_span!(
            "command",
            interaction_id = %command.interaction_id,
            command_id = %command.command_id,
            kind = command.payload.kind(),
            partition,
            offset
        );
        continue_trace_of(&span, message);
        let Some(state) = self.partitions.get_mut(&partition) else {
            bail!("partition {partition} state missing after recovery");
        };
        let outcome = state.handle(partition, offset, &command);
        async {
            match outcome {
                Outcome::AlreadyReflected => {
                    tracing::debug!("already reflected in the events log; skipped");
                    if let Some(transaction) = self.transaction(partition)? {
                        transaction.begin()?;
                        transaction.handled(offset);
                    }
                }
                Outcome::DuplicateCommand => {
                    tracing::info!("duplicate command id; already applied, nothing written");
                    if let Some(transaction) = self.transaction(partition)? {
                        transaction.begin()?;
                        transaction.handled(offset);
                    } else {
                        self.in_flight
                            .push_back(Box::pin(async move { Ok((partition, offset, None)) }));
                    }
                }
                Outcome::Emit { events, rejected } => {
                    if rejected
                        && let Some(contract::event::EventPayload::CommandRejected(r)) =
                            events.first().map(|e| &e.payload)
                        {
                            tracing::info!(reason = %r.reason, "command rejected");
                        }
                    self.emit(partition, offset, &command, events)?;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The partition's transaction, when transactions are on.
    fn transaction(&mut self, partition: i32) -> anyhow::Result<Option<&mut Transaction>> {
        match &mut self.transactions {
            None => Ok(None),
            Some(t) => t.get_mut(&partition).map(Some).with_context(|| format!("no transactional producer for partition {partition}")),
        }
    }

    fn emit(
        &mut self,
        partition: i32,
        offset: i64,
        command: &InteractionCommand,
        events: Vec<InteractionEvent>,
    ) -> anyhow::Result<()> {
        let events_topic = self.events_topic.clone();
        let producer = match self.transaction(partition)? {
            Some(transaction) => {
                transaction.begin()?;
                transaction.handled(offset);
                Some(transaction.producer.clone())
            }
            None => None,
        };
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let payload = event.encode().context("encoding an interaction event")?;
            let lineage = Lineage::new(&command.interaction_id).caused_by(&command.command_id).schema(InteractionEvent::NAME);
            deliveries.push(producer.as_ref().unwrap_or(&self.producer).send(
                &events_topic,
                Some(partition),
                &command.interaction_id,
                &payload,
                &lineage,
            )?);
        }
        if let Some(written) = self.written.get_mut(&partition) {
            written.since_snapshot += deliveries.len() as u64;
        }
        if producer.is_some() {
            // In a transaction, delivery is confirmed by the commit, which fails if any record
            // failed; the offsets are read once it has committed.
            if let Some(transaction) = self.transaction(partition)? {
                transaction.deliveries.extend(deliveries);
            }
            return Ok(());
        }
        self.in_flight.push_back(Box::pin(async move {
            let mut last = None;
            for delivery in deliveries {
                let (_, at) = delivery.landed().await.with_context(|| {
                    format!("writing events for command at {partition}/{offset}")
                })?;
                last = Some(at);
            }
            Ok((partition, offset, last))
        }));
        Ok(())
    }

    fn park(&mut self, message: &Record, reason: &str) -> anyhow::Result<()> {
        let (partition, offset) = (message.partition, message.offset);
        let dead_letters = self.dead_letters.clone();
        if let Some(transaction) = self.transaction(partition)? {
            transaction.begin()?;
            drop(transaction.producer.park(&dead_letters, message, reason)?);
            transaction.handled(offset);
            return Ok(());
        }
        let delivery = self.producer.park(&self.dead_letters, message, reason)?;
        self.in_flight.push_back(Box::pin(async move {
            delivery
                .landed()
                .await
                .context("parking a record in the dead-letter topic")?;
            Ok((partition, offset, None))
        }));
        Ok(())
    }
}

fn log_recovered(partition: i32, state: &PartitionState, events_topic: &str) {
    tracing::info!(
        partition,
        resume_at = state.resume_at(),
        interactions = state.board.len(),
        evicted = state.board.evicted(),
        remembered_commands = state.remembered_commands(),
        duplicate_events = state.duplicate_events,
        "partition state rebuilt from {events_topic}"
    );
}

fn snapshot_name(events_topic: &str, partition: i32) -> String {
    format!("interaction-server-{events_topic}-{partition}")
}

/// Rebuilds a partition's state: from its snapshot and the events after it, or (no usable
/// snapshot, or one the log does not match) from every event since offset 0. Returns the state
/// and the offset one past the last event it reflects.
#[allow(clippy::too_many_arguments)]
async fn recover(
    kafka_settings: &KafkaSettings,
    events_topic: &str,
    partition: i32,
    retention: Retention,
    snapshots: Option<&SnapshotStore>,
    progress: &Progress,
    opening: &[i32],
    events_read: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<(PartitionState, i64)> {
    let restored = snapshots
        .and_then(|store| store.load::<interactions::partition::PartitionSnapshot>(&snapshot_name(events_topic, partition), SNAPSHOT_FORMAT))
        .and_then(|s| Some((*s.offsets.get(&position_key(events_topic, partition))?, s.state)))
        .and_then(|(from, snapshot)| {
            let restored = PartitionState::restore(snapshot, retention);
            if restored.is_none() {
                tracing::warn!(partition, "snapshot taken with another retention ([live] keep_stopped_s or the commands topic's retention.ms changed): replaying from the start");
            }
            Some((from, restored?))
        });
    if let Some((from, state)) = restored {
        let mut recovering = state.recovering();
        match read_events(kafka_settings, events_topic, partition, from, progress, opening, events_read, &mut recovering).await {
            Ok((tail, end)) => {
                tracing::info!(partition, snapshot_offset = from, tail_events = tail, "partition state restored from its snapshot and the events after it");
                return Ok((recovering.finish(), end));
            }
            Err(e @ kafka::ReadError::PastTheEnd { .. }) => {
                tracing::warn!(partition, error = %e, "snapshot does not match the log: replaying from the start");
            }
            Err(e) => return Err(e).context("reading interaction events"),
        }
    }
    let mut recovering = PartitionState::new(retention).recovering();
    let (_, end) = read_events(kafka_settings, events_topic, partition, 0, progress, opening, events_read, &mut recovering)
        .await
        .context("reading interaction events")?;
    Ok((recovering.finish(), end))
}

/// Feeds a partition's events from `from` to its end as measured now into `recovering`;
/// returns how many were read and that end.
#[allow(clippy::too_many_arguments)]
async fn read_events(
    kafka_settings: &KafkaSettings,
    events_topic: &str,
    partition: i32,
    from: i64,
    progress: &Progress,
    opening: &[i32],
    events_read: &std::sync::atomic::AtomicU64,
    recovering: &mut Recovering,
) -> Result<(u64, i64), kafka::ReadError> {
    let mut count = 0u64;
    let end = kafka::read_partition_values_from(kafka_settings, events_topic, partition, from, None, |offset, payload| {
        count += 1;
        let read = events_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if read.is_multiple_of(5_000) {
            progress.set(
                Status::not_yet("rebuilding partition state from the events log")
                    .with("partitions", opening)
                    .with("events_read", read),
            );
        }
        match InteractionEvent::decode(payload) {
            Ok(event) => recovering.feed(event),
            Err(e) => tracing::error!(
                partition,
                offset,
                error = %e,
                "undecodable record in {} (only the interaction server writes there); skipped",
                events_topic
            ),
        }
    })
    .await?;
    Ok((count, end))
}
