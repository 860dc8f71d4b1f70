//! `GET /v1/router/openapi.json`: the router's status as OpenAPI 3.1 (held to the live service
//! by schemathesis in `tests/e2e/tests/api_schemas.rs`).
#![allow(dead_code)] // The function below exists for its `#[utoipa::path]` only.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct RouterStatus {
    pub ready: bool,
    pub commands_sent: u64,
    pub offers_sent: u64,
    pub send_failures: u64,
    pub pending: u64,
    /// Where the workflow came from (a file, or the built-in default).
    pub workflow: String,
    /// Each queue's name and steps.
    pub queues: Vec<serde_json::Value>,
    /// The classifier's evaluation on held-out examples, when the workflow trains one.
    pub classifier: Option<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard router", description = "The workflow router's status, for supervisors."),
    paths(status),
    components(schemas(ErrorBody, RouterStatus))
)]
pub struct RouterDoc;

#[utoipa::path(get, path = "/v1/router/status", responses((status = 200, body = RouterStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn status() {}
