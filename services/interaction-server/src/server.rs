//! The consume–decide–produce loop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contract::AvroMessage;
use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use plumbing::Consumer;
use plumbing::config::{Assignment, InteractionServerSettings, KafkaSettings};
use plumbing::dead_letter::DeadLetters;
use plumbing::headers::{Lineage, continue_trace};
use plumbing::kafka::{self, GroupConsumer};
use plumbing::topics::{self, Topics, partition_count};
use plumbing::{BorrowedMessage, CancellationToken, Message};
use plumbing::{FutureProducer, Offset};
use tracing::Instrument;

use crate::partition::{Outcome, PartitionState};

/// Commands whose events are written but not yet acknowledged; past this, wait for acks.
const MAX_IN_FLIGHT: usize = 20_000;

type Acked = BoxFuture<'static, anyhow::Result<(i32, i64)>>;

/// Runs until `shutdown` is cancelled, then finishes in-flight writes and commits offsets.
pub async fn run(
    kafka_settings: &KafkaSettings,
    topics: &Topics,
    settings: &InteractionServerSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let group_id = settings.group_id.as_str();
    let commands_topic = topics.name(topics::INTERACTION_COMMANDS);
    let events_topic = topics.name(topics::INTERACTION_EVENTS);
    let producer = kafka::producer(kafka_settings)?;
    let dead_letters = DeadLetters::new(
        producer.clone(),
        topics.name(topics::DEAD_LETTER),
        "interaction-server",
    );
    let (consumer, rebalances) = kafka::group_consumer(kafka_settings, group_id)?;

    let command_partitions = partition_count(consumer.client(), &commands_topic)?;
    let event_partitions = partition_count(consumer.client(), &events_topic)?;
    if command_partitions != event_partitions {
        bail!(
            "{commands_topic} has {command_partitions} partitions but {events_topic} has {event_partitions}; \
             they must match (each command's events go to its partition number)"
        );
    }
    let mut partitions = HashMap::new();
    match settings.assignment {
        Assignment::Group => {
            consumer
                .subscribe(&[&commands_topic])
                .context("subscribing to commands")?;
        }
        Assignment::Static => {
            let owned: Vec<i32> = match &settings.partitions {
                Some(list) => list.clone(),
                None => (0..command_partitions).collect(),
            };
            if let Some(bad) = owned.iter().find(|p| !(0..command_partitions).contains(*p)) {
                bail!("partition {bad} does not exist: {commands_topic} has {command_partitions}");
            }
            let mut start = plumbing::TopicPartitionList::new();
            for &p in &owned {
                start.add_partition(&commands_topic, p);
            }
            // The group's committed offset can be past the log's resume point (records parked
            // in the dead-letter topic write no event), never before it.
            let committed = consumer
                .committed_offsets(start.clone(), Duration::from_secs(10))
                .unwrap_or_else(|_| start.clone());
            let mut assignment = plumbing::TopicPartitionList::new();
            for &p in &owned {
                let state = recover(kafka_settings, &events_topic, p).await?;
                let committed = committed
                    .find_partition(&commands_topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(0);
                let resume = state.resume_at().max(committed);
                log_recovered(p, &state, &events_topic);
                assignment.add_partition_offset(&commands_topic, p, Offset::Offset(resume))?;
                partitions.insert(p, state);
            }
            consumer
                .assign(&assignment)
                .context("assigning command partitions")?;
        }
    }
    tracing::info!(%commands_topic, %events_topic, group_id, assignment = ?settings.assignment, "interaction server started");

    let mut server = Server {
        kafka_settings,
        consumer: &consumer,
        producer,
        dead_letters,
        commands_topic,
        events_topic,
        partitions,
        in_flight: FuturesOrdered::new(),
        processed: 0,
        last_report: Instant::now(),
    };
    let result = server.run_loop(&shutdown, &rebalances).await;
    let drained = server.drain().await;
    if let Err(e) = consumer.commit_consumer_state(kafka::CommitMode::Sync) {
        tracing::debug!(error = %e, "final offset commit");
    }
    tracing::info!(processed = server.processed, "interaction server stopped");
    result.and(drained)
}

struct Server<'a> {
    kafka_settings: &'a KafkaSettings,
    consumer: &'a GroupConsumer,
    producer: FutureProducer,
    dead_letters: DeadLetters,
    commands_topic: String,
    events_topic: String,
    partitions: HashMap<i32, PartitionState>,
    in_flight: FuturesOrdered<Acked>,
    processed: u64,
    last_report: Instant,
}

