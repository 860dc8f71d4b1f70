//! The Interaction Server killed (SIGKILL) and restarted while commands stream in: afterwards
//! `interaction.events` holds exactly the events an uninterrupted run writes, per partition and
//! in order: none lost, none duplicated. Checked from the log on a real broker.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use contract::command::*;
use contract::event::InteractionEvent;
use e2e::{TestEnv, switchboard_bin};
use interaction_server::partition::{Outcome, PartitionState};
use runtime::topics::{INTERACTION_COMMANDS, INTERACTION_EVENTS};

const INTERACTIONS: usize = 250;

fn commands() -> Vec<InteractionCommand> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut cmd = |id: &str, by: &str, payload| {
        n += 1;
        InteractionCommand {
            command_id: format!("cmd-{n}"),
            interaction_id: id.to_owned(),
            issued_at: 1_700_000_000_000 + n,
            issued_by: by.to_owned(),
            payload,
        }
    };
    for i in 0..INTERACTIONS {
        let id = format!("ix-{i}");
        let agent = format!("agent:{}", i % 7);
        out.push(cmd(
            &id,
            "web-api",
            CommandPayload::Submit(Submit {
                media_type: MediaType::ALL[i % MediaType::ALL.len()],
                origin: "e2e".into(),
                target_queue: format!("q{}", i % 3),
                priority: (i % 4) as i32,
                properties: BTreeMap::new(),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            }),
        ));
        out.push(cmd(
            &id,
            "router",
            CommandPayload::Offer(Offer {
                agent_id: agent.clone(),
                timeout_ms: 30_000,
            }),
        ));
        if i % 5 == 0 {
            // Invalid: someone else accepts. Must become a rejection, not vanish.
            out.push(cmd(
                &id,
                "agent:x",
                CommandPayload::AcceptOffer(AgentRef {
                    agent_id: "agent:x".into(),
                }),
            ));
        }
        out.push(cmd(
            &id,
            &agent,
            CommandPayload::AcceptOffer(AgentRef {
                agent_id: agent.clone(),
            }),
        ));
        out.push(cmd(
            &id,
            &agent,
            CommandPayload::Stop(Stop {
                reason: "done".into(),
            }),
        ));
    }
    out
}

fn start_server(env: &TestEnv, run: usize) -> tokio::process::Child {
    let log = std::fs::File::create(env.dir.path().join(format!("interaction-server-{run}.log")))
        .unwrap();
    tokio::process::Command::new(switchboard_bin())
        .args(["run", "interaction-server", "--http", "127.0.0.1:0"])
        .args(["--bootstrap-servers", &env.kafka.bootstrap_servers])
        .args(["--topic-prefix", &env.kafka.topic_prefix])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What an uninterrupted server writes for the commands as they sit on the topic.
fn expected_log(env: &TestEnv) -> HashMap<i32, Vec<InteractionEvent>> {
    let mut states: HashMap<i32, PartitionState> = HashMap::new();
    let mut expected: HashMap<i32, Vec<InteractionEvent>> = HashMap::new();
    for (p, offset, command) in
        env.read_decoded::<InteractionCommand>(&env.topic(INTERACTION_COMMANDS))
    {
        if let Outcome::Emit { events, .. } =
            states.entry(p).or_default().handle(p, offset, &command)
        {
            expected.entry(p).or_default().extend(events);
        }
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let env = TestEnv::start().await.unwrap();
    let commands = commands();
    let total = commands.len();
    let mut server = start_server(&env, 1);

    let producer = env.producer();
    let feeder = {
        let env_kafka = env.kafka.clone();
        let commands = commands.clone();
        let topic = env.topic(INTERACTION_COMMANDS);
        tokio::spawn(async move {
            let producer = runtime::kafka::producer(&env_kafka).unwrap();
            for chunk in commands.chunks(50) {
                let sends: Vec<_> = chunk
                    .iter()
                    .map(|c| {
                        let payload = contract::AvroMessage::encode(c).unwrap();
                        let key = c.interaction_id.clone();
                        let topic = topic.clone();
                        let producer = producer.clone();
                        async move {
                            producer
                                .send(
                                    rdkafka::producer::FutureRecord::to(&topic)
                                        .key(&key)
                                        .payload(&payload),
                                    Duration::from_secs(10),
                                )
                                .await
                                .map_err(|(e, _)| e)
                                .unwrap();
                        }
                    })
                    .collect();
                futures::future::join_all(sends).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    drop(producer);

    // Kill it twice while commands are still arriving, each time once it has written a share.
    // (Events outnumber commands about 2:1, so these shares fall mid-stream.)
    for (run, share) in [(2, 0.4), (3, 1.2)] {
        let threshold = (total as f64 * share) as i64;
        env.wait_for(
            "events to be written before the kill",
            Duration::from_secs(120),
            || env.events_written() >= threshold,
        )
        .await;
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        server = start_server(&env, run);
    }
    feeder.await.unwrap();

    let expected = expected_log(&env);
    let expected_total: usize = expected.values().map(Vec::len).sum();
    env.wait_for(
        "every command to be reflected",
        Duration::from_secs(180),
        || env.events_written() >= expected_total as i64,
    )
    .await;
    // Give a duplicate, if one were coming, the chance to land before checking.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_kill().unwrap();

    let mut actual: HashMap<i32, Vec<InteractionEvent>> = HashMap::new();
    for (p, _, event) in env.read_decoded::<InteractionEvent>(&env.topic(INTERACTION_EVENTS)) {
        actual.entry(p).or_default().push(event);
    }
    let actual_total: usize = actual.values().map(Vec::len).sum();
    assert_eq!(
        actual_total, expected_total,
        "events in the log vs. events expected"
    );
    for (p, events) in &expected {
        assert_eq!(
            actual.get(p),
            Some(events),
            "partition {p} differs from an uninterrupted run"
        );
    }
    // Every command produced exactly one complete event set.
    let command_ids: HashSet<_> = commands.iter().map(|c| c.command_id.clone()).collect();
    let mut sets: HashMap<&str, Vec<i32>> = HashMap::new();
    for e in actual.values().flatten() {
        sets.entry(&e.causation_id).or_default().push(e.index);
    }
    assert_eq!(sets.len(), command_ids.len(), "one event set per command");
    for (command, indices) in &sets {
        let n = indices.len() as i32;
        assert_eq!(
            indices,
            &(0..n).collect::<Vec<_>>(),
            "event set of {command} is complete and in order"
        );
    }
    let rejections = actual
        .values()
        .flatten()
        .filter(|e| matches!(e.payload, contract::event::EventPayload::CommandRejected(_)))
        .count();
    assert_eq!(
        rejections,
        INTERACTIONS / 5,
        "every invalid accept was rejected"
    );
    eprintln!("{total} commands -> {actual_total} events, {rejections} rejections, across 2 kills");
}
