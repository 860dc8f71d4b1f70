//! `cargo bench -p e2e --bench ucs [-- RECORDS]` (default 100000): UCS projector figures.
//! - SQL apply: records already read (in memory, as the projector holds a batch), decoded,
//!   folded and written in batches of `ucs.batch_size` with their offsets, into SQLite and
//!   into PostgreSQL (127.0.0.1:5432/test, a fresh schema). This is the projector's own cost.
//! - Rebuild: the same records on a local Apache Kafka, `ucs::rebuild` from offset 0 into a
//!   fresh SQLite file and a fresh PostgreSQL schema: what `switchboard ucs rebuild` takes.
//!   Baseline, same run and broker: a bare rdkafka consumer reading the same four topics from
//!   offset 0 to the end.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use e2e::{TestEnv, fixtures, sql};
use ucs::batch::{Record, Source};

fn source_of(topic: &str) -> Source {
    Source::ALL.into_iter().find(|s| s.topic() == topic).unwrap()
}

/// The records as the projector would read them: partition by key, offsets per partition.
fn as_read(records: &[fixtures::FixtureRecord], env_prefix: &str, partitions: &BTreeMap<&str, i32>) -> Vec<Record> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    records
        .iter()
        .map(|r| {
            let partition = runtime::kafka::partition_for_key(r.key.as_bytes(), partitions[r.topic]);
            let offset = next.entry((r.topic, partition)).or_insert(0);
            *offset += 1;
            Record {
                source: source_of(r.topic),
                topic: format!("{env_prefix}{}", r.topic),
                partition,
                offset: *offset - 1,
                payload: r.payload.clone(),
            }
        })
        .collect()
}

async fn sql_apply(label: &str, url: &str, records: &[Record], batch_size: usize) {
    let db = ucs::Db::open(url, 4).await.unwrap();
    let started = Instant::now();
    for batch in records.chunks(batch_size) {
        ucs::batch::apply(&db, batch).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let rows: usize = db.dump().await.unwrap().iter().map(|(_, r)| r.len()).sum();
    println!(
        "SQL apply   {label:<10} {:>7} records in {secs:6.2} s = {:>7.0} records/s  (batches of {batch_size}; {rows} rows)",
        records.len(),
        records.len() as f64 / secs
    );
    db.close().await;
}

#[tokio::main]
async fn main() {
    let wanted: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    // About 7.1 records per fixture interaction (6 events, chat lines, contacts, contents).
    let interactions = (wanted as f64 / 7.1) as usize;
    let (records, expected) = fixtures::log(interactions, 42);
    println!(
        "fixture: {} records ({} interaction events, {} chat lines, {} agents, {} contacts)",
        records.len(),
        expected.interaction_events,
        expected.chat_lines,
        expected.agents,
        expected.contacts
    );
    let batch_size = ucs::UcsSettings::default().batch_size;
    let topics = runtime::topics::Topics::load(None, "").unwrap();
    let partitions: BTreeMap<&str, i32> = Source::ALL
        .iter()
        .map(|s| (s.topic(), topics.partitions(s.topic()).unwrap()))
        .collect();
    let in_memory = as_read(&records, "", &partitions);
    let dir = e2e::run_dir().unwrap();
    sql_apply("sqlite", &sql::sqlite_in(dir.path(), "apply.db"), &in_memory, batch_size).await;
    sql_apply("postgres", &sql::fresh_postgres("bench_apply").await, &in_memory, batch_size).await;

    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    for chunk in records.chunks(20_000) {
        env.produce_fixture(&env.producer(), chunk).await;
    }
    println!(
        "produced {} records to Apache Kafka {} in {:.1} s",
        records.len(),
        runtime::broker::kafka::KAFKA_VERSION,
        started.elapsed().as_secs_f64()
    );
    let sources: Vec<String> = Source::ALL.iter().map(|s| env.topic(s.topic())).collect();
    let raw = e2e::raw_read(&env, &sources, records.len()).await;
    let raw_rate = records.len() as f64 / raw;
    println!(
        "baseline    raw rdkafka {:>7} records in {raw:6.2} s = {raw_rate:>7.0} records/s  (a bare consumer, same topics from offset 0)",
        records.len()
    );
    let settings = env.settings(&dir.path().join("data"));
    for (label, url) in [
        ("sqlite", sql::sqlite_in(dir.path(), "rebuild.db")),
        ("postgres", sql::fresh_postgres("bench_rebuild").await),
    ] {
        let report = ucs::rebuild(&settings, &settings.ucs, &env.topics, &url, runtime::CancellationToken::new())
            .await
            .unwrap();
        println!(
            "rebuild     {label:<10} {:>7} records in {:6.2} s = {:>7.0} records/s  (from offset 0 through the broker) = {:.0} % of the bare consumer",
            report.records,
            report.seconds,
            report.records as f64 / report.seconds,
            100.0 * report.records as f64 / report.seconds / raw_rate
        );
    }
}
