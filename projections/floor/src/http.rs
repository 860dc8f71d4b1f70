//! The statistics API (the Stat Server role), over the floor projection:
//! - `GET /v1/stats/queues`: per queue waiting, offered, oldest wait, average handle time,
//!   service level and totals;
//! - `GET /v1/stats/agents`: per agent current state and time in each state;
//! - `GET /v1/agents`, `GET /v1/agents/{id}`: agents' state, skills, capacity and load;
//! - `GET /health/ready/floor`: 200 once the replay is done.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::projector::SharedFloor;

pub fn routes(floor: Arc<SharedFloor>) -> Router {
    Router::new()
        .route("/v1/stats/queues", get(queue_stats))
        .route("/v1/stats/agents", get(agent_stats))
        .route("/v1/agents", get(agents))
        .route("/v1/agents/{id}", get(agent))
        .route("/health/ready/floor", get(ready))
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

async fn ready(State(floor): State<Arc<SharedFloor>>) -> Response {
    plumbing::http::readiness(floor.caught_up(), "replaying")
}
