//! Web callbacks end to end (issue 8), with the web API, router and desk as processes on the
//! real broker: a callback asked for a time is not offered before that time (checked on the
//! offer's own timestamp), is routed to Ann then, and "no answer" puts it back for a retry
//! `retry_delay_s` later, offered again only then; "reached" closes it. An ASAP callback is
//! routed at once; "retry later" reschedules it and the last "no answer" closes it unreached.
//! The same Idempotency-Key is one callback; invalid numbers and times are refused with
//! reasons; a client that sends too much gets 429; the OpenAPI document lists the routes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "callbacks"
steps = [{ type = "route", not_before_property = "callback_at" }]
"#;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339()
}

fn number(v: &Value, key: &str) -> i64 {
    v["properties"][key].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_wait_for_their_time_are_routed_then_and_end_with_an_outcome() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("callback".to_owned(), 1)].into();
    write_users(&dir.join("desk-users.toml"), vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.callback.retry_delay_s = 2;
    settings.callback.max_attempts = 2;
    settings.web_api.rate_burst = 12;
    settings.web_api.rate_per_minute = 6;
    let services = env.spawn_services(&mut settings, &[("router", free_port()), ("desk", free_port()), ("web-api", free_port())]);
    let http = e2e::http();
    wait_ready(&http, &services.url("router", "/health/ready/router")).await;
    wait_ready(&http, &services.url("desk", "/health/ready/desk")).await;
    wait_ready(&http, &services.url("web-api", "/health/live")).await;
    let desk = DeskClient::new(&http, services.port("desk"));
    let (ann, sue) = (desk.login("ann").await, desk.login("sue").await);
    let callbacks = services.url("web-api", "/v1/callbacks");
    let ask = |body: Value, key: Option<&str>| {
        let mut request = http.post(&callbacks).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let spec: Value = http.get(services.url("web-api", "/v1/web/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/v1/callbacks"]["post"].is_object(), "{spec}");

    // Refusals, with reasons.
    let (s, b) = ask(json!({"phone": "call me maybe"}), None).await;
    assert!(s == 422 && b["error"].as_str().unwrap().contains("not a phone number"), "{s} {b}");
    let (s, b) = ask(json!({"phone": "+1 555"}), None).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = ask(json!({"phone": "+44 20 7946 0018", "at": rfc3339(contract::now_millis() - 3_600_000)}), None).await;
    assert!(s == 422 && b["error"] == "at is in the past", "{s} {b}");
    let (s, b) = ask(json!({"phone": "+44 20 7946 0018", "at": "tomorrow at noon"}), None).await;
    assert!(s == 422 && b["error"].as_str().unwrap().contains("RFC 3339"), "{s} {b}");

    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");

    // A callback for four seconds from now, asked twice with one key: one callback.
    let at = contract::now_millis() + 4_000;
    let request = json!({"phone": "+44 20 7946 0018", "name": "Ada", "at": rfc3339(at), "reason": "refund"});
    let (s, first) = ask(request.clone(), Some("cb-ada-1")).await;
    assert_eq!(s, 202, "{first}");
    assert_eq!(first["phone"], "+442079460018");
    let (s, again) = ask(request, Some("cb-ada-1")).await;
    assert_eq!((s, &again["interaction_id"]), (202, &first["interaction_id"]), "the same key, the same callback");
    let id = first["interaction_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/desk/interactions/{id}");
    let offered = desk.get_until(&sue, &path, Duration::from_secs(60), |i| i["status"] == "offered").await;
    let callback_at = number(&offered, "callback_at");
    assert!(offered["offer"]["offered_at"].as_i64().unwrap() >= callback_at, "offered before its time: {offered}");
    assert_eq!(offered["properties"]["callback_reason"], "refund");

    // No answer: back in the queue for a retry two seconds later, offered only then.
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["status"] == "assigned").await;
    let (s, b) = desk.post(&ann, &format!("{path}/outcome"), json!({"outcome": "no_answer"})).await;
    assert_eq!(s, 200, "{b}");
    let retry = desk.get_until(&sue, &path, Duration::from_secs(30), |i| i["properties"]["callback_attempts"] == "1" && i["status"] == "offered").await;
    assert!(number(&retry, "callback_at") > callback_at);
    assert!(retry["offer"]["offered_at"].as_i64().unwrap() >= number(&retry, "callback_at"), "retried early: {retry}");
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["status"] == "assigned").await;
    let (s, b) = desk.post(&ann, &format!("{path}/outcome"), json!({"outcome": "reached", "comment": "refund confirmed"})).await;
    assert_eq!(s, 200, "{b}");
    let done = desk.get_until(&sue, &path, Duration::from_secs(30), |i| i["status"] == "stopped").await;
    assert_eq!((done["properties"]["callback_outcome"].as_str(), done["properties"]["callback_attempts"].as_str()), (Some("reached"), Some("2")), "{done}");

    // As soon as possible: routed at once; "retry later" reschedules; the last "no answer" closes it.
    let (s, asap) = ask(json!({"phone": "+1 212 555 0123", "name": "Bob"}), Some("cb-bob-1")).await;
    assert_eq!(s, 202, "{asap}");
    let path = format!("/v1/desk/interactions/{}", asap["interaction_id"].as_str().unwrap());
    desk.get_until(&sue, &path, Duration::from_secs(30), |i| i["status"] == "offered").await;
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["status"] == "assigned").await;
    let (s, b) = desk.post(&ann, &format!("{path}/outcome"), json!({"outcome": "retry_later"})).await;
    assert!(s == 400 && b["error"].as_str().unwrap().contains("retry_at"), "{s} {b}");
    let later = contract::now_millis() + 2_000;
    let (s, b) = desk.post(&ann, &format!("{path}/outcome"), json!({"outcome": "retry_later", "retry_at": rfc3339(later)})).await;
    assert_eq!(s, 200, "{b}");
    let again = desk.get_until(&sue, &path, Duration::from_secs(30), |i| i["properties"]["callback_attempts"] == "1" && i["status"] == "offered").await;
    assert!(again["offer"]["offered_at"].as_i64().unwrap() >= later - 1, "{again}");
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["status"] == "assigned").await;
    let (s, b) = desk.post(&ann, &format!("{path}/outcome"), json!({"outcome": "no_answer"})).await;
    assert_eq!(s, 200, "{b}");
    let closed = desk.get_until(&sue, &path, Duration::from_secs(30), |i| i["status"] == "stopped").await;
    assert_eq!(closed["properties"]["callback_outcome"], "unreached", "{closed}");
    assert_eq!(closed["stop_reason"], "callback: no answer after 2 attempts", "{closed}");

    // A client sending too much is slowed down, with a reason.
    let mut refused = None;
    for _ in 0..20 {
        let (s, b) = ask(json!({"phone": "not a number"}), None).await;
        if s == 429 {
            refused = Some(b);
            break;
        }
    }
    let refused = refused.expect("429 after the burst");
    assert!(refused["error"].as_str().unwrap().contains("try again in"), "{refused}");

    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
