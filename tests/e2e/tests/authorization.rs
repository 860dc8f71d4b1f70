//! The authorization matrix: every route `switchboard up` serves, from its own route table
//! (`GET /v1/routes`, the table the routers are built from), called as anonymous, a chat
//! customer, an agent, another agent, a supervisor, an admin, a service key with every scope
//! and one that may only read; each answer checked against the route's policy. Then the public
//! listener: only the public routes, every staff route `404`. Then the staff listener's Host
//! allow-list (DNS rebinding).
//!
//! A refusal by the table is told from a handler's own answer by its marks: `401` with
//! `WWW-Authenticate: Bearer`, `403` naming the route's `policy`. A handler may still answer
//! `400`/`404`/`422` to the made-up ids and empty bodies used here; the matrix is about who
//! gets past the door, and the other tests about what is behind it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

/// The reviewed table: every route with its audience and policy. The served table must be
/// exactly this, so a route added, dropped or loosened anywhere fails here until it is
/// reviewed (`PRINT_ROUTES=1 cargo test -p e2e --test authorization -- --nocapture` prints
/// the served one).
const REVIEWED: &[(&str, &str, &str, &str)] = &[
    ("GET", "/health/live", "public", "open"),
    ("GET", "/health/ready", "staff", "open"),
    ("GET", "/health/ready/{service}", "staff", "open"),
    ("GET", "/interactions/{id}", "staff", "supervisor"),
    ("GET", "/queues", "staff", "supervisor"),
    ("GET", "/queues/{queue}", "staff", "supervisor"),
    ("GET", "/ui", "staff", "open"),
    ("GET", "/ui/", "staff", "open"),
    ("GET", "/ui/assets/{name}", "public", "open"),
    ("GET", "/ui/chat", "public", "open"),
    ("GET", "/ui/chat-widget.js", "public", "open"),
    ("GET", "/ui/contact", "public", "open"),
    ("GET", "/ui/desk", "staff", "open"),
    ("GET", "/ui/supervisor", "staff", "open"),
    ("GET", "/v1/agents", "staff", "supervisor"),
    ("GET", "/v1/agents/{id}", "staff", "supervisor"),
    ("POST", "/v1/blobs", "staff", "service"),
    ("GET", "/v1/blobs/{reference}", "staff", "agent"),
    ("POST", "/v1/callbacks", "public", "customer"),
    ("GET", "/v1/categories", "staff", "agent"),
    ("POST", "/v1/categories", "staff", "supervisor"),
    ("DELETE", "/v1/categories/{id}", "staff", "supervisor"),
    ("PUT", "/v1/categories/{id}", "staff", "supervisor"),
    ("POST", "/v1/chats", "public", "customer"),
    ("GET", "/v1/chats/{id}/ws", "public", "customer"),
    ("GET", "/v1/contacts", "staff", "agent"),
    ("POST", "/v1/contacts/identify", "staff", "service"),
    ("GET", "/v1/contacts/{id}", "staff", "agent"),
    ("PATCH", "/v1/contacts/{id}", "staff", "agent"),
    ("GET", "/v1/contacts/{id}/history", "staff", "agent"),
    ("POST", "/v1/contacts/{id}/merge", "staff", "supervisor"),
    ("GET", "/v1/desk/events", "staff", "agent"),
    ("GET", "/v1/desk/history/queues", "staff", "agent"),
    ("GET", "/v1/desk/interactions/{id}", "staff", "agent"),
    ("GET", "/v1/desk/interactions/{id}/responses", "staff", "agent"),
    ("GET", "/v1/desk/interactions/{id}/timeline", "staff", "agent"),
    ("POST", "/v1/desk/interactions/{id}/{action}", "staff", "agent"),
    ("POST", "/v1/desk/login", "staff", "open"),
    ("POST", "/v1/desk/logout", "staff", "open"),
    ("GET", "/v1/desk/me", "staff", "agent"),
    ("GET", "/v1/desk/users", "staff", "admin"),
    ("POST", "/v1/desk/users", "staff", "admin"),
    ("PATCH", "/v1/desk/users/{id}", "staff", "admin"),
    ("DELETE", "/v1/desk/users/{id}", "staff", "admin"),
    ("POST", "/v1/desk/users/{id}/logout", "staff", "admin"),
    ("GET", "/v1/desk/queues", "staff", "agent"),
    ("GET", "/v1/desk/queues/{queue}", "staff", "agent"),
    ("POST", "/v1/desk/state", "staff", "agent"),
    ("POST", "/v1/forms/email", "public", "customer"),
    ("POST", "/v1/interactions", "public", "customer"),
    ("POST", "/v1/interactions/{id}/contents", "staff", "service"),
    ("GET", "/v1/interactions/{id}/detail", "staff", "agent"),
    ("POST", "/v1/notes", "staff", "agent"),
    ("GET", "/v1/openapi.json", "staff", "open"),
    ("GET", "/v1/router/status", "staff", "supervisor"),
    ("GET", "/v1/routes", "staff", "supervisor"),
    ("POST", "/v1/sms/{gateway}/inbound", "public", "gateway"),
    ("POST", "/v1/sms/{gateway}/status", "public", "gateway"),
    ("GET", "/v1/standard-responses", "staff", "agent"),
    ("POST", "/v1/standard-responses", "staff", "supervisor"),
    ("DELETE", "/v1/standard-responses/{id}", "staff", "supervisor"),
    ("GET", "/v1/standard-responses/{id}", "staff", "agent"),
    ("PUT", "/v1/standard-responses/{id}", "staff", "supervisor"),
    ("GET", "/v1/stats/agents", "staff", "supervisor"),
    ("GET", "/v1/stats/history", "staff", "supervisor"),
    ("GET", "/v1/stats/queues", "staff", "supervisor"),
    ("GET", "/v1/stats/stream", "staff", "supervisor"),
    ("GET", "/v1/web/openapi.json", "public", "open"),
    ("GET", "/v1/chats/openapi.json", "public", "open"),
    ("GET", "/v1/desk/openapi.json", "staff", "open"),
    ("GET", "/v1/forms/openapi.json", "public", "open"),
    ("GET", "/v1/queues/openapi.json", "staff", "open"),
    ("GET", "/v1/router/openapi.json", "staff", "open"),
    ("GET", "/v1/stats/openapi.json", "staff", "open"),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Through,
    Unauthenticated,
    Forbidden,
}

