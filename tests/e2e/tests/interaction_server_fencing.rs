//! Two `switchboard run interaction-server` processes in one consumer group on Apache Kafka,
//! under a stream of commands:
//! 1. SIGKILL one: the other takes its partitions (and fences its transactional ids);
//! 2. a replacement joins; then one is SIGSTOPped until its partitions have moved, and
//!    SIGCONTed: its late writes are fenced or aborted (asserted from its log, so the test
//!    cannot pass without a zombie write having been refused), and it lives on (a refused
//!    transaction costs the batch, not the process);
//! 3. the verdict is read from the log: `interaction.events`, read `read_committed`, equals
//!    event for event per partition what an uninterrupted run derives from
//!    `interaction.commands` (the pure `PartitionState`, fed the commands in partition order).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::command::{InteractionCommand, MediaType};
use contract::event::InteractionEvent;
use e2e::{TestEnv, free_port, spawn_service};
use interaction_server::partition::{Outcome, PartitionState};
use rdkafka::Message;

fn count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_over_and_a_zombie_is_fenced() {
    let env = TestEnv::start().await.unwrap();
    let mut settings = env.settings(&env.dir.path().join("data"));
    // Fast failure detection, and transactions held open long enough that a stopped member
    // is caught holding one.
    settings.kafka.consumer.insert("session.timeout.ms".into(), "6000".into());
    settings.kafka.consumer.insert("heartbeat.interval.ms".into(), "500".into());
    settings.interaction_server.transaction_linger_ms = 1000;
    let spawn = |name: &str, settings: &mut switchboard::settings::Settings| {
        e2e::listen_on(settings, free_port());
        let config = env.write_config(settings, &format!("{name}.toml"));
        let log = env.dir.path().join(format!("{name}.log"));
        (spawn_service(&config, "interaction-server", &log), log)
    };
    let (mut a, a_log) = spawn("a", &mut settings);
    let (mut b, b_log) = spawn("b", &mut settings);
    wait_until("both members in the group", Duration::from_secs(60), || {
        count(&a_log, "partitions assigned") > 0 && count(&b_log, "partitions assigned") > 0
    })
    .await;

    // The stream: new interactions, and every fifth command a repeat Submit (rejected: the
    // outcome depends on the state the owner rebuilt).
    let client = runtime::commands::CommandClient::new(&env.kafka, &env.topics, "fencing-test").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let target = if i % 5 == 4 { i - 3 } else { i };
                let command = client.command(
                    &format!("fence-{target}"),
                    e2e::submit(MediaType::Email, "inbound", 1, BTreeMap::new()),
                );
                client.send(&command).await.unwrap();
                i += 1;
                sent.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // A member takes a partition on (fencing, rebuild) at its first command there.
    wait_until("commands flowing to both members", Duration::from_secs(60), || {
        sent.load(Ordering::Relaxed) > 200 && count(&a_log, "partition state rebuilt") > 0 && count(&b_log, "partition state rebuilt") > 0
    })
    .await;

    // 1. A crash: B takes A's partitions.
    let b_assigned = count(&b_log, "partition state rebuilt");
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    wait_until("B to take over A's partitions", Duration::from_secs(60), || count(&b_log, "partition state rebuilt") > b_assigned).await;

    // 2. A replacement joins; then B stalls until its partitions move, and wakes up.
    let (mut c, c_log) = spawn("c", &mut settings);
    wait_until("the replacement assigned partitions", Duration::from_secs(60), || count(&c_log, "partition state rebuilt") > 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c_assigned = count(&c_log, "partition state rebuilt");
    signal(&b, nix::sys::signal::Signal::SIGSTOP);
    wait_until("B's partitions to move to the replacement", Duration::from_secs(60), || {
        count(&c_log, "partition state rebuilt") > c_assigned
    })
    .await;
    signal(&b, nix::sys::signal::Signal::SIGCONT);
    wait_until("the zombie's late writes to be fenced or aborted", Duration::from_secs(60), || {
        count(&b_log, "transaction aborted") > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A refused batch costs the zombie that batch, not its life: it rejoins the group and
    // goes on with what it is given.
    if let Some(status) = b.try_wait().unwrap() {
        let log = std::fs::read_to_string(&b_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        panic!("B ended ({status}) after its late transaction was refused; its log ends:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);

    // 3. The verdict, from the log. What an uninterrupted run derives, per partition:
    let commands_topic = env.topic(runtime::topics::INTERACTION_COMMANDS);
    let events_topic = env.topic(runtime::topics::INTERACTION_EVENTS);
    let commands = env.read_all(&commands_topic);
    assert_eq!(commands.len(), sent);
    let mut states: BTreeMap<i32, PartitionState> = BTreeMap::new();
    let mut expected: BTreeMap<i32, Vec<InteractionEvent>> = BTreeMap::new();
    for m in &commands {
        let command = InteractionCommand::decode(m.payload().unwrap()).unwrap();
        let state = states.entry(m.partition()).or_default();
        if let Outcome::Emit { events, .. } = state.handle(m.partition(), m.offset(), &command) {
            expected.entry(m.partition()).or_default().extend(events);
        }
    }
    let expected_total: usize = expected.values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    let actual = loop {
        let mut actual: BTreeMap<i32, Vec<InteractionEvent>> = BTreeMap::new();
        for m in env.read_all(&events_topic) {
            actual.entry(m.partition()).or_default().push(InteractionEvent::decode(m.payload().unwrap()).unwrap());
        }
        if actual.values().map(Vec::len).sum::<usize>() >= expected_total || Instant::now() > deadline {
            break actual;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (partition, events) in &expected {
        let got = actual.get(partition).cloned().unwrap_or_default();
        assert_eq!(got.len(), events.len(), "partition {partition}: {} events, an uninterrupted run derives {}", got.len(), events.len());
        for (i, (g, e)) in got.iter().zip(events).enumerate() {
            assert_eq!(g, e, "partition {partition}, event {i} differs from an uninterrupted run");
        }
    }
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let zombie = std::fs::read_to_string(&b_log).unwrap();
    let refusal = zombie.lines().find(|l| l.contains("transaction aborted")).unwrap_or_default();
    eprintln!("{sent} commands, {expected_total} events, equal per partition to an uninterrupted run; the zombie: {refusal}");
    let _ = c.start_kill();
    let _ = b.start_kill();
}
