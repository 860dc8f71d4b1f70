//! A whole chat, over real WebSockets on the real broker, with the router, desk, chat server
//! and e-mail sender as processes and a real SMTP server on loopback: the customer is
//! greeted and told her place while she waits; the chat is routed to Ann, who joins once she
//! accepted on the desk (before that, and for anyone not on the chat: 403); both sides drop
//! mid-exchange and resume with nothing lost or doubled; Bob is consulted privately (the
//! customer never sees him), his consult is ended on the desk and he is taken out of the
//! chat; then he is conferenced in and talks to the customer and leaves; the supervisor
//! whispers; the customer asks for the transcript, Ann ends the chat, the interaction records
//! the end, UCS has the chat on Ada's contact with its transcript, and the transcript (as the
//! customer saw it) arrives by mail, once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use desk::users::Role;
use e2e::chat::{Socket, connect, joined, next, quiet, read_until, say, send, text_of};
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::mail::SmtpSink;
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "chat-inbound"
steps = [{ type = "route" }]
"#;

fn left(frame: &Value) -> Option<&str> {
    frame["event"]["payload"]["ParticipantLeft"]["participant_id"].as_str()
}

/// Reads until the frame that carries `text`, returning the number of the last frame read.
async fn seen_text(socket: &mut Socket, text: &str) -> u64 {
    let frames = read_until(socket, |v| text_of(v) == Some(text)).await;
    frames.last().unwrap()["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_from_greeting_to_mailed_transcript() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("chat".to_owned(), 2)].into();
    write_users(
        &dir.join("desk-users.toml"),
        vec![
            ("ann".into(), Role::Agent, BTreeMap::new(), capacity.clone()),
            ("bob".into(), Role::Agent, BTreeMap::new(), capacity.clone()),
            ("zed".into(), Role::Agent, BTreeMap::new(), BTreeMap::new()),
            ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()),
        ],
    );
    let sink = SmtpSink::start(&dir);
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.email.outbound.smtp_host = Some("127.0.0.1".into());
    settings.email.outbound.smtp_port = sink.port;
    settings.email.outbound.tls = email::MailTls::None;
    settings.email.outbound.from = "Shop Support <support@shop.example>".into();
    let ucs_port = free_port();
    settings.chat.ucs_url = Some(format!("http://127.0.0.1:{ucs_port}"));
    let services = env.spawn_services(
        &mut settings,
        &[("ucs", ucs_port), ("router", free_port()), ("desk", free_port()), ("chat-server", free_port()), ("email", free_port())],
    );
    let http = e2e::http();
    for (service, ready) in [("ucs", "ucs"), ("router", "router"), ("desk", "desk"), ("chat-server", "chat-server")] {
        wait_ready(&http, &services.url(service, &format!("/health/ready/{ready}"))).await;
    }
    wait_ready(&http, &services.url("email", "/health/live")).await;
    let chat_port = services.port("chat-server");
    let desk = DeskClient::new(&http, services.port("desk"));
    let [ann, bob, zed, sue] = [desk.login("ann").await, desk.login("bob").await, desk.login("zed").await, desk.login("sue").await];

    // Nobody is ready: Ada is greeted and told her place.
    let (session, token) = e2e::chat::start(&http, chat_port, json!({"name": "Ada", "email": "ada@example.com", "subject": "Refund"})).await;
    let mut customer = connect(chat_port, &session, &token, None).await.unwrap();
    send(&mut customer, json!({"type": "resume", "after": 0})).await;
    let greeting = read_until(&mut customer, |v| v["event"]["payload"]["MessagePosted"]["participant_id"] == "system").await;
    assert!(text_of(greeting.last().unwrap()).unwrap().contains("Hello Ada"), "{greeting:?}");
    seen_text(&mut customer, "You are next in the queue.").await;
    say(&mut customer, "c1", "is anyone there?").await;
    // The widget's way: no token in the URL, the token as the first frame; a wrong one is
    // told why and closed with 4401.
    let mut by_frame = e2e::chat::connect_by_frame(chat_port, &session, &token).await;
    send(&mut by_frame, json!({"type": "resume", "after": 0})).await;
    read_until(&mut by_frame, |v| text_of(v) == Some("is anyone there?")).await;
    drop(by_frame);
    let mut wrong = e2e::chat::connect_by_frame(chat_port, &session, "not-the-token").await;
    let refusal = e2e::chat::next(&mut wrong).await;
    assert_eq!((refusal["type"].as_str(), refusal["status"].as_u64()), (Some("error"), Some(401)), "{refusal}");
    assert_eq!(e2e::chat::close_code(&mut wrong).await, Some(4401));

    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    let interaction = format!("/v1/desk/interactions/{session}");
    desk.get_until(&sue, &interaction, Duration::from_secs(60), |i| i["status"] == "offered" && i["offer"]["agent_id"] == "ann").await;
    assert_eq!(connect(chat_port, &session, &ann, None).await.err(), Some(403), "not hers until she accepts");
    let (s, b) = desk.post(&ann, &format!("{interaction}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(connect(chat_port, &session, &zed, None).await.err(), Some(403), "zed is not on this chat");

    let mut agent = connect(chat_port, &session, &ann, None).await.unwrap();
    send(&mut agent, json!({"type": "resume", "after": 0})).await;
    let history = read_until(&mut agent, |v| joined(v) == Some("ann")).await;
    assert!(history.iter().any(|v| text_of(v) == Some("is anyone there?")), "the agent sees what came before: {history:?}");
    say(&mut agent, "a1", "Hello Ada, Ann here.").await;
    let ann_saw = seen_text(&mut agent, "Hello Ada, Ann here.").await;
    let customer_saw = seen_text(&mut customer, "Hello Ada, Ann here.").await;

    // Ann drops mid-exchange; Ada goes on; Ann resumes from the last number she saw.
    drop(agent);
    say(&mut customer, "c2", "my card was charged twice").await;
    say(&mut customer, "c3", "order 42").await;
    let customer_saw_c3 = seen_text(&mut customer, "order 42").await;
    let mut agent = connect(chat_port, &session, &ann, None).await.unwrap();
    send(&mut agent, json!({"type": "resume", "after": ann_saw})).await;
    let (m1, m2) = (next(&mut agent).await, next(&mut agent).await);
    assert_eq!((text_of(&m1), text_of(&m2)), (Some("my card was charged twice"), Some("order 42")), "exactly what she missed, in order");
    assert_eq!(quiet(&mut agent).await, None, "nothing doubled (and no second joining)");
    assert!(customer_saw_c3 > customer_saw);

    // Ada drops; Ann answers twice; Ada resumes.
    drop(customer);
    say(&mut agent, "a2", "Let me check.").await;
    say(&mut agent, "a3", "Refunded.").await;
    seen_text(&mut agent, "Refunded.").await;
    let mut customer = connect(chat_port, &session, &token, None).await.unwrap();
    send(&mut customer, json!({"type": "resume", "after": customer_saw_c3})).await;
    let (m1, m2) = (next(&mut customer).await, next(&mut customer).await);
    assert_eq!((text_of(&m1), text_of(&m2)), (Some("Let me check."), Some("Refunded.")));
    assert_eq!(quiet(&mut customer).await, None, "nothing doubled");

    // A private consult: Bob joins unseen by Ada, whispers, and is taken off on the desk.
    let (s, b) = desk.post(&ann, &format!("{interaction}/consult"), json!({"agent": "bob"})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &interaction, Duration::from_secs(30), |i| i["parties"]["bob"] == "consult").await;
    let mut consult = connect(chat_port, &session, &bob, None).await.unwrap();
    send(&mut consult, json!({"type": "resume", "after": 0})).await;
    read_until(&mut consult, |v| joined(v) == Some("bob")).await;
    say(&mut consult, "b1", "that card was flagged last week").await;
    seen_text(&mut agent, "that card was flagged last week").await;
    let (s, b) = desk.post(&ann, &format!("{interaction}/leave"), json!({"agent": "bob"})).await;
    assert_eq!(s, 200, "{b}");
    let gone = read_until(&mut consult, |v| v["type"] == "closed").await;
    assert!(gone.iter().any(|v| left(v) == Some("bob")), "{gone:?}");
    read_until(&mut agent, |v| left(v) == Some("bob")).await;

    // A conference: Bob again, this time with Ada, and he leaves from the chat.
    let (s, b) = desk.post(&ann, &format!("{interaction}/consult"), json!({"agent": "bob", "role": "conference"})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &interaction, Duration::from_secs(30), |i| i["parties"]["bob"] == "conference").await;
    let mut conference = connect(chat_port, &session, &bob, None).await.unwrap();
    send(&mut conference, json!({"type": "resume", "after": 0})).await;
    read_until(&mut conference, |v| v["event"]["payload"]["ParticipantJoined"]["participant_id"] == "bob" && v["event"]["payload"]["ParticipantJoined"]["agents_only"] == false).await;
    say(&mut conference, "b2", "Hi Ada, Bob from billing.").await;
    let seen = read_until(&mut customer, |v| text_of(v) == Some("Hi Ada, Bob from billing.")).await;
    assert!(seen.iter().all(|v| text_of(v) != Some("that card was flagged last week")), "{seen:?}");
    send(&mut conference, json!({"type": "leave"})).await;
    read_until(&mut customer, |v| left(v) == Some("bob")).await;
    desk.get_until(&ann, &interaction, Duration::from_secs(30), |i| i["parties"].get("bob").is_none()).await;

    // The supervisor listens in silently and whispers to Ann; Ada never sees it.
    let mut supervisor = connect(chat_port, &session, &sue, None).await.unwrap();
    send(&mut supervisor, json!({"type": "resume", "after": 0})).await;
    read_until(&mut supervisor, |v| joined(v) == Some("sue")).await;
    say(&mut supervisor, "s1", "offer the voucher").await;
    seen_text(&mut agent, "offer the voucher").await;
    say(&mut customer, "c4", "thanks!").await;
    let seen = read_until(&mut customer, |v| text_of(v) == Some("thanks!")).await;
    assert!(seen.iter().all(|v| text_of(v) != Some("offer the voucher") && joined(v) != Some("sue")), "{seen:?}");

    // Ada asks for the transcript; Ann ends the chat. Not to another address: a chat is no
    // mail relay.
    send(&mut customer, json!({"type": "transcript", "email": "victim@elsewhere.example"})).await;
    let refused = read_until(&mut customer, |v| v["type"] == "error").await;
    let reason = refused.last().unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("only to the address this chat was started with"), "{reason}");
    send(&mut customer, json!({"type": "transcript", "email": "ada@example.com"})).await;
    send(&mut agent, json!({"type": "end"})).await;
    let seen = read_until(&mut customer, |v| v["event"]["payload"]["SessionEnded"].is_object()).await;
    assert_eq!(seen.last().unwrap()["event"]["payload"]["SessionEnded"]["ended_by"], "ann");
    let i = desk.get_until(&ann, &interaction, Duration::from_secs(60), |i| i["properties"]["chat_ended_by"] == "ann").await;
    assert_eq!(i["properties"]["chat_end_reason"], "ann ended the chat", "{i}");
    let (s, b) = desk.post(&ann, &format!("{interaction}/done"), json!({})).await;
    assert_eq!(s, 200, "{b}");

    // UCS: the chat is on Ada's contact (found or created by her address when she started),
    // with its transcript, whispers included for agents and marked as such.
    let contact = i["contact_id"].as_str().expect("the chat has Ada's contact").to_owned();
    let ucs = |path: String| format!("http://127.0.0.1:{ucs_port}{path}");
    let history = e2e::poll_json(&http, &ucs(format!("/v1/contacts/{contact}/history")), Duration::from_secs(60), |h| h.to_string().contains(&session)).await;
    assert!(history.to_string().contains(&session), "{history}");
    let detail = e2e::poll_json(&http, &ucs(format!("/v1/interactions/{session}/detail")), Duration::from_secs(60), |d| d.to_string().contains("ann ended the chat")).await;
    let lines: Vec<(&str, &str)> = detail["transcript"].as_array().unwrap().iter().filter_map(|l| Some((l["text"].as_str()?, l["visibility"].as_str().unwrap_or("all")))).collect();
    assert!(lines.contains(&("Refunded.", "all")) && lines.contains(&("offer the voucher", "agents")), "{lines:?}");

    let mail = sink.delivered("ada@example.com", "Your chat transcript: Refund").await;
    let parsed = mail_parser::MessageParser::default().parse(&mail.raw).unwrap();
    let body = parsed.body_text(0).unwrap().into_owned();
    for line in ["Ada: is anyone there?", "ann: Hello Ada, Ann here.", "Ada: order 42", "ann: Refunded.", "bob: Hi Ada, Bob from billing.", "The chat ended: ann ended the chat"] {
        assert!(body.contains(line), "{line:?} in the transcript:\n{body}");
    }
    // Bob's private consult stays private though he was conferenced in later.
    assert_eq!((body.matches("bob joined").count(), body.matches("bob left").count()), (1, 1), "only the conference:\n{body}");
    for private in ["that card was flagged", "offer the voucher", "sue"] {
        assert!(!body.contains(private), "{private:?} is not for the customer:\n{body}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.all_delivered("ada@example.com", "Your chat transcript").len(), 1, "mailed once");
    assert!(sink.all_delivered("victim@elsewhere.example", "").is_empty(), "nothing to the other address");
    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
