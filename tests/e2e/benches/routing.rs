//! `cargo bench -p e2e --bench routing [-- N [RATE [BURST]]]`: the router on Apache Kafka (one local
//! broker), beside a raw-rdkafka baseline measured first in the same run: one produce→consume
//! hop at the same rate (submitted → offered is several hops: command, event, router, command).
//! One warm-up interaction is routed before the clock starts (a fresh producer's first records
//! wait for its connection and producer id; see the `produce_latency` bench).
//! - N interactions submitted at RATE per second (default 1000 at 100/s) to 20 ready agents
//!   with room for all of them; latency from `Submitted` to `OfferedToAgent` p50 / p99 / max,
//!   and routing decisions (offers) per second over the run. The Interaction Server stamps each
//!   event with its command's `issued_at` (replays must derive the same events), so this spans
//!   the Submit's issue to the router's decision (its Offer command's issue): the last hop,
//!   Offer → `OfferedToAgent`, is not in it. The router's producer lingers 1 ms
//!   (`router.linger_ms`). `SWITCHBOARD_BENCH_TRANSACTIONS=false` runs the Interaction Server
//!   without transactions, for comparison.
//! - saturation: then BURST interactions (default 10,000) submitted at once; decisions/s from
//!   the first one's `Submitted` to the last one's `OfferedToAgent`. Baseline: BURST records
//!   through one raw produce→consume hop at full speed, records/s.
//! - the pure decision: `strategy::plan` over a floor of N waiting interactions, offers/s.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::agent::{AgentEvent, AgentPayload, LoggedIn, Ready};
use contract::command::MediaType;
use contract::event::{EventPayload, InteractionEvent};
use e2e::TestEnv;
use runtime::commands::CommandClient;
use runtime::CancellationToken;
use rdkafka::producer::FutureRecord;

const WORKFLOW: &str = r#"
offer_timeout_s = 600
[[queue]]
name = "inbound"
steps = [{ type = "route", skills = { english = 1 }, policy = "longest_idle" }]
"#;

