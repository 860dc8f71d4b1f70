//! `GET /v1/queues/openapi.json`: the queue projection's API as OpenAPI 3.1 (held to the live
//! service by schemathesis in `tests/e2e/tests/api_schemas.rs`).
#![allow(dead_code)] // The functions below exist for their `#[utoipa::path]` only.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    /// Every non-empty queue with its counts.
    pub queues: Vec<serde_json::Value>,
    pub events_applied: u64,
    pub anomalies: u64,
    pub late_events: u64,
    /// Interactions on the live board.
    pub live: u64,
    /// Stopped interactions that left the live board.
    pub evicted: u64,
    pub undecodable: u64,
    pub caught_up: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Gone {
    pub error: String,
    /// Where its history is (UCS).
    pub history: String,
    /// The command that prints its whole history from the log.
    pub audit: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard Interaction Server queues", description = "The queues as a projection of interaction.events, for supervisors: every property of every live interaction."),
    paths(list_queues, queue, interaction),
    components(schemas(ErrorBody, QueueList, Gone))
)]
pub struct QueuesDoc;

#[utoipa::path(get, path = "/queues", responses((status = 200, body = QueueList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn list_queues() {}

#[utoipa::path(get, path = "/queues/{queue}", params(("queue" = String, Path)),
    responses((status = 200, body = Object, description = "The queue's interactions in serving order (empty for an unknown queue)"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn queue() {}

#[utoipa::path(get, path = "/interactions/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "The interaction's current state"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = Gone, description = "stopped and left the live board")))]
fn interaction() {}
