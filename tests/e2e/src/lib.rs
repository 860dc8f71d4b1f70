//! Test harness: a real Apache Kafka per test binary (started at the first test that asks, in
//! its own directory under `target/e2e-runs/`, and killed by the kernel when the binary exits),
//! each test under a topic prefix of its own (which also prefixes its consumer groups), and
//! helpers to write and read records as the services do.
//!
//! One broker per binary, not per test: a JVM takes several seconds to start on two cores, a
//! prefix isolates tests as well, and tests that need a broker of their own (one to stop, one
//! with a secured listener) start one with [`runtime::broker::KafkaBroker`] directly.
//!
//! Tests read records with rdkafka directly (this crate is allowed to): they check what is
//! really on the topics, not what the services' own code says is there.
#![allow(clippy::unwrap_used)]

pub mod chat;
pub mod desk;
pub mod mail;
pub mod fixtures;
pub mod sql;
pub mod sms;
pub mod tls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use contract::AvroMessage;
use contract::command::InteractionCommand;
use runtime::config::KafkaSettings;
use runtime::broker::{KafkaBroker, KafkaOptions, kafka as kafka_broker};
use runtime::topics::Topics;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub struct TestEnv {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    /// Kept after the run (under `target/e2e-runs/`): broker and service logs to read when
    /// a test fails.
    pub dir: RunDir,
}

pub struct RunDir(PathBuf);

impl RunDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

/// A fresh directory under `target/e2e-runs/` for one test's files.
pub fn run_dir() -> anyhow::Result<RunDir> {
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).unwrap_or(std::path::Path::new("."));
    let root = target.join("e2e-runs");
    std::fs::create_dir_all(&root)?;
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&root)?
        .keep();
    eprintln!("test files in {}", dir.display());
    Ok(RunDir(dir))
}

impl TestEnv {
    /// Starts a broker in a temporary directory and creates the topics.
    pub async fn start() -> anyhow::Result<Self> {
        // As every binary does: spans carry trace context, so records get a traceparent.
        // The guard lives as long as the test process (dropping it shuts tracing down).
        static TELEMETRY: std::sync::OnceLock<Option<runtime::telemetry::TelemetryGuard>> =
            std::sync::OnceLock::new();
        TELEMETRY.get_or_init(|| {
            runtime::telemetry::init(&runtime::telemetry::TelemetrySettings::default()).ok()
        });
        let dir = run_dir()?;
        let broker = tokio::task::spawn_blocking(shared_kafka).await??;
        let kafka = KafkaSettings {
            bootstrap_servers: broker.bootstrap_servers().to_owned(),
            topic_prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            ..KafkaSettings::default()
        };
        let topics = Topics::load(None, &kafka.topic_prefix)?;
        topics.ensure(&runtime::kafka::admin(&kafka)?, &kafka).await?;
        Ok(Self { kafka, topics, dir })
    }

    /// As [`TestEnv::start`], on a broker of the test's own (one it stops and starts).
    pub async fn with_broker(bootstrap_servers: &str) -> anyhow::Result<Self> {
        let dir = run_dir()?;
        let kafka = KafkaSettings { bootstrap_servers: bootstrap_servers.to_owned(), topic_prefix: "o.".into(), ..KafkaSettings::default() };
        let topics = Topics::load(None, &kafka.topic_prefix)?;
        topics.ensure(&runtime::kafka::admin(&kafka)?, &kafka).await?;
        Ok(Self { kafka, topics, dir })
    }

    pub fn topic(&self, name: &str) -> String {
        self.topics.name(name)
    }

    pub fn producer(&self) -> FutureProducer {
        runtime::kafka::producer(&self.kafka).unwrap()
    }

