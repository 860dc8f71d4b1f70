//! Chat sessions over real WebSockets on a real broker (issue 7, first part): a customer
//! starts a chat over HTTP and talks over a WebSocket; a client that drops and reconnects
//! with the last number it saw gets exactly what it missed, in order, no duplicates (a
//! resent message is one event); the chat server killed and started again serves the same
//! session with the same numbers; wrong or foreign tokens, foreign origins, oversized and
//! too-fast frames are refused with reasons.
#![allow(clippy::unwrap_used)]


use e2e::desk::wait_ready;
use e2e::{TestEnv, free_port, spawn_service};
use e2e::chat::{connect, next, quiet, say, send, text_of as message_text};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_customer_gets_exactly_what_was_missed_even_across_a_restart() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    let mut settings = env.settings(&dir.join("data"));
    settings.chat.max_message_bytes = 100;
    settings.chat.max_frames_per_window = 15;
    settings.chat.allowed_origins = vec!["https://shop.example".into()];
    // Numbers below count only what the customer does.
    settings.chat.greeting = String::new();
    settings.chat.queue_position_notices = false;
    settings.web_api.rate_burst = 4;
    settings.web_api.rate_per_minute = 1;
    let port = free_port();
    e2e::listen_on(&mut settings, port);
    let config = env.write_config(&settings, "chat.toml");
    let mut server = spawn_service(&config, "chat-server", &dir.join("chat.log"));
    let http = e2e::http();
    wait_ready(&http, &format!("http://127.0.0.1:{port}/health/ready/chat-server")).await;

    let start = |name: &str| e2e::chat::start(&http, port, json!({"name": name, "email": "ada@example.com"}));
    let (session, token) = start("Ada").await;
    assert_eq!(token.len(), 64, "256 bits as hex");
    let (other_session, other_token) = start("Bob").await;

    // Refusals at the door.
    assert_eq!(connect(port, &session, "0123", None).await.err(), Some(401), "a wrong token");
    assert_eq!(connect(port, &session, &other_token, None).await.err(), Some(401), "another chat's token");
    assert_eq!(connect(port, &session, &token, Some("https://evil.example")).await.err(), Some(403), "a foreign origin");
    let _ = other_session;

    // The whole session so far, then live.
    let mut a = connect(port, &session, &token, Some("https://shop.example")).await.unwrap();
    send(&mut a, json!({"type": "resume", "after": 0})).await;
    let first = next(&mut a).await;
    assert_eq!((first["seq"].as_u64(), first["event"]["payload"]["SessionStarted"]["customer_name"].as_str()), (Some(1), Some("Ada")), "{first}");
    assert!(first.to_string().find(&token).is_none(), "the token never travels back");
    assert_eq!(next(&mut a).await["seq"], 2);
    say(&mut a, "m1", "hello").await;
    let m1 = next(&mut a).await;
    assert_eq!((m1["seq"].as_u64(), message_text(&m1)), (Some(3), Some("hello")));

    // A drops; meanwhile the same customer in another tab says two things.
    drop(a);
    let mut b = connect(port, &session, &token, None).await.unwrap();
    send(&mut b, json!({"type": "resume", "after": 3})).await;
    say(&mut b, "m2", "my order is late").await;
    say(&mut b, "m3", "number 42").await;
    assert_eq!(message_text(&next(&mut b).await), Some("my order is late"));
    assert_eq!(message_text(&next(&mut b).await), Some("number 42"));
    drop(b);

    // A comes back with the last number it saw: exactly 4 and 5, in order, then nothing.
    let mut a = connect(port, &session, &token, None).await.unwrap();
    send(&mut a, json!({"type": "resume", "after": 3})).await;
    let (f4, f5) = (next(&mut a).await, next(&mut a).await);
    assert_eq!((f4["seq"].as_u64(), message_text(&f4)), (Some(4), Some("my order is late")));
    assert_eq!((f5["seq"].as_u64(), message_text(&f5)), (Some(5), Some("number 42")));
    assert_eq!(quiet(&mut a).await, None, "nothing doubled");
    // A resend of m2 (its answer was lost, say) is the same event: the next number goes to m4.
    say(&mut a, "m2", "my order is late").await;
    say(&mut a, "m4", "hello?").await;
    let f6 = next(&mut a).await;
    assert_eq!((f6["seq"].as_u64(), message_text(&f6)), (Some(6), Some("hello?")), "{f6}");

    // Refused frames, with reasons; the connection stays.
    say(&mut a, "big", &"x".repeat(101)).await;
    let e = next(&mut a).await;
    assert!(e["type"] == "error" && e["reason"].as_str().unwrap().contains("the limit is 100"), "{e}");
    for _ in 0..20 {
        send(&mut a, json!({"type": "typing", "typing": true})).await;
    }
    let mut too_fast = None;
    for _ in 0..40 {
        let f = next(&mut a).await;
        if f["type"] == "error" {
            too_fast = Some(f);
            break;
        }
    }
    let too_fast = too_fast.expect("a too-fast refusal");
    assert!(too_fast["reason"].as_str().unwrap().contains("too fast"), "{too_fast}");
    drop(a);

    // The chat server is killed and started again: same session, same numbers.
    server.kill().await.unwrap();
    let mut server = spawn_service(&config, "chat-server", &dir.join("chat.log"));
    wait_ready(&http, &format!("http://127.0.0.1:{port}/health/ready/chat-server")).await;
    let mut c = connect(port, &session, &token, None).await.unwrap();
    send(&mut c, json!({"type": "resume", "after": 0})).await;
    let mut texts = Vec::new();
    let mut seqs = Vec::new();
    while seqs.last() != Some(&6) {
        let f = next(&mut c).await;
        seqs.push(f["seq"].as_u64().unwrap());
        if let Some(t) = message_text(&f) {
            texts.push(t.to_owned());
        }
    }
    assert_eq!(texts, ["hello", "my order is late", "number 42", "hello?"]);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    send(&mut c, json!({"type": "end"})).await;
    let ended = loop {
        let f = next(&mut c).await;
        if f["event"]["payload"]["SessionEnded"].is_object() {
            break f;
        }
    };
    assert_eq!(ended["event"]["payload"]["SessionEnded"]["ended_by"], "customer");
    say(&mut c, "m9", "still there?").await;
    let e = next(&mut c).await;
    assert!(e["reason"].as_str().unwrap().contains("ended"), "{e}");

    // Starting chats is rate limited per client address, with the wait.
    let mut limited = None;
    for _ in 0..10 {
        let r = http.post(format!("http://127.0.0.1:{port}/v1/chats")).json(&json!({"name": "Eve"})).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
    }
    let limited = limited.expect("429 after the burst");
    assert!(limited["error"].as_str().unwrap().contains("try again in"), "{limited}");
    server.kill().await.unwrap();
}

