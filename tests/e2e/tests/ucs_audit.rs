//! `switchboard audit` shows an interaction's whole timeline straight from the log, each event
//! under the command that caused it; `switchboard tail` prints a topic as JSON lines.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contract::command::{AgentRef, CommandPayload, MediaType, Offer, Stop, Submit};
use e2e::{TestEnv, switchboard_bin};
use runtime::commands::CommandClient;
use serde_json::Value;

async fn switchboard(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_every_step_with_its_cause() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let client = CommandClient::new(&env.kafka, &env.topics, "test").unwrap();
    let id = "audit-interaction-1";
    let other = "audit-interaction-2";
    let life = [
        CommandPayload::Submit(Submit {
            media_type: MediaType::Email,
            origin: "test".into(),
            target_queue: "inbound".into(),
            priority: 1,
            properties: [("subject".to_owned(), "Where is my parcel?".to_owned())].into(),
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
        }),
        CommandPayload::Offer(Offer { agent_id: "ann".into(), timeout_ms: 30_000 }),
        // Not offered to bob: rejected, and the rejection shows under this command.
        CommandPayload::AcceptOffer(AgentRef { agent_id: "bob".into() }),
        CommandPayload::AcceptOffer(AgentRef { agent_id: "ann".into() }),
        CommandPayload::Stop(Stop { reason: "done".into() }),
    ];
    let partitions = env.topics.partitions(runtime::topics::INTERACTION_COMMANDS).unwrap();
    let mut command_ids = Vec::new();
    for payload in life {
        let command = client.command(id, payload);
        let (partition, _) = client.send(&command).await.unwrap();
        // The partition the producer chose is the one the audit computes for the key.
        assert_eq!(partition, runtime::kafka::partition_for_key(id.as_bytes(), partitions));
        command_ids.push(command.command_id);
    }
    // Another interaction's records must not leak into this audit.
    let noise = client.command(
        other,
        CommandPayload::Stop(Stop { reason: "never existed".into() }),
    );
    client.send(&noise).await.unwrap();
    // Submit: 2 events, Offer 1, rejected accept 1, accept 2, stop 1; the noise: 1 rejection.
    env.wait_for("the events of every command", Duration::from_secs(60), || env.events_written() >= 8)
        .await;
    stop_server.cancel();
    server.await.unwrap().unwrap();

    let settings = env.settings(&env.dir.path().join("data"));
    let config = env.write_config(&settings, "tools.toml");
    let (ok, stdout, stderr) = switchboard(&config, &["audit", id, "--json"]).await;
    assert!(ok, "audit failed: {stderr}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    let steps: Vec<(String, String)> = audit["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["record"].as_str().unwrap().to_owned(), s["kind"].as_str().unwrap().to_owned()))
        .collect();
    let want = [
        ("command", "Submit"),
        ("event", "Submitted"),
        ("event", "PlacedInQueue"),
        ("command", "Offer"),
        ("event", "OfferedToAgent"),
        ("command", "AcceptOffer"),
        ("event", "CommandRejected"),
        ("command", "AcceptOffer"),
        ("event", "OfferAccepted"),
        ("event", "Assigned"),
        ("command", "Stop"),
        ("event", "Stopped"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(r, k)| (r.to_string(), k.to_string())).collect();
    assert_eq!(steps, want, "{stdout}");
    // Every event names the command just before it as its cause.
    let mut current_command = String::new();
    for step in audit["steps"].as_array().unwrap() {
        if step["record"] == "command" {
            current_command = step["id"].as_str().unwrap().to_owned();
            assert!(command_ids.contains(&current_command));
        } else {
            assert_eq!(step["caused_by"].as_str().unwrap(), current_command, "{step}");
        }
    }
    let rejection = &audit["steps"][6];
    assert!(rejection["payload"]["reason"].as_str().unwrap().contains("bob"), "{rejection}");

    let (ok, text, stderr) = switchboard(&config, &["audit", id]).await;
    assert!(ok, "{stderr}");
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 12, "{text}");
    assert!(lines[1].contains("Submitted") && lines[1].contains("<- Submit"), "{text}");
    assert!(lines[6].contains("CommandRejected") && lines[6].contains("bob"), "{text}");
    assert!(lines[11].contains("Stopped") && lines[11].contains("<- Stop"), "{text}");

    // tail: JSON lines, each decoded with its schema.
    let (ok, jsonl, stderr) = switchboard(&config, &["tail", "interaction.events"]).await;
    assert!(ok, "{stderr}");
    let records: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 8, "{jsonl}");
    assert!(records.iter().all(|r| r["value"]["event_id"].is_string() && r["error"].is_null()));
    let (ok, two, _) = switchboard(&config, &["tail", "interaction.commands", "--max", "2"]).await;
    assert!(ok);
    assert_eq!(two.lines().count(), 2);
    let (ok, _, stderr) = switchboard(&config, &["tail", "no.such.topic"]).await;
    assert!(!ok && stderr.contains("unknown topic 'no.such.topic'"), "{stderr}");
}
