//! `cargo build --release -p switchboard && cargo bench -p e2e --bench chat [-- SESSIONS [RATE [SECONDS]]]`
//!
//! The chat server as a release process on a local Apache Kafka, with the Interaction
//! Server and the desk: SESSIONS chats (default 500) are started over HTTP and each gets two
//! WebSockets held open, the customer's and an agent-side one (a supervisor's desk token, which
//! the server lets into any chat: the same agents' stream an agent reads, without routing 500
//! chats to scripted agents first). Then customers send RATE messages/s in all (default: 50,
//! then 150 — the published Genesys Chat Server 8.1 figures of 50 messages/s per server, peak
//! 150, with 500 concurrent sessions — then 500 to find the ceiling) for SECONDS each (default
//! 20). Prints sessions held, messages/s delivered, and the customer → agent delivery latency
//! (frame sent → event received on the agent's socket) p50 / p99 / max. Baseline, measured
//! first on the same broker for each rate: raw rdkafka, one produce→consume hop at that rate
//! (a chat message is one: the server writes it to chat.events and serves it from there).
#![allow(clippy::unwrap_used, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use desk::users::Role;
use e2e::chat::{Socket, connect, read_until, say, send};
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Reads an agent-side socket, recording for each customer message `bench <t>` the latency
/// against `epoch` (microseconds).
async fn listen(mut socket: Socket, epoch: Instant, latencies: Arc<Mutex<Vec<u128>>>, received: Arc<AtomicU64>) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        let sent_at = frame["event"]["payload"]["MessagePosted"]["text"].as_str().and_then(|t| t.strip_prefix("bench ")).and_then(|t| t.parse::<u128>().ok());
        if let Some(sent_at) = sent_at {
            let now = epoch.elapsed().as_micros();
            latencies.lock().await.push(now.saturating_sub(sent_at));
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let sessions = args.next().unwrap_or(500) as usize;
    let rates: Vec<u64> = match args.next() {
        Some(rate) => vec![rate],
        None => vec![50, 150, 500],
    };
    let seconds = args.next().unwrap_or(20);

    let env = TestEnv::start().await.unwrap();
    println!("broker: Apache Kafka {} at {}", runtime::broker::kafka::KAFKA_VERSION, env.kafka.bootstrap_servers);
    let mut baselines = BTreeMap::new();
    for &rate in &rates {
        let hop = e2e::raw_hop_latency(&env, rate, seconds.min(10)).await;
        let (p50, p99) = (e2e::quantile(&hop, 0.5), e2e::quantile(&hop, 0.99));
        println!("baseline (raw rdkafka, one produce->consume hop at {rate}/s): p50 {p50:.1} ms, p99 {p99:.1} ms");
        baselines.insert(rate, (p50, p99));
    }
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    write_users(&dir.join("desk-users.toml"), vec![("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);
    let mut settings = env.settings(&dir.join("data"));
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.chat.max_frames_per_window = 10_000;
    settings.chat.idle_timeout_s = 0;
    // One client address opens every chat here.
    settings.web_api.rate_burst = 1_000_000;
    settings.web_api.rate_per_minute = 1_000_000;
    let services = env.spawn_services(&mut settings, &[("desk", free_port()), ("chat-server", free_port())]);
    let http = e2e::http();
    wait_ready(&http, &services.url("desk", "/health/ready/desk")).await;
    wait_ready(&http, &services.url("chat-server", "/health/ready/chat-server")).await;
    let port = services.port("chat-server");
    let sue = DeskClient::new(&http, services.port("desk")).login("sue").await;

    eprintln!("starting {sessions} chats, two WebSockets each ...");
    let started = Instant::now();
    let mut customers = Vec::with_capacity(sessions);
    let mut agent_sides = Vec::with_capacity(sessions);
    // Started 16 at a time, as customers arrive independently.
    for chunk in (0..sessions).collect::<Vec<_>>().chunks(16) {
        let mut opening = tokio::task::JoinSet::new();
        for &n in chunk {
            let (http, sue) = (http.clone(), sue.clone());
            opening.spawn(async move {
                let (session, token) = e2e::chat::start(&http, port, json!({"name": format!("Customer {n}")})).await;
                let mut customer = connect(port, &session, &token, None).await.unwrap();
                send(&mut customer, json!({"type": "resume", "after": 0})).await;
                // The agent side can join once the floor has the chat interaction.
                let agent = loop {
                    match connect(port, &session, &sue, None).await {
                        Ok(socket) => break socket,
                        Err(403) => tokio::time::sleep(Duration::from_millis(20)).await,
                        Err(status) => panic!("agent side refused: {status}"),
                    }
                };
                (customer, agent)
            });
        }
        while let Some(opened) = opening.join_next().await {
            let (customer, agent) = opened.unwrap();
            customers.push(customer);
            agent_sides.push(agent);
        }
        eprintln!("  {} chats open ({:.1} s)", customers.len(), started.elapsed().as_secs_f64());
    }
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    for mut agent in agent_sides {
        send(&mut agent, json!({"type": "resume", "after": 0})).await;
        read_until(&mut agent, |v| v["event"]["payload"]["ParticipantJoined"]["participant_id"] == "sue").await;
        tokio::spawn(listen(agent, epoch, latencies.clone(), received.clone()));
    }
    // Customers' own echoes are not needed; drain them so the server never waits on us.
    let customers: Vec<Arc<Mutex<Socket>>> = customers.into_iter().map(|c| Arc::new(Mutex::new(c))).collect();
    println!("chat: {sessions} sessions held ({} WebSockets) after {:.1} s", sessions * 2, started.elapsed().as_secs_f64());

    let mut sequence = 0u64;
    for rate in rates {
        latencies.lock().await.clear();
        received.store(0, Ordering::Relaxed);
        let total = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let phase = Instant::now();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for m in 0..total {
            ticker.tick().await;
            let customer = customers[(m as usize) % sessions].clone();
            sequence += 1;
            let id = format!("m{sequence}");
            let text = format!("bench {}", epoch.elapsed().as_micros());
            tokio::spawn(async move {
                let mut socket = customer.lock().await;
                say(&mut socket, &id, &text).await;
                // Drain what the server sent this customer so far (its own echoes).
                while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), socket.next()).await {}
            });
        }
        let sent_in = phase.elapsed();
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivered_in = phase.elapsed();
        let mut l = latencies.lock().await.clone();
        l.sort_unstable();
        let got = l.len() as u64;
        if l.is_empty() {
            println!("chat at {rate} msg/s: nothing delivered");
            continue;
        }
        println!(
            "chat at {rate} msg/s offered over {sessions} sessions: {got}/{total} delivered in {:.1} s (sending took {:.1} s) = {:.1} msg/s; customer → agent latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            delivered_in.as_secs_f64(),
            sent_in.as_secs_f64(),
            got as f64 / delivered_in.as_secs_f64(),
            percentile(&l, 0.50) as f64 / 1000.0,
            percentile(&l, 0.99) as f64 / 1000.0,
            *l.last().unwrap() as f64 / 1000.0,
        );
        let (base50, base99) = baselines[&rate];
        println!(
            "  against the raw hop at {rate}/s: p50 {:.1}x, p99 {:.1}x",
            percentile(&l, 0.50) as f64 / 1000.0 / base50.max(0.1),
            percentile(&l, 0.99) as f64 / 1000.0 / base99.max(0.1)
        );
    }
    drop(customers);
    drop(services);
    stop_server.cancel();
    let _ = server.await;
}
