//! A chat routed to an agent who joins over the desk: the customer starts it, the router
//! offers it to Ann, she accepts on the desk and connects to the chat with her desk token;
//! customer and agent see each other's messages; a whisper of the supervisor's is shown to
//! agents and never to the customer; someone not on the chat is refused.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "chat-inbound"
steps = [{ type = "route" }]
"#;

async fn connect(port: u16, session: &str, token: &str) -> Result<Socket, u16> {
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/chats/{session}/ws?token={token}")).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connecting: {e}"),
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// Frames until one satisfies `until` (fails after 30 s); returns them all.
async fn read_until(socket: &mut Socket, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.unwrap_or_else(|_| panic!("waited 30 s; saw {seen:?}")).unwrap().unwrap();
        if let Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).unwrap();
            let done = until(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

fn text_of(v: &Value) -> Option<&str> {
    v["event"]["payload"]["MessagePosted"]["text"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_chat_is_joined_by_its_agent_and_both_sides_talk() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("chat".to_owned(), 2)].into();
    write_users(
        &dir.join("desk-users.toml"),
        vec![
            ("ann".into(), Role::Agent, BTreeMap::new(), capacity.clone()),
            ("zed".into(), Role::Agent, BTreeMap::new(), BTreeMap::new()),
            ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()),
        ],
    );
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    let services = env.spawn_services(&mut settings, &[("router", free_port()), ("desk", free_port()), ("chat-server", free_port())]);
    let http = reqwest::Client::new();
    for (service, ready) in [("router", "router"), ("desk", "desk"), ("chat-server", "chat")] {
        wait_ready(&http, &services.url(service, &format!("/health/ready/{ready}"))).await;
    }
    let chat_port = services.port("chat-server");
    let desk = DeskClient::new(&http, services.port("desk"));
    let ann = desk.login("ann").await;
    let zed = desk.login("zed").await;
    let sue = desk.login("sue").await;
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");

    let started: Value = http.post(format!("http://127.0.0.1:{chat_port}/v1/chats")).json(&json!({"name": "Ada"})).send().await.unwrap().json().await.unwrap();
    let (session, token) = (started["session_id"].as_str().unwrap().to_owned(), started["token"].as_str().unwrap().to_owned());
    let mut customer = connect(chat_port, &session, &token).await.unwrap();
    send(&mut customer, json!({"type": "resume", "after": 0})).await;
    send(&mut customer, json!({"type": "message", "text": "is anyone there?", "client_message_id": "c1"})).await;

    desk.get_until(&sue, &format!("/v1/desk/interactions/{session}"), Duration::from_secs(60), |i| i["status"] == "offered" && i["offer"]["agent_id"] == "ann").await;
    assert_eq!(connect(chat_port, &session, &ann).await.err(), Some(403), "not hers until she accepts");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{session}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(connect(chat_port, &session, &zed).await.err(), Some(403), "zed is not on this chat");

    let mut agent = connect(chat_port, &session, &ann).await.unwrap();
    send(&mut agent, json!({"type": "resume", "after": 0})).await;
    let history = read_until(&mut agent, |v| v["event"]["payload"]["ParticipantJoined"]["participant_id"] == "ann").await;
    assert!(history.iter().any(|v| text_of(v) == Some("is anyone there?")), "the agent sees what came before: {history:?}");
    send(&mut agent, json!({"type": "message", "text": "Hello Ada, Ann here.", "client_message_id": "a1"})).await;
    let seen = read_until(&mut customer, |v| text_of(v) == Some("Hello Ada, Ann here.")).await;
    assert!(seen.iter().any(|v| v["event"]["payload"]["ParticipantJoined"]["participant_id"] == "ann"), "{seen:?}");

    // The supervisor listens in silently and whispers to Ann; Ada never sees it.
    let mut supervisor = connect(chat_port, &session, &sue).await.unwrap();
    send(&mut supervisor, json!({"type": "resume", "after": 0})).await;
    read_until(&mut supervisor, |v| v["event"]["payload"]["ParticipantJoined"]["participant_id"] == "sue").await;
    send(&mut supervisor, json!({"type": "message", "text": "offer the voucher", "client_message_id": "s1"})).await;
    read_until(&mut agent, |v| text_of(v) == Some("offer the voucher")).await;
    send(&mut customer, json!({"type": "message", "text": "thanks!", "client_message_id": "c2"})).await;
    let seen = read_until(&mut customer, |v| text_of(v) == Some("thanks!")).await;
    assert!(seen.iter().all(|v| text_of(v) != Some("offer the voucher") && v["event"]["payload"]["ParticipantJoined"]["participant_id"] != "sue"), "{seen:?}");
    read_until(&mut agent, |v| text_of(v) == Some("thanks!")).await;

    send(&mut agent, json!({"type": "end"})).await;
    let seen = read_until(&mut customer, |v| v["event"]["payload"]["SessionEnded"].is_object()).await;
    assert_eq!(seen.last().unwrap()["event"]["payload"]["SessionEnded"]["ended_by"], "ann");
    // The interaction records how the chat ended, for Ann's wrap-up; she then marks it done.
    let i = desk.get_until(&ann, &format!("/v1/desk/interactions/{session}"), Duration::from_secs(60), |i| i["properties"]["chat_ended_by"] == "ann").await;
    assert_eq!(i["properties"]["chat_end_reason"], "ann ended the chat", "{i}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{session}/done"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
