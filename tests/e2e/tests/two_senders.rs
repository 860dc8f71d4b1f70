//! Two e-mail senders on one send queue (each `switchboard run email`, as two replicas are
//! deployed), on Apache Kafka, with a real SMTP server: every message is mailed exactly once,
//! and messages a sender locked and left (its instance gone: here a lock held by a holder no
//! process has) are taken over after `[email.outbound] takeover_after_s` and mailed once too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::command::{CommandPayload, Lock, LockHolderKind, MediaType, Submit};
use e2e::{TestEnv, free_port};
use runtime::commands::CommandClient;

fn outgoing(n: usize) -> CommandPayload {
    CommandPayload::Submit(Submit {
        media_type: MediaType::Email,
        origin: "two-senders-test".into(),
        target_queue: "outbound-send".into(),
        priority: 0,
        properties: BTreeMap::from([
            ("to".to_owned(), format!("customer{n}@example.com")),
            ("subject".to_owned(), format!("Reply {n}")),
            ("reply_text".to_owned(), format!("Answer number {n}")),
        ]),
        contact_id: None,
        content_ref: None,
        parent_interaction_id: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_senders_mail_each_message_once_and_take_over_a_gone_senders_locks() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    let sink = e2e::mail::SmtpSink::start(&dir);
    let mut settings = env.settings(&dir.join("data"));
    settings.email.outbound.smtp_host = Some("127.0.0.1".into());
    settings.email.outbound.smtp_port = sink.port;
    settings.email.outbound.tls = email::MailTls::None;
    settings.email.outbound.from = "Shop Support <support@shop.example>".into();
    settings.email.outbound.takeover_after_s = 3;
    let _server = env.spawn_services(&mut settings, &[("interaction-server", free_port())]);

    // Three messages locked by a sender that is gone, before any sender runs.
    let client = CommandClient::new(&env.kafka, &env.topics, "two-senders-test").unwrap();
    let orphans = 3;
    for n in 0..orphans {
        let id = format!("orphan-{n}");
        client.send(&client.command(&id, outgoing(n))).await.unwrap();
        let lock = CommandPayload::Lock(Lock { holder: "email-sender@gone0000".into(), holder_kind: LockHolderKind::Router });
        client.send(&client.command(&id, lock)).await.unwrap();
    }
    // Two senders (each its own config, ports and log), then a stream of messages while both
    // run.
    let mut senders = Vec::new();
    for name in ["email-a", "email-b"] {
        let mut own = settings.clone();
        e2e::listen_on(&mut own, free_port());
        let config = env.write_config(&own, &format!("{name}.toml"));
        senders.push(e2e::spawn_service(&config, "email", &dir.join(format!("{name}.log"))));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = |name: &str| std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default().contains("sender started");
    while !(started("email-a") && started("email-b")) {
        assert!(Instant::now() < deadline, "both senders did not start in 60 s");
        for sender in &mut senders {
            assert!(sender.try_wait().unwrap().is_none(), "a sender exited at start");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = 24;
    for n in orphans..total {
        client.send(&client.command(&format!("reply-{n}"), outgoing(n))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every message mailed, then a pause in which a duplicate would show.
    let deadline = Instant::now() + Duration::from_secs(90);
    while sink.received().len() < total {
        assert!(Instant::now() < deadline, "{} of {total} mails arrived in 90 s", sink.received().len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let received = sink.received();
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &received {
        for to in &mail.rcpt_to {
            *per_recipient.entry(to.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mailed more than once: {twice:?}");
    assert_eq!(per_recipient.len(), total, "{per_recipient:?}");
    for sender in &mut senders {
        assert!(sender.try_wait().unwrap().is_none(), "a sender exited");
    }
    let logs = std::fs::read_to_string(dir.join("email-a.log")).unwrap_or_default() + &std::fs::read_to_string(dir.join("email-b.log")).unwrap_or_default();
    // Both survivors may try (one unlock wins, the other is refused); each orphan is tried.
    for n in 0..orphans {
        let id = format!("orphan-{n}");
        assert!(logs.lines().any(|l| l.contains("taking over a message") && l.contains(&id)), "{id} never taken over");
    }
    eprintln!("{total} messages, two senders, {orphans} taken over from a gone sender: each mailed once");
}
