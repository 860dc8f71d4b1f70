//! SMS in paging mode (issue 8) on the real broker, with the SMS server, router, desk and web
//! API as processes, and a Twilio-compatible gateway peer on loopback: webhooks are signed
//! with Twilio's own Python library, and a small REST server in this test takes our sends
//! (checking HTTP Basic auth) and answers as Twilio's Messages API does.
//!
//! An inbound SMS becomes an interaction, once even when delivered twice; a bad signature is
//! 403; an invalid sender number is 400 with the reason and parked on the dead-letter topic.
//! Ann answers on the desk: the reply goes to the sender through the gateway, is recorded as
//! sent (gateway id, GSM-7, one segment), and the signed delivery receipt lands on it. An
//! application pages a customer through the web API with a long Cyrillic text: UCS-2, three
//! segments. A number the gateway refuses comes back to the send-failed queue with the reason.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "sms-inbound"
steps = [{ type = "route" }]
[[queue]]
name = "outbound"
steps = [{ type = "move_to", queue = "outbound-send" }]
"#;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token-1";

/// Signs like Twilio, with Twilio's library.
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let python = e2e::python_venv("twilio-venv", &Path::new(env!("CARGO_MANIFEST_DIR")).join("python/twilio-requirements.txt"));
    let mut child = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/twilio_sign.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = json!({"token": TOKEN, "url": url, "params": params});
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What the gateway peer was asked to send.
type Sent = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

async fn messages_api(State(sent): State<Sent>, UrlPath(sid): UrlPath<String>, headers: HeaderMap, body: String) -> axum::response::Response {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}")));
    if sid != SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate"}))).into_response();
    }
    let form: BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    if form["To"].starts_with("+1212555") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient"}))).into_response();
    }
    let mut sent = sent.lock().unwrap();
    sent.push(form);
    let sid = format!("SM{:032}", sent.len());
    (StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued"}))).into_response()
}

