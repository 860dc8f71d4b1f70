//! `GET /v1/stats/openapi.json`: the statistics API as OpenAPI 3.1 (held to the live service by
//! schemathesis in `tests/e2e/tests/api_schemas.rs`).
#![allow(dead_code)] // The functions below exist for their `#[utoipa::path]` only.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct QueueStats {
    pub now: i64,
    /// Per queue: waiting, offered, oldest wait, average handle time, service level, totals.
    pub queues: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentStats {
    pub now: i64,
    /// Per agent: current state and time in each state.
    pub agents: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentState {
    /// ready, not_ready, logged_out.
    pub state: String,
    /// State, skills, capacity and load.
    pub agent: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentState>,
}

/// Per minute from `from` to `to`: each queue's depth and service level.
#[derive(Serialize, ToSchema)]
pub struct Trend {
    pub from: i64,
    pub to: i64,
    pub samples: Vec<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard statistics", description = "The Stat Server role over the floor projection, for supervisors: queue and agent figures, live and per minute."),
    paths(queue_stats, agent_stats, stream, history, agents, agent),
    components(schemas(ErrorBody, QueueStats, AgentStats, AgentState, AgentList, Trend))
)]
pub struct StatsDoc;

#[utoipa::path(get, path = "/v1/stats/queues", responses((status = 200, body = QueueStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn queue_stats() {}

#[utoipa::path(get, path = "/v1/stats/agents", responses((status = 200, body = AgentStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn agent_stats() {}

#[utoipa::path(get, path = "/v1/stats/stream", description = "Server-sent events `stats`: queue figures and per agent state, ready media and load; on change (at most twice a second) and every 5 s.",
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn stream() {}

#[utoipa::path(get, path = "/v1/stats/history", params(("minutes" = Option<i64>, Query, description = "1 to 180 (clamped); default 60")),
    responses((status = 200, body = Trend), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn history() {}

#[utoipa::path(get, path = "/v1/agents", responses((status = 200, body = AgentList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn agents() {}

#[utoipa::path(get, path = "/v1/agents/{id}", params(("id" = String, Path)),
    responses((status = 200, body = AgentState), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn agent() {}
