//! Users and sessions as state on the log, on Apache Kafka, with two desk instances (each its
//! own `switchboard run desk` process, as deployed behind a load balancer): a logout, a
//! demotion, a removal, a disablement and a new password made through one instance refuse the
//! old token on the *next* request to the other (no waiting, no retry); users added through
//! the admin API log in anywhere without a restart; a restarted instance still refuses what
//! was revoked (the log decides); `staff.events` carries no password hash; the login throttle
//! locks a guessed name out (the right password included) and answers an unknown name as it
//! answers a wrong password.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use desk::users::Role;
use e2e::desk::{DeskClient, PASSWORD, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use rdkafka::Message;
use serde_json::{Value, json};

async fn call(http: &reqwest::Client, method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = http.request(method.parse().unwrap(), url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (u16, Value) {
    let response = http.post(format!("{base}/v1/desk/login")).json(&json!({"user": user, "password": password})).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_count_on_the_next_request_to_another_instance() {
    let env = TestEnv::start().await.unwrap();
    let dir = env.dir.path().to_owned();
    let email = [("email".to_owned(), 2)].into();
    write_users(
        &dir.join("desk-users.toml"),
        vec![
            ("ann".into(), Role::Agent, BTreeMap::new(), email),
            ("bob".into(), Role::Agent, BTreeMap::new(), BTreeMap::new()),
            ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()),
            ("ada".into(), Role::Admin, BTreeMap::new(), BTreeMap::new()),
        ],
    );
    let mut settings = env.settings(&dir.join("data"));
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    let (port_one, port_two) = (free_port(), free_port());
    let spawn = |name: &str, port: u16, settings: &mut switchboard::settings::Settings| {
        e2e::listen_on(settings, port);
        let config = env.write_config(settings, &format!("{name}.toml"));
        e2e::spawn_service(&config, "desk", &dir.join(format!("{name}.log")))
    };
    let _one = spawn("desk-one", port_one, &mut settings);
    let mut two = spawn("desk-two", port_two, &mut settings);
    let (one, two_url) = (format!("http://127.0.0.1:{port_one}"), format!("http://127.0.0.1:{port_two}"));
    let http = reqwest::Client::new();
    wait_ready(&e2e::http(), &format!("{one}/health/ready")).await;
    wait_ready(&e2e::http(), &format!("{two_url}/health/ready")).await;
    let desk_one = DeskClient::new(&http, port_one);
    let admin = desk_one.login("ada").await;

    // A logout on one instance: the other refuses the token on its next request.
    let ann = desk_one.login("ann").await;
    let (status, me) = call(&http, "GET", &format!("{two_url}/v1/desk/me"), &ann, None).await;
    assert_eq!(status, 200, "a session from one instance is good on the other: {me}");
    let (status, _) = call(&http, "POST", &format!("{one}/v1/desk/logout"), &ann, Some(json!({}))).await;
    assert_eq!(status, 200);
    let (status, body) = call(&http, "GET", &format!("{two_url}/v1/desk/me"), &ann, None).await;
    assert_eq!(status, 401, "a logged-out token still works on the other instance: {body}");
    let (status, _) = call(&http, "GET", &format!("{one}/v1/desk/me"), &ann, None).await;
    assert_eq!(status, 401);
    let ann_again = desk_one.login("ann").await;
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &ann_again, None).await.0, 200, "a new login after a logout works");

    // A demotion: the supervisor's next request to the other instance is an agent's.
    let sue = desk_one.login("sue").await;
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/routes"), &sue, None).await.0, 200, "a supervisor's route");
    let (status, body) = call(&http, "PATCH", &format!("{one}/v1/desk/users/sue"), &admin, Some(json!({"role": "agent"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&http, "GET", &format!("{two_url}/v1/routes"), &sue, None).await;
    assert_eq!(status, 403, "a demoted supervisor still reads a supervisor's route: {body}");
    let (status, me) = call(&http, "GET", &format!("{two_url}/v1/desk/me"), &sue, None).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("agent")), "{me}");

    // A removal: refused at once, and no new login; an event stream open on the other
    // instance ends.
    let bob = desk_one.login("bob").await;
    let mut stream = http.get(format!("{two_url}/v1/desk/events")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let (status, _) = call(&http, "DELETE", &format!("{one}/v1/desk/users/bob"), &admin, None).await;
    assert_eq!(status, 204);
    let mut seen = String::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok() && seen.contains("session_ended"), "the removed user's event stream goes on: {seen}");
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &bob, None).await.0, 401, "a removed user's token still works");
    assert_eq!(login(&http, &two_url, "bob", PASSWORD).await.0, 401, "a removed user logs in");

    // A disablement: refused at once; enabling again does not revive the old session.
    let (status, body) = call(&http, "PATCH", &format!("{one}/v1/desk/users/sue"), &admin, Some(json!({"enabled": false, "reason": "left"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &sue, None).await.0, 401, "a disabled user's token still works");
    let (status, refused) = login(&http, &two_url, "sue", PASSWORD).await;
    let (_, unknown) = login(&http, &two_url, "nobody-at-all", PASSWORD).await;
    assert_eq!((status, &refused), (401, &unknown), "a disabled user is answered as an unknown one");
    call(&http, "PATCH", &format!("{one}/v1/desk/users/sue"), &admin, Some(json!({"enabled": true}))).await;
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &sue, None).await.0, 401);

    // A user added through the API logs in on the other instance at once; a new password
    // ends her sessions and the old password.
    let (status, body) = call(
        &http,
        "POST",
        &format!("{one}/v1/desk/users"),
        &admin,
        Some(json!({"id": "cat", "name": "Cat", "role": "agent", "password": "first password", "capacity": {"chat": 1}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&http, "POST", &format!("{one}/v1/desk/users"), &admin, Some(json!({"id": "cat", "role": "agent", "password": "another one"}))).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = login(&http, &two_url, "cat", "first password").await;
    assert_eq!(status, 200, "{body}");
    let cat = body["token"].as_str().unwrap().to_owned();
    let (status, body) = call(&http, "PATCH", &format!("{one}/v1/desk/users/cat"), &admin, Some(json!({"password": "second password"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &cat, None).await.0, 401, "a session from before the new password");
    assert_eq!(login(&http, &two_url, "cat", "first password").await.0, 401);
    assert_eq!(login(&http, &two_url, "cat", "second password").await.0, 200);
    let (status, body) = call(&http, "POST", &format!("{one}/v1/desk/users"), &admin, Some(json!({"id": "dan", "role": "root", "password": "long enough"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(&http, "POST", &format!("{one}/v1/desk/users"), &ann_again, Some(json!({"id": "eve", "role": "admin", "password": "long enough"}))).await;
    assert_eq!(status, 403, "an agent adds users");
    let (status, body) = call(&http, "PATCH", &format!("{one}/v1/desk/users/ada"), &admin, Some(json!({"enabled": false}))).await;
    assert_eq!(status, 409, "an admin disables their own account: {body}");

    // The users file seeds the log only: a removed user listed in it does not come back, and
    // a restarted instance still refuses every revoked token.
    two.start_kill().unwrap();
    two.wait().await.unwrap();
    let _two = spawn("desk-two-again", port_two, &mut settings);
    wait_ready(&e2e::http(), &format!("{two_url}/health/ready")).await;
    for (who, token) in [("ann's first", &ann), ("bob's", &bob), ("sue's", &sue), ("cat's first", &cat)] {
        assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), token, None).await.0, 401, "{who} token after a restart");
    }
    assert_eq!(call(&http, "GET", &format!("{two_url}/v1/desk/me"), &ann_again, None).await.0, 200);
    assert_eq!(login(&http, &two_url, "bob", PASSWORD).await.0, 401, "the users file brought a removed user back");
    let (_, users) = call(&http, "GET", &format!("{two_url}/v1/desk/users"), &admin, None).await;
    let ids: Vec<&str> = users["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ada", "ann", "cat", "sue"], "{users}");
    assert!(!users.to_string().contains("argon2"), "the users list shows a hash: {users}");

    // No password hash on the topic analytics consumers read.
    let staff_events = env.read_all(&env.topic(runtime::topics::STAFF_EVENTS));
    assert!(staff_events.len() >= 10, "{} staff events", staff_events.len());
    for record in &staff_events {
        let bytes = record.payload().unwrap_or_default();
        assert!(!String::from_utf8_lossy(bytes).contains("$argon2"), "a password hash on staff.events");
    }

    // The login throttle: five wrong guesses lock the name out, the right password included;
    // an unknown name is answered as a wrong password.
    let (wrong, _) = login(&http, &one, "cat", "wrong").await;
    let (unknown, _) = login(&http, &one, "nobody", "wrong").await;
    assert_eq!((wrong, unknown), (401, 401));
    for _ in 0..4 {
        login(&http, &one, "cat", "wrong").await;
    }
    let (status, body) = login(&http, &one, "cat", "second password").await;
    assert_eq!(status, 429, "the right password after five wrong ones: {body}");
}
