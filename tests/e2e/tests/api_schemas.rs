//! Every OpenAPI document Switchboard serves, held to the running system by schemathesis
//! (PyPI), authenticated, on Apache Kafka: no 5xx, no status, content type or body the document
//! does not promise. And every API route of the table is in some document, so a new route
//! without a description fails here.
//!
//! Run under `up` with the limits raised (`[web_api] rate_*`, `[desk] login_max_*`): the run
//! measures the API, not the limiter. Left out of the fuzzing, each for its reason:
//! `POST /v1/desk/logout` (would end the session the run uses; `staff_sessions.rs` tests it),
//! and the two event streams (`/v1/desk/events`, `/v1/stats/stream`: they never end).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use serde_json::Value;

/// Routes of the table that no OpenAPI document describes, and why.
const UNDOCUMENTED: [(&str, &str); 6] = [
    ("/health/", "health checks: open, for probes"),
    ("/ui", "pages and their assets"),
    ("/openapi.json", "the documents themselves"),
    ("/v1/routes", "the route table, for the authorization test and operators"),
    ("/v1/chats/{id}/ws", "a WebSocket (docs/chat-protocol.md); OpenAPI has none"),
    ("/v1/sms/{gateway}/", "the SMS gateway's webhook protocol (Twilio's), not ours to describe"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_openapi_document_holds_against_the_running_system() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    write_users(&dir.join("desk-users.toml"), vec![("ada".into(), Role::Admin, BTreeMap::new(), BTreeMap::new())]);
    let mut settings = env.settings(&dir.join("data"));
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.web_api.rate_per_minute = 1_000_000;
    settings.web_api.rate_burst = 1_000_000;
    settings.desk.login_max_failures_per_address = 1_000_000;
    settings.sms.account_sid = e2e::sms::SID.into();
    settings.sms.auth_token = e2e::sms::TOKEN.into();
    let (staff_port, public_port) = (free_port(), free_port());
    settings.http.listen = ([127, 0, 0, 1], staff_port).into();
    settings.http.public_listen = Some(([127, 0, 0, 1], public_port).into());
    let config = env.write_config(&settings, "switchboard.toml");
    let _up = e2e::spawn_switchboard(&config, &["up"], &dir.join("up.log"));
    let (staff, public) = (format!("http://127.0.0.1:{staff_port}"), format!("http://127.0.0.1:{public_port}"));
    wait_ready(&e2e::http(), &format!("{staff}/health/ready")).await;
    let http = reqwest::Client::new();
    let admin = DeskClient::new(&http, staff_port).login("ada").await;

    // (document, credential): the desk's routes need a desk session (an admin passes every
    // desk, statistics and queue policy); UCS's writes a service key.
    let documents = [
        (format!("{staff}/v1/desk/openapi.json"), Some(admin.clone())),
        (format!("{staff}/v1/stats/openapi.json"), Some(admin.clone())),
        (format!("{staff}/v1/queues/openapi.json"), Some(admin.clone())),
        (format!("{staff}/v1/router/openapi.json"), Some(admin.clone())),
        (format!("{staff}/v1/openapi.json"), Some(e2e::SERVICE_KEY.to_owned())),
        (format!("{public}/v1/web/openapi.json"), None),
        (format!("{public}/v1/forms/openapi.json"), None),
        (format!("{public}/v1/chats/openapi.json"), None),
    ];

    // Every API route of the table is described by some document.
    let mut described: BTreeSet<(String, String)> = BTreeSet::new();
    for (url, _) in &documents {
        let doc: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        for (path, operations) in doc["paths"].as_object().unwrap_or_else(|| panic!("{url} has no paths")) {
            for method in operations.as_object().unwrap().keys() {
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: Value = http.get(format!("{staff}/v1/routes")).bearer_auth(e2e::SERVICE_KEY).send().await.unwrap().json().await.unwrap();
    let mut missing = Vec::new();
    for route in table["routes"].as_array().unwrap() {
        let (method, path) = (route["method"].as_str().unwrap(), route["path"].as_str().unwrap());
        if UNDOCUMENTED.iter().any(|(prefix, _)| path.starts_with(prefix) || path.ends_with(prefix)) {
            continue;
        }
        if !described.contains(&(method.to_owned(), path.to_owned())) {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(missing.is_empty(), "routes no OpenAPI document describes: {missing:?}");

    let python = e2e::python_venv("schemathesis-venv", &Path::new(env!("CARGO_MANIFEST_DIR")).join("python/schemathesis-requirements.txt"));
    let schemathesis = python.with_file_name("schemathesis");
    let started = Instant::now();
    let mut failures = Vec::new();
    for (url, credential) in &documents {
        let mut command = std::process::Command::new(&schemathesis);
        // Its cache of crashes goes beside the test's files, not into the source tree.
        command.current_dir(&dir);
        command.args(["run", url, "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"]);
        command.args(["--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "2", "--request-timeout", "20", "--no-color", "--seed", "1"]);
        command.args(["--exclude-path", "/v1/desk/logout", "--exclude-path", "/v1/desk/events", "--exclude-path", "/v1/stats/stream"]);
        if let Some(credential) = credential {
            command.args(["-H", &format!("Authorization: Bearer {credential}")]);
        }
        let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        let summary = report.lines().rev().find(|l| l.contains(" in ") && l.starts_with('=')).unwrap_or("(no summary)").to_owned();
        eprintln!("{url}: {summary}");
        if !output.status.success() {
            failures.push(format!("{url}:\n{report}\n{}", String::from_utf8_lossy(&output.stderr)));
        }
    }
    eprintln!("schemathesis over {} documents: {:.0} s", documents.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
