//! The statistics API (the Stat Server role), over the floor projection:
//! - `GET /v1/stats/queues`: per queue waiting, offered, oldest wait, average handle time,
//!   service level and totals;
//! - `GET /v1/stats/agents`: per agent current state and time in each state;
//! - `GET /v1/agents`, `GET /v1/agents/{id}`: agents' state, skills, capacity and load;
//! - `GET /v1/stats/stream`: the queue and agent figures as server-sent events (`stats`),
//!   pushed when the floor changes (at most twice a second) and every 5 s (waits grow);
//! - `GET /v1/stats/history?minutes=60`: per queue, depth and service level per minute;
//! - `GET /health/ready/floor`: 200 once the replay is done.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::projector::SharedFloor;

/// Statistics and every agent's state: for supervisors.
pub fn routes(floor: Arc<SharedFloor>) -> runtime::routes::Table {
    use runtime::routes::{Audience::Staff, Policy::Supervisor};
    use utoipa::OpenApi as _;
    runtime::routes::Routes::new()
        .get("/v1/stats/openapi.json", Staff, runtime::routes::Policy::Open, || async { Json(crate::openapi::StatsDoc::openapi()) })
        .get("/v1/stats/queues", Staff, Supervisor, queue_stats)
        .get("/v1/stats/agents", Staff, Supervisor, agent_stats)
        .get("/v1/stats/stream", Staff, Supervisor, stream)
        .get("/v1/stats/history", Staff, Supervisor, history)
        .get("/v1/agents", Staff, Supervisor, agents)
        .get("/v1/agents/{id}", Staff, Supervisor, agent)
        .with_state(floor)
}

async fn queue_stats(State(floor): State<Arc<SharedFloor>>) -> Json<serde_json::Value> {
    let now = contract::now_millis();
    let f = floor.read();
    Json(json!({
        "now": now,
        "queues": f.stats().queue_views(now, &f.board().queue_summaries()),
    }))
}

async fn agent_stats(State(floor): State<Arc<SharedFloor>>) -> Json<serde_json::Value> {
    let now = contract::now_millis();
    Json(json!({ "now": now, "agents": floor.read().stats().agent_views(now) }))
}

async fn agents(State(floor): State<Arc<SharedFloor>>) -> Json<serde_json::Value> {
    let f = floor.read();
    let agents: Vec<_> = f.agents().map(|a| json!({ "state": a.state_name(), "agent": a })).collect();
    Json(json!({ "agents": agents }))
}

async fn agent(State(floor): State<Arc<SharedFloor>>, Path(id): Path<String>) -> Response {
    match floor.read().agent(&id) {
        Some(a) => Json(json!({ "state": a.state_name(), "agent": a })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no agent {id} has ever logged in") }))).into_response(),
    }
}

/// What the dashboard shows live: queue figures and, per agent, state, ready media and load.
pub fn dashboard(floor: &SharedFloor, now: i64) -> serde_json::Value {
    let f = floor.read();
    let agents: Vec<_> = f
        .agents()
        .filter(|a| a.logged_in || a.total_load() > 0)
        .map(|a| {
            let in_state_ms = f.stats().agent_view(&a.id, now).map_or(0, |v| v.in_state_ms);
            json!({
                "id": a.id,
                "state": a.state_name(),
                "ready": a.ready,
                "load": a.total_load(),
                "capacity": a.capacity.values().sum::<i32>(),
                "in_state_ms": in_state_ms,
            })
        })
        .collect();
    json!({ "now": now, "queues": f.stats().queue_views(now, &f.board().queue_summaries()), "agents": agents })
}

async fn stream(State(floor): State<Arc<SharedFloor>>) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(4);
    let mut changed = floor.changed();
    tokio::spawn(async move {
        loop {
            let event = Event::default().event("stats").data(dashboard(&floor, contract::now_millis()).to_string());
            if tx.send(event).await.is_err() {
                return;
            }
            // Pace: no more than two updates a second, at least one every 5 s.
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            tokio::select! {
                () = tx.closed() => return,
                r = changed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    Sse::new(futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)).keep_alive(KeepAlive::default())
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    minutes: Option<i64>,
}

async fn history(State(floor): State<Arc<SharedFloor>>, Query(q): Query<HistoryQuery>) -> Json<crate::trend::TrendView> {
    let minutes = q.minutes.unwrap_or(60).clamp(1, 180);
    Json(floor.read().trend(contract::now_millis(), minutes))
}
