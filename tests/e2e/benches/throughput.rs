//! `cargo bench -p e2e --bench throughput [-- N]`: figures on the local Tansu broker.
//! - commands/s through the Interaction Server: N Submit commands are on the topic before it
//!   starts; timed from start to the last event acknowledged (including its recovery scan);
//! - the queue projection's replay rate: events/s from offset 0 until caught up, through the
//!   broker (bounded by Tansu's fetch path, see `local_broker::TANSU_CONSUMER_TUNING`) and as a
//!   pure fold from memory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::command::{CommandPayload, InteractionCommand, MediaType, Submit};
use contract::event::InteractionEvent;
use e2e::TestEnv;
use plumbing::CancellationToken;
use plumbing::topics::INTERACTION_COMMANDS;
use rdkafka::producer::FutureRecord;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let env = TestEnv::start().await.unwrap();
    println!(
        "broker: Apache Kafka {} at {}",
        plumbing::broker::kafka::KAFKA_VERSION,
        env.kafka.bootstrap_servers
    );

    let producer = env.producer();
    let topic = env.topic(INTERACTION_COMMANDS);
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    for i in 0..n {
        let command = InteractionCommand {
            command_id: format!("bench-{i}"),
            interaction_id: format!("ix-{i}"),
            issued_at: 1_700_000_000_000 + i as i64,
            issued_by: "bench".into(),
            payload: CommandPayload::Submit(Submit {
                media_type: MediaType::Email,
                origin: "bench".into(),
                target_queue: format!("q{}", i % 10),
                priority: (i % 5) as i32,
                properties: BTreeMap::from([("subject".into(), format!("message {i}"))]),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            }),
        };
        let payload = command.encode().unwrap();
        commands.push(command.clone());
        pending.push(
            producer
                .send_result(
                    FutureRecord::to(&topic)
                        .key(&command.interaction_id)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    let produce = started.elapsed().as_secs_f64();
    println!(
        "produced {n} commands in {produce:.2} s ({:.0} commands/s, idempotent producer, acks=all)",
        n as f64 / produce
    );

    let started = Instant::now();
    let (shutdown, server) = env.spawn_interaction_server();
    let expected = 2 * n as i64; // Submitted + PlacedInQueue
    while env.events_written() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "interaction server too slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let through = started.elapsed().as_secs_f64();
    println!(
        "interaction-server: {n} commands -> {expected} events in {through:.2} s = {:.0} commands/s ({:.0} events/s)",
        n as f64 / through,
        expected as f64 / through
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();

    let projection = queues::projector::Projection::new();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = {
        let (kafka, topics, token, p) = (
            env.kafka.clone(),
            env.topics.clone(),
            shutdown.clone(),
            projection.clone(),
        );
        tokio::spawn(async move { queues::projector::run(&kafka, &topics, p, token).await })
    };
    while !projection.caught_up() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "replay too slow"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replay = started.elapsed().as_secs_f64();
    let applied = projection.board().events_applied();
    println!(
        "queue projection replay: {applied} events in {replay:.2} s = {:.0} events/s ({} queues)",
        applied as f64 / replay,
        projection.board().queue_summaries().len()
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // The projection's own fold rate, without the broker: the same events, derived in memory
    // by the server's decision code from the same commands.
    let mut state = interaction_server::partition::PartitionState::default();
    let mut events: Vec<InteractionEvent> = Vec::with_capacity(2 * n);
    for (offset, command) in commands.iter().enumerate() {
        if let interaction_server::partition::Outcome::Emit {
            events: emitted, ..
        } = state.handle(0, offset as i64, command)
        {
            events.extend(emitted);
        }
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut board = queues::board::Board::new();
        for e in &events {
            board.apply(e);
        }
        assert_eq!(board.events_applied(), events.len() as u64);
    }
    let fold = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "queue projection fold (in memory, no broker): {} events in {fold:.3} s = {:.0} events/s",
        events.len(),
        events.len() as f64 / fold
    );
}
