//! `cargo build --release -p switchboard && cargo bench -p e2e --bench email [-- N [CONNECTIONS]]`
//! (the services run as release processes): inbound mail through the SMTP
//! listener on a local Apache Kafka, UCS and the e-mail service as their own processes (as
//! deployed). N mails (default 500, each with a 4 KB text body) sent over CONNECTIONS
//! parallel SMTP clients (default 8), a new SMTP session per mail as relays often do. Prints mails/s from the first `MAIL FROM` to the last
//! `PlacedInQueue` on the log, and the SMTP accept latency (end of DATA to `250`, which the
//! listener answers only after UCS has the content and Kafka the `Submit`) p50 / p99 / max.
//! Baseline, measured first on the same broker: raw rdkafka, the same number of records of the
//! mail's size sent over as many concurrent senders, each waiting for its acknowledgement
//! before the next (what the listener's `250` waits for, without UCS, parsing or SMTP).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use contract::event::EventPayload;
use e2e::TestEnv;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let n = args.next().unwrap_or(500);
    let connections = args.next().unwrap_or(8).max(1);
    let env = TestEnv::start().await.unwrap();
    println!("broker: Apache Kafka {} at {}", runtime::broker::kafka::KAFKA_VERSION, env.kafka.bootstrap_servers);
    let (raw_seconds, raw_latencies) = e2e::raw_acks(&env, n, connections, 4_300).await;
    let raw_rate = n as f64 / raw_seconds;
    let raw_p99 = e2e::quantile(&raw_latencies, 0.99);
    println!(
        "baseline (raw rdkafka, {n} records of 4.3 KB over {connections} senders, each awaiting its ack): {raw_rate:.0} records/s; ack p50 {:.1} ms, p99 {raw_p99:.1} ms",
        e2e::quantile(&raw_latencies, 0.5)
    );
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    let mut settings = env.settings(&dir.join("data"));
    let intake = e2e::mail::start_mail_intake(&env, &mut settings).await;
    let smtp_port = intake.smtp_port;
    let events = env.follow_interaction_events();
    let body = "The parcel has not arrived. ".repeat(146);

    eprintln!("sending {n} mails over {connections} SMTP connections ...");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let body = body.clone();
        tasks.spawn(async move {
            let smtp: AsyncSmtpTransport<Tokio1Executor> =
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port).build();
            let mut latencies = Vec::new();
            for m in (c..n).step_by(connections) {
                let raw = format!(
                    "From: Customer {m} <customer{m}@example.com>\r\nTo: support@switchboard.localhost\r\nSubject: Parcel {m}\r\nMessage-ID: <bench-{m}@example.com>\r\n\r\n{body}\r\n"
                );
                let envelope = lettre::address::Envelope::new(Some(format!("customer{m}@example.com").parse().unwrap()), vec!["support@switchboard.localhost".parse().unwrap()]).unwrap();
                let t = Instant::now();
                smtp.send_raw(&envelope, raw.as_bytes()).await.unwrap();
                latencies.push(t.elapsed().as_micros());
            }
            latencies
        });
    }
    let mut latencies: Vec<u128> = Vec::new();
    while let Some(l) = tasks.join_next().await {
        latencies.extend(l.unwrap());
    }
    let accepted_in = started.elapsed();
    let wanted: HashSet<String> = (0..n).map(|m| email::intake::interaction_id_for(&format!("bench-{m}@example.com"))).collect();
    loop {
        let queued = events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, e)| matches!(e.payload, EventPayload::PlacedInQueue(_)) && wanted.contains(&e.interaction_id))
            .count();
        if queued >= n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "only {queued} of {n} queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued_in = started.elapsed();
    latencies.sort_unstable();
    println!(
        "email inbound: {n} mails over {connections} connections: all accepted (250) in {:.2} s, all queued in {:.2} s = {:.1} mails/s",
        accepted_in.as_secs_f64(),
        queued_in.as_secs_f64(),
        n as f64 / queued_in.as_secs_f64()
    );
    println!(
        "SMTP accept latency (DATA sent -> 250): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        *latencies.last().unwrap() as f64 / 1000.0
    );
    println!(
        "against the raw baseline: {:.0} % of its rate; accept p99 {:.1}x its ack p99",
        100.0 * (n as f64 / queued_in.as_secs_f64()) / raw_rate,
        (percentile(&latencies, 0.99) as f64 / 1000.0) / raw_p99.max(0.01)
    );
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
