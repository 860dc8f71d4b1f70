//! `GET /v1/chats/openapi.json`: starting a chat, as OpenAPI 3.1, for the sites that embed the
//! widget (held to the live service by schemathesis in `tests/e2e/tests/api_schemas.rs`). The
//! socket itself is described in `docs/chat-protocol.md` (OpenAPI has no WebSockets).
#![allow(dead_code)] // The function below exists for its `#[utoipa::path]` only.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct Start {
    /// 1 to 200 characters.
    pub name: String,
    /// Where the transcript may be mailed (once, at the customer's request).
    pub email: Option<String>,
    pub subject: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    pub session_id: String,
    /// The customer's token for the socket (`/v1/chats/{session_id}/ws`): shown this once.
    pub token: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard chat", description = "Starting a web chat: a session and its chat interaction, routed to an agent. Rate limited per client address."),
    paths(start),
    components(schemas(ErrorBody, Start, Started))
)]
pub struct ChatDoc;

#[utoipa::path(post, path = "/v1/chats", request_body = Start,
    responses((status = 201, body = Started), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many chats from this address"), (status = 503, body = ErrorBody)))]
fn start() {}