    /// Writes raw bytes to a topic, keyed, as any client could.
    pub async fn produce_raw(
        &self,
        producer: &FutureProducer,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Writes raw bytes with headers.
    pub async fn produce_with_headers(
        &self,
        producer: &FutureProducer,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) {
        let headers = headers
            .iter()
            .fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
                h.insert(rdkafka::message::Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Writes fixture records (all in flight at once) and waits for every acknowledgement.
    pub async fn produce_fixture(&self, producer: &FutureProducer, records: &[fixtures::FixtureRecord]) {
        let names: Vec<String> = records.iter().map(|r| self.topic(r.topic)).collect();
        let deliveries: Vec<_> = records
            .iter()
            .zip(&names)
            .map(|(r, topic)| {
                producer.send(
                    FutureRecord::to(topic).key(&r.key).payload(&r.payload),
                    Duration::from_secs(60),
                )
            })
            .collect();
        for d in futures::future::join_all(deliveries).await {
            d.map_err(|(e, _)| e).unwrap();
        }
    }

    /// Settings for a service process against this broker (topics and groups prefixed), with
    /// the tests' service key ([`SERVICE_KEY`], every scope) accepted and presented, and a
    /// public listener of its own.
    pub fn settings(&self, data_dir: &std::path::Path) -> switchboard::settings::Settings {
        let mut shared = runtime::config::Settings { data_dir: data_dir.to_owned(), kafka: self.kafka.clone(), ..Default::default() };
        shared.http.service_keys_file = Some(service_keys_file(data_dir));
        shared.http.service_key = Some(SERVICE_KEY.to_owned());
        shared.http.public_listen = Some(([127, 0, 0, 1], free_port()).into());
        switchboard::settings::Settings { shared, ..Default::default() }
    }

    /// Writes `settings` as a config file for a `switchboard` process and returns its path.
    pub fn write_config(&self, settings: &switchboard::settings::Settings, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml::to_string_pretty(settings).unwrap()).unwrap();
        path
    }

    /// Starts each `(service, port)` as its own process (`switchboard run <service>`) with
    /// `settings` listening on that port; its config and log are `<service>.toml` and
    /// `<service>.log` in the test's directory.
    pub fn spawn_services(&self, settings: &mut switchboard::settings::Settings, services: &[(&str, u16)]) -> Services {
        let mut started = Services { ports: std::collections::BTreeMap::new(), _processes: Vec::new() };
        for &(service, port) in services {
            listen_on(settings, port);
            let config = self.write_config(settings, &format!("{service}.toml"));
            started._processes.push(spawn_service(&config, service, &self.dir.path().join(format!("{service}.log"))));
            started.ports.insert(service.to_owned(), port);
        }
        started
    }

    /// Writes a command keyed by its interaction id.
    pub async fn produce_command(&self, producer: &FutureProducer, command: &InteractionCommand) {
        let topic = self.topic(runtime::topics::INTERACTION_COMMANDS);
        self.produce_raw(
            producer,
            &topic,
            &command.interaction_id,
            &command.encode().unwrap(),
        )
        .await;
    }

    /// Every record of `topic`, per partition in offset order, as it is on the broker now.
    pub fn read_all(&self, topic: &str) -> Vec<OwnedMessage> {
        self.try_read_all(topic).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestEnv::read_all`], with a failure (a broker that did not answer in time, a
    /// partition stuck behind an open transaction for 30 s) as an error instead of a panic.
    pub fn try_read_all(&self, topic: &str) -> Result<Vec<OwnedMessage>, String> {
        let mut config = ClientConfig::new();
        for (k, v) in self.kafka.client.iter().chain(&self.kafka.consumer) {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config
            .set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| format!("reader for {topic}: {e}"))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut out = Vec::new();
        for p in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| format!("end offsets of {topic}/{p}: {e}"))?;
            if high == 0 {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            consumer.assign(&tpl).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if Instant::now() >= deadline {
                    return Err(format!("timed out reading {topic}/{p} up to {high}"));
                }
                // The end is where the position reaches `high` (commit markers, which end
                // every transaction, are never delivered).
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => out.push(m.detach()),
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                    Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
                }
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, p).and_then(|e| e.offset().to_raw()));
                if position.is_some_and(|at| at >= high) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Follows `interaction.events` from the beginning in the background: the returned list
    /// grows as events arrive (cheaper than re-reading the topic to watch progress).
    pub fn follow_interaction_events(&self) -> std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, contract::event::InteractionEvent)>>> {
        use runtime::Message as _;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let topic = self.topic(runtime::topics::INTERACTION_EVENTS);
        let partitions = self.topics.partitions(runtime::topics::INTERACTION_EVENTS).unwrap();
        let reader = runtime::kafka::reader(&self.kafka).unwrap();
        runtime::kafka::assign_all(&reader, &topic, partitions, Offset::Beginning).unwrap();
        let out = seen.clone();
        tokio::spawn(async move {
            loop {
                let m = match reader.recv().await {
                    Ok(m) => m,
                    Err(e) if runtime::kafka::is_partition_end(&e) => continue,
                    Err(_) => break,
                };
                let event = contract::event::InteractionEvent::decode(m.payload().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("undecodable interaction event {}/{}: {e}", m.partition(), m.offset()));
                out.lock().unwrap().push((m.partition(), m.offset(), event));
            }
        });
        seen
    }

    /// Decodes every record of a topic as `T`, panicking on anything undecodable.
    pub fn read_decoded<T: AvroMessage>(&self, topic: &str) -> Vec<(i32, i64, T)> {
        self.read_all(topic)
            .into_iter()
            .map(|m| {
                let v = T::decode(m.payload().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{topic} {}/{}: {e}", m.partition(), m.offset()));
                (m.partition(), m.offset(), v)
            })
            .collect()
    }

    /// Runs the Interaction Server in this process until the returned token is cancelled.
    pub fn spawn_interaction_server(
        &self,
    ) -> (
        runtime::CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let shutdown = runtime::CancellationToken::new();
        let (kafka, topics, token) = (self.kafka.clone(), self.topics.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            let mut settings = interaction_server::InteractionServerSettings::default();
            // Benchmarks compare: SWITCHBOARD_BENCH_TRANSACTIONS=false runs without.
            if std::env::var("SWITCHBOARD_BENCH_TRANSACTIONS").is_ok_and(|v| v == "false") {
                settings.transactions = Some(false);
            }
            let retention = interaction_server::retention(&runtime::config::LiveSettings::default(), &topics);
            interaction_server::run(&kafka, &topics, &settings, retention, None, runtime::health::Progress::detached(), token).await
        });
        (shutdown, task)
    }

    /// Records on `interaction.events` now that a `read_committed` reader sees. Counted by
    /// reading them: with transactions the high watermarks also count one commit marker per
    /// transaction, so offsets overstate the records (a wait on them ended early). A busy
    /// broker may answer late: then this counts 0 and the caller polls again.
    pub fn events_written(&self) -> i64 {
        self.try_read_all(&self.topic(runtime::topics::INTERACTION_EVENTS))
            .map_or(0, |records| i64::try_from(records.len()).unwrap_or(i64::MAX))
    }

    /// Polls `check` every 200 ms until it returns true or `limit` passes.
    pub async fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A reader of partition 0 of `topic` from its current end: the offset asked for explicitly,
/// since `Offset::End` is resolved only when the reader first fetches, and records written
/// before that would be skipped.
fn tail_reader(env: &TestEnv, topic: &str) -> runtime::kafka::Reader {
    let reader = runtime::kafka::reader(&env.kafka).unwrap();
    let end = runtime::kafka::high_watermark(&reader, topic, 0).unwrap();
    runtime::kafka::assign_all(&reader, topic, 1, Offset::Offset(end)).unwrap();
    reader
}

/// Sends one record and waits for its acknowledgement, so that a fresh producer's connection
/// and producer id are not in the figures that follow.
async fn warm_up(producer: &FutureProducer, topic: &str) {
    producer.send(FutureRecord::to(topic).key("warm").payload("warm"), Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
}

/// Baseline for the benchmarks: raw rdkafka, one hop. A producer (warmed up: its first record
/// acknowledged before the clock starts) sends `rate` records/s for `seconds` to the
/// dead-letter topic, and a consumer reading it times each from send to receipt. Sorted, in ms.
pub async fn raw_hop_latency(env: &TestEnv, rate: u64, seconds: u64) -> Vec<f64> {
    let topic = env.topic(runtime::topics::DEAD_LETTER);
    let mut settings = env.kafka.clone();
    settings.producer.insert("linger.ms".into(), "0".into());
    let producer = runtime::kafka::producer(&settings).unwrap();
    warm_up(&producer, &topic).await;
    let reader = tail_reader(env, &topic);
    let total = (rate * seconds) as usize;
    let receiver = tokio::spawn(async move {
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let next = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await;
            let Ok(next) = next else { panic!("the raw hop's reader got {} of {total} records and then nothing for 60 s", out.len()) };
            match next {
                Ok(m) => {
                    if let Some(Ok(sent)) = m.payload().map(|p| String::from_utf8_lossy(p).parse::<u128>()) {
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
                        out.push((now - sent) as f64 / 1000.0);
                    }
                }
                Err(e) if runtime::kafka::is_partition_end(&e) => {}
                Err(e) => panic!("{e}"),
            }
        }
        out
    });
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut next = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(next).await;
        next += interval;
        let sent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros().to_string();
        // The receiver times each record; its delivery report is not needed.
        drop(producer.send_result(FutureRecord::to(&topic).key(&format!("k{i}")).payload(&sent)).map_err(|(e, _)| e).unwrap());
    }
    let mut out = receiver.await.unwrap();
    out.sort_by(f64::total_cmp);
    out
}

/// Baseline for the benchmarks: raw rdkafka, produce and wait. `concurrency` tasks each send
/// their share of `n` records of `payload_bytes` to the dead-letter topic one at a time, each
/// waiting for its acknowledgement (as a request handler answers only once Kafka has the
/// record), on one warmed idempotent producer. Seconds for all, and each record's send →
/// acknowledgement in ms, sorted.
pub async fn raw_acks(env: &TestEnv, n: usize, concurrency: usize, payload_bytes: usize) -> (f64, Vec<f64>) {
    let topic = env.topic(runtime::topics::DEAD_LETTER);
    let producer = env.producer();
    warm_up(&producer, &topic).await;
    let payload = std::sync::Arc::new(vec![b'x'; payload_bytes]);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency.max(1) {
        let (producer, topic, payload) = (producer.clone(), topic.clone(), payload.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in (c..n).step_by(concurrency.max(1)) {
                let t = std::time::Instant::now();
                producer
                    .send(FutureRecord::to(&topic).key(&format!("raw-{i}")).payload(payload.as_slice()), Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap();
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            out
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(l) = tasks.join_next().await {
        latencies.extend(l.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (seconds, latencies)
}

/// Baseline for the benchmarks: raw rdkafka, one hop at full speed. `n` small records sent at
/// once (pipelined on one warmed producer) to the dead-letter topic while a consumer reads
/// them; seconds from the first send until the consumer has all `n`.
pub async fn raw_burst_hop(env: &TestEnv, n: usize) -> f64 {
    let topic = env.topic(runtime::topics::DEAD_LETTER);
    let producer = env.producer();
    warm_up(&producer, &topic).await;
    let reader = tail_reader(env, &topic);
    let started = std::time::Instant::now();
    let receiver = tokio::spawn(async move {
        let mut read = 0;
        while read < n {
            match reader.recv().await {
                Ok(_) => read += 1,
                Err(e) if runtime::kafka::is_partition_end(&e) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let payload = vec![b'x'; 300];
    for i in 0..n {
        drop(producer.send_result(FutureRecord::to(&topic).key(&format!("burst-{i}")).payload(payload.as_slice())).map_err(|(e, _)| e).unwrap());
    }
    receiver.await.unwrap();
    started.elapsed().as_secs_f64()
}

/// Baseline for the benchmarks: a bare rdkafka consumer reads `n` records of `topics` (full
/// names) from offset 0; its seconds.
pub async fn raw_read(env: &TestEnv, topics: &[String], n: usize) -> f64 {
    use rdkafka::consumer::Consumer as _;
    let started = std::time::Instant::now();
    let reader = runtime::kafka::reader(&env.kafka).unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let logical = topic.strip_prefix(env.topic("").as_str()).unwrap_or(topic);
        for p in 0..env.topics.partitions(logical).unwrap() {
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    reader.assign(&assignment).unwrap();
    let mut read = 0;
    let mut bytes = 0;
    while read < n {
        match reader.recv().await {
            Ok(m) => {
                read += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Err(e) if runtime::kafka::is_partition_end(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(bytes > 0);
    started.elapsed().as_secs_f64()
}

/// A plain `Submit` of a new interaction to `queue`, as a channel would send it.
pub fn submit(
    media_type: contract::command::MediaType,
    queue: &str,
    priority: i32,
    properties: std::collections::BTreeMap<String, String>,
) -> contract::command::CommandPayload {
    contract::command::CommandPayload::Submit(contract::command::Submit {
        priority,
        properties,
        ..contract::command::Submit::new(media_type, "e2e", queue)
    })
}

/// `p` (0..1) of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The Apache Kafka of this test binary, started on first use (see the module doc).
pub fn shared_kafka() -> anyhow::Result<&'static KafkaBroker> {
    static SHARED: std::sync::OnceLock<Result<KafkaBroker, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let dir = run_dir().map_err(|e| e.to_string())?;
            start_kafka_blocking(KafkaOptions::new(dir.path().join("kafka"), kafka_jars())).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the test binary's Kafka did not start: {e}"))
}

/// The installed Apache Kafka jars (`switchboard broker install`, which scripts/test runs).
pub fn kafka_jars() -> PathBuf {
    kafka_broker::jars_dir(None)
}

/// Starts an Apache Kafka of a test's own (`options.dir` holds its log and `server.log`).
pub fn start_kafka_blocking(mut options: KafkaOptions) -> anyhow::Result<KafkaBroker> {
    // Tests run several at once on two cores: a slower controller must not fence its broker.
    options.properties.entry("broker.session.timeout.ms".into()).or_insert_with(|| "30000".into());
    Ok(KafkaBroker::start_blocking(&options)?)
}

/// A header's value as text.
pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// GETs `url` until it answers 200 with JSON that passes `check` (fails after `limit`).
pub async fn poll_json(http: &reqwest::Client, url: &str, limit: Duration, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
            && let Ok(v) = r.json::<serde_json::Value>().await
            && check(&v)
        {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{url}: condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service key the tests' processes accept (every scope) and present; [`http`] sends it.
pub const SERVICE_KEY: &str = "sbk_0000000000000000000000000000000000000000000000000000000000e2e7e57";

/// A keys file under `dir` accepting [`SERVICE_KEY`] with every scope (written once).
pub fn service_keys_file(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("service-keys.toml");
    if !path.exists() {
        std::fs::create_dir_all(dir).unwrap();
        let digest = {
            use std::fmt::Write;
            let mut hex = String::new();
            for b in <sha2::Sha256 as sha2::Digest>::digest(SERVICE_KEY.as_bytes()) {
                write!(hex, "{b:02x}").unwrap();
            }
            hex
        };
        std::fs::write(&path, format!("[[keys]]\nname = \"e2e\"\nscopes = [\"read\", \"manage\", \"write\"]\nsha256 = \"{digest}\"\n")).unwrap();
        assert!(staff_auth::service_keys::ServiceKeys::load(&path).unwrap().holder(SERVICE_KEY).is_some());
    }
    path
}

/// An HTTP client that presents [`SERVICE_KEY`] on every request (a request's own
/// `Authorization`, a desk session's, wins): the tests' caller of staff routes.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {SERVICE_KEY}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Environment for a `switchboard` process started without a config file: the tests' service
/// key accepted (the keys file under `dir`) and presented, and a free public listener.
pub fn process_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("SWITCHBOARD_HTTP__SERVICE_KEYS_FILE", service_keys_file(dir).display().to_string()),
        ("SWITCHBOARD_HTTP__SERVICE_KEY", SERVICE_KEY.to_owned()),
        ("SWITCHBOARD_HTTP__PUBLIC_LISTEN", format!("127.0.0.1:{}", free_port())),
    ]
}

/// The `[http]` lines a hand-written config needs beside `listen`: as [`process_env`].
pub fn http_config_lines(dir: &std::path::Path) -> String {
    format!(
        "public_listen = \"127.0.0.1:{}\"\nservice_key = \"{SERVICE_KEY}\"\nservice_keys_file = \"{}\"\n",
        free_port(),
        service_keys_file(dir).display()
    )
}

/// `settings` listening on `port` (staff) and a fresh port (public).
pub fn listen_on(settings: &mut switchboard::settings::Settings, port: u16) {
    settings.http.listen = ([127, 0, 0, 1], port).into();
    settings.http.public_listen = Some(([127, 0, 0, 1], free_port()).into());
}

/// Serves `table` on 127.0.0.1 (an ephemeral port) as the staff listener does, behind a
/// gatekeeper that accepts [`SERVICE_KEY`] and desk sessions signed with the secret in `dir`.
pub async fn serve_table(table: runtime::routes::Table, dir: &std::path::Path, shutdown: runtime::CancellationToken) -> std::net::SocketAddr {
    let sessions = staff_auth::auth::SessionKeys::load_or_create(&dir.join("desk-secret")).unwrap();
    let services = staff_auth::service_keys::ServiceKeys::load(&service_keys_file(dir)).unwrap();
    let gate = runtime::routes::Gate(std::sync::Arc::new(switchboard::gate::Gatekeeper::new(sessions, services)));
    let (staff, _public) = table.into_routers();
    let (addr, _task) = runtime::http::serve(staff.layer(axum::Extension(gate)), ([127, 0, 0, 1], 0).into(), shutdown).await.unwrap();
    addr
}

/// A free TCP port on 127.0.0.1 for a child process to bind (below the ephemeral range, see
/// [`runtime::broker::free_listen_port`]).
pub fn free_port() -> u16 {
    runtime::broker::free_listen_port().unwrap()
}

/// Services started by [`TestEnv::spawn_services`]; killed when dropped.
pub struct Services {
    ports: std::collections::BTreeMap<String, u16>,
    _processes: Vec<tokio::process::Child>,
}

impl Services {
    pub fn port(&self, service: &str) -> u16 {
        self.ports[service]
    }

    pub fn url(&self, service: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port(service))
    }
}

/// `switchboard --config CONFIG run SERVICE`, its log appended to `log`, killed when dropped.
pub fn spawn_service(config: &std::path::Path, service: &str, log: &std::path::Path) -> tokio::process::Child {
    spawn_switchboard(config, &["run", service], log)
}

/// `switchboard --config CONFIG ARGS...` (`run <service>`, `up`), its log appended to `log`,
/// killed when dropped.
pub fn spawn_switchboard(config: &std::path::Path, args: &[&str], log: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info,router=debug")
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The `switchboard` binary built with the workspace (`cargo test --workspace` builds it).
pub fn switchboard_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/switchboard
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("switchboard");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p switchboard` (scripts/test does) before these tests",
        bin.display()
    );
    bin
}

/// A Python virtualenv `target/<name>` with `requirements` installed (once; later runs reuse it).
pub fn python_venv(name: &str, requirements: &std::path::Path) -> PathBuf {
    let venv = switchboard_bin().parent().and_then(std::path::Path::parent).map(|t| t.join(name)).expect("target directory");
    let python = venv.join("bin/python");
    let ready = venv.join(".requirements-installed");
    if !ready.exists() {
        let run = |program: &std::path::Path, args: &[&str]| {
            let status = std::process::Command::new(program)
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("cannot run {}: {e} (python3 with venv and pip is needed)", program.display()));
            assert!(status.success(), "{} {args:?} failed: {status}", program.display());
        };
        run(std::path::Path::new("python3"), &["-m", "venv", &venv.to_string_lossy()]);
        run(&python, &["-m", "pip", "install", "--quiet", "-r", &requirements.to_string_lossy()]);
        std::fs::write(&ready, "").expect("marking the virtualenv ready");
    }
    python
}

