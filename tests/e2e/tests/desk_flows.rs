//! The desk's working flows on a real broker, each service its own process as deployed:
//! standard responses (from UCS) offered with the interaction's category first and merge
//! fields filled; consult and leave; transfer to an agent and to a queue; a supervisor's
//! priority change and move; a route step's timeout moving an interaction on; an agent whose
//! browser disconnects having offers revoked and work requeued; and the statistics API
//! reporting what happened. Checked through the desk, the statistics API and the event log.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use contract::agent::{AgentEvent, AgentPayload};
use contract::command::{CommandPayload, MediaType, Submit};
use contract::event::{EventPayload, InteractionEvent};
use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::{TestEnv, free_port};
use runtime::commands::CommandClient;
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60
on_agent_logout = "requeue"

[[queue]]
name = "ann-q"
steps = [{ type = "route", skills = { a = 1 } }]

[[queue]]
name = "shared"
steps = [{ type = "route", skills = { c = 1 } }]

[[queue]]
name = "french"
steps = [{ type = "route", skills = { french = 1 }, timeout_s = 2, on_timeout = "fallback" }]

# A queue without a strategy: work waits there until someone moves it.
[[queue]]
name = "parked"

[[queue]]
name = "fallback"
steps = [{ type = "route", skills = { b = 1 } }]
"#;

const LIMIT: Duration = Duration::from_secs(60);

