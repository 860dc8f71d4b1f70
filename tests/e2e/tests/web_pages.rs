//! The web pages (issue 9) in real headless Chromium (Debian's package, driven by Playwright's
//! `playwright-core` from `tests/browser/pages.mjs`), against `switchboard up` on one port
//! with the real broker, UCS on SQLite and aiosmtpd as the SMTP server:
//! - a customer chats from the widget embedded in a shop's page on another origin while Ann
//!   accepts the offer on the agent desktop and replies; each sees the other's messages, and
//!   Ann sees the customer typing;
//! - a contact-form e-mail is answered from the desktop with a suggested standard response,
//!   its merge fields filled; the mail reaches the SMTP server;
//! - the reply waits in the supervisor's QA inbox, is returned with a comment, which Ann sees
//!   on her returned reply; she reworks it, the supervisor approves, and only then is it sent;
//! - a supervisor pulls an interaction from the queue view and sees the dashboard's numbers
//!   change; she reads its audit timeline and the queues as they stood minutes ago;
//! - screenshots of every page go to `artifacts/web-pages/`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use desk::users::Role;
use e2e::desk::{DeskClient, PASSWORD, write_users};
use e2e::mail::SmtpSink;
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 120
[[queue]]
name = "inbound"
steps = [{ type = "route" }]
[[queue]]
name = "chat-inbound"
steps = [{ type = "route" }]
[[queue]]
name = "outbound"
steps = [{ type = "qa", sample_percent = 100, review_queue = "qa-review", send_queue = "outbound-send" }]
[[queue]]
name = "qa-returned"
steps = [{ type = "route", to_agent_property = "author_agent" }]
# "held" has no steps: what is there waits for a supervisor.
"#;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_use_the_pages_in_a_browser() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("chat".to_owned(), 2), ("email".to_owned(), 2)].into();
    write_users(&dir.join("desk-users.toml"), vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);
    let sink = SmtpSink::start(&dir);
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.email.outbound.smtp_host = Some("127.0.0.1".into());
    settings.email.outbound.smtp_port = sink.port;
    settings.email.outbound.tls = email::MailTls::None;
    settings.email.outbound.from = "Shop Support <support@shop.example>".into();
    // The shop's site, on its own origin, embeds the chat widget (served by tests/browser/pages.mjs).
    let site_port = free_port();
    settings.chat.allowed_origins = vec![format!("http://127.0.0.1:{site_port}")];
    let port = free_port();
    e2e::listen_on(&mut settings, port);
    let config = env.write_config(&settings, "up.toml");
    let _up = e2e::spawn_switchboard(&config, &["up"], &dir.join("up.log"));
    let base = format!("http://127.0.0.1:{port}");
    let http = e2e::http();
    e2e::desk::wait_ready(&http, &format!("{base}/health/ready")).await;

    // What the pages will need: a standard response, and an interaction held for the supervisor.
    let response = json!({"name": "Order status", "media": ["email"], "body_text": "Dear {{from_name}}, your order ships tomorrow. Reference {{interaction_id}}."});
    let r = http.post(format!("{base}/v1/standard-responses")).json(&response).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let held = json!({"media_type": "email", "queue": "held", "properties": {"subject": "Invoice question", "from": "bo@example.com"}});
    let r: Value = http.post(format!("{base}/v1/interactions")).json(&held).send().await.unwrap().json().await.unwrap();
    let held_id = r["interaction_id"].as_str().unwrap().to_owned();
    let desk = DeskClient::new(&http, port);
    let sue = desk.login("sue").await;
    desk.get_until(&sue, "/v1/desk/queues/held", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| a.len() == 1)).await;
    // The desk's library has the response once the e-mail channel's floor does (same process).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let artifacts = workspace_root().join("artifacts/web-pages");
    // Only this run's screenshots (a failed run leaves failure-*.png).
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let browser_dir = workspace_root().join("tests/browser");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("pages.mjs"))
        .current_dir(&browser_dir)
        .env("BASE_URL", &base)
        .env("ARTIFACTS", &artifacts)
        .env("PASSWORD", PASSWORD)
        .env("HELD_ID", &held_id)
        .env("SITE_PORT", site_port.to_string())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run).await.expect("the browser run took over 5 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "browser run failed ({}):\n{stdout}\n{stderr}\n(up.log in {})", output.status, dir.display());

    // What the browser did, as the server records it.
    let mail = sink.delivered("ada@example.com", "Parcel").await;
    let text = String::from_utf8_lossy(&mail.raw);
    assert!(text.contains("your order ships tomorrow") && text.contains("Dear Ada Lovelace"), "{text}");
    assert!(text.contains("track.example/T123"), "the mail sent is the reply as reworked after QA: {text}");
    assert!(!text.contains("{{"), "merge fields filled: {text}");
    let pulled = desk.get_until(&sue, &format!("/v1/desk/interactions/{held_id}"), Duration::from_secs(30), |i| i["status"] == "assigned").await;
    assert_eq!(pulled["owner"], "sue", "{pulled}");
    for page in ["desk-chat", "widget-chat", "desk-email", "desk-qa-returned", "contact", "supervisor", "supervisor-history"] {
        let shot = artifacts.join(format!("{page}.png"));
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 5_000), "screenshot {} missing", shot.display());
    }
}
