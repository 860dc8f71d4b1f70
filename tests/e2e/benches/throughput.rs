//! `cargo bench -p e2e --bench throughput [-- N]` (release: `cargo bench` builds optimised):
//! figures on Apache Kafka (one local broker), each beside a raw-rdkafka baseline measured in
//! the same run on the same broker, and the ratio.
//! - commands/s through the Interaction Server (transactions on): N Submit commands are on the
//!   topic before it starts; timed from start until all 2N events are visible to a
//!   `read_committed` reader. Baseline: a bare rdkafka pipe that consumes the same N commands
//!   and produces two records of the same size per command (idempotent producer, acks=all),
//!   timed until a reader has read all 2N;
//! - the queue projection's replay of those 2N events from offset 0 until caught up.
//!   Baseline: a bare rdkafka consumer reading the same topic from offset 0 to its end;
//! - the fold alone, in memory, without the broker.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::command::{CommandPayload, InteractionCommand, MediaType, Submit};
use contract::event::InteractionEvent;
use e2e::TestEnv;
use runtime::CancellationToken;
use runtime::topics::INTERACTION_COMMANDS;
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
        runtime::broker::kafka::KAFKA_VERSION,
        env.kafka.bootstrap_servers
    );

    let producer = env.producer();
    let topic = env.topic(INTERACTION_COMMANDS);
    let started = Instant::now();
    let mut pending: Vec<rdkafka::producer::DeliveryFuture> = Vec::with_capacity(n);
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
        if pending.len() >= ACK_CHUNK {
            await_acks(&mut pending).await;
        }
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
    await_acks(&mut pending).await;
    let produce = started.elapsed().as_secs_f64();
    println!(
        "produced {n} commands in {produce:.2} s ({:.0} commands/s, idempotent producer, acks=all)",
        n as f64 / produce
    );

    // Baseline: the same work with nothing of ours in it.
    let raw_pipe = raw_pipe(&env, &topic, n).await;
    println!("baseline (raw rdkafka pipe): {n} commands consumed -> {} records produced and read back in {raw_pipe:.2} s = {:.0} commands/s", 2 * n, n as f64 / raw_pipe);

    let started = Instant::now();
    let seen = env.follow_interaction_events();
    let (shutdown, server) = env.spawn_interaction_server();
    let expected = 2 * n; // Submitted + PlacedInQueue
    let mut first: Option<(Instant, usize)> = None;
    loop {
        let count = seen.lock().unwrap().len();
        if count >= expected {
            break;
        }
        if first.is_none() && count > 0 {
            first = Some((Instant::now(), count));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "interaction server too slow"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let through = started.elapsed().as_secs_f64();
    let (first_at, first_count) = first.unwrap_or((started, 0));
    let steady = (expected - first_count) as f64 / 2.0 / first_at.elapsed().as_secs_f64().max(1e-9);
    println!(
        "interaction-server: {n} commands -> {expected} events in {through:.2} s from its start = {:.0} commands/s; \
         {:.2} s to take its partitions on (fence, rebuild) and write the first batch, then {steady:.0} commands/s \
         ({:.0} events/s) = {:.0} % of the raw pipe",
        n as f64 / through,
        first_at.duration_since(started).as_secs_f64(),
        2.0 * steady,
        100.0 * steady / (n as f64 / raw_pipe)
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();

    let raw_replay = e2e::raw_read(&env, &[env.topic(runtime::topics::INTERACTION_EVENTS)], expected).await;
    println!("baseline (raw rdkafka consumer): {expected} events read from offset 0 in {raw_replay:.2} s = {:.0} events/s", expected as f64 / raw_replay);

    let projection = queues::projector::Projection::new(3_600_000);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = {
        let (kafka, topics, token, p) = (
            env.kafka.clone(),
            env.topics.clone(),
            shutdown.clone(),
            projection.clone(),
        );
        tokio::spawn(async move { queues::projector::run(&kafka, &topics, p, None, token).await })
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
        "queue projection replay: {applied} events in {replay:.2} s = {:.0} events/s ({} queues); {:.0} % of the raw consumer",
        applied as f64 / replay,
        projection.board().queue_summaries().len(),
        100.0 * raw_replay / replay
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

/// librdkafka holds at most 100k records unsent: the producing loops wait for their acks in
/// chunks of this many.
const ACK_CHUNK: usize = 50_000;

/// Waits for every pending delivery (each must succeed) and empties `pending`.
async fn await_acks(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) {
    for p in pending.drain(..) {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Consumes `n` records of `from` and produces two records of the same size for each, as fast
/// as rdkafka goes, then reads them back: the floor under the Interaction Server's figure.
async fn raw_pipe(env: &TestEnv, from: &str, n: usize) -> f64 {
    use rdkafka::Message as _;
    use rdkafka::consumer::Consumer as _;
    let to = env.topic(runtime::topics::DEAD_LETTER);
    let started = Instant::now();
    let reader = runtime::kafka::reader(&env.kafka).unwrap();
    runtime::kafka::assign_all(&reader, from, env.topics.partitions(INTERACTION_COMMANDS).unwrap(), rdkafka::Offset::Beginning).unwrap();
    let producer = env.producer();
    let mut pending: Vec<rdkafka::producer::DeliveryFuture> = Vec::with_capacity(2 * n);
    let mut read = 0;
    while read < n {
        match reader.recv().await {
            Ok(m) => {
                read += 1;
                let key = m.key().unwrap_or_default().to_vec();
                let payload = m.payload().unwrap_or_default().to_vec();
                if pending.len() >= ACK_CHUNK {
                    await_acks(&mut pending).await;
                }
                for _ in 0..2 {
                    pending.push(producer.send_result(FutureRecord::to(&to).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap());
                }
            }
            Err(e) if runtime::kafka::is_partition_end(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    drop(reader);
    await_acks(&mut pending).await;
    let reader = runtime::kafka::reader(&env.kafka).unwrap();
    runtime::kafka::assign_all(&reader, &to, 1, rdkafka::Offset::Beginning).unwrap();
    let mut back = 0;
    while back < 2 * n {
        match reader.recv().await {
            Ok(_) => back += 1,
            Err(e) if runtime::kafka::is_partition_end(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let _ = reader.unassign();
    started.elapsed().as_secs_f64()
}
