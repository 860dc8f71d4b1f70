//! Topics on a cluster Switchboard does not own, with `switchboard run` processes on Apache Kafka:
//! - `create_topics = false` and the topics missing: the service refuses to start and names them;
//! - a topic someone created with other settings: it starts and warns about each difference;
//! - `interaction.events` with another partition count than `infra/topics.toml`: refused.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{TestEnv, free_port, switchboard_bin};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

async fn run_queues(env: &TestEnv, name: &str, settings: &mut switchboard::settings::Settings, wait: Duration) -> (Option<std::process::ExitStatus>, String) {
    e2e::listen_on(settings, free_port());
    let config = env.write_config(settings, &format!("{name}.toml"));
    let log = env.dir.path().join(format!("{name}.log"));
    let mut child = e2e::spawn_service(&config, "queues", &log);
    let status = tokio::time::timeout(wait, child.wait()).await.ok().map(Result::unwrap);
    let _ = child.start_kill();
    (status, std::fs::read_to_string(&log).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_differing_and_mispartitioned_topics() {
    assert!(switchboard_bin().exists());
    let env = TestEnv::start().await.unwrap();
    let admin = runtime::kafka::admin(&env.kafka).unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

    // Never create: a fresh prefix has no topics, and the service says which are missing.
    let mut settings = env.settings(&env.dir.path().join("data"));
    settings.kafka.topic_prefix = format!("{}nocreate.", env.kafka.topic_prefix);
    settings.kafka.create_topics = false;
    let (status, log) = run_queues(&env, "no-create", &mut settings, Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()), "started without its topics:\n{log}");
    assert!(log.contains("kafka.create_topics = false") && log.contains(&format!("{}interaction.events", settings.kafka.topic_prefix)), "{log}");

    // Someone created interaction.events with a 1 s retention: warned, and it runs.
    let prefix = format!("{}differ.", env.kafka.topic_prefix);
    let events = format!("{prefix}interaction.events");
    let topic = NewTopic::new(&events, 6, TopicReplication::Fixed(1)).set("retention.ms", "1000");
    admin.create_topics([&topic], &options).await.unwrap().into_iter().for_each(|r| { r.unwrap(); });
    settings.kafka.topic_prefix = prefix;
    settings.kafka.create_topics = true;
    let (status, log) = run_queues(&env, "differ", &mut settings, Duration::from_secs(8)).await;
    assert!(status.is_none(), "stopped instead of warning:\n{log}");
    assert!(log.contains("topic setting differs from infra/topics.toml") && log.contains("retention.ms"), "{log}");

    // interaction.events with 3 partitions where the file says 6: refused, with both counts.
    let prefix = format!("{}partitions.", env.kafka.topic_prefix);
    let events = format!("{prefix}interaction.events");
    let topic = NewTopic::new(&events, 3, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &options).await.unwrap().into_iter().for_each(|r| { r.unwrap(); });
    settings.kafka.topic_prefix = prefix;
    let (status, log) = run_queues(&env, "partitions", &mut settings, Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()), "started on a mispartitioned topic:\n{log}");
    assert!(log.contains(&format!("topic {events} has 3 partitions but infra/topics.toml says 6")), "{log}");
}
