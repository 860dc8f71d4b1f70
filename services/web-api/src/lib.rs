//! The public HTTP API (the seed's Web API Server). For now: submit an interaction.
//!
//! `POST /v1/interactions` turns a JSON request into a `Submit` command on
//! `interaction.commands` and answers `202 Accepted` once Kafka has it; the interaction then
//! shows in the queue projection (`GET /interactions/{id}`). An `Idempotency-Key` header makes
//! retries safe: the same key always yields the same interaction and command ids.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use contract::command::{CommandPayload, MediaType, Submit};
use interaction_server::client::CommandClient;
use serde::Deserialize;
use serde_json::json;

/// Longest accepted idempotency key, queue name or property value.
const MAX_FIELD_LEN: usize = 1024;
const MAX_PROPERTIES: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub media_type: String,
    pub queue: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub content_ref: Option<String>,
}

pub fn routes(commands: CommandClient) -> Router {
    Router::new()
        .route("/v1/interactions", post(submit))
        .with_state(commands)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Namespace of ids derived from idempotency keys (UUIDv5).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x1d2c_9e4b_77a0_4f51_8c36_0b9e_5a41_d3f2);

async fn submit(
    State(commands): State<CommandClient>,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let media_type: MediaType = match request.media_type.parse() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if request.queue.trim().is_empty() || request.queue.len() > MAX_FIELD_LEN {
        return error(
            StatusCode::BAD_REQUEST,
            "queue must be 1 to 1024 characters",
        );
    }
    if request.properties.len() > MAX_PROPERTIES
        || request
            .properties
            .iter()
            .any(|(k, v)| k.len() > MAX_FIELD_LEN || v.len() > MAX_FIELD_LEN)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "at most {MAX_PROPERTIES} properties of at most {MAX_FIELD_LEN} characters each"
            ),
        );
    }
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_FIELD_LEN => Some(key.to_owned()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 1024 visible ASCII characters",
            );
        }
    };
    let (interaction_id, command_id) = match &idempotency_key {
        Some(key) => (
            uuid::Uuid::new_v5(
                &IDEMPOTENCY_NAMESPACE,
                format!("interaction/{key}").as_bytes(),
            )
            .to_string(),
            uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("command/{key}").as_bytes())
                .to_string(),
        ),
        None => (
            interaction_server::client::uuid_v4(),
            interaction_server::client::uuid_v4(),
        ),
    };
    let mut command = commands.command(
        &interaction_id,
        CommandPayload::Submit(Submit {
            media_type,
            origin: "web-api".into(),
            target_queue: request.queue,
            priority: request.priority,
            properties: request.properties,
            contact_id: request.contact_id,
            content_ref: request.content_ref,
            parent_interaction_id: None,
        }),
    );
    command.command_id = command_id;
    match commands.send(&command).await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "interaction_id": interaction_id,
                "command_id": command.command_id,
                "status_url": format!("/interactions/{interaction_id}"),
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "submit not accepted by Kafka");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the interaction was not accepted: {e}"),
            )
        }
    }
}
