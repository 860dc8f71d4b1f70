//! Invalid commands become rejections with readable reasons; records that cannot be decoded
//! (or are keyed wrongly) land in the dead-letter topic with the reason in headers; every event
//! carries its lineage headers. All checked on a real broker.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use contract::AvroMessage;
use contract::command::*;
use contract::event::{EventPayload, InteractionEvent};
use e2e::{TestEnv, header};
use runtime::dead_letter;
use runtime::topics::{DEAD_LETTER, INTERACTION_COMMANDS, INTERACTION_EVENTS};

fn command(n: u32, id: &str, by: &str, payload: CommandPayload) -> InteractionCommand {
    InteractionCommand {
        command_id: format!("c{n}"),
        interaction_id: id.into(),
        issued_at: 1_700_000_000_000 + i64::from(n),
        issued_by: by.into(),
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_dead_letters_and_headers() {
    let env = TestEnv::start().await.unwrap();
    let (shutdown, server) = env.spawn_interaction_server();
    let producer = env.producer();
    let submit = CommandPayload::Submit(Submit::new(MediaType::Sms, "e2e", "inbound"));
    // The first command arrives inside a caller's trace; its events must join that trace.
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let first = command(1, "sms-1", "sms-server", submit.clone());
    env.produce_with_headers(
        &producer,
        &env.topic(INTERACTION_COMMANDS),
        "sms-1",
        &first.encode().unwrap(),
        &[(
            "traceparent",
            &format!("00-{caller_trace}-b7ad6b7169203331-01"),
        )],
    )
    .await;
    for c in [
        command(2, "sms-1", "sms-server", submit),
        command(
            3,
            "ghost",
            "router",
            CommandPayload::Offer(Offer {
                agent_id: "agent:a".into(),
                timeout_ms: 1000,
            }),
        ),
        command(
            4,
            "sms-1",
            "agent:a",
            CommandPayload::AcceptOffer(AgentRef {
                agent_id: "agent:a".into(),
            }),
        ),
        command(
            5,
            "sms-1",
            "router",
            CommandPayload::Offer(Offer {
                agent_id: "agent:a".into(),
                timeout_ms: 0,
            }),
        ),
    ] {
        env.produce_command(&producer, &c).await;
    }
    let commands_topic = env.topic(INTERACTION_COMMANDS);
    env.produce_raw(&producer, &commands_topic, "garbage-1", b"this is not avro")
        .await;
    let mut foreign = command(
        6,
        "sms-1",
        "x",
        CommandPayload::Stop(Stop { reason: "x".into() }),
    )
    .encode()
    .unwrap();
    foreign[4] ^= 0x55; // a fingerprint nobody knows
    env.produce_raw(&producer, &commands_topic, "sms-1", &foreign)
        .await;
    let mis_keyed = command(
        7,
        "sms-1",
        "x",
        CommandPayload::Stop(Stop { reason: "x".into() }),
    );
    env.produce_raw(
        &producer,
        &commands_topic,
        "another-id",
        &mis_keyed.encode().unwrap(),
    )
    .await;

    let events_topic = env.topic(INTERACTION_EVENTS);
    env.wait_for("6 events", Duration::from_secs(30), || {
        env.read_all(&events_topic).len() >= 6
    })
    .await;
    let dead_topic = env.topic(DEAD_LETTER);
    env.wait_for("3 dead letters", Duration::from_secs(30), || {
        env.read_all(&dead_topic).len() >= 3
    })
    .await;
    shutdown.cancel();
    server.await.unwrap().unwrap();

    let events = env.read_decoded::<InteractionEvent>(&events_topic);
    let reasons: BTreeMap<String, String> = events
        .iter()
        .filter_map(|(_, _, e)| match &e.payload {
            EventPayload::CommandRejected(r) => Some((e.causation_id.clone(), r.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("c2".into(), "interaction sms-1 already exists".into()),
            (
                "c3".into(),
                "no interaction ghost (it was never submitted)".into()
            ),
            (
                "c4".into(),
                "interaction sms-1 has no pending offer (it is waiting)".into()
            ),
            (
                "c5".into(),
                "offer timeout 0 ms is outside 1..=86400000 ms".into()
            ),
        ])
    );
    assert_eq!(
        events.len(),
        6,
        "2 events for the submit, 1 rejection for each of 4 invalid commands"
    );

    // Lineage headers on every event.
    for m in env.read_all(&events_topic) {
        let event = InteractionEvent::decode(runtime::Message::payload(&m).unwrap()).unwrap();
        assert_eq!(
            header(&m, "correlation-id").as_deref(),
            Some(event.interaction_id.as_str())
        );
        assert_eq!(
            header(&m, "causation-id").as_deref(),
            Some(event.causation_id.as_str())
        );
        assert_eq!(header(&m, "schema").as_deref(), Some("interaction-event"));
        let traceparent = header(&m, "traceparent").expect("traceparent header");
        assert!(
            traceparent.len() == 55 && traceparent.starts_with("00-"),
            "W3C traceparent, got {traceparent}"
        );
        if event.causation_id == "c1" {
            assert_eq!(
                &traceparent[3..35],
                caller_trace,
                "events continue the command's trace"
            );
        }
    }

    // Dead letters: the original bytes, with where they came from and why.
    let dead = env.read_all(&dead_topic);
    let by_key: BTreeMap<String, &runtime::OwnedMessage> = dead
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(runtime::Message::key(m).unwrap()).into_owned(),
                m,
            )
        })
        .collect();
    let garbage = by_key["garbage-1"];
    assert_eq!(
        runtime::Message::payload(garbage),
        Some(&b"this is not avro"[..])
    );
    let reason = header(garbage, dead_letter::REASON).unwrap();
    assert!(
        reason.starts_with("cannot decode InteractionCommand: not an Avro single-object record"),
        "{reason}"
    );
    assert_eq!(
        header(garbage, dead_letter::SOURCE_TOPIC),
        Some(commands_topic.clone())
    );
    assert!(header(garbage, dead_letter::SOURCE_OFFSET).is_some());
    assert_eq!(
        header(garbage, dead_letter::PARKED_BY).as_deref(),
        Some("interaction-server")
    );
    let foreign = by_key["sms-1"];
    let reason = header(foreign, dead_letter::REASON).unwrap();
    assert!(
        reason.contains("unknown writer schema fingerprint"),
        "{reason}"
    );
    let reason = header(by_key["another-id"], dead_letter::REASON).unwrap();
    assert!(
        reason.contains("does not match interaction_id \"sms-1\""),
        "{reason}"
    );
}
