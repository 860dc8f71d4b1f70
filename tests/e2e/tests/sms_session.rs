//! SMS in session mode (issue 8) on the real broker, with the SMS server, router, desk and
//! chat server as processes and the Twilio-compatible gateway peer on loopback: the first SMS
//! from a number starts a chat session (a chat interaction routed to Ann); she joins it over
//! the chat server's WebSocket like any chat and answers; her answer goes to the phone by
//! SMS; the customer's next SMS (delivered twice by the gateway) lands once in the same
//! session; Ann ends the chat, and the number's next SMS starts a new session. Two first SMS
//! from another number, delivered at the same moment, open one session.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use desk::users::Role;
use e2e::chat::{connect, read_until, say, send, text_of};
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::sms::{SID, Sent, TOKEN, post_webhook, sign};
use e2e::{TestEnv, free_port};
use contract::AvroMessage;
use contract::chat::{ChatEvent, ChatPayload};
use serde_json::json;

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "chat-inbound"
steps = [{ type = "route" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sms_conversation_is_a_chat_session() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("chat".to_owned(), 2)].into();
    write_users(&dir.join("desk-users.toml"), vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);
    let sent: Sent = Arc::default();
    let api_port = e2e::sms::start(sent.clone(), axum::Router::new()).await;
    let sms_port = free_port();
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.chat.greeting = String::new();
    settings.sms.account_sid = SID.into();
    settings.sms.auth_token = TOKEN.into();
    settings.sms.api_base = format!("http://127.0.0.1:{api_port}");
    settings.sms.from_number = "+441234567890".into();
    settings.sms.public_url = Some(format!("http://127.0.0.1:{sms_port}"));
    settings.sms.session_mode = true;
    let services = env.spawn_services(&mut settings, &[("router", free_port()), ("desk", free_port()), ("chat-server", free_port()), ("sms-server", sms_port)]);
    let http = e2e::http();
    for (service, ready) in [("router", "router"), ("desk", "desk"), ("chat-server", "chat-server")] {
        wait_ready(&http, &services.url(service, &format!("/health/ready/{ready}"))).await;
    }
    wait_ready(&http, &services.url("sms-server", "/health/live")).await;
    let desk = DeskClient::new(&http, services.port("desk"));
    let (ann, sue) = (desk.login("ann").await, desk.login("sue").await);
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    let inbound = services.url("sms-server", "/v1/sms/twilio/inbound");
    let sms = |sid: &'static str, body: &'static str| [("MessageSid", sid), ("From", "+447911123456"), ("To", "+441234567890"), ("Body", body)];
    // The SMS server may still be replaying the chat sessions: the gateway retries a 503.
    let deliver = |params: [(&'static str, &'static str); 4]| {
        let (http, inbound) = (http.clone(), inbound.clone());
        async move {
            let signature = sign(&inbound, &params);
            for _ in 0..100 {
                let (s, body) = post_webhook(&http, &inbound, &params, &signature).await;
                if s == 200 {
                    return;
                }
                assert_eq!(s, 503, "{body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("not accepted");
        }
    };

    deliver(sms("SM00000000000000000000000000000001", "Hi, is my order shipped?")).await;
    let queue = desk.get_until(&sue, "/v1/desk/queues/chat-inbound", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| a.iter().any(|i| i["status"] == "offered"))).await;
    let session = queue["interactions"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(queue["interactions"][0]["properties"]["channel"], "sms");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{session}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");

    let chat_port = services.port("chat-server");
    let mut agent = connect(chat_port, &session, &ann, None).await.unwrap();
    send(&mut agent, json!({"type": "resume", "after": 0})).await;
    read_until(&mut agent, |v| text_of(v) == Some("Hi, is my order shipped?")).await;
    say(&mut agent, "a1", "Yes, it left this morning.").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !sent.lock().unwrap().iter().any(|m| m["Body"] == "Yes, it left this morning.") {
        assert!(std::time::Instant::now() < deadline, "no SMS to the customer: {:?}", sent.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent.lock().unwrap().last().unwrap()["To"], "+447911123456");

    // The answer, delivered twice by the gateway: once in the same session.
    deliver(sms("SM00000000000000000000000000000002", "Great, thanks!")).await;
    deliver(sms("SM00000000000000000000000000000002", "Great, thanks!")).await;
    say(&mut agent, "a2", "You're welcome.").await;
    let seen = read_until(&mut agent, |v| text_of(v) == Some("You're welcome.")).await;
    assert_eq!(seen.iter().filter(|v| text_of(v) == Some("Great, thanks!")).count(), 1, "{seen:?}");
    send(&mut agent, json!({"type": "end"})).await;
    read_until(&mut agent, |v| v["event"]["payload"]["SessionEnded"].is_object()).await;

    // After the end, the number's next SMS starts a new session.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        deliver(sms("SM00000000000000000000000000000003", "One more question")).await;
        let q = desk.get(&sue, "/v1/desk/queues/chat-inbound").await.1;
        if q["interactions"].as_array().is_some_and(|a| a.iter().any(|i| i["id"] != session.as_str())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no new session: {q}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Each of Ann's messages went out once.
    let bodies: Vec<String> = sent.lock().unwrap().iter().map(|m| m["Body"].clone()).collect();
    assert_eq!(bodies.iter().filter(|b| *b == "Yes, it left this morning.").count(), 1, "{bodies:?}");

    // Two first SMS from a new number, at the same time: one session holds both.
    let other = |sid: &'static str, body: &'static str| [("MessageSid", sid), ("From", "+447911123458"), ("To", "+441234567890"), ("Body", body)];
    tokio::join!(deliver(other("SM00000000000000000000000000000004", "Hello?")), deliver(other("SM00000000000000000000000000000005", "Anyone there?")));
    let topic = env.topic(runtime::topics::CHAT_EVENTS);
    let of_number = || -> Vec<ChatEvent> {
        let events: Vec<ChatEvent> = env.read_all(&topic).iter().map(|m| ChatEvent::decode(runtime::Message::payload(m).unwrap()).unwrap()).collect();
        let sessions: Vec<String> = events.iter().filter_map(|e| match &e.payload {
            ChatPayload::SessionStarted(s) if s.origin == "sms:+447911123458" => Some(e.session_id.clone()),
            _ => None,
        }).collect();
        events.into_iter().filter(|e| sessions.contains(&e.session_id)).collect()
    };
    // Both webhooks were answered 200, so both messages are on the topic already.
    let events = of_number();
    let messages: Vec<&ChatEvent> = events.iter().filter(|e| matches!(&e.payload, ChatPayload::MessagePosted(m) if m.participant_id == "customer")).collect();
    assert_eq!(messages.len(), 2, "{events:?}");
    assert_eq!(messages[0].session_id, messages[1].session_id, "one session: {events:?}");
    let started = events.iter().filter(|e| matches!(e.payload, ChatPayload::SessionStarted(_))).count();
    assert!(started >= 1 && events.iter().filter(|e| matches!(e.payload, ChatPayload::SessionStarted(_))).all(|e| e.event_id == events[0].event_id), "one opening, written once or repeated with one id: {events:?}");

    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