async fn post_webhook(http: &reqwest::Client, url: &str, params: &[(&str, &str)], signature: &str) -> (u16, String) {
    let r = http.post(url).header("X-Twilio-Signature", signature).form(params).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sms_in_and_out_through_a_twilio_compatible_gateway() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("sms".to_owned(), 2)].into();
    write_users(&dir.join("desk-users.toml"), vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);

    // The gateway's REST side.
    let sent: Sent = Arc::default();
    let api = axum::Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", axum::routing::post(messages_api)).with_state(sent.clone());
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = api_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(api_listener, api).await.unwrap() });

    let sms_port = free_port();
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.sms.account_sid = SID.into();
    settings.sms.auth_token = TOKEN.into();
    settings.sms.api_base = format!("http://127.0.0.1:{api_port}");
    settings.sms.from_number = "+441234567890".into();
    settings.sms.public_url = Some(format!("http://127.0.0.1:{sms_port}"));
    settings.sms.max_attempts = 2;
    settings.sms.retry_initial_ms = 200;
    let services = env.spawn_services(&mut settings, &[("router", free_port()), ("desk", free_port()), ("sms-server", sms_port), ("web-api", free_port())]);
    let http = reqwest::Client::new();
    wait_ready(&http, &services.url("router", "/health/ready/router")).await;
    wait_ready(&http, &services.url("desk", "/health/ready/desk")).await;
    wait_ready(&http, &services.url("sms-server", "/health/live")).await;
    wait_ready(&http, &services.url("web-api", "/health/live")).await;
    let desk = DeskClient::new(&http, services.port("desk"));
    let (ann, sue) = (desk.login("ann").await, desk.login("sue").await);
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");

    // Inbound: signed as Twilio signs it; twice (a redelivery) is one interaction.
    let inbound = services.url("sms-server", "/v1/sms/twilio/inbound");
    let params = [("MessageSid", "SM11111111111111111111111111111111"), ("AccountSid", SID), ("From", "+447911123456"), ("To", "+441234567890"), ("Body", "Where is my parcel?"), ("NumMedia", "0")];
    let signature = sign(&inbound, &params);
    for _ in 0..2 {
        let (s, body) = post_webhook(&http, &inbound, &params, &signature).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("<Response>"), "TwiML: {body}");
    }
    // Refusals: a changed body under the old signature; an invalid sender number.
    let mut tampered = params;
    tampered[4] = ("Body", "Where is my refund?");
    let (s, body) = post_webhook(&http, &inbound, &tampered, &signature).await;
    assert!(s == 403 && body.contains("does not match"), "{s} {body}");
    let bad_number = [("MessageSid", "SM22222222222222222222222222222222"), ("From", "12"), ("Body", "hi")];
    let (s, body) = post_webhook(&http, &inbound, &bad_number, &sign(&inbound, &bad_number)).await;
    assert!(s == 400 && body.contains("not a"), "{s} {body}");
    env.wait_for("the bad SMS parked", Duration::from_secs(30), || {
        env.read_all(&env.topic("deadletter")).iter().any(|m| e2e::header(m, "dlq.reason").is_some_and(|r| r.contains("\"12\"")))
    })
    .await;

    // Routed to Ann; one interaction for the two deliveries.
    let offered = desk.get_until(&sue, "/v1/desk/queues/sms-inbound", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| a.iter().any(|i| i["status"] == "offered"))).await;
    let interactions = offered["interactions"].as_array().unwrap();
    assert_eq!(interactions.len(), 1, "{offered}");
    let id = interactions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(interactions[0]["properties"]["from"], "+447911123456");
    let path = format!("/v1/desk/interactions/{id}");
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = desk.post(&ann, &format!("{path}/release"), json!({"text": "It arrives tomorrow before noon."})).await;
    assert_eq!(s, 200, "{b}");
    let reply = desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["properties"]["reply_interaction"].is_string()).await["properties"]["reply_interaction"].as_str().unwrap().to_owned();
    let reply_path = format!("/v1/desk/interactions/{reply}");
    let done = desk.get_until(&sue, &reply_path, Duration::from_secs(60), |i| i["status"] == "stopped").await;
    assert_eq!((done["properties"]["sms_encoding"].as_str(), done["properties"]["sms_segments"].as_str()), (Some("GSM-7"), Some("1")), "{done}");
    let first = sent.lock().unwrap()[0].clone();
    assert_eq!((first["To"].as_str(), first["From"].as_str(), first["Body"].as_str()), ("+447911123456", "+441234567890", "It arrives tomorrow before noon."));

    // The gateway's signed delivery receipt lands on the sent interaction.
    let callback = first["StatusCallback"].clone();
    let receipt = [("MessageSid", done["properties"]["gateway_message_id"].as_str().unwrap()), ("MessageStatus", "delivered"), ("AccountSid", SID)];
    let (s, body) = post_webhook(&http, &callback, &receipt, &sign(&callback, &receipt)).await;
    assert_eq!(s, 204, "{body}");
    desk.get_until(&sue, &reply_path, Duration::from_secs(30), |i| i["properties"]["delivery_status"] == "delivered").await;

    // Paging by an application through the web API: a long Cyrillic text is UCS-2, 3 segments.
    let text = "Ваша посылка прибудет завтра до полудня. ".repeat(4);
    let page = json!({"media_type": "sms", "queue": "outbound-send", "properties": {"to": "+447911123457", "reply_text": text}});
    let r: Value = http.post(services.url("web-api", "/v1/interactions")).json(&page).send().await.unwrap().json().await.unwrap();
    let paged = desk.get_until(&sue, &format!("/v1/desk/interactions/{}", r["interaction_id"].as_str().unwrap()), Duration::from_secs(60), |i| i["status"] == "stopped").await;
    assert_eq!((paged["properties"]["sms_encoding"].as_str(), paged["properties"]["sms_segments"].as_str()), (Some("UCS-2"), Some("3")), "{paged}");
    assert_eq!(sent.lock().unwrap().last().unwrap()["Body"], text, "sent whole; the gateway splits it");

    // A recipient the gateway refuses: retried, then back in send-failed with its reason.
    let page = json!({"media_type": "sms", "queue": "outbound-send", "properties": {"to": "+12125550143", "reply_text": "Your appointment is at 10:00."}});
    let r: Value = http.post(services.url("web-api", "/v1/interactions")).json(&page).send().await.unwrap().json().await.unwrap();
    let failed = desk.get_until(&sue, &format!("/v1/desk/interactions/{}", r["interaction_id"].as_str().unwrap()), Duration::from_secs(60), |i| i["queue"] == "send-failed").await;
    assert!(failed["properties"]["send_error"].as_str().unwrap().contains("unsubscribed recipient"), "{failed}");

    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