fn levels(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn submit(client: &CommandClient, id: &str, queue: &str, properties: &[(&str, &str)]) {
    let command = client.command(
        id,
        CommandPayload::Submit(Submit {
            media_type: MediaType::Email,
            origin: "test".into(),
            target_queue: queue.into(),
            priority: 0,
            properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
        }),
    );
    client.send(&command).await.unwrap();
}

/// Polls the interaction as the supervisor sees it until `check` holds.
async fn until(desk: &DeskClient, sue: &str, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    desk.get_until(sue, &format!("/v1/desk/interactions/{id}"), LIMIT, check).await
}

fn offered_to(i: &Value, agent: &str) -> bool {
    i["status"] == "offered" && i["offer"]["agent_id"] == agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn desk_flows_consult_transfer_timeouts_disconnects_responses_and_stats() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity = levels(&[("email", 3), ("chat", 1)]);
    write_users(
        &dir.join("desk-users.toml"),
        vec![
            ("ann".into(), Role::Agent, levels(&[("a", 1)]), capacity.clone()),
            ("bob".into(), Role::Agent, levels(&[("b", 1), ("c", 1)]), capacity.clone()),
            ("cid".into(), Role::Agent, levels(&[("c", 1)]), capacity.clone()),
            ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()),
            ("dan".into(), Role::Agent, BTreeMap::new(), capacity.clone()),
        ],
    );

    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.desk.disconnect_grace_s = 1;
    let services = env.spawn_services(&mut settings, &[("router", free_port()), ("desk", free_port()), ("stats", free_port()), ("ucs", free_port())]);
    let http = e2e::http();
    let url = |service: &str, path: &str| services.url(service, path);
    for (service, ready) in [("router", "router"), ("desk", "desk"), ("stats", "floor"), ("ucs", "ucs")] {
        wait_ready(&http, &url(service, &format!("/health/ready/{ready}"))).await;
    }
    let desk = DeskClient::new(&http, services.port("desk"));
    let client = CommandClient::new(&env.kafka, &env.topics, "test").unwrap();

    // Standard responses, kept by UCS: one for the billing category, one for any e-mail,
    // one for chat only.
    let category: Value = http
        .post(url("ucs", "/v1/categories"))
        .json(&json!({"name": "Billing"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let billing = category["id"].as_str().unwrap().to_owned();
    for (name, category_id, media) in [("Refund", Some(billing.as_str()), vec!["email"]), ("Hello", None, vec![]), ("Chat only", None, vec!["chat"])] {
        let r = http
            .post(url("ucs", "/v1/standard-responses"))
            .json(&json!({
                "name": name, "category_id": category_id, "media": media,
                "subject": "Re: {{subject}}",
                "body_text": "Dear {{from}}, about {{ subject }}: {{name}}. {{agent_name}}",
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    // Login throttle: five wrong passwords lock a name out, even the right password is then
    // refused; an unknown name is answered exactly as a known one, before and after.
    let login = |user: &'static str, password: &'static str| {
        let http = http.clone();
        let login_url = url("desk", "/v1/desk/login");
        async move {
            let r = http.post(login_url).json(&json!({"user": user, "password": password})).send().await.unwrap();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry_after, r.text().await.unwrap())
        }
    };
    for _ in 0..5 {
        let known = login("dan", "guess").await;
        let unknown = login("nobody-here", "guess").await;
        assert_eq!((known.0, &known.2), (401, &r#"{"error":"unknown user or wrong password"}"#.to_owned()));
        assert_eq!(known, unknown);
    }
    let (status, retry_after, body) = login("dan", e2e::desk::PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many failed logins") && retry_after.is_some_and(|s| s.parse::<u64>().unwrap() > 200), "{body}");
    assert_eq!(login("nobody-here", "guess").await.0, 429);

    let sue = desk.login("sue").await;
    let ann = desk.login("ann").await;
    let bob = desk.login("bob").await;
    for token in [&ann, &bob] {
        let (s, b) = desk.post(token, "/v1/desk/state", json!({"state": "ready"})).await;
        assert_eq!(s, 200, "{b}");
    }

    // 1. Ann gets a categorised e-mail; its responses come billing first, filled in.
    submit(&client, "i-1", "ann-q", &[("subject", "Double charge"), ("from", "ada@example.com"), ("category", "billing")]).await;
    until(&desk, &sue, "i-1", |i| offered_to(i, "ann")).await;
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/accept", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let responses = desk
        .get_until(&ann, "/v1/desk/interactions/i-1/responses", LIMIT, |b| b["responses"].as_array().is_some_and(|r| r.len() == 2))
        .await;
    let listed: Vec<(&str, bool)> = responses["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["suggested"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [("Refund", true), ("Hello", false)], "{responses}");
    assert_eq!(responses["responses"][0]["subject"], "Re: Double charge");
    assert_eq!(responses["responses"][0]["body_text"], "Dear ada@example.com, about Double charge: {{name}}. ann");
    let (s, _) = desk.get(&bob, "/v1/desk/interactions/i-1/responses").await;
    assert_eq!(s, 403, "bob is not on i-1");

    // 2. Ann consults Bob, who sees it while a party and then leaves.
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/consult", json!({"agent": "bob"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["interaction"]["parties"]["bob"], "consult", "{b}");
    assert_eq!(b["interaction"]["owner"], "ann");
    let (s, b) = desk.get(&bob, "/v1/desk/interactions/i-1").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = desk.post(&bob, "/v1/desk/interactions/i-1/leave", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["interaction"]["parties"], json!({}), "{b}");
    // Only Ann's to act on: Bob cannot bring himself back in or take Ann out, and Ann cannot
    // move it past QA into the send queue.
    for (token, action, body) in [
        (&bob, "consult", json!({"agent": "bob"})),
        (&bob, "leave", json!({"agent": "ann"})),
        (&bob, "transfer", json!({"queue": "parked"})),
        (&ann, "transfer", json!({"queue": "outbound-send"})),
        (&ann, "return", json!({"queue": "outbound-send"})),
        // Only queues the workflow marks as agent targets (it defines no "nowhere").
        (&ann, "transfer", json!({"queue": "nowhere"})),
    ] {
        let (s, b) = desk.post(token, &format!("/v1/desk/interactions/i-1/{action}"), body).await;
        assert_eq!(s, 403, "{action}: {b}");
    }

    // 3. Transfer to Bob (an offer he accepts), then Bob transfers it to a queue without
    //    a strategy, where the supervisor reprioritises it and moves it back to Ann's queue.
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/transfer", json!({"agent": "bob"})).await;
    assert_eq!(s, 200, "{b}");
    assert!(offered_to(&b["interaction"], "bob"), "{b}");
    let (s, b) = desk.post(&bob, "/v1/desk/interactions/i-1/accept", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["interaction"]["owner"], "bob");
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/done", json!({})).await;
    assert_eq!(s, 403, "ann no longer owns it: {b}");
    let (s, b) = desk.post(&bob, "/v1/desk/interactions/i-1/transfer", json!({"queue": "parked"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["interaction"]["status"].as_str(), b["interaction"]["queue"].as_str()), (Some("waiting"), Some("parked")), "{b}");
    let (s, b) = desk.post(&sue, "/v1/desk/interactions/i-1/priority", json!({"priority": 7})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["interaction"]["priority"], 7);
    let (s, b) = desk.get(&sue, "/v1/desk/queues/parked").await;
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains("i-1"), "{b}");
    let (s, b) = desk.post(&sue, "/v1/desk/interactions/i-1/move", json!({"queue": "ann-q"})).await;
    assert_eq!(s, 200, "{b}");
    until(&desk, &sue, "i-1", |i| offered_to(i, "ann")).await;
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/accept", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = desk.post(&ann, "/v1/desk/interactions/i-1/done", json!({})).await;
    assert_eq!(s, 200, "{b}");

    // 4. Nobody speaks French: after the route step's 2 s the workflow moves it on to
    //    "fallback", where Bob gets it.
    submit(&client, "i-2", "french", &[("subject", "Bonjour")]).await;
    until(&desk, &sue, "i-2", |i| offered_to(i, "bob")).await;
    let (s, b) = desk.post(&bob, "/v1/desk/interactions/i-2/accept", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = desk.post(&bob, "/v1/desk/interactions/i-2/done", json!({})).await;
    assert_eq!(s, 200, "{b}");

    // 5. Cid works with his event stream open; Bob is not ready. Cid accepts one offer and
    //    leaves another pending, then his browser goes away: after the grace period he is
    //    logged out, the pending offer is revoked and what he held is requeued, both to Bob.
    let (s, b) = desk.post(&bob, "/v1/desk/state", json!({"state": "not_ready", "reason": "lunch"})).await;
    assert_eq!(s, 200, "{b}");
    let cid = desk.login("cid").await;
    let stream = http.get(format!("{}/v1/desk/events", desk.base)).bearer_auth(&cid).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let (s, b) = desk.post(&cid, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    submit(&client, "i-3", "shared", &[("subject", "held by cid")]).await;
    until(&desk, &sue, "i-3", |i| offered_to(i, "cid")).await;
    let (s, b) = desk.post(&cid, "/v1/desk/interactions/i-3/accept", json!({})).await;
    assert_eq!(s, 200, "{b}");
    submit(&client, "i-4", "shared", &[("subject", "offered to cid")]).await;
    until(&desk, &sue, "i-4", |i| offered_to(i, "cid")).await;
    let (s, b) = desk.post(&bob, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    drop(stream);
    for id in ["i-3", "i-4"] {
        until(&desk, &sue, id, |i| offered_to(i, "bob")).await;
        let (s, b) = desk.post(&bob, &format!("/v1/desk/interactions/{id}/accept"), json!({})).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = desk.post(&bob, &format!("/v1/desk/interactions/{id}/done"), json!({})).await;
        assert_eq!(s, 200, "{b}");
    }

    // The log tells the same story.
    let events: Vec<InteractionEvent> = env.read_decoded(&env.topic("interaction.events")).into_iter().map(|(_, _, e)| e).collect();
    let of = |id: &str| events.iter().filter(|e| e.interaction_id == id).map(|e| &e.payload).collect::<Vec<_>>();
    assert!(
        of("i-2").iter().any(|p| matches!(p, EventPayload::PlacedInQueue(q) if q.queue == "fallback" && q.reason.contains("waited over 2 s"))),
        "{:?}",
        of("i-2")
    );
    assert!(
        of("i-4").iter().any(|p| matches!(p, EventPayload::OfferRevoked(r) if r.agent_id == "cid" && r.reason == "agent logged out")),
        "{:?}",
        of("i-4")
    );
    assert!(
        of("i-3").iter().any(|p| matches!(p, EventPayload::ReturnedToQueue(r) if r.agent_id == "cid")),
        "{:?}",
        of("i-3")
    );
    for id in ["i-1", "i-2", "i-3", "i-4"] {
        let stops = of(id).iter().filter(|p| matches!(p, EventPayload::Stopped(_))).count();
        assert_eq!(stops, 1, "{id}: {:?}", of(id));
    }
    let agent_events: Vec<AgentEvent> = env.read_decoded(&env.topic("agent.events")).into_iter().map(|(_, _, e)| e).collect();
    assert!(
        agent_events.iter().any(|e| e.agent_id == "cid" && matches!(&e.payload, AgentPayload::LoggedOut(l) if l.reason.as_deref() == Some("disconnected"))),
        "cid was not logged out as disconnected"
    );

    // 6. Statistics: handled counts and handle times per queue; time per state per agent.
    let queues: Value = http.get(url("stats", "/v1/stats/queues")).send().await.unwrap().json().await.unwrap();
    let queue = |name: &str| queues["queues"].as_array().unwrap().iter().find(|q| q["queue"] == name).cloned().unwrap_or_else(|| panic!("no {name} in {queues}"));
    let ann_q = queue("ann-q");
    assert_eq!(ann_q["waiting"], 0, "{ann_q}");
    assert!(ann_q["handled"].as_u64().unwrap() >= 1, "{ann_q}");
    assert!(ann_q["average_handle_ms"].as_i64().is_some(), "{ann_q}");
    assert!(ann_q["service_level"].as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)), "{ann_q}");
    assert!(queue("fallback")["entered"].as_u64().unwrap() >= 1, "{queues}");
    assert!(queue("shared")["entered"].as_u64().unwrap() >= 2, "{queues}");
    let agents: Value = http.get(url("stats", "/v1/stats/agents")).send().await.unwrap().json().await.unwrap();
    let agent = |id: &str| agents["agents"].as_array().unwrap().iter().find(|a| a["agent_id"] == id).cloned().unwrap_or_else(|| panic!("no {id} in {agents}"));
    assert_eq!(agent("cid")["state"], "logged_out", "{agents}");
    assert!(agent("ann")["ms_in_state"]["busy"].as_i64().is_some_and(|ms| ms > 0), "{agents}");
    assert!(agent("bob")["ms_in_state"]["not_ready"].as_i64().is_some_and(|ms| ms > 0), "{agents}");

    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
