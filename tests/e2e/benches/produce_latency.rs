//! `cargo bench -p e2e --bench produce_latency [-- RATE [SECONDS]]`: where the old ~1 s p99
//! came from. The same rdkafka producer (idempotent, acks=all, linger 0) sends records at a
//! fixed rate to Apache Kafka and to Tansu 0.6 (SQLite), each started here on this machine,
//! and times each record from send to acknowledgement. Nothing of Switchboard is in the path.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::TestEnv;
use runtime::broker::TansuBroker;
use runtime::config::KafkaSettings;
use runtime::topics::Topics;
use rdkafka::producer::FutureRecord;

/// Send→ack times in ms, sorted: with `warm`, the producer's first record is acknowledged
/// before the clock starts (a fresh idempotent producer must connect and get a producer id
/// first, and records sent meanwhile wait).
async fn measure(kafka: &KafkaSettings, topics: &Topics, rate: u64, seconds: u64, warm: bool) -> Vec<f64> {
    let mut settings = kafka.clone();
    settings.producer.insert("linger.ms".into(), "0".into());
    let producer = runtime::kafka::producer(&settings).unwrap();
    let topic = topics.name(runtime::topics::DEAD_LETTER);
    let payload = vec![b'x'; 400];
    if warm {
        producer.send(FutureRecord::to(&topic).key("warm").payload(&payload), Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut next = tokio::time::Instant::now();
    let mut waits = Vec::new();
    for i in 0..rate * seconds {
        tokio::time::sleep_until(next).await;
        next += interval;
        let sent = Instant::now();
        let key = format!("k{i}");
        let delivery = producer.send_result(FutureRecord::to(&topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
        waits.push(tokio::spawn(async move {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            sent.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut out = Vec::new();
    for w in waits {
        out.push(w.await.unwrap());
    }
    out.sort_by(f64::total_cmp);
    out
}

fn report(name: &str, ms: &[f64]) {
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    println!(
        "{name}: {} acks, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        ms[ms.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let rate = args.next().unwrap_or(100);
    let seconds = args.next().unwrap_or(20);
    println!("produce -> acknowledgement at {rate} records/s for {seconds} s, 400-byte records, acks=all, linger 0");

    let env = TestEnv::start().await.unwrap();
    let name = format!("Apache Kafka {}", runtime::broker::kafka::KAFKA_VERSION);
    report(&format!("{name}, a fresh producer's first second"), &measure(&env.kafka, &env.topics, rate, 1, false).await);
    report(&format!("{name}, warmed up"), &measure(&env.kafka, &env.topics, rate, seconds, true).await);

    let tansu_bin = runtime::broker::tansu::tansu_path(None);
    let tansu = TansuBroker::start(&tansu_bin, &env.dir.path().join("tansu"), 0).await.unwrap();
    let mut settings = KafkaSettings { bootstrap_servers: tansu.bootstrap_servers().to_owned(), broker: runtime::broker::BrokerKind::Tansu, ..KafkaSettings::default() };
    runtime::broker::tansu::tune_for_tansu(&mut settings);
    let topics = Topics::load(None, "").unwrap();
    topics.ensure(&runtime::kafka::admin(&settings).unwrap(), &settings).await.unwrap();
    let name = format!("Tansu {} (SQLite)", runtime::broker::tansu::TANSU_VERSION);
    report(&format!("{name}, a fresh producer's first second"), &measure(&settings, &topics, rate, 1, false).await);
    report(&format!("{name}, warmed up"), &measure(&settings, &topics, rate, seconds, true).await);
    tansu.stop().await.unwrap();
}
