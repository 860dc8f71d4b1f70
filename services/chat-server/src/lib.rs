//! The chat server (the seed's Chat Server), in progress with issue 7: a customer starts a
//! chat over HTTP, then talks over a WebSocket; every message and notification is an event
//! on `chat.events` keyed by session, and what each client is sent comes from the session
//! projection ([`chat::Sessions`]) that every instance folds from that topic. So any
//! instance serves any session, a restarted one loses nothing, and a client that reconnects
//! gets exactly what it missed (`{"type":"resume","after":N}`). Protocol: `docs/chat-protocol.md`.
//!
//! Agents connect with their desk token and are let in while the floor shows them on the
//! chat's interaction ([`socket`]); what the server does on its own (queue position, idle
//! timeout, leaving agents, transcript mail) is decided from the projections ([`upkeep`]).

pub mod settings;
pub use settings::{ChatSettings};

pub mod upkeep;
pub mod socket;
mod openapi;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use runtime::routes::{Routes, Table};
use contract::chat::{ChatPayload, ChatRole, MessagePosted, ParticipantJoined, SessionStarted, Visibility};
use contract::command::{CommandPayload, MediaType, Submit};
use runtime::commands::CommandClient;
use runtime::config::KafkaSettings;
use runtime::topics::Topics;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use chat::{CUSTOMER, event_id};
pub use chat_sessions::{PublishError, Publisher, SharedSessions};

/// How long starting a chat waits for UCS to find or create the contact.
const UCS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);


#[derive(Clone)]
pub struct ChatServer {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<SharedSessions>,
    /// Who owns which chat interaction (agents may join only their own).
    floor: Arc<floor::SharedFloor>,
    /// The desk's session keys: agents connect with their desk token.
    desk_keys: staff_auth::auth::SessionKeys,
    publisher: Publisher,
    commands: CommandClient,
    /// Where a customer who gives an e-mail address is found or created as a contact.
    ucs: ucs_client::UcsClient,
    settings: ChatSettings,
}


impl ChatServer {
    pub fn new(
        kafka_settings: &KafkaSettings,
        topics: &Topics,
        settings: &ChatSettings,
        sessions: Arc<SharedSessions>,
        floor: Arc<floor::SharedFloor>,
        desk_keys: staff_auth::auth::SessionKeys,
        ucs: ucs_client::UcsClient,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                sessions,
                floor,
                desk_keys,
                publisher: Publisher::new(kafka_settings, topics)?,
                commands: CommandClient::new(kafka_settings, topics, "chat-server")?,
                ucs,
                settings: settings.clone(),
            }),
        })
    }

    /// The chat routes; starting a chat (public, like the web API) is rate limited per client
    /// address by `[web_api]`.
    pub fn routes(&self, limits: &runtime::config::WebApiSettings, http: &runtime::config::HttpSettings) -> anyhow::Result<Table> {
        use runtime::routes::{Audience::Public, Policy::Customer};
        let start_route = Routes::new().post("/v1/chats", Public, Customer, start).with_state(self.clone());
        let start_route = start_route.try_map(|r| runtime::http::rate_limited(r, limits, http)).map_err(|e| anyhow::anyhow!(e))?;
        // The widget on a listed site starts chats here from its own origin (CORS); the socket's
        // Origin is checked against the same list in `socket::upgrade`.
        let origins = self.settings().allowed_origins.iter().filter_map(|o| o.parse::<axum::http::HeaderValue>().ok()).collect::<Vec<_>>();
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(origins))
            .allow_methods([axum::http::Method::POST])
            .allow_headers([axum::http::header::CONTENT_TYPE]);
        let start_route = start_route.try_map(|r| Ok::<_, std::convert::Infallible>(r.layer(cors.clone())))?;
        // The customer's socket (the chat's token) and the agents' (a desk session): the
        // handler tells them apart and checks each.
        use utoipa::OpenApi as _;
        Ok(Routes::new()
            .get("/v1/chats/openapi.json", Public, runtime::routes::Policy::Open, || async { Json(openapi::ChatDoc::openapi()) })
            .get("/v1/chats/{id}/ws", Public, Customer, socket::upgrade)
            .with_state(self.clone())
            .merge(start_route))
    }

    pub fn sessions(&self) -> &SharedSessions {
        &self.inner.sessions
    }

    pub fn settings(&self) -> &ChatSettings {
        &self.inner.settings
    }

    pub fn floor(&self) -> &floor::SharedFloor {
        &self.inner.floor
    }

    pub fn desk_keys(&self) -> &staff_auth::auth::SessionKeys {
        &self.inner.desk_keys
    }

    pub fn commands(&self) -> &CommandClient {
        &self.inner.commands
    }

    /// Writes `payload` as an event of `session` and waits for Kafka's acknowledgement.
    pub async fn publish(&self, session: &str, event_id: String, payload: ChatPayload) -> Result<(), PublishError> {
        self.inner.publisher.publish(session, event_id, payload).await
    }
}

