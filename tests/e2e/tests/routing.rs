//! The router, the desk and the Interaction Server on a real broker, with scripted agents
//! working through the desk's HTTP API: 200 interactions of mixed media, 20 agents with mixed
//! skills and capacities who accept, reject and let offers time out; a supervisor who pulls an
//! interaction and returns a reply from QA; the router SIGKILLed and restarted mid-run. The
//! verdict comes from replaying the event log, not from what the services say.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contract::command::{CommandPayload, MediaType, Submit};
use desk::users::Role;
use contract::event::{EventPayload, InteractionEvent};
use e2e::desk::{DeskClient as Desk, Levels, wait_ready, write_users};
use e2e::{TestEnv, free_port, spawn_service, switchboard_bin};
use runtime::commands::CommandClient;
use serde_json::json;

const INTERACTIONS: usize = 200;
const AGENTS: usize = 20;

const WORKFLOW: &str = r#"
offer_timeout_s = 2
on_agent_logout = "requeue"

[classifier]
examples = "classifier-examples.jsonl"
min_confidence = 0.5

[[queue]]
name = "inbound"
steps = [
  { type = "screen", field = "subject", regex = "(?i)^out of office", stop = "screened: automatic reply" },
  { type = "classify" },
  { type = "respond", standard_response = "acknowledgement", media = ["email"], queue = "outbound-send" },
  { type = "route", skills = { english = 1 }, policy = "longest_idle" },
]

[[queue]]
name = "chat"
steps = [{ type = "route", skills = { chat = 1 }, policy = "least_busy" }]

[[queue]]
name = "outbound"
steps = [{ type = "qa", sample_percent = 100, review_queue = "qa-review", send_queue = "outbound-send" }]

[[queue]]
name = "qa-returned"
steps = [{ type = "route", to_agent_property = "author_agent" }]
"#;


/// Agent `n`'s skills and capacity: mixed on purpose.
fn agent_profile(n: usize) -> (BTreeMap<String, i32>, BTreeMap<String, i32>) {
    let mut skills = BTreeMap::from([("english".to_owned(), 1 + (n % 5) as i32)]);
    if !n.is_multiple_of(3) {
        skills.insert("chat".into(), 1);
    }
    let capacity = BTreeMap::from([
        ("email".to_owned(), 1 + (n % 3) as i32),
        ("chat".to_owned(), if !n.is_multiple_of(3) { 1 + (n % 2) as i32 } else { 0 }),
        ("sms".to_owned(), 1),
    ]);
    (skills, capacity)
}

/// What a scripted agent does with an offer: deterministic per (agent, interaction).
fn choice(agent: &str, interaction: &str) -> u8 {
    let h = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{agent}/{interaction}").as_bytes());
    h.as_bytes()[0] % 10
}

/// Writes the test workflow with its classifier examples and the desk users file into `dir`.
fn write_workflow_and_users(dir: &Path, people: Vec<(String, Role, Levels, Levels)>) {
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/workflow/classifier-examples.jsonl"),
        dir.join("classifier-examples.jsonl"),
    )
    .unwrap();
    write_users(&dir.join("desk-users.toml"), people);
}

