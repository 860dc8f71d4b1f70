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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    command
}

async fn up(data: &std::path::Path, run: u32, http: u16, broker: u16, kind: &str) -> Up {
    let child = up_command(data, run, http, broker, kind).spawn().unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "`up` not ready within 120 s; see {}",
            data.display()
        );
        if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await
            && r.status().is_success() {
                break;
            }
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
    let r = reqwest::get(format!("{base}/interactions/{id}"))
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

    let client = reqwest::Client::new();
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
    let queue: Value = reqwest::get(format!("{}/queues/inbound", first.base))
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
        let r = reqwest::get(&detail_url).await.unwrap();
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
    let client = reqwest::Client::new();
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
        let queue: Value = reqwest::get(format!("{base}/queues/inbound")).await.unwrap().json().await.unwrap();
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
    let ready: Value = reqwest::get(format!("{base}/health/ready")).await.unwrap().json().await.unwrap();
    for service in ["interaction-server", "queues", "router", "ucs", "web-api"] {
        assert_eq!(ready["services"][service]["ready"], true, "{service} not ready in {ready}");
    }
    let is: Value = reqwest::get(format!("{base}/health/ready/interaction-server")).await.unwrap().json().await.unwrap();
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
    let is: Value = reqwest::get(format!("{}/health/ready/interaction-server", second.base)).await.unwrap().json().await.unwrap();
    assert_eq!(is["events_read_at_start"], 0, "a restart after a clean stop reads only the tail after the snapshots (none): {is}");
    wait_queued(&second.base, 2000, Duration::from_secs(5)).await;
    new_interactions_are_decided_right_after_ready(&second.base).await;
    wait_queued(&second.base, 2030, Duration::from_secs(5)).await;
    let log = std::fs::read_to_string(dir.path().join("up-2.log")).unwrap();
    assert!(log.contains("partition state rebuilt"), "the restarted Interaction Server never rebuilt its partitions");
    // A clean stop snapshotted every partition: the restart read no event of the ~10,000.
    assert_eq!(log.matches("partition state restored from its snapshot").count(), 6, "every partition restored from its snapshot");
    assert!(log.contains("queue projection restored from its snapshot"), "the queue projection replayed instead of restoring");
    let first_start = std::fs::read_to_string(dir.path().join("up-1.log")).unwrap();
    assert!(first_start.contains("no snapshot yet"));
    stop(second).await;
}

/// The case that took no new command: 250 interactions, then `up` killed (SIGKILL: its group
/// membership and any open transaction are left behind) and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_killed_after_250_interactions_decides_new_ones_after_restart() {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    let mut first = up(dir.path(), 1, http, broker, "kafka").await;
    submit_many(&first.base, 250).await;
    wait_queued(&first.base, 250, Duration::from_secs(60)).await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let data = dir.path().join("data");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&data.join("kafka").display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "a killed `up` left its broker running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = up(dir.path(), 2, http, broker, "kafka").await;
    // Killed between snapshots (every 20 events a partition; each has some 200): each partition
    // restarts from its last one and reads only the events written after it.
    let log = std::fs::read_to_string(dir.path().join("up-2.log")).unwrap();
    assert_eq!(log.matches("partition state restored from its snapshot").count(), 6, "{log}");
    let is: Value = reqwest::get(format!("{}/health/ready/interaction-server", second.base)).await.unwrap().json().await.unwrap();
    let read = is["events_read_at_start"].as_u64().unwrap();
    let queues: Value = reqwest::get(format!("{}/queues", second.base)).await.unwrap().json().await.unwrap();
    let whole_log = queues["events_applied"].as_u64().unwrap();
    assert!(read * 4 < whole_log, "read {read} of {whole_log} events at start: not just the tails since the snapshots");
    wait_queued(&second.base, 250, Duration::from_secs(5)).await;
    new_interactions_are_decided_right_after_ready(&second.base).await;
    stop(second).await;
}