/// What the gate does with `identity` on a route of `policy`.
fn expected(policy: &str, identity: &str) -> Expect {
    use Expect::{Forbidden, Through, Unauthenticated};
    let through = match (policy, identity) {
        ("open" | "customer" | "gateway", _) => return Through,
        (_, "anonymous" | "customer") => return Unauthenticated,
        ("agent", _) => true,
        ("supervisor", _) => matches!(identity, "supervisor" | "admin" | "service"),
        ("admin", _) => identity == "admin",
        ("service", _) => identity == "service",
        (other, _) => panic!("a policy the matrix does not know: {other}"),
    };
    if through { Through } else { Forbidden }
}

/// A path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "matrix-x")
        .replace("{queue}", "inbound")
        .replace("{service}", "ucs")
        .replace("{reference}", "sha256:00")
        .replace("{gateway}", "twilio")
        .replace("{action}", "accept")
        .replace("{name}", "app.css")
}

/// The status, whether a `401` came with a challenge, and the body (JSON, or the text as a
/// string; `Null` when empty: axum's answer for a path it has no route for).
async fn call(http: &reqwest::Client, base: &str, method: &str, path: &str, token: Option<&str>, host: Option<&str>) -> (u16, bool, Value) {
    let url = format!("{base}{}", concrete(path));
    let mut request = http.request(method.parse().unwrap(), &url).timeout(Duration::from_secs(20));
    // A logout with the token would end the session the rest of the matrix calls with (it
    // is open to anyone; staff_sessions.rs checks what it ends).
    if let Some(token) = token.filter(|_| path != "/v1/desk/logout") {
        request = request.bearer_auth(token);
    }
    if let Some(host) = host {
        request = request.header("host", host);
    }
    if method != "GET" && method != "DELETE" {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let challenged = response.headers().contains_key("www-authenticate");
    // Event streams never end: only their head is read.
    let streaming = response.headers().get("content-type").is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
    let body = if streaming {
        Value::String("(event stream)".into())
    } else {
        let text = response.text().await.unwrap_or_default();
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    };
    (status, challenged, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_each_caller_as_its_policy_says() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    write_users(
        &dir.join("desk-users.toml"),
        vec![
            ("ann".into(), Role::Agent, BTreeMap::new(), [("email".to_owned(), 2)].into()),
            ("bob".into(), Role::Agent, BTreeMap::new(), [("email".to_owned(), 2)].into()),
            ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()),
            ("ada".into(), Role::Admin, BTreeMap::new(), BTreeMap::new()),
        ],
    );
    let data = dir.join("data");
    let mut settings = env.settings(&data);
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.web_api.rate_per_minute = 100_000;
    settings.web_api.rate_burst = 100_000;
    // The SMS channel runs under `up` only with a gateway token: its webhooks are in the table.
    settings.sms.account_sid = e2e::sms::SID.into();
    settings.sms.auth_token = e2e::sms::TOKEN.into();
    let gateway_sent = e2e::sms::Sent::default();
    settings.sms.api_base = format!("http://127.0.0.1:{}", e2e::sms::start(gateway_sent.clone(), axum::Router::new()).await);
    // Mail goes to a real SMTP server: the open-relay checks look there.
    let sink = e2e::mail::SmtpSink::start(&dir);
    settings.email.outbound.smtp_host = Some("127.0.0.1".into());
    settings.email.outbound.smtp_port = sink.port;
    settings.email.outbound.tls = email::MailTls::None;
    settings.email.outbound.from = "Shop Support <support@shop.example>".into();
    settings.sms.from_number = "+441234567890".into();
    let (staff_port, public_port) = (free_port(), free_port());
    settings.http.listen = ([127, 0, 0, 1], staff_port).into();
    settings.http.public_listen = Some(([127, 0, 0, 1], public_port).into());
    let config = env.write_config(&settings, "switchboard.toml");

    // A key that may only read, made with the command operators use.
    let made = std::process::Command::new(e2e::switchboard_bin()).arg("--config").arg(&config).args(["service-key", "add", "reader", "--scopes", "read"]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let reader_key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(reader_key.starts_with("sbk_"), "{reader_key}");
    let keys_file = std::fs::read_to_string(settings.http.service_keys_file.as_ref().unwrap()).unwrap();
    assert!(!keys_file.contains(&reader_key), "the keys file holds a key itself");

    let _up = e2e::spawn_switchboard(&config, &["up"], &dir.join("up.log"));
    let http = reqwest::Client::new();
    let staff = format!("http://127.0.0.1:{staff_port}");
    let public = format!("http://127.0.0.1:{public_port}");
    wait_ready(&e2e::http(), &format!("{staff}/health/ready")).await;

    let desk = DeskClient::new(&http, staff_port);
    let (chat_id, chat_token) = e2e::chat::start(&http, public_port, json!({"name": "Cy", "email": "cy@example.com", "subject": "hi"})).await;
    assert!(!chat_id.is_empty());
    let identities: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        ("customer", Some(chat_token)),
        ("agent", Some(desk.login("ann").await)),
        ("other agent", Some(desk.login("bob").await)),
        ("supervisor", Some(desk.login("sue").await)),
        ("admin", Some(desk.login("ada").await)),
        ("service", Some(e2e::SERVICE_KEY.to_owned())),
        ("reader", Some(reader_key)),
    ];

    let (status, _, table) = call(&http, &staff, "GET", "/v1/routes", Some(e2e::SERVICE_KEY), None).await;
    assert_eq!(status, 200, "{table}");
    let routes = table["routes"].as_array().unwrap().clone();
    if std::env::var_os("PRINT_ROUTES").is_some() {
        for r in &routes {
            println!("    (\"{}\", \"{}\", \"{}\", \"{}\"),", r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["audience"].as_str().unwrap(), r["policy"].as_str().unwrap());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for route in &routes {
        let (method, path, audience, policy) = (route["method"].as_str().unwrap(), route["path"].as_str().unwrap(), route["audience"].as_str().unwrap(), route["policy"].as_str().unwrap());
        assert!(seen.insert((method, path)), "{method} {path} is in the table twice");
        for (identity, token) in &identities {
            let expect = expected(policy, identity);
            let (status, challenged, body) = call(&http, &staff, method, path, token.as_deref(), None).await;
            checked += 1;
            let refused_by_table = (status == 401 && challenged) || (status == 403 && body.get("policy").is_some());
            let ok = match expect {
                Expect::Through => !refused_by_table && !(status == 404 && body.is_null()),
                Expect::Unauthenticated => status == 401 && challenged,
                Expect::Forbidden => status == 403 && body["policy"] == policy,
            };
            if !ok {
                problems.push(format!("{method} {path} ({audience}, {policy}) as {identity}: expected {expect:?}, got {status} {body}"));
            }
        }
        // The public listener: public routes only.
        let (status, _, body) = call(&http, &public, method, path, Some(e2e::SERVICE_KEY), None).await;
        let missing = status == 404 && body.is_null();
        if (audience == "staff") != missing {
            problems.push(format!("{method} {path} ({audience}) on the public listener: {status} {body}"));
        }
    }
    assert!(problems.is_empty(), "{} of {checked} calls not as the table says:\n{}", problems.len(), problems.join("\n"));

    // The served table is the reviewed one, row for row.
    let served: std::collections::BTreeSet<(String, String, String, String)> = routes
        .iter()
        .map(|r| ["method", "path", "audience", "policy"].map(|k| r[k].as_str().unwrap().to_owned()).into())
        .collect();
    let reviewed: std::collections::BTreeSet<(String, String, String, String)> = REVIEWED.iter().map(|(m, p, a, o)| ((*m).into(), (*p).into(), (*a).into(), (*o).into())).collect();
    let unreviewed: Vec<_> = served.difference(&reviewed).collect();
    let gone: Vec<_> = reviewed.difference(&served).collect();
    assert!(unreviewed.is_empty() && gone.is_empty(), "served but not reviewed: {unreviewed:?}\nreviewed but not served: {gone:?}");

    // DNS rebinding: the staff listener answers only to its own names; the public one to any.
    let (status, _, body) = call(&http, &staff, "GET", "/v1/contacts", Some(e2e::SERVICE_KEY), Some("attacker.example")).await;
    assert_eq!(status, 421, "{body}");
    let (status, _, _) = call(&http, &staff, "GET", "/v1/contacts?q=ann", Some(e2e::SERVICE_KEY), Some(&format!("localhost:{staff_port}"))).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&http, &public, "GET", "/health/live", None, Some("shop.example")).await;
    assert_eq!(status, 200);

    // No open relay: what a stranger may submit on the public listener is a customer's
    // message to a public queue, nothing the system sets.
    let relay_attempts = [
        json!({"media_type": "email", "queue": "outbound-send", "properties": {"to": "victim@example.com", "reply_text": "Pay here"}}),
        json!({"media_type": "sms", "queue": "outbound-send", "properties": {"to": "+447911000000", "reply_text": "Toll fraud"}}),
        json!({"media_type": "email", "queue": "inbound", "properties": {"to": "victim@example.com", "reply_text": "x"}}),
        json!({"media_type": "email", "queue": "inbound", "properties": {"from": "victim@example.com", "subject": "ack goes to the victim"}}),
        json!({"media_type": "email", "queue": "inbound", "properties": {"reply_to_interaction": "someone-else", "subject": "x"}}),
        json!({"media_type": "email", "queue": "inbound", "properties": {"QA_status": "approved"}}),
        json!({"media_type": "email", "queue": "qa-review", "properties": {"subject": "x"}}),
        json!({"media_type": "email", "queue": "inbound", "priority": 1000, "properties": {"subject": "me first"}}),
        json!({"media_type": "email", "queue": "inbound", "contact_id": "someone-else", "properties": {"subject": "x"}}),
    ];
    for (identity, token) in [("anonymous", None), ("customer", identities[1].1.clone()), ("agent", identities[2].1.clone()), ("reader", identities[7].1.clone())] {
        for attempt in &relay_attempts {
            let mut request = http.post(format!("{public}/v1/interactions")).json(attempt);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 403, "{identity} submitted {attempt}: {body}");
        }
    }
    let allowed: Value = http
        .post(format!("{public}/v1/interactions"))
        .json(&json!({"media_type": "email", "queue": "inbound", "priority": 2, "properties": {"subject": "Where is my order?"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allowed_id = allowed["interaction_id"].as_str().unwrap_or_else(|| panic!("a customer's own message was refused: {allowed}"));
    assert!(allowed.get("status_url").is_none(), "a customer was pointed at a staff route: {allowed}");
    let operator = e2e::http();
    // The customer's own message is on the log (the workflow's acknowledgement of it, to no
    // address, is the workflow's business); a few seconds more for anything else to show.
    e2e::poll_json(&operator, &format!("{staff}/interactions/{allowed_id}"), Duration::from_secs(60), |i| i["id"] == allowed_id).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _, send_queue) = call(&operator, &staff, "GET", "/queues/outbound-send", None, None).await;
    assert_eq!(status, 200, "{send_queue}");
    let text = send_queue.to_string();
    assert!(!text.contains("victim") && !text.contains("Pay here") && !text.contains("Toll fraud"), "an attempt reached outbound-send: {send_queue}");
    let mails: Vec<Vec<String>> = sink.received().iter().map(|m| m.rcpt_to.clone()).collect();
    assert!(!mails.iter().flatten().any(|r| r.contains("victim")), "mail went to the victim: {mails:?}");
    assert!(gateway_sent.lock().unwrap().is_empty(), "an SMS was sent: {:?}", gateway_sent.lock().unwrap());

    // An admin sees who may log in, and no password hash.
    let (status, _, users) = call(&http, &staff, "GET", "/v1/desk/users", identities[5].1.as_deref(), None).await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users["users"].as_array().map(Vec::len), Some(4), "{users}");
    assert!(!users.to_string().contains("argon2"), "a password hash was shown: {users}");

    // A key removed with the command is refused by the running `up` within seconds.
    let reader = identities[7].1.clone().unwrap();
    let (status, _, _) = call(&http, &staff, "GET", "/v1/contacts?q=ann", Some(&reader), None).await;
    assert_eq!(status, 200);
    let removed = std::process::Command::new(e2e::switchboard_bin()).arg("--config").arg(&config).args(["service-key", "remove", "reader"]).output().unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, challenged, _) = call(&http, &staff, "GET", "/v1/contacts?q=ann", Some(&reader), None).await;
        if status == 401 && challenged {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the removed key still let in after 10 s ({status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The desk's cookie: good for reading (the event streams), never for writing.
    let login = http.post(format!("{staff}/v1/desk/login")).json(&json!({"user": "sue", "password": e2e::desk::PASSWORD})).send().await.unwrap();
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let read = http.get(format!("{staff}/v1/stats/queues")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let write = http.post(format!("{staff}/v1/standard-responses")).header("cookie", &pair).json(&json!({"name": "x", "body": "y"})).send().await.unwrap();
    assert_eq!(write.status(), 401, "a write by cookie alone went through");
}
