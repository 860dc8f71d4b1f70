//! The public HTTP API (the seed's Web API Server) for web sites and applications.
//!
//! - `POST /v1/interactions` turns a JSON request into a `Submit` command on
//!   `interaction.commands` and answers `202 Accepted` once Kafka has it; the interaction then
//!   shows in the queue projection (`GET /interactions/{id}`).
//! - `POST /v1/callbacks`: a web callback ([`callback`]).
//! - The contact form (`POST /v1/forms/email`) is served with these but belongs to the e-mail
//!   channel; chats start at the chat server (`POST /v1/chats`).
//!
//! An `Idempotency-Key` header makes retries safe: the same key always yields the same
//! interaction and command ids. Every route is rate limited per client address
//! (`runtime::http::rate_limited`, applied where the service is mounted; the chat server's
//! `POST /v1/chats` too); `GET /v1/web/openapi.json` describes the API.

pub mod callback;

use std::collections::BTreeMap;

use axum::extract::State;
use runtime::config::CallbackSettings;
use utoipa::OpenApi;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use runtime::routes::{Routes, Table};
use contract::command::{CommandPayload, MediaType, Submit};
use runtime::commands::CommandClient;
use serde::Deserialize;
use serde_json::json;

/// Longest accepted idempotency key, queue name or property value.
const MAX_FIELD_LEN: usize = 1024;
const MAX_PROPERTIES: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

#[derive(Clone)]
struct Api {
    commands: CommandClient,
    callbacks: CallbackSettings,
    public: PublicLimits,
}

/// What an anonymous submission may ask for (`[web_api]`).
#[derive(Clone, Debug)]
pub struct PublicLimits {
    pub queues: Vec<String>,
    pub max_priority: i32,
}

impl PublicLimits {
    /// The workflow's `public` queues, and `[web_api] max_public_priority`.
    pub fn new(workflow: &interaction_workflow::Workflow, settings: &runtime::config::WebApiSettings) -> Self {
        Self { queues: workflow.public_queues(), max_priority: settings.max_public_priority }
    }

    /// Why `request` is more than a customer may ask, if it is.
    fn refuse(&self, request: &SubmitRequest) -> Option<String> {
        if !self.queues.contains(&request.queue) {
            return Some(format!("queue {:?} does not take submissions from the web; public queues (marked in the workflow): {}", request.queue, self.queues.join(", ")));
        }
        if !(0..=self.max_priority).contains(&request.priority) {
            return Some(format!("priority must be 0 to {} for a web submission", self.max_priority));
        }
        if request.contact_id.is_some() {
            return Some("contact_id is set by the system (UCS identifies the contact), not by a web submission".into());
        }
        if request.content_ref.is_some() {
            return Some("content_ref is set by the system, not by a web submission".into());
        }
        let owned: Vec<&str> = request.properties.keys().map(String::as_str).filter(|k| contract::command::is_system_property(k)).collect();
        if !owned.is_empty() {
            return Some(format!("properties {} are set by the system, not by a web submission (a customer's e-mail address goes through /v1/forms/email)", owned.join(", ")));
        }
        None
    }
}

/// Staff and services submit anything (supervisors' tools, the tests' fixtures): a
/// supervisor's session or a service key with scope `write`.
fn unrestricted(caller: Option<&runtime::routes::Caller>) -> bool {
    use runtime::routes::{Caller, StaffRole};
    match caller {
        Some(Caller::Staff { role, .. }) => *role >= StaffRole::Supervisor,
        Some(Caller::Service { scopes, .. }) => scopes.iter().any(|s| s == "write"),
        _ => false,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard web API", description = "For web sites: submit interactions and request callbacks. Chats start at the chat server (`POST /v1/chats`, see docs/chat-protocol.md); the contact form is `POST /v1/forms/email`."),
    paths(submit, request_callback),
    components(schemas(SubmitRequest, callback::CallbackRequest))
)]
struct ApiDoc;

/// The web API service: its routes and `public` (routes of other channels served to web sites
/// beside them, the contact form), rate limited together per client address. It only writes:
/// a submission accepted is on `interaction.commands`, so it is always ready.
pub fn service(ctx: &runtime::service::Context, public: Table) -> anyhow::Result<runtime::service::Service> {
    let client = CommandClient::new(&ctx.settings.kafka, &ctx.topics, "web-api")?;
    let routes = routes(client, &ctx.settings.callback, PublicLimits::new(&interaction_workflow::Workflow::load_or_builtin(ctx.settings.workflow_file.as_deref())?, &ctx.settings.web_api)).merge(public);
    let limited = routes.try_map(|r| runtime::http::rate_limited(r, &ctx.settings.web_api, &ctx.settings.http)).map_err(anyhow::Error::msg)?;
    Ok(runtime::service::Service::new("web-api").routes(limited))
}

pub fn routes(commands: CommandClient, callbacks: &CallbackSettings, public: PublicLimits) -> Table {
    use runtime::routes::{Audience::Public, Policy::{Customer, Open}};
    Routes::new()
        .post("/v1/interactions", Public, Customer, submit)
        .post("/v1/callbacks", Public, Customer, request_callback)
        .get("/v1/web/openapi.json", Public, Open, || async { Json(ApiDoc::openapi()) })
        .with_state(Api { commands, callbacks: callbacks.clone(), public })
}