impl Server<'_> {
    async fn run_loop(
        &mut self,
        shutdown: &CancellationToken,
        rebalances: &kafka::RebalanceLog,
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(acked) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.acked(acked?);
                }
                message = self.consumer.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => {
                    let message = message.context("consuming commands")?;
                    let revoked = rebalances.take_revoked();
                    if !revoked.is_empty() {
                        // Finish what was written for the old assignment before rebuilding.
                        self.drain().await?;
                        for (_, partition) in revoked {
                            self.partitions.remove(&partition);
                        }
                    }
                    self.handle(&message).await?;
                }
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

    fn acked(&mut self, (partition, offset): (i32, i64)) {
        self.processed += 1;
        // Kafka's committed offset is the next one to read.
        if let Err(e) =
            kafka::store_offset(self.consumer, &self.commands_topic, partition, offset + 1)
        {
            tracing::debug!(partition, offset, error = %e, "offset not stored (partition revoked?)");
        }
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(acked) = self.in_flight.next().await {
            self.acked(acked?);
        }
        Ok(())
    }

    async fn handle(&mut self, message: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let partition = message.partition();
        let offset = message.offset();
        if !self.partitions.contains_key(&partition) {
            let state = recover(self.kafka_settings, &self.events_topic, partition).await?;
            log_recovered(partition, &state, &self.events_topic);
            self.partitions.insert(partition, state);
        }
        let command = match InteractionCommand::decode(message.payload().unwrap_or_default()) {
            Ok(command) => command,
            Err(e) => return self.park(message, &format!("cannot decode InteractionCommand: {e}")),
        };
        let key = message.key().map(String::from_utf8_lossy);
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
        continue_trace(&span, message);
        let Some(state) = self.partitions.get_mut(&partition) else {
            bail!("partition {partition} state missing after recovery");
        };
        let outcome = state.handle(partition, offset, &command);
        async {
            match outcome {
                Outcome::AlreadyReflected => {
                    tracing::debug!("already reflected in the events log; skipped");
                }
                Outcome::DuplicateCommand => {
                    tracing::info!("duplicate command id; already applied, nothing written");
                    self.in_flight
                        .push_back(Box::pin(async move { Ok((partition, offset)) }));
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

    fn emit(
        &mut self,
        partition: i32,
        offset: i64,
        command: &InteractionCommand,
        events: Vec<InteractionEvent>,
    ) -> anyhow::Result<()> {
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let payload = event.encode().context("encoding an interaction event")?;
            let headers = Lineage::new(&command.interaction_id)
                .caused_by(&command.command_id)
                .schema(InteractionEvent::NAME)
                .to_headers();
            deliveries.push(kafka::send(
                &self.producer,
                &self.events_topic,
                Some(partition),
                &command.interaction_id,
                &payload,
                headers,
            )?);
        }
        self.in_flight.push_back(Box::pin(async move {
            for delivery in deliveries {
                kafka::delivered(delivery).await.with_context(|| {
                    format!("writing events for command at {partition}/{offset}")
                })?;
            }
            Ok((partition, offset))
        }));
        Ok(())
    }

    fn park(&mut self, message: &BorrowedMessage<'_>, reason: &str) -> anyhow::Result<()> {
        let delivery = self.dead_letters.park(message, reason)?;
        let (partition, offset) = (message.partition(), message.offset());
        self.in_flight.push_back(Box::pin(async move {
            kafka::delivered(delivery)
                .await
                .context("parking a record in the dead-letter topic")?;
            Ok((partition, offset))
        }));
        Ok(())
    }
}

fn log_recovered(partition: i32, state: &PartitionState, events_topic: &str) {
    tracing::info!(
        partition,
        resume_at = state.resume_at(),
        interactions = state.board.interactions().count(),
        duplicate_events = state.duplicate_events,
        "partition state rebuilt from {events_topic}"
    );
}

/// Reads a partition's events from offset 0 to the end and rebuilds its state.
async fn recover(
    kafka_settings: &KafkaSettings,
    events_topic: &str,
    partition: i32,
) -> anyhow::Result<PartitionState> {
    let reader = kafka::reader(kafka_settings)?;
    let high = kafka::high_watermark(&reader, events_topic, partition)?;
    let mut events = Vec::new();
    if high > 0 {
        let mut tpl = plumbing::TopicPartitionList::new();
        tpl.add_partition_offset(events_topic, partition, Offset::Beginning)?;
        reader.assign(&tpl)?;
        loop {
            let message = reader.recv().await.context("reading interaction events")?;
            match InteractionEvent::decode(message.payload().unwrap_or_default()) {
                Ok(event) => events.push(event),
                Err(e) => tracing::error!(
                    partition,
                    offset = message.offset(),
                    error = %e,
                    "undecodable record in {} (only the interaction server writes there); skipped",
                    events_topic
                ),
            }
            if message.offset() >= high - 1 {
                break;
            }
        }
    }
    Ok(PartitionState::recover(events))
}
