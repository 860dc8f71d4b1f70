//! `cargo bench -p e2e --bench restart [-- N ...]` (default 10000): what a restart of `up`
//! costs after a history of N finished interactions (spread over a year of log time ending two
//! hours ago, so past the eviction window) plus 10,000 live ones (waiting in `chat-inbound`), on
//! Apache Kafka (one local broker, which stays up: the services restart). With them: a chat
//! session for every tenth interaction (ended ones for the history, open ones for the live),
//! and 200 agents who logged in and out N/1000 times over that year and are logged in (not
//! ready) now.
//! For each N it prints seconds from the start of `up` to `/health/ready` (every service),
//! seconds until an interaction submitted then is queued, and `up`'s resident memory; then
//! the growth from the smallest N to the largest. Baseline, same run, same broker: a bare
//! rdkafka consumer reading the whole `interaction.events` from offset 0.
//! Needs `cargo build --release -p switchboard` (the bench runs target/release/switchboard).
//! `BENCH_BROKER=tansu` runs it on Tansu (the no-JVM fallback) instead.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::command::{CommandPayload, InteractionCommand, MediaType, Stop};
use e2e::{TestEnv, free_port, switchboard_bin};
use contract::agent::{AgentEvent, AgentPayload, LoggedIn, LoggedOut, NotReady, Ready};
use contract::chat::{ChatEvent, ChatPayload, ChatRole, MessagePosted, ParticipantJoined, SessionEnded, SessionStarted, Visibility};
use runtime::topics::{AGENT_EVENTS, CHAT_EVENTS, INTERACTION_COMMANDS, INTERACTION_EVENTS};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

const LIVE: usize = 10_000;
const AGENTS: usize = 200;

struct Row {
    history: usize,
    events: usize,
    ready_s: f64,
    queued_s: f64,
    rss_mb: f64,
    raw_read_s: f64,
}

#[tokio::main]
async fn main() {
    let mut sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes.push(10_000);
    }
    let mut rows = Vec::new();
    for &history in &sizes {
        rows.push(one_size(history).await);
        let r = rows.last().unwrap();
        println!(
            "history {:>8} finished + {LIVE} live ({:>8} events): ready after {:>6.1} s, new interaction queued after {:>6.1} s, RSS {:>6.0} MB | baseline raw read of the events {:>5.1} s (ready/raw {:.1}x)",
            r.history, r.events, r.ready_s, r.queued_s, r.rss_mb, r.raw_read_s, r.ready_s / r.raw_read_s.max(0.001)
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        println!(
            "growth from {} to {}: ready x{:.1}, queued x{:.1}, RSS x{:.1}",
            first.history,
            last.history,
            last.ready_s / first.ready_s,
            last.queued_s / first.queued_s,
            last.rss_mb / first.rss_mb
        );
    }
}

/// Whether the bench runs on Tansu (`BENCH_BROKER=tansu`).
fn on_tansu() -> bool {
    std::env::var("BENCH_BROKER").is_ok_and(|b| b == "tansu")
}

/// The broker of one size: the shared Apache Kafka of the tests, or a Tansu of its own.
async fn environment() -> (TestEnv, Option<runtime::broker::TansuBroker>) {
    if !on_tansu() {
        return (TestEnv::start().await.unwrap(), None);
    }
    let dir = e2e::run_dir().unwrap();
    let tansu = runtime::broker::tansu::ensure_installed(None).await.unwrap();
    let broker = runtime::broker::TansuBroker::start(&tansu, &dir.path().join("tansu"), 0).await.unwrap();
    let kafka = runtime::config::KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers().to_owned(),
        topic_prefix: "bench.".into(),
        broker: runtime::broker::BrokerKind::Tansu,
        ..runtime::config::KafkaSettings::default()
    };
    let topics = runtime::topics::Topics::load(None, &kafka.topic_prefix).unwrap();
    topics.ensure(&runtime::kafka::admin(&kafka).unwrap(), &kafka).await.unwrap();
    (TestEnv { kafka, topics, dir }, Some(broker))
}