/// Interaction and command ids: derived from the `Idempotency-Key` when there is one.
fn ids(headers: &HeaderMap) -> Result<(String, String), &'static str> {
    match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => Ok((runtime::commands::uuid_v4(), runtime::commands::uuid_v4())),
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_FIELD_LEN => Ok((
            uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("interaction/{key}").as_bytes()).to_string(),
            uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("command/{key}").as_bytes()).to_string(),
        )),
        Some(_) => Err("Idempotency-Key must be 1 to 1024 visible ASCII characters"),
    }
}

/// Submits and answers `202` with `extra` fields once Kafka has the command.
async fn send_submit(commands: &CommandClient, interaction_id: String, command_id: String, submit: Submit, extra: serde_json::Value) -> Response {
    let mut command = commands.command(&interaction_id, CommandPayload::Submit(submit));
    command.command_id = command_id;
    match commands.send(&command).await {
        Ok(_) => {
            let mut body = json!({
                "interaction_id": interaction_id,
                "command_id": command.command_id,
            });
            if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
                body.extend(extra);
            }
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "submit not accepted by Kafka");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the interaction was not accepted: {e}"))
        }
    }
}

/// Request a callback.
#[utoipa::path(post, path = "/v1/callbacks", request_body = callback::CallbackRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key: the same callback")),
    responses((status = 202, description = "accepted: `{interaction_id, callback_at}`"), (status = 400, description = "not JSON, or not the request's shape, with the reason"), (status = 422, description = "invalid phone number or time, with the reason"), (status = 429, description = "too many requests"), (status = 503, description = "not accepted; retry")))]
async fn request_callback(State(api): State<Api>, headers: HeaderMap, body: Result<Json<callback::CallbackRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let checked = match callback::check(&request, &api.callbacks, contract::now_millis()) {
        Ok(c) => c,
        Err(reason) => return error(StatusCode::UNPROCESSABLE_ENTITY, reason),
    };
    let (interaction_id, command_id) = match ids(&headers) {
        Ok(ids) => ids,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let submit = Submit {
        media_type: MediaType::Callback,
        origin: "web-api".into(),
        target_queue: api.callbacks.queue.clone(),
        priority: 0,
        properties: checked.properties,
        contact_id: None,
        content_ref: None,
        parent_interaction_id: None,
    };
    send_submit(&api.commands, interaction_id, command_id, submit, json!({"phone": checked.phone, "callback_at": checked.callback_at})).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Namespace of ids derived from idempotency keys (UUIDv5).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x1d2c_9e4b_77a0_4f51_8c36_0b9e_5a41_d3f2);

/// Submit an interaction of any media to a queue.
#[utoipa::path(post, path = "/v1/interactions", request_body = SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key: the same interaction")),
    responses((status = 202, description = "accepted: `{interaction_id, command_id}`, and for a staff caller `status_url` (the queue projection's `/interactions/{id}`)"), (status = 400, description = "invalid request, with the reason"), (status = 403, description = "more than a web submission may ask for (a queue not public, a system property, a priority out of range), with the reason"), (status = 503, description = "not accepted; retry")))]
async fn submit(
    State(Api { commands, public, .. }): State<Api>,
    caller: Option<axum::Extension<runtime::routes::Caller>>,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let staff = unrestricted(caller.as_deref());
    if !staff && let Some(reason) = public.refuse(&request) {
        return error(StatusCode::FORBIDDEN, reason);
    }
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
    let (interaction_id, command_id) = match ids(&headers) {
        Ok(ids) => ids,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let submit = Submit {
        media_type,
        origin: "web-api".into(),
        target_queue: request.queue,
        priority: request.priority,
        properties: request.properties,
        contact_id: request.contact_id,
        content_ref: request.content_ref,
        parent_interaction_id: None,
    };
    // Where to follow it is a staff route: named only to those who may call it.
    let extra = if staff { json!({"status_url": format!("/interactions/{interaction_id}")}) } else { json!({}) };
    send_submit(&commands, interaction_id, command_id, submit, extra).await
}

#[cfg(test)]
mod public_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn submission(queue: &str) -> SubmitRequest {
        SubmitRequest { media_type: "email".into(), queue: queue.into(), priority: 0, properties: BTreeMap::new(), contact_id: None, content_ref: None }
    }

    #[test]
    fn public_queues_are_the_workflows_marks() {
        let workflow = interaction_workflow::Workflow::from_toml(
            "[[queue]]\nname = \"web-q\"\npublic = true\n[[queue]]\nname = \"inbound\"\n[[queue]]\nname = \"qa-review\"\n",
        )
        .unwrap();
        let limits = PublicLimits::new(&workflow, &runtime::config::WebApiSettings::default());
        assert_eq!(limits.refuse(&submission("web-q")), None);
        for queue in ["inbound", "qa-review", "outbound-send"] {
            let why = limits.refuse(&submission(queue)).unwrap();
            assert!(why.contains("does not take submissions from the web"), "{why}");
        }
        let builtin = interaction_workflow::Workflow::load_or_builtin(None).unwrap();
        assert_eq!(builtin.public_queues(), ["inbound"]);
        assert!(builtin.is_agent_target("overflow") && !builtin.is_agent_target("outbound") && !builtin.is_agent_target("qa-review"));
    }
}