fn agent_events(n: usize, at: i64) -> Vec<AgentEvent> {
    (0..n)
        .flat_map(|a| {
            let id = format!("bench-agent-{a}");
            [
                AgentPayload::LoggedIn(LoggedIn {
                    place: None,
                    skills: BTreeMap::from([("english".to_owned(), 3)]),
                    capacity: BTreeMap::from([("email".to_owned(), 100_000)]),
                }),
                AgentPayload::Ready(Ready { media: vec!["email".into()] }),
            ]
            .into_iter()
            .enumerate()
            .map(move |(i, payload)| AgentEvent {
                event_id: format!("{id}-{i}"),
                agent_id: id.clone(),
                occurred_at: at + i as i64,
                causation_id: None,
                payload,
            })
        })
        .collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Waits until the floor shows at least `count` interactions offered (the warm-up one included).
async fn wait_offered(floor: &floor::SharedFloor, count: usize, deadline: Instant) {
    loop {
        let offered = floor.read().board().interactions().filter(|i| i.offer.is_some()).count();
        if offered >= count {
            return;
        }
        assert!(Instant::now() < deadline, "only {offered} of {count} offered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let n = args.next().unwrap_or(1000);
    let rate = args.next().unwrap_or(100);
    let burst = args.next().unwrap_or(10_000);
    let env = TestEnv::start().await.unwrap();
    println!("broker: Apache Kafka {} at {}", runtime::broker::kafka::KAFKA_VERSION, env.kafka.bootstrap_servers);
    let baseline = e2e::raw_hop_latency(&env, rate as u64, (n as u64 / rate.max(1) as u64).clamp(5, 20)).await;
    let (base50, base99) = (e2e::quantile(&baseline, 0.5), e2e::quantile(&baseline, 0.99));
    println!("baseline (raw rdkafka, one produce->consume hop at {rate}/s): p50 {base50:.1} ms, p99 {base99:.1} ms");
    let raw_burst = burst as f64 / e2e::raw_burst_hop(&env, burst).await;
    println!("baseline (raw rdkafka, {burst} records through one produce->consume hop at once): {raw_burst:.0} records/s");
    let (stop_server, server) = env.spawn_interaction_server();
    let producer = env.producer();
    for e in agent_events(20, contract::now_millis()) {
        let topic = env.topic(runtime::topics::AGENT_EVENTS);
        producer
            .send(FutureRecord::to(&topic).key(&e.agent_id).payload(&e.encode().unwrap()), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let floor = floor::SharedFloor::new(20_000, 3_600_000);
    let shutdown = CancellationToken::new();
    let (kafka, topics) = (env.kafka.clone(), env.topics.clone());
    let (f, token) = (floor.clone(), shutdown.clone());
    let follower = tokio::spawn(async move { floor::projector::run(&kafka, &topics, f, floor::projector::Library::Skip, None, token).await });
    let workflow = router::workflow::Workflow::from_toml(WORKFLOW).unwrap();
    let loaded = router::LoadedWorkflow { workflow: workflow.clone(), model: None, evaluation: None, source: "bench".into() };
    let settings = router::RouterSettings { tick_ms: 50, ..Default::default() };
    let service = router::Router::new(&env.kafka, &env.topics, &settings, loaded, floor.clone());
    let token = shutdown.clone();
    let routing = tokio::spawn(async move { service.run(token).await });

    let client = CommandClient::new(&env.kafka, &env.topics, "bench").unwrap();
    let warm = client.command(
        "bench-warm",
        e2e::submit(MediaType::Email, "inbound", 0, BTreeMap::new()),
    );
    client.send(&warm).await.unwrap();
    while floor.read().board().interactions().filter(|i| i.offer.is_some()).count() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut sends = Vec::new();
    for i in 0..n {
        let target = started + interval * i as u32;
        tokio::time::sleep_until(target.into()).await;
        let command = client.command(
            &format!("bench-{i}"),
            e2e::submit(MediaType::Email, "inbound", (i % 3) as i32, BTreeMap::new()),
        );
        let client = client.clone();
        sends.push(tokio::spawn(async move { client.send(&command).await.unwrap() }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    wait_offered(&floor, n + 1, deadline).await;
    // Saturation: a burst the router must work through.
    let mut sends = Vec::with_capacity(burst);
    for i in 0..burst {
        let command = client.command(&format!("burst-{i}"), e2e::submit(MediaType::Email, "inbound", 0, BTreeMap::new()));
        let client = client.clone();
        sends.push(tokio::spawn(async move { client.send(&command).await.unwrap() }));
    }
    for s in sends {
        s.await.unwrap();
    }
    wait_offered(&floor, n + burst + 1, deadline).await;
    shutdown.cancel();
    routing.await.unwrap().unwrap();
    follower.await.unwrap().unwrap();
    stop_server.cancel();
    server.await.unwrap().unwrap();

    let events = env.read_decoded::<InteractionEvent>(&env.topic(runtime::topics::INTERACTION_EVENTS));
    let mut submitted: HashMap<&str, i64> = HashMap::new();
    let mut offered: HashMap<&str, i64> = HashMap::new();
    for (_, _, e) in &events {
        match &e.payload {
            EventPayload::Submitted(_) => {
                submitted.insert(&e.interaction_id, e.occurred_at);
            }
            EventPayload::OfferedToAgent(_) => {
                offered.entry(&e.interaction_id).or_insert(e.occurred_at);
            }
            _ => {}
        }
    }
    println!("events read back: {} ({} submitted, {} offered)", events.len(), submitted.len(), offered.len());
    let is_burst = |id: &str| id.starts_with("burst-");
    let burst_first = submitted.iter().filter(|(id, _)| is_burst(id)).map(|(_, at)| *at).min().unwrap_or(0);
    let burst_last = offered.iter().filter(|(id, _)| is_burst(id)).map(|(_, at)| *at).max().unwrap_or(0);
    let burst_offers = offered.keys().filter(|id| is_burst(id)).count();
    let burst_rate = burst_offers as f64 / ((burst_last - burst_first) as f64 / 1000.0).max(1e-9);
    println!(
        "routing at saturation: {burst} interactions at once: {burst_offers} offers in {:.2} s = {burst_rate:.0} decisions/s = {:.0} % of the raw hop's records/s",
        (burst_last - burst_first) as f64 / 1000.0,
        100.0 * burst_rate / raw_burst
    );
    let mut latencies: Vec<i64> = offered.iter().filter(|(id, _)| **id != "bench-warm" && !is_burst(id)).map(|(id, at)| at - submitted[id]).collect();
    latencies.sort_unstable();
    let first = submitted.iter().filter(|(id, _)| !is_burst(id)).map(|(_, at)| *at).min().unwrap_or(0);
    let last = offered.iter().filter(|(id, _)| !is_burst(id)).map(|(_, at)| *at).max().unwrap_or(0);
    println!(
        "routing on the broker: {n} interactions at {rate}/s to 20 agents: {} offers in {:.2} s = {:.0} decisions/s; \
         submitted -> offered p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        (last - first) as f64 / 1000.0,
        latencies.len() as f64 / ((last - first) as f64 / 1000.0).max(1e-9),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );

    println!(
        "submitted -> offered against the raw hop: p50 {:.1}x, p99 {:.1}x",
        percentile(&latencies, 0.5) as f64 / base50.max(0.1),
        percentile(&latencies, 0.99) as f64 / base99.max(0.1)
    );

    // The decision alone: a floor of n waiting interactions and 20 agents, planned in memory.
    let mut f = floor::Floor::new(20_000, 3_600_000);
    for e in agent_events(20, 0) {
        f.apply_agent_event(&e);
    }
    for (_, _, e) in events.iter().filter(|(_, _, e)| !is_burst(&e.interaction_id) && matches!(e.payload, EventPayload::Submitted(_) | EventPayload::PlacedInQueue(_))) {
        f.apply_interaction_event(e);
    }
    let started = Instant::now();
    let planned = router::strategy::plan(&f, &workflow, None, &router::strategy::Pending::default(), contract::now_millis());
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "strategy::plan in memory: {} offers for {n} waiting interactions in {:.1} ms = {:.0} decisions/s",
        planned.len(),
        seconds * 1000.0,
        planned.len() as f64 / seconds.max(1e-9)
    );
}