/// The chat server service: the customer's start and socket, agents' sockets (with their
/// desk token), and the upkeep (timeouts, transcripts), on the process's chat sessions and floor.
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let sessions = chat_sessions::shared(ctx)?;
    let floor = floor::service::shared(ctx)?;
    let settings = &ctx.settings;
    let secret_file = settings.desk_secret_file();
    let keys = staff_auth::auth::SessionKeys::load_or_create(&secret_file)
        .map_err(|e| anyhow::anyhow!("desk session secret {}: {e}", secret_file.display()))?;
    let own = ctx.section::<ChatSettings>();
    let ucs = ucs_client::UcsClient::new(&own.ucs_url.clone().unwrap_or_else(|| settings.http.own_url()), settings.http.service_key.as_deref());
    let (s, f) = (sessions.clone(), floor.clone());
    let server = ChatServer::new(&settings.kafka, &ctx.topics, &own, sessions, floor, keys, ucs)?;
    let routes = server.routes(&settings.web_api, &settings.http)?;
    let token = ctx.shutdown.clone();
    Ok(runtime::service::Service::new("chat-server")
        .routes(routes)
        .ready_when(move || {
            runtime::health::Status::when(s.caught_up() && f.caught_up(), if s.caught_up() { "replaying the floor" } else { "replaying chat.events" })
        })
        .task("chat upkeep", upkeep::run(server, token)))
}

/// A random session token (256 bits from the OS CSPRNG), as hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}


fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// `POST /v1/chats`: a new session and its chat interaction; `201 {session_id, token}`.
async fn start(State(server): State<ChatServer>, body: Result<Json<StartRequest>, JsonRejection>) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name must be 1 to 200 characters");
    }
    if request.email.as_deref().is_some_and(|e| !e.contains('@') || e.len() > 320) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "email is not an e-mail address");
    }
    // The contact first (UCS), so the interaction is on the customer's history from its start.
    // A chat is not refused when UCS is slow or down: it starts without a contact and says why.
    let mut contact_id = None;
    let mut contact_error = None;
    if let Some(email) = &request.email {
        match tokio::time::timeout(UCS_WAIT, server.inner.ucs.identify_email(email, Some(name))).await {
            Ok(Ok(contact)) => contact_id = Some(contact),
            Ok(Err(e)) => contact_error = Some(e.to_string()),
            Err(_) => contact_error = Some(format!("UCS did not answer within {} s", UCS_WAIT.as_secs())),
        }
        if let Some(e) = &contact_error {
            tracing::warn!(error = %e, "chat starts without a contact");
        }
    }
    let token = match new_token() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("no randomness for a token: {e}")),
    };
    let session = uuid::Uuid::new_v4().to_string();
    let started = ChatPayload::SessionStarted(SessionStarted {
        interaction_id: session.clone(),
        customer_name: name.to_owned(),
        customer_email: request.email.clone(),
        subject: request.subject.clone(),
        origin: "web-api".into(),
        customer_token_sha256: token_hash(&token),
    });
    let joined = ChatPayload::ParticipantJoined(ParticipantJoined {
        participant_id: CUSTOMER.into(),
        role: ChatRole::Customer,
        display_name: name.to_owned(),
        agents_only: false,
    });
    let mut opening = vec![("started", started), ("customer-joined", joined)];
    if !server.settings().greeting.trim().is_empty() {
        let fields = BTreeMap::from([("customer_name".to_owned(), name.to_owned()), ("subject".to_owned(), request.subject.clone().unwrap_or_default())]);
        let text = floor::library::fill(&server.settings().greeting, &fields);
        let greeting = MessagePosted { participant_id: chat::SYSTEM.into(), text, visibility: Visibility::All, client_message_id: Some("notice:greeting".into()) };
        opening.push(("greeting", ChatPayload::MessagePosted(greeting)));
    }
    for (what, payload) in opening {
        if let Err(e) = server.publish(&session, event_id(&session, what), payload).await {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    }
    let mut properties = BTreeMap::from([("customer_name".to_owned(), name.to_owned()), ("channel".to_owned(), "web-chat".to_owned())]);
    if let Some(email) = &request.email {
        properties.insert("from".into(), email.clone());
    }
    if let Some(subject) = &request.subject {
        properties.insert("subject".into(), subject.clone());
    }
    if let Some(e) = contact_error {
        properties.insert("contact_lookup_error".into(), e);
    }
    let submit = CommandPayload::Submit(Submit {
        media_type: MediaType::Chat,
        origin: "chat-server".into(),
        target_queue: server.settings().inbound_queue.clone(),
        priority: 0,
        properties,
        contact_id,
        content_ref: None,
        parent_interaction_id: None,
    });
    let commands = &server.inner.commands;
    if let Err(e) = commands.send(&commands.command(&session, submit)).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("Kafka: {e}"));
    }
    (StatusCode::CREATED, Json(json!({ "session_id": session, "token": token }))).into_response()
}