/// A scripted agent: ready for its media; accepts most offers, rejects some, ignores some
/// (they time out); works a little; replies to some e-mails; marks them done.
async fn scripted_agent(desk: Arc<Desk>, id: String, stop: Arc<AtomicBool>, released: Arc<AtomicUsize>) {
    let token = desk.login(&id).await;
    let (status, body) = desk.post(&token, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(status, 200, "{body}");
    let mut ignored = BTreeSet::new();
    let mut held_since: HashMap<String, Instant> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let (status, me) = desk.get(&token, "/v1/desk/me").await;
        assert_eq!(status, 200, "{me}");
        for offer in me["offers"].as_array().unwrap() {
            let iid = offer["id"].as_str().unwrap().to_owned();
            if ignored.contains(&iid) {
                continue;
            }
            let returned_reply = offer["properties"]["qa_status"] == "returned";
            match choice(&id, &iid) {
                0 if !returned_reply => {
                    // 409 is fine: the offer may have timed out meanwhile.
                    desk.post(&token, &format!("/v1/desk/interactions/{iid}/reject"), json!({"reason": "busy"})).await;
                }
                1 if !returned_reply => {
                    ignored.insert(iid);
                }
                _ => {
                    let (s, b) = desk.post(&token, &format!("/v1/desk/interactions/{iid}/accept"), json!({})).await;
                    if s != 200 {
                        eprintln!("{id}: accept {iid}: {s} {b}");
                    }
                }
            }
        }
        for owned in me["owned"].as_array().unwrap() {
            let iid = owned["id"].as_str().unwrap().to_owned();
            let since = *held_since.entry(iid.clone()).or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_millis(150) {
                continue;
            }
            let props = &owned["properties"];
            if props["qa_status"] == "returned" {
                let (s, b) = desk
                    .post(&token, &format!("/v1/desk/interactions/{iid}/release"), json!({"text": "Corrected answer, as the reviewer asked."}))
                    .await;
                assert_eq!(s, 200, "re-release of a returned reply: {b}");
                continue;
            }
            let replies = owned["media_type"] == "email" && choice("reply", &iid) < 2 && props.get("reply_interaction").is_none();
            if replies {
                let (s, b) = desk.post(&token, &format!("/v1/desk/interactions/{iid}/draft"), json!({"text": "Thank you, we are on it."})).await;
                assert_eq!(s, 200, "draft: {b}");
                let (s, b) = desk.post(&token, &format!("/v1/desk/interactions/{iid}/release"), json!({})).await;
                assert_eq!(s, 200, "release: {b}");
                released.fetch_add(1, Ordering::Relaxed);
            }
            let (s, b) = desk.post(&token, &format!("/v1/desk/interactions/{iid}/done"), json!({})).await;
            assert_eq!(s, 200, "done: {b}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// QA: approves every reply in review except the first, which goes back with a comment.
async fn supervisor(desk: Arc<Desk>, stop: Arc<AtomicBool>, returned: Arc<std::sync::Mutex<Option<String>>>) {
    let token = desk.login("sue").await;
    while !stop.load(Ordering::Relaxed) {
        let (status, view) = desk.get(&token, "/v1/desk/queues/qa-review").await;
        assert_eq!(status, 200, "{view}");
        for i in view["interactions"].as_array().unwrap() {
            let iid = i["id"].as_str().unwrap().to_owned();
            let first = { returned.lock().unwrap().is_none() };
            let body = if first && i["properties"]["qa_status"] != "resubmitted" {
                *returned.lock().unwrap() = Some(iid.clone());
                json!({"decision": "return", "comment": "Please name the order number."})
            } else {
                json!({"decision": "approve"})
            };
            let (s, b) = desk.post(&token, &format!("/v1/desk/interactions/{iid}/qa"), body).await;
            assert!(s == 200 || s == 409, "qa: {s} {b}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn media_of(n: usize) -> MediaType {
    match n % 20 {
        0..=11 => MediaType::Email,
        12..=16 => MediaType::Chat,
        _ => MediaType::Sms,
    }
}

const SUBJECTS: [&str; 5] = [
    "Charged twice for my invoice",
    "Where is my parcel, tracking not updated",
    "The app crashes after the update",
    "Please change the email on my account",
    "I want to cancel my subscription",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_interaction_reaches_one_agent_exactly_once() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();

    let mut people = Vec::new();
    let mut capacity_of: HashMap<String, BTreeMap<String, i32>> = HashMap::new();
    for n in 0..AGENTS {
        let (skills, capacity) = agent_profile(n);
        capacity_of.insert(format!("agent-{n:02}"), capacity.clone());
        people.push((format!("agent-{n:02}"), Role::Agent, skills, capacity));
    }
    people.push(("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new()));
    write_workflow_and_users(&dir, people);

    let desk_port = free_port();
    let router_port = free_port();
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    e2e::listen_on(&mut settings, desk_port);
    let desk_config = env.write_config(&settings, "desk.toml");
    e2e::listen_on(&mut settings, router_port);
    let router_config = env.write_config(&settings, "router.toml");

    let _desk_process = spawn_service(&desk_config, "desk", &dir.join("desk.log"));
    let mut router_process = spawn_service(&router_config, "router", &dir.join("router.log"));
    let http = e2e::http();
    wait_ready(&http, &format!("http://127.0.0.1:{desk_port}/health/ready/desk")).await;
    wait_ready(&http, &format!("http://127.0.0.1:{router_port}/health/ready/router")).await;

    let seen = env.follow_interaction_events();
    let desk = Arc::new(Desk::new(&http, desk_port));
    let stop = Arc::new(AtomicBool::new(false));
    let released = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(std::sync::Mutex::new(None));
    let mut agents = Vec::new();
    for n in 0..AGENTS {
        agents.push(tokio::spawn(scripted_agent(desk.clone(), format!("agent-{n:02}"), stop.clone(), released.clone())));
    }
    let supervisor_task = tokio::spawn(supervisor(desk.clone(), stop.clone(), returned.clone()));

    // The interactions, plus one parked in a queue without a strategy for the supervisor to pull.
    let client = CommandClient::new(&env.kafka, &env.topics, "test").unwrap();
    let mut ids = Vec::new();
    for n in 0..INTERACTIONS {
        let media = media_of(n);
        let id = format!("routing-{n:03}");
        let queue = if media == MediaType::Chat { "chat" } else { "inbound" };
        let command = client.command(
            &id,
            CommandPayload::Submit(Submit {
                media_type: media,
                origin: "test".into(),
                target_queue: queue.into(),
                priority: (n % 4) as i32,
                properties: BTreeMap::from([
                    ("subject".to_owned(), SUBJECTS[n % SUBJECTS.len()].to_owned()),
                    ("from".to_owned(), format!("customer{n}@example.com")),
                ]),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            }),
        );
        client.send(&command).await.unwrap();
        ids.push(id);
        if n % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let vip = "routing-vip";
    client
        .send(&client.command(
            vip,
            CommandPayload::Submit(Submit {
                media_type: MediaType::Email,
                origin: "test".into(),
                target_queue: "vip".into(),
                priority: 9,
                properties: BTreeMap::new(),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            }),
        ))
        .await
        .unwrap();

    let stopped_count = |_: &TestEnv| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, _, e)| e.interaction_id.starts_with("routing-") && matches!(e.payload, EventPayload::Stopped(_)))
            .count()
    };

    // Kill the router once a third is done, restart it a moment later.
    env.wait_for("a third of the interactions done", Duration::from_secs(90), || stopped_count(&env) >= INTERACTIONS / 3).await;
    router_process.start_kill().unwrap();
    router_process.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _router_again = spawn_service(&router_config, "router", &dir.join("router.log"));
    wait_ready(&http, &format!("http://127.0.0.1:{router_port}/health/ready/router")).await;

    // The supervisor pulls the parked interaction and closes it.
    let sue = desk.login("sue").await;
    let (s, b) = desk.post(&sue, &format!("/v1/desk/interactions/{vip}/pull"), json!({})).await;
    assert_eq!(s, 200, "pull: {b}");
    assert_eq!(b["interaction"]["owner"], "sue", "{b}");
    let (s, b) = desk.post(&sue, &format!("/v1/desk/interactions/{vip}/done"), json!({})).await;
    assert_eq!(s, 200, "done after pull: {b}");

    env.wait_for("every interaction done", Duration::from_secs(300), || stopped_count(&env) > INTERACTIONS).await;
    // The returned reply must come back approved.
    let returned_id = returned.lock().unwrap().clone().expect("a reply reached QA review");
    env.wait_for("the returned reply approved after rework", Duration::from_secs(120), || {
        seen.lock().unwrap().iter().any(|(_, _, e)| {
            e.interaction_id == returned_id
                && matches!(&e.payload, EventPayload::PlacedInQueue(p) if p.queue == "outbound-send")
        })
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.await.unwrap();
    }
    supervisor_task.await.unwrap();
    stop_server.cancel();
    server.await.unwrap().unwrap();

    // The verdict, from the whole log.
    let written = usize::try_from(env.events_written()).unwrap();
    env.wait_for("every event read back", Duration::from_secs(60), || seen.lock().unwrap().len() >= written).await;
    let events = seen.lock().unwrap().clone();
    verify_log(&events, &ids, vip, &capacity_of, &returned_id);
    assert!(released.load(Ordering::Relaxed) > 0, "some replies were released");
}

fn verify_log(
    events: &[(i32, i64, InteractionEvent)],
    ids: &[String],
    vip: &str,
    capacity_of: &HashMap<String, BTreeMap<String, i32>>,
    returned_reply: &str,
) {
    // Per interaction, in log order (one partition per interaction): one owner at a time,
    // exactly one stop.
    let mut by_interaction: BTreeMap<&str, Vec<&InteractionEvent>> = BTreeMap::new();
    for (_, _, e) in events {
        by_interaction.entry(e.interaction_id.as_str()).or_default().push(e);
    }
    let mut timed_out_then_handled = 0;
    for id in ids.iter().map(String::as_str).chain([vip]) {
        let life = by_interaction.get(id).unwrap_or_else(|| panic!("{id} has no events"));
        let mut owner: Option<&str> = None;
        let mut stops = 0;
        let mut timed_out = false;
        for e in life {
            match &e.payload {
                EventPayload::Assigned(a) => {
                    assert!(owner.is_none(), "{id} assigned to {} while {owner:?} owns it", a.agent_id);
                    owner = Some(&a.agent_id);
                }
                EventPayload::Transferred(_) | EventPayload::ReturnedToQueue(_) => owner = None,
                EventPayload::OfferTimedOut(_) => timed_out = true,
                EventPayload::Stopped(s) => {
                    stops += 1;
                    assert_eq!(Some(s.stopped_by.as_str()), owner, "{id} stopped by its owner");
                    owner = None;
                }
                _ => {}
            }
        }
        assert_eq!(stops, 1, "{id} stopped exactly once");
        if timed_out {
            timed_out_then_handled += 1;
        }
    }
    assert!(timed_out_then_handled > 0, "some offers timed out and were requeued, then handled");
    let vip_life = &by_interaction[vip];
    assert!(vip_life.iter().any(|e| matches!(&e.payload, EventPayload::Assigned(a) if a.agent_id == "sue")), "pulled by the supervisor");
    let rejected = events.iter().filter(|(_, _, e)| matches!(e.payload, EventPayload::OfferRejected(_))).count();
    assert!(rejected > 0, "some offers were rejected");
    let reply = &by_interaction[returned_reply];
    assert!(reply.iter().any(|e| matches!(&e.payload, EventPayload::PlacedInQueue(p) if p.queue == "qa-returned")), "QA returned a reply");

    // Capacity, across partitions in time order; at equal times releases come before offers
    // (the router only offers after it has seen the release).
    let mut ordered: Vec<&InteractionEvent> = events.iter().map(|(_, _, e)| e).collect();
    let acquires = |e: &InteractionEvent| matches!(e.payload, EventPayload::OfferedToAgent(_));
    ordered.sort_by_key(|e| (e.occurred_at, acquires(e)));
    let mut media_of: HashMap<&str, MediaType> = HashMap::new();
    // Agent to interactions it holds (offered or owned).
    let mut holding: HashMap<String, BTreeSet<String>> = HashMap::new();
    for e in ordered {
        let id = e.interaction_id.as_str();
        match &e.payload {
            EventPayload::Submitted(s) => {
                media_of.insert(id, s.media_type);
            }
            EventPayload::OfferedToAgent(o) => {
                holding.entry(o.agent_id.clone()).or_default().insert(id.to_owned());
                let media = media_of[id];
                let load = holding[&o.agent_id].iter().filter(|i| media_of.get(i.as_str()) == Some(&media)).count() as i32;
                if let Some(capacity) = capacity_of.get(&o.agent_id) {
                    let cap = capacity.get(media.as_str()).copied().unwrap_or(0);
                    assert!(load <= cap, "{} holds {load} {media} interactions (capacity {cap}) at {}", o.agent_id, e.occurred_at);
                }
            }
            EventPayload::OfferRejected(r) | EventPayload::OfferRevoked(r) => {
                holding.entry(r.agent_id.clone()).or_default().remove(id);
            }
            EventPayload::OfferTimedOut(a) => {
                holding.entry(a.agent_id.clone()).or_default().remove(id);
            }
            EventPayload::Stopped(_) | EventPayload::Transferred(_) | EventPayload::ReturnedToQueue(_) => {
                for h in holding.values_mut() {
                    h.remove(id);
                }
            }
            _ => {}
        }
    }
}

/// Bad desk requests get a 4xx with a reason; bad workflow files are refused at start with the
/// queue and step named; an agent's event stream pushes the offer routed to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_workflows_get_clear_errors_and_offers_are_pushed() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    let skills = BTreeMap::from([("english".to_owned(), 3)]);
    let capacity = BTreeMap::from([("email".to_owned(), 2)]);
    write_workflow_and_users(
        &dir,
        vec![
            ("ann".into(), Role::Agent, skills.clone(), capacity.clone()),
            ("sue".into(), Role::Supervisor, skills, capacity),
        ],
    );

    // A broken workflow: the router refuses to start and says where.
    std::fs::write(dir.join("bad-workflow.toml"), "[[queue]]\nname = \"inbound\"\nsteps = [{ type = \"route\" }, { type = \"screen\", field = \"subject\", regex = \"(\", stop = \"x\" }]\n").unwrap();
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("bad-workflow.toml"));
    let bad_config = env.write_config(&settings, "bad.toml");
    let out = std::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(&bad_config)
        .args(["run", "router"])
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "router started with a bad workflow");
    assert!(stderr.contains(r#"queue "inbound", step 1 (route): route must be the last step"#), "{stderr}");
    let out = std::process::Command::new(switchboard_bin()).args(["workflow", "check"]).arg(dir.join("bad-workflow.toml")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad-workflow.toml"), "{}", String::from_utf8_lossy(&out.stderr));

    let port = free_port();
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    e2e::listen_on(&mut settings, port);
    let config = env.write_config(&settings, "good.toml");
    let _router = spawn_service(&config, "router", &dir.join("router.log"));
    let mut desk_settings = settings.clone();
    let desk_port = free_port();
    e2e::listen_on(&mut desk_settings, desk_port);
    let desk_config = env.write_config(&desk_settings, "desk.toml");
    let _desk = spawn_service(&desk_config, "desk", &dir.join("desk.log"));
    let http = e2e::http();
    wait_ready(&http, &format!("http://127.0.0.1:{desk_port}/health/ready/desk")).await;
    wait_ready(&http, &format!("http://127.0.0.1:{port}/health/ready/router")).await;
    let desk = Desk::new(&http, desk_port);

    let r = http.post(format!("{}/v1/desk/login", desk.base)).json(&json!({"user": "ann", "password": "wrong"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // No credential, or a forged one: refused at the door (the route table's gate).
    let r = reqwest::Client::new().get(format!("{}/v1/desk/me", desk.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("needs a valid credential"));
    let (s, b) = desk.get("ann.agent.99999999999999.00", "/v1/desk/me").await;
    assert_eq!(s, 401, "{b}");
    assert!(b["error"].as_str().unwrap().contains("needs a valid credential"), "{b}");

    let ann = desk.login("ann").await;
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "asleep"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("unknown state"), "{b}");
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready", "media": ["fax"]})).await;
    assert_eq!(s, 400, "{b}");
    let r = http.post(format!("{}/v1/desk/state", desk.base)).bearer_auth(&ann).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = desk.post(&ann, "/v1/desk/interactions/nope/accept", json!({})).await;
    assert_eq!(s, 404);

    // Push: the offer routed to ann arrives on her event stream.
    let mut stream = http.get(format!("{}/v1/desk/events", desk.base)).bearer_auth(&ann).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    let client = CommandClient::new(&env.kafka, &env.topics, "test").unwrap();
    let id = "pushed-1";
    let submit = |id: &str, queue: &str| {
        client.command(
            id,
            CommandPayload::Submit(Submit {
                media_type: MediaType::Email,
                origin: "test".into(),
                target_queue: queue.into(),
                priority: 0,
                properties: BTreeMap::from([("subject".to_owned(), "Where is my parcel".to_owned())]),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            }),
        )
    };
    client.send(&submit(id, "inbound")).await.unwrap();
    let mut received = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !received.contains("event: offer") {
        assert!(Instant::now() < deadline, "no offer pushed; stream so far: {received}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(received.contains(id), "{received}");

    // Actions refused by the Interaction Server come back as 409 with its reason; role checks
    // as 403; size limits as 413.
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/done"), json!({})).await;
    assert_eq!(s, 409, "done before accepting: {b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/move"), json!({"queue": "x"})).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (403, "only a supervisor may do this"));
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["interaction"]["owner"], "ann");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/accept"), json!({})).await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("no pending offer"), "{b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/draft"), json!({"text": "x".repeat(70_000)})).await;
    assert_eq!(s, 413, "{b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/release"), json!({})).await;
    assert_eq!(s, 400, "release with no draft: {b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/transfer"), json!({})).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/fly"), json!({})).await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/accept"), json!({"colour": "red"})).await;
    assert_eq!(s, 400, "unknown field: {b}");

    // A supervisor cannot lock what an agent holds: the Interaction Server says why.
    let sue = desk.login("sue").await;
    let (s, b) = desk.post(&sue, &format!("/v1/desk/interactions/{id}/lock"), json!({})).await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("only a waiting interaction can be locked"), "{b}");
    let (s, b) = desk.post(&sue, &format!("/v1/desk/interactions/{id}/qa"), json!({"decision": "maybe"})).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/done"), json!({})).await;
    assert_eq!(s, 200, "{b}");

    stop_server.cancel();
    server.await.unwrap().unwrap();
}
