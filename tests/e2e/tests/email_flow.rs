//! The seed's "Processing E-Mail" flow end to end, every part real and on loopback: mail in
//! by SMTP (lettre as the client) and from an IMAP mailbox (Dovecot), and by the web form;
//! acknowledged from a standard response, categorised, routed to an agent who answers on the
//! desk; the answer QA-approved by a supervisor and delivered to a real SMTP server
//! (aiosmtpd), whose received messages are checked (recipient, subject, threading headers,
//! body). The customer's answer to it threads onto her history in UCS. A reply the SMTP server
//! refuses is retried and then returned to its author with the reason; a mailbox mail that
//! cannot be accepted is parked on the dead-letter topic and kept in the mailbox.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use contract::event::{EventPayload, InteractionEvent};
use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::mail::{Dovecot, SmtpSink};
use e2e::{TestEnv, free_port, header};
use email::intake::interaction_id_for;
use futures::TryStreamExt;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60

[[queue]]
name = "inbound"
steps = [
  { type = "classify", use_model = false, rules = [{ field = "subject", regex = "(?i)invoice", category = "billing" }] },
  { type = "respond", standard_response = "acknowledgement", media = ["email"], queue = "outbound-send" },
  { type = "route" },
]

[[queue]]
name = "outbound"
steps = [{ type = "qa", sample_percent = 100, review_queue = "qa-review", send_queue = "outbound-send" }]

[[queue]]
name = "qa-returned"
steps = [{ type = "route", to_agent_property = "author_agent" }]

[[queue]]
name = "send-failed"
steps = [{ type = "route", to_agent_property = "author_agent" }]
"#;

const LIMIT: Duration = Duration::from_secs(90);

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(raw).unwrap()
}

fn message_ids(header: Option<&mail_parser::HeaderValue<'_>>) -> Vec<String> {
    match header {
        Some(mail_parser::HeaderValue::Text(t)) => vec![t.to_string()],
        Some(mail_parser::HeaderValue::TextList(l)) => l.iter().map(ToString::to_string).collect(),
        _ => vec![],
    }
}

