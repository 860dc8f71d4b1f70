//! A broker outage ridden out: `switchboard up` against an Apache Kafka of the test's own,
//! which is stopped for 20 s while `up` runs and then started again on the same log. No
//! process exits; afterwards a submission goes through to the Interaction Server and its queue
//! as before, and what was submitted before the outage is still there.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::desk::wait_ready;
use e2e::{TestEnv, free_port};
use runtime::broker::kafka::KafkaOptions;
use serde_json::{Value, json};

async fn submit(http: &reqwest::Client, base: &str, subject: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/interactions"))
        .json(&json!({"media_type": "email", "queue": "inbound", "priority": 1, "properties": {"subject": subject}}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
}

async fn queued(http: &reqwest::Client, base: &str, id: &str) -> bool {
    http.get(format!("{base}/interactions/{id}")).send().await.is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn up_rides_out_a_broker_outage() {
    let root = e2e::run_dir().unwrap();
    let mut options = KafkaOptions::new(root.path().join("kafka"), e2e::kafka_jars());
    options.port = free_port();
    options.controller_port = free_port();
    let broker = tokio::task::spawn_blocking({
        let options = options.clone();
        move || e2e::start_kafka_blocking(options)
    })
    .await
    .unwrap()
    .unwrap();
    let env = TestEnv::with_broker(broker.bootstrap_servers()).await.unwrap();
    let dir = env.dir.path().to_owned();
    let mut settings = env.settings(&dir.join("data"));
    let port = free_port();
    settings.http.listen = ([127, 0, 0, 1], port).into();
    let config = env.write_config(&settings, "switchboard.toml");
    let mut up = e2e::spawn_switchboard(&config, &["up"], &dir.join("up.log"));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&e2e::http(), &format!("{base}/health/ready")).await;
    let http = e2e::http();

    let before: Value = submit(&http, &base, "before the outage").await.json().await.unwrap();
    let before = before["interaction_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !queued(&http, &base, &before).await {
        assert!(Instant::now() < deadline, "the first submission never reached the queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The outage.
    broker.stop().await.unwrap();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(20) {
        assert!(up.try_wait().unwrap().is_none(), "up exited {:?} into the broker outage", outage.elapsed());
        let live = http.get(format!("{base}/health/live")).send().await.unwrap().status();
        assert_eq!(live, 200, "up stopped answering during the outage");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let broker = tokio::task::spawn_blocking(move || e2e::start_kafka_blocking(options)).await.unwrap().unwrap();

    // Back: a new submission goes through and reaches its queue; the old one is still there.
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        assert!(up.try_wait().unwrap().is_none(), "up exited after the broker came back");
        let response = submit(&http, &base, "after the outage").await;
        if response.status() == 202 {
            let body: Value = response.json().await.unwrap();
            break body["interaction_id"].as_str().unwrap().to_owned();
        }
        assert!(response.status() == 503 || response.status() == 504, "a refusal during recovery must be retryable: {}", response.status());
        assert!(Instant::now() < deadline, "submissions still refused 120 s after the broker came back");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    while !queued(&http, &base, &after).await {
        assert!(up.try_wait().unwrap().is_none(), "up exited after the broker came back");
        assert!(Instant::now() < deadline, "the submission after the outage never reached the queue");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(queued(&http, &base, &before).await, "the interaction from before the outage is gone");
    assert!(up.try_wait().unwrap().is_none());
    eprintln!("outage of 20 s ridden out; a submission went through {:.0} s after the broker came back", outage.elapsed().as_secs_f64() - 20.0);
    let _ = up.start_kill();
    broker.stop().await.unwrap();
}
