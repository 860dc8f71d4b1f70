//! `switchboard up` on its embedded defaults, on each embedded broker (Apache Kafka, the
//! default where Java is found, and Tansu, the no-JVM fallback): an interaction submitted over
//! HTTP shows in the queue projection; SIGINT stops services and broker cleanly; a second `up`
//! on the same data directory still shows it (the log is durable). On Kafka, a SIGKILLed `up`
//! leaves no broker behind, and the data directory keeps its broker when asked for the other.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::{free_port, run_dir, switchboard_bin};
use serde_json::Value;


struct Up {
    child: tokio::process::Child,
    base: String,
}

fn up_command(data: &std::path::Path, run: u32, http: u16, broker: u16, kind: &str) -> tokio::process::Command {
    let log = std::fs::File::create(data.join(format!("up-{run}.log"))).unwrap();
    let mut command = tokio::process::Command::new(switchboard_bin());
    command
        .arg("--data-dir")
        .arg(data.join("data"))
        .args(["--broker-port", &broker.to_string()])
        .args(["up", "--http", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "info")
        .env("SWITCHBOARD_BROKER__KIND", kind)
        // The history tests submit thousands from one address.
        .env("SWITCHBOARD_WEB_API__RATE_PER_MINUTE", "1000000")
        .env("SWITCHBOARD_WEB_API__RATE_BURST", "100000")
        // Snapshots every 20 events a partition: a kill lands between snapshots.
        .env("SWITCHBOARD_INTERACTION_SERVER__SNAPSHOT_EVERY_EVENTS", "20")
        // Tests run side by side: Kafka's controller on a free port, not the default 9093.
        .env("SWITCHBOARD_BROKER__CONTROLLER_PORT", "0")
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .envs(e2e::process_env(data))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    command
}

async fn up(data: &std::path::Path, run: u32, http: u16, broker: u16, kind: &str) -> Up {
    up_with(data, run, http, broker, kind, &[]).await
}

/// `up` with settings of its own in the environment, once `/health/ready` answers 200.
async fn up_with(data: &std::path::Path, run: u32, http: u16, broker: u16, kind: &str, env: &[(&str, String)]) -> Up {
    let mut command = up_command(data, run, http, broker, kind);
    command.envs(env.iter().map(|(key, value)| (*key, value.as_str())));
    let child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !e2e::http().get(format!("{base}/health/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "`up` not ready within 120 s; see {}", data.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Up { child, base }
}

/// Processes whose command line mentions `needle` (a broker started on a data directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("cargo") {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

async fn stop(mut up: Up) {
    let pid = nix::unistd::Pid::from_raw(up.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), up.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "`up` exited with {status} after SIGINT");
}

async fn interaction(base: &str, id: &str) -> Option<Value> {
    let r = e2e::http().get(format!("{base}/interactions/{id}")).send()
        .await
        .unwrap();
    if r.status() == 404 {
        None
    } else {
        Some(r.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_submitted_over_http_survives_a_restart_and_a_kill_leaves_no_broker() {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    submitted_over_http_survives_a_restart(dir.path(), http, broker, "kafka").await;
    let data = dir.path().join("data");
    let kafka_log = std::fs::read_to_string(data.join("kafka/server.log")).unwrap();
    assert!(kafka_log.contains("Kafka Server started"), "the data directory's broker was not Apache Kafka");
    assert!(processes_mentioning(&data.display().to_string()).is_empty(), "a broker outlived a clean stop");

    // SIGKILL (no chance to stop anything): the kernel takes the JVM down with it.
    let mut third = up(dir.path(), 3, http, broker, "kafka").await;
    assert!(!processes_mentioning("kafka.Kafka").is_empty());
    third.child.start_kill().unwrap();
    third.child.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&data.join("kafka").display().to_string());
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "a killed `up` left its broker running: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // This directory holds a Kafka log: asked for Tansu, `up` refuses and says why.
    let output = up_command(dir.path(), 4, http, broker, "tansu").output().await.unwrap();
    assert!(!output.status.success());
    let said = std::fs::read_to_string(dir.path().join("up-4.log")).unwrap() + &String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("holds the log of Apache Kafka"), "{said}");
}

/// The no-JVM fallback stays honest: the same on Tansu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tansu_submitted_over_http_survives_a_restart() {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    submitted_over_http_survives_a_restart(dir.path(), http, broker, "tansu").await;
    assert!(dir.path().join("data/broker/tansu.db").exists());
    assert!(!dir.path().join("data/kafka").exists());
}

async fn submitted_over_http_survives_a_restart(dir: &std::path::Path, http: u16, broker: u16, kind: &str) {
    let first = up(dir, 1, http, broker, kind).await;
    // Commands on every partition before the restart.
    submit_many(&first.base, 30).await;

    let client = e2e::http();
    let response = client
        .post(format!("{}/v1/interactions", first.base))
        .json(&serde_json::json!({
            "media_type": "email",
            "queue": "inbound",
            "priority": 3,
            "properties": {"subject": "Where is my order?"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let id = body["interaction_id"].as_str().unwrap().to_owned();

    // Bad input is refused with a reason.
    let bad = client
        .post(format!("{}/v1/interactions", first.base))
        .json(&serde_json::json!({"media_type": "fax", "queue": "inbound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let reason: Value = bad.json().await.unwrap();
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .contains("unknown media type 'fax'"),
        "{reason}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    // `up` runs the router too: its workflow classifies the interaction (and, with no agent
    // logged in, leaves it waiting). Compare before and after the restart once it has.
    let shown = loop {
        if let Some(i) = interaction(&first.base, &id).await
            && i["properties"].get("category").is_some()
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "interaction never reached the queue projection classified by the router"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown["status"], "waiting");
    assert_eq!(shown["queue"], "inbound");
    let queue: Value = e2e::http().get(format!("{}/queues/inbound", first.base)).send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue["counts"]["waiting"], 31);
    assert!(queue["interactions"].as_array().unwrap().iter().any(|i| i["id"] == id.as_str()));
    // UCS runs in `up` too, on SQLite in the data directory, and records the interaction.
    let detail_url = format!("{}/v1/interactions/{id}/detail", first.base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = e2e::http().get(&detail_url).send().await.unwrap();
        if r.status() == 200 {
            let detail: Value = r.json().await.unwrap();
            assert_eq!(detail["subject"], "Where is my order?");
            break;
        }
        assert!(Instant::now() < deadline, "interaction never reached UCS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dir.join("data/ucs.db").exists());
    stop(first).await;

    let second = up(dir, 2, http, broker, kind).await;
    let again = interaction(&second.base, &id)
        .await
        .expect("interaction still there after restart");
    assert_eq!(again, shown);
    // The first command after a restart is decided (one past the last was committed once, and
    // the first new command of a partition was skipped).
    new_interactions_are_decided_right_after_ready(&second.base).await;
    stop(second).await;
}

/// Submits `count` interactions through the web API, 16 at a time; returns their ids.
async fn submit_many(base: &str, count: usize) -> Vec<String> {
    use futures::StreamExt;
    let client = e2e::http();
    futures::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{base}/v1/interactions"))
                    .json(&serde_json::json!({"media_type": "email", "queue": "inbound", "priority": 3, "properties": {"subject": format!("order {i}")}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                let body: Value = response.json().await.unwrap();
                body["interaction_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Waits until the queue projection counts `count` interactions in `inbound`.
async fn wait_queued(base: &str, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let queue: Value = e2e::http().get(format!("{base}/queues/inbound")).send().await.unwrap().json().await.unwrap();
        if queue["counts"]["total"].as_u64() == Some(count) {
            return;
        }
        assert!(Instant::now() < deadline, "inbound never reached {count} interactions: {}", queue["counts"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After a restart, `/health/ready` answers 200 only once every service consumes: the
/// Interaction Server's own readiness is among them, and new interactions submitted right then
/// are decided (queued) and classified by the router. Thirty of them, so that every partition
/// gets its first command after the restart (that one was skipped when one past the last
/// processed offset was committed).
async fn new_interactions_are_decided_right_after_ready(base: &str) {
    let ready: Value = e2e::http().get(format!("{base}/health/ready")).send().await.unwrap().json().await.unwrap();
    for service in ["interaction-server", "queues", "router", "ucs", "web-api"] {
        assert_eq!(ready["services"][service]["ready"], true, "{service} not ready in {ready}");
    }
    let is: Value = e2e::http().get(format!("{base}/health/ready/interaction-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(is["partitions"].as_array().map(Vec::len), Some(6), "the Interaction Server owns every partition: {is}");
    let ids = submit_many(base, 30).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ids {
        loop {
            if let Some(i) = interaction(base, &id).await
                && i["properties"].get("category").is_some()
            {
                assert_eq!(i["status"], "waiting");
                break;
            }
            assert!(Instant::now() < deadline, "interaction {id}, submitted after the restart, was never decided and classified");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The case that failed: 2,000 interactions through the web API, a clean stop, `up` again on
/// the same data directory. Every service comes back, `/health/ready` waits for the
/// Interaction Server's rebuilt partitions (it said ready before), and new work is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_restarts_after_2000_interactions_and_decides_new_ones() {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    let first = up(dir.path(), 1, http, broker, "kafka").await;
    let ids = submit_many(&first.base, 2000).await;
    assert_eq!(ids.len(), 2000);
    wait_queued(&first.base, 2000, Duration::from_secs(120)).await;
    stop(first).await;

    let second = up(dir.path(), 2, http, broker, "kafka").await;
    let is: Value = e2e::http().get(format!("{}/health/ready/interaction-server", second.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(is["events_read_at_start"], 0, "a restart after a clean stop reads only the tail after the snapshots (none): {is}");
    wait_queued(&second.base, 2000, Duration::from_secs(5)).await;
    new_interactions_are_decided_right_after_ready(&second.base).await;
    wait_queued(&second.base, 2030, Duration::from_secs(5)).await;
    let log = std::fs::read_to_string(dir.path().join("up-2.log")).unwrap();
    assert!(log.contains("partition state rebuilt"), "the restarted Interaction Server never rebuilt its partitions");
    // A clean stop snapshotted every partition: the restart read no event of the ~10,000.
    assert_eq!(log.matches("partition state restored from its snapshot").count(), 6, "every partition restored from its snapshot");
    // Under `up` the queues are served from the floor's board (one fold per process), which
    // restored its snapshot too.
    assert!(
        log.lines().any(|l| l.contains("floor-interaction.events") && l.contains("restored from its snapshot")),
        "the floor (and with it the queues) replayed instead of restoring"
    );
    assert!(!log.contains("projection=queues-"), "a second fold of interaction.events under `up`");
    let first_start = std::fs::read_to_string(dir.path().join("up-1.log")).unwrap();
    assert!(first_start.contains("no snapshot yet"));
    stop(second).await;
}

/// The case that took no new command: 250 interactions, then `up` killed (SIGKILL: its group
/// membership and any open transaction are left behind) and started again. Snapshots every 20
/// events a partition, and more interactions one by one until a partition is within one
/// interaction's events of its next snapshot: the kill lands right before that snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_killed_after_250_interactions_right_before_a_snapshot() {
    killed_after_250_then_restarted(20).await;
}

/// The same with a snapshot after every write: the kill lands right after one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_killed_right_after_a_snapshot() {
    killed_after_250_then_restarted(1).await;
}

/// Each partition's snapshot offset (0 without a snapshot file).
fn snapshot_offsets(data: &std::path::Path, events_topic: &str) -> Vec<i64> {
    (0..6)
        .map(|p| {
            let file = data.join("snapshots").join(format!("interaction-server-{events_topic}-{p}.json"));
            let Ok(bytes) = std::fs::read(&file) else { return 0 };
            let snapshot: Value = serde_json::from_slice(&bytes).unwrap();
            snapshot["offsets"][format!("{events_topic}/{p}")].as_i64().unwrap()
        })
        .collect()
}

/// How many committed events each partition holds past its snapshot.
async fn events_past_snapshots(kafka: &runtime::config::KafkaSettings, events_topic: &str, snapshot_offsets: &[i64]) -> Vec<i64> {
    let mut tails = Vec::new();
    for (p, from) in (0..6).zip(snapshot_offsets) {
        let mut tail = 0;
        runtime::kafka::read_partition_from(kafka, events_topic, p, *from, None, |_| tail += 1).await.unwrap();
        tails.push(tail);
    }
    tails
}

/// 250 interactions, SIGKILL, restart: the Interaction Server reads exactly the committed
/// events after its snapshots (all of them without), the restored queues equal a full replay,
/// and new interactions are decided.
async fn killed_after_250_then_restarted(snapshot_every: u64) {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    let env = [("SWITCHBOARD_INTERACTION_SERVER__SNAPSHOT_EVERY_EVENTS", snapshot_every.to_string())];
    let mut first = up_with(dir.path(), 1, http, broker, "kafka", &env).await;
    let mut submitted = 250;
    submit_many(&first.base, submitted).await;
    wait_queued(&first.base, submitted as u64, Duration::from_secs(60)).await;
    let data = dir.path().join("data");
    let kafka = runtime::config::KafkaSettings { bootstrap_servers: format!("127.0.0.1:{broker}"), ..Default::default() };
    let events_topic = "interaction.events";
    if snapshot_every > 1 {
        // A submitted interaction writes 2 or 3 events to its partition (submitted, queued,
        // classified): a partition this close snapshots at its next interaction. `up` is idle
        // between interactions, so what is measured is what the kill finds.
        let right_before = snapshot_every as i64 - 3;
        loop {
            let tails = events_past_snapshots(&kafka, events_topic, &snapshot_offsets(&data, events_topic)).await;
            // The router's classification of the last interaction may still be on its way.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let settled = events_past_snapshots(&kafka, events_topic, &snapshot_offsets(&data, events_topic)).await;
            if settled != tails {
                continue;
            }
            if tails.iter().any(|&t| t >= right_before) {
                eprintln!("killed with these events past each partition's snapshot: {tails:?} (snapshot every {snapshot_every})");
                break;
            }
            assert!(submitted < 400, "no partition came within 3 events of its next snapshot: {tails:?}");
            submit_many(&first.base, 1).await;
            submitted += 1;
            wait_queued(&first.base, submitted as u64, Duration::from_secs(30)).await;
        }
    }
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    // Where the log and the snapshots stood at the kill.
    // (No snapshot file: the partition is replayed from offset 0.)
    let snapshot_offsets = snapshot_offsets(&data, events_topic);
    if snapshot_every == 0 {
        assert_eq!(snapshot_offsets, [0; 6], "snapshots were off");
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&data.join("kafka").display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "a killed `up` left its broker running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let restarted_at = contract::now_millis();
    let second = up_with(dir.path(), 2, http, broker, "kafka", &env).await;
    // The tails: committed events after each snapshot written before the restart (by record
    // timestamp: the restarted server may have written since), read_committed as the server
    // reads (the killed server's open transaction was aborted by the restart).
    let mut tails = 0i64;
    let mut per_partition = Vec::new();
    for (p, from) in (0..6).zip(&snapshot_offsets) {
        let (mut before, mut after, mut last_before) = (0, 0, -1);
        runtime::kafka::read_partition_from(&kafka, events_topic, p, *from, None, |m| {
            if runtime::Message::timestamp(m).to_millis().is_some_and(|t| t < restarted_at) {
                tails += 1;
                before += 1;
                last_before = runtime::Message::offset(m);
            } else {
                after += 1;
            }
        })
        .await
        .unwrap();
        per_partition.push((p, before, after, last_before));
    }

    // Each partition restarts from its last snapshot and reads only the events written after it.
    let log = std::fs::read_to_string(dir.path().join("up-2.log")).unwrap();
    let restored = log.matches("partition state restored from its snapshot").count();
    assert_eq!(restored, if snapshot_every == 0 { 0 } else { 6 }, "{log}");
    let is: Value = e2e::http().get(format!("{}/health/ready/interaction-server", second.base)).send().await.unwrap().json().await.unwrap();
    let read = is["events_read_at_start"].as_u64().unwrap();
    let queues: Value = e2e::http().get(format!("{}/queues", second.base)).send().await.unwrap().json().await.unwrap();
    let whole_log = queues["events_applied"].as_u64().unwrap();
    if snapshot_every > 0 {
        assert!(read * 4 < whole_log, "read {read} of {whole_log} events at start: not just the tails since the snapshots");
    }
    // Exactly the tails: what each partition's snapshot (taken before the kill) did not cover.
    // (A broker killed uncleanly can drop a committing transaction's markers on restart, which
    // leaves that transaction hanging: the launcher stops the broker cleanly to avoid it.)
    let broker_log = std::fs::read_to_string(data.join("kafka").join("server.log")).unwrap_or_default();
    let dropped_markers: Vec<&str> = broker_log.lines().filter(|l| l.contains("Couldn't find leader endpoint")).collect();
    assert_eq!(
        read as i64, tails,
        "the restart read {read} events; the tails after the snapshots were {tails} (per partition: records before the restart, after, last offset before: {per_partition:?}); transaction markers the broker dropped: {dropped_markers:?}"
    );
    wait_queued(&second.base, submitted as u64, Duration::from_secs(5)).await;
    // The restored state (floor snapshot + tail, which serves /queues) equals a full replay.
    assert_equals_full_replay(&second.base, broker).await;
    new_interactions_are_decided_right_after_ready(&second.base).await;
    stop(second).await;
}

/// Only live work in memory: with `[live] keep_stopped_s = 1`, a stopped interaction leaves the
/// boards once later events move log time past the window; `/interactions/{id}` then answers
/// `410 Gone` with where the history is, and a redelivered `Submit` of its id (a new command
/// id: a mail delivered again) is still refused — before and after a restart from snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_an_evicted_interaction_is_still_a_duplicate_after_a_restart() {
    use contract::command::{CommandPayload, Stop};
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    let env = [("SWITCHBOARD_LIVE__KEEP_STOPPED_S", "1".to_owned())];
    let first = up_with(dir.path(), 1, http, broker, "kafka", &env).await;
    let base = first.base.clone();

    let kafka = runtime::config::KafkaSettings { bootstrap_servers: format!("127.0.0.1:{broker}"), ..Default::default() };
    let topics = runtime::topics::Topics::load(None, "").unwrap();
    let commands = runtime::commands::CommandClient::new(&kafka, &topics, "eviction-test").unwrap();
    let submit = || e2e::submit(contract::command::MediaType::Email, "inbound", 0, Default::default());
    let mail = format!("evicted-{}", runtime::commands::uuid_v4());
    commands.send(&commands.command(&mail, submit())).await.unwrap();
    wait_status(&base, &mail, "waiting").await;
    commands.send(&commands.command(&mail, CommandPayload::Stop(Stop { reason: "answered".into() }))).await.unwrap();
    wait_status(&base, &mail, "stopped").await;
    // Log time moves on with later events (the window is measured on event times).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    submit_many(&base, 3).await;
    let gone = wait_gone(&base, &mail).await;
    assert_eq!(gone["history"], format!("/v1/interactions/{mail}"), "{gone}");

    let redelivered = commands.command(&mail, submit());
    commands.send(&redelivered).await.unwrap();
    // (Its partition's own clock may not have passed the window yet: then it is still on the
    // Interaction Server's board, refused all the same; the refusal's event moves the clock.)
    assert_refused(&kafka, &topics, &mail, &redelivered.command_id, "already exists").await;
    stop(first).await;

    // After a restart (from snapshots: the ended ids are in them) it is still refused.
    let second = up_with(dir.path(), 2, http, broker, "kafka", &env).await;
    let log = strip_ansi(&std::fs::read_to_string(dir.path().join("up-2.log")).unwrap());
    let partition = runtime::kafka::partition_for_key(mail.as_bytes(), 6);
    assert!(
        log.contains(&format!("partition state restored from its snapshot and the events after it partition={partition} ")),
        "the interaction's partition {partition} did not restart from its snapshot: {log}"
    );
    assert!(e2e::http().get(format!("{base}/interactions/{mail}")).send().await.unwrap().status() == 410);
    let again = commands.command(&mail, submit());
    commands.send(&again).await.unwrap();
    assert_refused(&kafka, &topics, &mail, &again.command_id, "already exists (it has ended)").await;
    new_interactions_are_decided_right_after_ready(&base).await;
    stop(second).await;
}

async fn wait_status(base: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if interaction(base, id).await.is_some_and(|i| i["status"] == status) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_gone(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = e2e::http().get(format!("{base}/interactions/{id}")).send().await.unwrap();
        if r.status() == 410 {
            return r.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "{id} never left the queue projection (last status {})", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the Interaction Server's rejection of `command_id` on `interaction.events`.
async fn assert_refused(kafka: &runtime::config::KafkaSettings, topics: &runtime::topics::Topics, id: &str, command_id: &str, reason: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = history::audit(kafka, topics, id).await.unwrap();
        let outcome = audit.steps.iter().find(|s| s.record == "event" && s.caused_by.as_deref() == Some(command_id));
        if let Some(step) = outcome {
            assert_eq!(step.kind, "CommandRejected", "the redelivered Submit was not refused: {step:?}");
            assert!(step.payload.to_string().contains(reason), "{:?}", step.payload);
            return;
        }
        assert!(Instant::now() < deadline, "no outcome for the redelivered Submit of {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A log line without its terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Folds the whole `interaction.events` from offset 0 into a fresh board (as a first start
/// would) and compares every queue with what `/queues/{q}` shows; retried for a while, since
/// the router may still be writing.
async fn assert_equals_full_replay(base: &str, broker: u16) {
    use contract::AvroMessage;
    let kafka = runtime::config::KafkaSettings { bootstrap_servers: format!("127.0.0.1:{broker}"), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut board = queues::board::Board::evicting_after(runtime::config::LiveSettings::default().keep_stopped_ms());
        let mut events = Vec::new();
        for p in 0..6 {
            runtime::kafka::read_partition_from(&kafka, "interaction.events", p, 0, None, |m| {
                events.push(contract::event::InteractionEvent::decode(runtime::Message::payload(m).unwrap_or_default()).unwrap());
            })
            .await
            .unwrap();
        }
        // The board's clock is the latest event time, whatever the order of partitions.
        for e in &events {
            board.apply(e);
        }
        let mut differ = Vec::new();
        for queue in board.queue_names() {
            let served: Value = e2e::http().get(format!("{base}/queues/{queue}")).send().await.unwrap().json().await.unwrap();
            if served != serde_json::to_value(board.queue_view(&queue)).unwrap() {
                differ.push(queue);
            }
        }
        let served: Value = e2e::http().get(format!("{base}/queues")).send().await.unwrap().json().await.unwrap();
        if differ.is_empty() && served["events_applied"].as_u64() == Some(board.events_applied()) {
            return;
        }
        assert!(Instant::now() < deadline, "the restored queues differ from a full replay in {differ:?} ({} events replayed, {} applied)", board.events_applied(), served["events_applied"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