async fn imap_session(dovecot: &Dovecot) -> async_imap::Session<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dovecot.port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    client.login(&dovecot.user, &dovecot.password).await.map_err(|(e, _)| e).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_from_smtp_imap_and_web_form_is_acknowledged_routed_answered_approved_and_delivered() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    let sink = SmtpSink::start(&dir);
    let dovecot = Dovecot::start();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("email".to_owned(), 5)].into();
    write_users(
        &dir.join("desk-users.toml"),
        vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())],
    );

    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    let ucs_port = free_port();
    let smtp_port = free_port();
    settings.email.ucs_url = Some(format!("http://127.0.0.1:{ucs_port}"));
    settings.email.domain = "shop.example".into();
    settings.email.max_message_bytes = 64 * 1024;
    settings.email.smtp_listen = Some(([127, 0, 0, 1], smtp_port).into());
    settings.email.imap.host = Some("127.0.0.1".into());
    settings.email.imap.port = dovecot.port;
    settings.email.imap.tls = email::MailTls::None;
    settings.email.imap.username = dovecot.user.clone();
    settings.email.imap.password = dovecot.password.clone();
    settings.email.imap.poll_interval_ms = 300;
    settings.email.imap.after_accept = email::AfterAccept::Delete;
    settings.email.outbound.smtp_host = Some("127.0.0.1".into());
    settings.email.outbound.smtp_port = sink.port;
    settings.email.outbound.tls = email::MailTls::None;
    settings.email.outbound.from = "Shop Support <support@shop.example>".into();
    settings.email.outbound.max_attempts = 3;
    settings.email.outbound.retry_initial_ms = 200;
    let services = env.spawn_services(
        &mut settings,
        &[("ucs", ucs_port), ("router", free_port()), ("desk", free_port()), ("email", free_port()), ("web-api", free_port())],
    );
    let http = e2e::http();
    let url = |service: &str, path: &str| services.url(service, path);
    for (service, ready) in [("ucs", "ucs"), ("router", "router"), ("desk", "desk")] {
        wait_ready(&http, &url(service, &format!("/health/ready/{ready}"))).await;
    }
    wait_ready(&http, &url("email", "/health/live")).await;
    wait_ready(&http, &url("web-api", "/health/live")).await;
    let desk = DeskClient::new(&http, services.port("desk"));
    let r = http
        .post(url("ucs", "/v1/standard-responses"))
        .json(&json!({
            "name": "acknowledgement", "media": ["email"],
            "subject": "We have your mail: {{subject}}",
            "body_text": "Dear {{from_name}}, thank you for writing. We answer within a day.",
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let sue = desk.login("sue").await;
    let ann = desk.login("ann").await;
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    // The acknowledgement must be on the floor before mail arrives; UCS publishes it at once.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Ada writes by SMTP; Bob's mail is in the IMAP mailbox, with one that cannot be
    //    accepted (no sender); Cy uses the web form.
    let smtp: AsyncSmtpTransport<Tokio1Executor> = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port).build();
    let send_raw = |from: &'static str, raw: String| {
        let smtp = smtp.clone();
        async move {
            let envelope = lettre::address::Envelope::new(Some(from.parse().unwrap()), vec!["support@shop.example".parse().unwrap()]).unwrap();
            smtp.send_raw(&envelope, raw.as_bytes()).await
        }
    };
    send_raw(
        "ada@example.com",
        "From: Ada Lovelace <ada@example.com>\r\nTo: support@shop.example\r\nSubject: Invoice question\r\nMessage-ID: <a1@example.com>\r\nReferences: <a0@example.com>\r\n\r\nWhy is my invoice twice the price?\r\n".into(),
    )
    .await
    .unwrap();
    let ada = interaction_id_for("a1@example.com");
    let mut imap = imap_session(&dovecot).await;
    imap.append("INBOX", None, None, "From: Bob <bob@example.com>\r\nTo: support@shop.example\r\nSubject: Invoice for my parcel\r\nMessage-ID: <b1@example.com>\r\n\r\nIt has been a week.\r\n").await.unwrap();
    let big = format!("From: Eve <eve@example.com>\r\nSubject: huge\r\nMessage-ID: <e1@example.com>\r\n\r\n{}\r\n", "x".repeat(100 * 1024));
    imap.append("INBOX", None, None, big).await.unwrap();
    imap.append("INBOX", None, None, "Subject: no sender at all\r\nMessage-ID: <x1@example.com>\r\n\r\nwho am I\r\n").await.unwrap();
    imap.append("INBOX", None, None, "From: Dan <reject-dan@example.com>\r\nTo: support@shop.example\r\nSubject: Invoice for Dan\r\nMessage-ID: <d1@example.com>\r\n\r\nPlease resend.\r\n").await.unwrap();
    let bob = interaction_id_for("b1@example.com");
    let dan = interaction_id_for("d1@example.com");
    let form = json!({"email": "cy@example.com", "name": "Cy", "subject": "Opening hours", "message": "When are you open?"});
    let r = http.post(url("web-api", "/v1/forms/email")).header("Idempotency-Key", "form-1").json(&form).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let cy = r.json::<Value>().await.unwrap()["interaction_id"].as_str().unwrap().to_owned();
    let r = http.post(url("web-api", "/v1/forms/email")).header("Idempotency-Key", "form-1").json(&form).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["interaction_id"], cy.as_str(), "the same form twice is one interaction");
    let r = http.post(url("web-api", "/v1/forms/email")).json(&json!({"email": "not an address", "message": "hi"})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("not an address"));

    // 2. Acknowledgements go out, threaded onto each mail; none to the bad mailbox mail.
    let ack = sink.delivered("ada@example.com", "We have your mail").await;
    let m = parse(&ack.raw);
    assert_eq!(m.subject().unwrap(), format!("We have your mail: Invoice question [ref:{ada}]"));
    assert_eq!(message_ids(m.header("In-Reply-To")), ["a1@example.com"]);
    assert_eq!(message_ids(m.header("References")), ["a0@example.com", "a1@example.com"]);
    assert_eq!(m.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert!(m.body_text(0).unwrap().contains("Dear Ada Lovelace, thank you for writing."), "{:?}", m.body_text(0));
    assert_eq!(m.from().unwrap().first().unwrap().address().unwrap(), "support@shop.example");
    let bob_ack = sink.delivered("bob@example.com", "We have your mail").await;
    assert_eq!(message_ids(parse(&bob_ack.raw).header("In-Reply-To")), ["b1@example.com"]);
    assert!(parse(&bob_ack.raw).subject().unwrap().contains(&format!("[ref:{bob}]")));
    sink.delivered("cy@example.com", "We have your mail: Opening hours").await;

    // The mailbox: Bob's and Dan's mails deleted once on Kafka; the two it could not accept
    // (too large, no sender) kept and flagged, and parked on the dead-letter topic with the
    // reason.
    let imap_parked = || -> Vec<rdkafka::message::OwnedMessage> {
        env.read_all(&env.topic("deadletter")).into_iter().filter(|m| header(m, "dlq.source").is_some_and(|s| s.contains("imap"))).collect()
    };
    env.wait_for("the bad mailbox mails parked", LIMIT, || imap_parked().len() >= 2).await;
    let parked = imap_parked();
    let reasons: Vec<String> = parked.iter().map(|m| header(m, "dlq.reason").unwrap()).collect();
    assert!(reasons[0].contains("the limit is 65536"), "{reasons:?}");
    assert!(String::from_utf8_lossy(rdkafka::Message::payload(&parked[0]).unwrap()).contains("Message-ID: <e1@example.com>"), "the start of the huge mail is kept");
    assert!(reasons[1].contains("no sender"), "{reasons:?}");
    assert!(String::from_utf8_lossy(rdkafka::Message::payload(&parked[1]).unwrap()).contains("who am I"), "the raw mail is kept");
    assert_eq!(parked.len(), 2, "each parked once: {reasons:?}");
    imap.select("INBOX").await.unwrap();
    let left: Vec<_> = imap.uid_fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await.unwrap().try_collect().await.unwrap();
    assert_eq!(left.len(), 2, "only the refused mails stay: {left:?}");
    for mail in &left {
        assert!(mail.flags().any(|f| matches!(f, async_imap::types::Flag::Custom(ref k) if k == email::imap::PARKED_KEYWORD)), "{left:?}");
    }

    // 3. Categorised and routed to Ann, who answers Ada (SMTP) and Bob (IMAP); Sue approves;
    //    the answers are delivered.
    let offered = |i: &Value| i["status"] == "offered" && i["offer"]["agent_id"] == "ann";
    let answer_and_approve = |id: String, text: &'static str| {
        let (desk, ann, sue) = (&desk, &ann, &sue);
        async move {
            let i = desk.get_until(sue, &format!("/v1/desk/interactions/{id}"), LIMIT, offered).await;
            assert_eq!(i["properties"]["category"], "billing", "{i}");
            let (s, b) = desk.post(ann, &format!("/v1/desk/interactions/{id}/accept"), json!({})).await;
            assert_eq!(s, 200, "{b}");
            let (s, b) = desk.post(ann, &format!("/v1/desk/interactions/{id}/release"), json!({ "text": text })).await;
            assert_eq!(s, 200, "{b}");
            let reply = b["interaction"]["id"].as_str().unwrap().to_owned();
            desk.get_until(sue, &format!("/v1/desk/interactions/{reply}"), LIMIT, |i| i["queue"] == "qa-review").await;
            reply
        }
    };
    let reply = answer_and_approve(ada.clone(), "Dear Ada,\n\nthe second line was a mistake; it is refunded.\n\nAnn").await;
    let bob_reply = answer_and_approve(bob.clone(), "Dear Bob, here is the invoice again.").await;
    assert!(sink.delivered_now("ada@example.com", "Re: Invoice question").is_none(), "nothing leaves before QA approves");
    for r in [&reply, &bob_reply] {
        let (s, b) = desk.post(&sue, &format!("/v1/desk/interactions/{r}/qa"), json!({"decision": "approve"})).await;
        assert_eq!(s, 200, "{b}");
    }
    for i in [&ada, &bob] {
        let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{i}/done"), json!({})).await;
        assert_eq!(s, 200, "{b}");
    }

    let to_bob = sink.delivered("bob@example.com", "Re: Invoice for my parcel").await;
    let m = parse(&to_bob.raw);
    assert_eq!(m.subject().unwrap(), format!("Re: Invoice for my parcel [ref:{bob}]"));
    assert_eq!(m.message_id().unwrap(), format!("sb.{bob_reply}@shop.example"));
    assert_eq!(message_ids(m.header("In-Reply-To")), ["b1@example.com"]);
    assert!(m.body_text(0).unwrap().contains("here is the invoice again"));
    let answer = sink.delivered("ada@example.com", "Re: Invoice question").await;
    assert_eq!(answer.rcpt_to, ["ada@example.com"]);
    let m = parse(&answer.raw);
    assert_eq!(m.subject().unwrap(), format!("Re: Invoice question [ref:{ada}]"));
    assert_eq!(m.message_id().unwrap(), format!("sb.{reply}@shop.example"));
    assert_eq!(message_ids(m.header("In-Reply-To")), ["a1@example.com"]);
    assert_eq!(message_ids(m.header("References")), ["a0@example.com", "a1@example.com"]);
    assert!(m.header_raw("Auto-Submitted").is_none(), "a person's answer is not automatic");
    assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n").trim_end(), "Dear Ada,\n\nthe second line was a mistake; it is refunded.\n\nAnn");
    let sent = desk.get_until(&sue, &format!("/v1/desk/interactions/{reply}"), LIMIT, |i| i["status"] == "stopped").await;
    assert_eq!(sent["stop_reason"], "sent", "{sent}");
    assert_eq!(sent["properties"]["sent_message_id"], format!("sb.{reply}@shop.example"));

    // 4. Ada answers the answer: it threads onto it, on her contact's history in UCS.
    send_raw(
        "ada@example.com",
        format!("From: ada@example.com\r\nTo: support@shop.example\r\nSubject: Re: Invoice question [ref:{ada}]\r\nMessage-ID: <a2@example.com>\r\nIn-Reply-To: <sb.{reply}@shop.example>\r\n\r\nThank you!\r\n"),
    )
    .await
    .unwrap();
    let thanks = interaction_id_for("a2@example.com");
    let contact = sent["contact_id"].as_str().unwrap().to_owned();
    let history = e2e::poll_json(&http, &url("ucs", &format!("/v1/contacts/{contact}/history")), LIMIT, |h| h.to_string().contains(&thanks)).await;
    let ids: Vec<&str> = history["interactions"].as_array().or(history.as_array()).unwrap().iter().filter_map(|i| i["id"].as_str().or(i["interaction_id"].as_str())).collect();
    for id in [ada.as_str(), reply.as_str(), thanks.as_str()] {
        assert!(ids.contains(&id), "{id} on Ada's history: {history}");
    }
    let events = env.read_decoded::<InteractionEvent>(&env.topic("interaction.events"));
    let submitted_thanks = events.iter().find_map(|(_, _, e)| match &e.payload {
        EventPayload::Submitted(s) if e.interaction_id == thanks => Some(s.clone()),
        _ => None,
    });
    assert_eq!(submitted_thanks.unwrap().parent_interaction_id.as_deref(), Some(reply.as_str()), "threads onto our answer");

    // 5. Dan's address is refused by the SMTP server: his acknowledgement and then Ann's
    //    answer are retried, and the answer comes back to Ann with the server's reason.
    let i = desk.get_until(&sue, &format!("/v1/desk/interactions/{dan}"), LIMIT, offered).await;
    assert_eq!(i["properties"]["from"], "reject-dan@example.com");
    desk.post(&ann, &format!("/v1/desk/interactions/{dan}/accept"), json!({})).await;
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{dan}/release"), json!({"text": "Here it is."})).await;
    assert_eq!(s, 200, "{b}");
    let dan_reply = b["interaction"]["id"].as_str().unwrap().to_owned();
    desk.get_until(&sue, &format!("/v1/desk/interactions/{dan_reply}"), LIMIT, |i| i["queue"] == "qa-review").await;
    desk.post(&sue, &format!("/v1/desk/interactions/{dan_reply}/qa"), json!({"decision": "approve"})).await;
    let back = desk.get_until(&sue, &format!("/v1/desk/interactions/{dan_reply}"), LIMIT, offered).await;
    assert_eq!(back["queue"], "send-failed", "{back}");
    let error = back["properties"]["send_error"].as_str().unwrap();
    assert!(error.contains("550") && error.contains("reject-dan@example.com"), "{error}");
    let ack_id = router::strategy::response_id(&dan, "acknowledgement");
    let ack = desk.get_until(&sue, &format!("/v1/desk/interactions/{ack_id}"), LIMIT, |i| i["queue"] == "send-failed").await;
    assert!(ack["properties"]["send_error"].as_str().unwrap().contains("550"), "{ack}");
    let attempts = events_of(&env, &dan_reply, |p| matches!(p, EventPayload::PropertiesChanged(c) if c.set.contains_key("send_attempts")));
    assert_eq!(attempts, 2, "two retries recorded before giving up on the third attempt");
    assert!(sink.received().iter().all(|r| !r.rcpt_to.iter().any(|t| t.starts_with("reject"))));

    // Nothing left unsent or unaccounted for: every e-mail interaction is stopped (sent or
    // done), waiting for a person, or back with its author.
    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}


fn events_of(env: &TestEnv, id: &str, kind: impl Fn(&EventPayload) -> bool) -> usize {
    env.read_decoded::<InteractionEvent>(&env.topic("interaction.events")).iter().filter(|(_, _, e)| e.interaction_id == id && kind(&e.payload)).count()
}