async fn one_size(history: usize) -> Row {
    let (env, _tansu) = environment().await;
    let data = env.dir.path().join("data");
    let http = free_port();
    let mut up = start_up(&env, &data, http, 1);
    wait_ready(http, Duration::from_secs(300)).await;

    // The history: every interaction submitted; the first `history` stopped again.
    let producer = env.producer();
    let topic = env.topic(INTERACTION_COMMANDS);
    let (chat_topic, agent_topic) = (env.topic(CHAT_EVENTS), env.topic(AGENT_EVENTS));
    let (mut chat_events, mut agent_events) = (0usize, 0usize);
    let total = history + LIVE;
    let mut pending = Vec::new();
    // Tansu 0.6 broke under 50,000 sends in flight (storage errors, then reset connections).
    let in_flight = if on_tansu() { 2_000 } else { 50_000 };
    // The finished history is a year of work in log time, ending two hours ago (past the
    // eviction window, and mostly past the commands topic's 7-day retention, so the command
    // ids it remembers are a week's); the live interactions happen now.
    let now = contract::now_millis();
    let year_ms: i64 = 365 * 24 * 3_600_000;
    let step = year_ms / i64::try_from(history.max(1)).unwrap_or(1);
    let command = |i: usize, payload: CommandPayload| InteractionCommand {
        command_id: format!("restart-{i}-{}", payload.kind()),
        interaction_id: format!("ix-{i}"),
        issued_at: if i < history { now - 2 * 3_600_000 - year_ms + i64::try_from(i).unwrap_or(0) * step } else { now },
        issued_by: "bench".into(),
        payload,
    };
    for i in 0..total {
        let submit = command(i, e2e::submit(MediaType::Chat, "chat-inbound", 0, Default::default()));
        pending.push(send(&producer, &topic, &submit));
        if i < history {
            let stop = command(i, CommandPayload::Stop(Stop { reason: "done".into() }));
            pending.push(send(&producer, &topic, &stop));
        }
        if i % 10 == 0 {
            let at = submit.issued_at;
            for event in chat_session(i, at, i < history) {
                pending.push(send_keyed(&producer, &chat_topic, &event.session_id, &event.encode().unwrap()));
            }
            chat_events += if i < history { 5 } else { 3 };
        }
        if pending.len() >= in_flight {
            for d in pending.drain(..) {
                d.await.unwrap().unwrap();
            }
        }
    }
    // Agents: a day's login, ready and logout, N/1000 times over the year; logged in now.
    let cycles = (history / 1000).max(1);
    for agent in 0..AGENTS {
        let id = format!("agent-{agent:03}");
        for day in 0..cycles {
            let at = now - 2 * 3_600_000 - year_ms + i64::try_from(day).unwrap_or(0) * (year_ms / i64::try_from(cycles).unwrap_or(1));
            for (n, payload) in [logged_in(), AgentPayload::Ready(Ready { media: vec!["chat".into()] }), AgentPayload::LoggedOut(LoggedOut { reason: None })]
                .into_iter()
                .enumerate()
            {
                let event = agent_event(&id, &format!("{day}-{n}"), at + i64::try_from(n).unwrap_or(0) * 3_600_000, payload);
                pending.push(send_keyed(&producer, &agent_topic, &id, &event.encode().unwrap()));
            }
            agent_events += 3;
            if pending.len() >= in_flight {
                for d in pending.drain(..) {
                    d.await.unwrap().unwrap();
                }
            }
        }
        for (n, payload) in [logged_in(), AgentPayload::NotReady(NotReady { media: vec!["chat".into()], reason: "break".into() })].into_iter().enumerate() {
            let event = agent_event(&id, &format!("now-{n}"), now, payload);
            pending.push(send_keyed(&producer, &agent_topic, &id, &event.encode().unwrap()));
        }
        agent_events += 2;
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    println!("  history written: {total} interactions, {chat_events} chat events, {agent_events} agent events");
    let events = total * 2 + history;
    // Decided: the queue projection has every event (Submitted, PlacedInQueue, Stopped).
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let queues: Value = get(http, "/queues").await;
        if queues["events_applied"].as_u64().unwrap_or(0) >= events as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "history never decided: {queues}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And UCS has projected it all (else the restart would measure its leftover backlog):
    // its count of applied records stops moving.
    let mut last = u64::MAX;
    loop {
        let ucs: Value = get(http, "/health/ready/ucs").await;
        let applied = ucs["applied"].as_u64().unwrap_or(0);
        if applied == last {
            break;
        }
        last = applied;
        assert!(Instant::now() < deadline, "UCS never finished projecting: {ucs}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop(&mut up).await;

    let started = Instant::now();
    let mut up = start_up(&env, &data, http, 2);
    wait_ready(http, Duration::from_secs(3600)).await;
    let ready_s = started.elapsed().as_secs_f64();
    let client = e2e::http();
    let response = client
        .post(format!("http://127.0.0.1:{http}/v1/interactions"))
        .json(&serde_json::json!({"media_type": "chat", "queue": "chat-inbound", "properties": {"subject": "after the restart"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["interaction_id"].as_str().unwrap().to_owned();
    loop {
        let r = client.get(format!("http://127.0.0.1:{http}/interactions/{id}")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued_s = started.elapsed().as_secs_f64();
    let rss_mb = rss_mb(up.id().unwrap());
    let queues: Value = get(http, "/queues").await;
    println!("  after the restart: {} interactions live on the board, {} ended and evicted (ids remembered)", queues["live"], queues["evicted"]);
    stop(&mut up).await;
    // The baseline reads what the restart's followers read: interaction, chat and agent events.
    let raw_read_s = e2e::raw_read(&env, &[env.topic(INTERACTION_EVENTS), chat_topic, agent_topic], events + chat_events + agent_events).await;
    Row { history, events: events + chat_events + agent_events, ready_s, queued_s, rss_mb, raw_read_s }
}

fn send_keyed(producer: &runtime::FutureProducer, topic: &str, key: &str, payload: &[u8]) -> rdkafka::producer::DeliveryFuture {
    producer.send_result(FutureRecord::to(topic).key(key).payload(payload)).map_err(|(e, _)| e).unwrap()
}

/// A chat of interaction `i` started at `at`: started, the customer joined and wrote, an agent
/// answered and it ended (history, 5 events); or waiting with the customer's first line (live, 3).
fn chat_session(i: usize, at: i64, ended: bool) -> Vec<ChatEvent> {
    let session = format!("chat-{i}");
    let event = |n: usize, payload: ChatPayload| ChatEvent { event_id: format!("{session}-{n}"), session_id: session.clone(), occurred_at: at + i64::try_from(n).unwrap_or(0) * 1000, payload };
    let posted = |who: &str, text: &str| ChatPayload::MessagePosted(MessagePosted { participant_id: who.into(), text: text.into(), visibility: Visibility::All, client_message_id: None });
    let mut events = vec![
        event(0, ChatPayload::SessionStarted(SessionStarted {
            interaction_id: format!("ix-{i}"),
            customer_name: "Pat".into(),
            customer_email: None,
            subject: Some("my order".into()),
            origin: "web".into(),
            customer_token_sha256: "0".repeat(64),
        })),
        event(1, ChatPayload::ParticipantJoined(ParticipantJoined { participant_id: "customer".into(), role: ChatRole::Customer, display_name: "Pat".into(), agents_only: false })),
        event(2, posted("customer", "where is my order?")),
    ];
    if ended {
        events.push(event(3, posted("agent-001", "it left the warehouse today")));
        events.push(event(4, ChatPayload::SessionEnded(SessionEnded { ended_by: "agent-001".into(), reason: "done".into() })));
    }
    events
}

fn logged_in() -> AgentPayload {
    AgentPayload::LoggedIn(LoggedIn { place: None, skills: Default::default(), capacity: [("chat".to_owned(), 2)].into_iter().collect() })
}

fn agent_event(agent: &str, n: &str, at: i64, payload: AgentPayload) -> AgentEvent {
    AgentEvent { event_id: format!("{agent}-{n}"), agent_id: agent.into(), occurred_at: at, causation_id: None, payload }
}

fn send(producer: &runtime::FutureProducer, topic: &str, command: &InteractionCommand) -> rdkafka::producer::DeliveryFuture {
    let payload = command.encode().unwrap();
    producer
        .send_result(FutureRecord::to(topic).key(&command.interaction_id).payload(payload.as_slice()))
        .map_err(|(e, _)| e)
        .unwrap()
}

fn start_up(env: &TestEnv, data: &std::path::Path, http: u16, run: u32) -> tokio::process::Child {
    let log = std::fs::File::create(env.dir.path().join(format!("up-{run}.log"))).unwrap();
    tokio::process::Command::new(switchboard_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["up", "--http", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "info")
        .env("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS", &env.kafka.bootstrap_servers)
        .env("SWITCHBOARD_KAFKA__TOPIC_PREFIX", &env.kafka.topic_prefix)
        .env("SWITCHBOARD_KAFKA__BROKER", if on_tansu() { "tansu" } else { "kafka" })
        .env("SWITCHBOARD_WEB_API__RATE_PER_MINUTE", "1000000")
        .env("SWITCHBOARD_WEB_API__RATE_BURST", "100000")
        .envs(e2e::process_env(env.dir.path()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn get(http: u16, path: &str) -> Value {
    match e2e::http().get(format!("http://127.0.0.1:{http}{path}")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn wait_ready(http: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = e2e::http().get(format!("http://127.0.0.1:{http}/health/ready")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "`up` not ready within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(up: &mut tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(up.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), up.wait()).await.unwrap().unwrap();
    assert!(status.success(), "`up` exited with {status}");
}

/// Resident memory of a process (VmRSS), in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}