/// Only live chats in memory: with `[live] keep_stopped_s = 1`, an ended chat leaves the
/// chat server's sessions once a later chat event is a second past its end (log time). A
/// late resume is then told the chat is gone (410), not kept waiting and refused as if the
/// token were wrong; after a restart (the sessions rebuilt) the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_chat_leaves_memory_and_a_late_resume_is_told_so() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    let mut settings = env.settings(&dir.join("data"));
    settings.live.keep_stopped_s = 1;
    settings.chat.greeting = String::new();
    settings.chat.queue_position_notices = false;
    let port = free_port();
    e2e::listen_on(&mut settings, port);
    let config = env.write_config(&settings, "chat.toml");
    let mut server = spawn_service(&config, "chat-server", &dir.join("chat.log"));
    let http = e2e::http();
    wait_ready(&http, &format!("http://127.0.0.1:{port}/health/ready/chat-server")).await;

    let (session, token) = e2e::chat::start(&http, port, json!({"name": "Ada"})).await;
    let mut a = connect(port, &session, &token, None).await.unwrap();
    send(&mut a, json!({"type": "resume", "after": 0})).await;
    send(&mut a, json!({"type": "end"})).await;
    loop {
        let e = next(&mut a).await;
        if e["event"]["payload"]["SessionEnded"].is_object() {
            break;
        }
    }
    drop(a);
    // Still in memory: the customer may reconnect and read the end.
    assert!(connect(port, &session, &token, None).await.is_ok(), "right after its end the chat is still served");

    // A second later in log time (another chat starts), the ended one leaves.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let _later = e2e::chat::start(&http, port, json!({"name": "Bob"})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match connect(port, &session, &token, None).await {
            Err(410) => break,
            other => assert!(std::time::Instant::now() < deadline, "the ended chat never left memory: {:?}", other.map(|_| "connected")),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Rebuilt from the log (and the snapshot a clean stop writes): still gone.
    server.kill().await.unwrap();
    let mut server = spawn_service(&config, "chat-server", &dir.join("chat-2.log"));
    wait_ready(&http, &format!("http://127.0.0.1:{port}/health/ready/chat-server")).await;
    assert_eq!(connect(port, &session, &token, None).await.err(), Some(410), "after a restart");
    server.kill().await.unwrap();
}
