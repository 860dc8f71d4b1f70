//! The desk: what agents and supervisors use, over HTTP with JSON, authenticated by signed
//! session tokens ([`auth`]) for the users in the users file ([`users`]).
//!
//! Every action becomes an event or command on the log: agent states go to `agent.events`,
//! interaction actions to `interaction.commands`. The desk then waits for the Interaction
//! Server's outcome on the floor and answers with it: `200` and the interaction as it now is,
//! or `409` with the Interaction Server's reason. Bad requests are `400`/`401`/`403`/`404` with
//! a reason; nothing the client sends can crash the desk.
//!
//! Push: `GET /v1/desk/events` (server-sent events) streams offers and changes to the agent's
//! interactions (every change, for supervisors). An agent whose every stream has been closed
//! for `disconnect_grace_s` is logged out; the router then revokes their offers and applies the
//! workflow's logout policy to what they hold.

pub mod settings;
mod openapi;
mod staff;
pub use settings::{DeskSettings};

pub use staff_auth::{auth, users};

use runtime::http::ApiError;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::agent::{AgentEvent, AgentPayload, LoggedIn, LoggedOut, NotReady, Ready};
use contract::command::{CommandPayload, MediaType, Submit, Transfer};
use desk_actions::set_properties;
use floor::SharedFloor;
use futures::Stream;
use runtime::commands::CommandClient;
use runtime::config::Settings;
use runtime::writer::Writer;
use runtime::topics::{self, Topics};
use queues::board::Interaction;
use serde::Deserialize;
use serde_json::{Value, json};

use staff_auth::auth::{Session, SessionKeys};
use staff_auth::throttle::LoginThrottle;
use contract::staff::{StaffCredential, StaffEvent};
use staff_auth::shared::SharedDirectory;
use staff_auth::users::{Role, Users};

/// The keys that sign and check desk session tokens (see `Settings::desk_secret_file`).
fn session_keys(settings: &Settings) -> anyhow::Result<SessionKeys> {
    let secret_file = settings.desk_secret_file();
    SessionKeys::load_or_create(&secret_file).map_err(|e| anyhow::anyhow!("desk session secret {}: {e}", secret_file.display()))
}

/// The desk service: its API and event streams, on the process's floor (with the library,
/// for standard responses).
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let floor = floor::service::shared_with_library(ctx)?;
    let f = floor.clone();
    let directory = staff_auth::shared::SharedDirectory::in_process(ctx, true)?;
    let desk = Desk::new(&ctx.settings, &ctx.section(), &ctx.topics, floor, directory)?;
    let d = desk.clone();
    Ok(runtime::service::Service::new("desk")
        .routes(desk.routes())
        .task("users file import", desk.clone().import_users_file(ctx.shutdown.clone()))
        .ready_when(move || {
            if !f.caught_up() {
                runtime::health::Status::not_yet("replaying the floor")
            } else {
                runtime::health::Status::when(d.inner.imported.load(std::sync::atomic::Ordering::Acquire), "reading staff.events and importing the users file")
            }
        }))
}

/// Comment lines on idle event streams: they keep proxies from closing the stream and let
/// the desk notice a vanished client within this time.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How often an open event stream checks that its session still stands.
const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// How long the desk waits for the Interaction Server's outcome of a command.
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Desk {
    inner: Arc<Inner>,
}

struct Inner {
    settings: DeskSettings,
    callbacks: runtime::config::CallbackSettings,
    users_file: PathBuf,
    /// Who may log in, from `staff.events` and `staff.credentials`.
    directory: Arc<SharedDirectory>,
    staff_events: Writer<StaffEvent>,
    staff_credentials: Writer<StaffCredential>,
    /// The queues the workflow marks as agent targets (transfer and return go only there).
    agent_targets: Vec<String>,
    /// The users file was read once (and what it added is on the log).
    imported: std::sync::atomic::AtomicBool,
    keys: SessionKeys,
    floor: Arc<SharedFloor>,
    commands: CommandClient,
    agent_events: Writer<AgentEvent>,
    /// For reads of the log itself (timeline, time travel).
    kafka: runtime::config::KafkaSettings,
    topics: Topics,
    /// Open event streams per agent (for disconnect detection).
    streams: Mutex<HashMap<String, u64>>,
    throttle: Mutex<LoginThrottle>,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl Desk {
    pub fn new(settings: &Settings, desk: &DeskSettings, topics: &Topics, floor: Arc<SharedFloor>, directory: Arc<SharedDirectory>) -> anyhow::Result<Self> {
        let users_file = desk.users_file.clone().unwrap_or_else(|| settings.data_dir.join("desk-users.toml"));
        // A broken file is an error at start (later changes are only warned about).
        Users::load(&users_file)?;
        let keys = session_keys(settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings: desk.clone(),
                callbacks: settings.callback.clone(),
                users_file,
                directory,
                staff_events: Writer::new(&settings.kafka, topics.name(topics::STAFF_EVENTS))?,
                staff_credentials: Writer::new(&settings.kafka, topics.name(topics::STAFF_CREDENTIALS))?,
                imported: std::sync::atomic::AtomicBool::new(false),
                agent_targets: interaction_workflow::Workflow::load_or_builtin(settings.workflow_file.as_deref())?.agent_targets(),
                keys,
                floor,
                commands: CommandClient::new(&settings.kafka, topics, "desk")?,
                agent_events: Writer::new(&settings.kafka, topics.name(topics::AGENT_EVENTS))?,
                kafka: settings.kafka.clone(),
                topics: topics.clone(),
                streams: Mutex::new(HashMap::new()),
                throttle: Mutex::new(LoginThrottle::new(desk.login_limits())),
                trusted_proxies: settings.http.trusted_proxies().map_err(anyhow::Error::msg)?,
            }),
        })
    }

    /// Every desk route but the login needs a desk session; what a session may do with an
    /// interaction (its own, a party's, a supervisor's) the handlers decide.
    pub fn routes(&self) -> runtime::routes::Table {
        use runtime::routes::{Audience::Staff, Policy::{Admin, Agent, Open}};
        runtime::routes::Routes::new()
            .get("/v1/desk/openapi.json", Staff, Open, openapi::document)
            .post("/v1/desk/login", Staff, Open, login)
            .post("/v1/desk/logout", Staff, Open, staff::logout)
            .post("/v1/desk/state", Staff, Agent, change_state)
            .get("/v1/desk/me", Staff, Agent, me)
            .get("/v1/desk/users", Staff, Admin, staff::list_users)
            .post("/v1/desk/users", Staff, Admin, staff::add_user)
            .patch("/v1/desk/users/{id}", Staff, Admin, staff::change_user)
            .delete("/v1/desk/users/{id}", Staff, Admin, staff::remove_user)
            .post("/v1/desk/users/{id}/logout", Staff, Admin, staff::end_sessions)
            .get("/v1/desk/events", Staff, Agent, events)
            .get("/v1/desk/interactions/{id}", Staff, Agent, interaction)
            .get("/v1/desk/interactions/{id}/responses", Staff, Agent, responses)
            .get("/v1/desk/interactions/{id}/timeline", Staff, Agent, timeline)
            .get("/v1/desk/history/queues", Staff, Agent, queues_at)
            .post("/v1/desk/interactions/{id}/{action}", Staff, Agent, act)
            .get("/v1/desk/queues", Staff, Agent, queues_summary)
            .get("/v1/desk/queues/{queue}", Staff, Agent, queue_view)
            .with_state(self.clone())
    }
}

/// A refusal with the reason a person reads, or a failure of ours answered with a reference
/// only (`runtime::http::ApiError`).
#[derive(Debug)]
pub struct DeskError(ApiError);

impl DeskError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(status, message))
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The log or Kafka is away: 503, the detail only in the log.
    fn unavailable(message: &str, detail: impl std::fmt::Display) -> Self {
        Self(ApiError::unavailable(message, detail))
    }
}

impl From<desk_actions::Refusal> for DeskError {
    fn from(refusal: desk_actions::Refusal) -> Self {
        use desk_actions::Refusal;
        let status = match &refusal {
            Refusal::Bad(_) => StatusCode::BAD_REQUEST,
            Refusal::SupervisorOnly | Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::UnknownAction(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        };
        Self::new(status, refusal.to_string())
    }
}

impl IntoResponse for DeskError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<JsonRejection> for DeskError {
    fn from(e: JsonRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("invalid request body: {}", e.body_text()))
    }
}

type DeskResult = Result<Response, DeskError>;

impl FromRequestParts<Desk> for Session {
    type Rejection = DeskError;

    async fn from_request_parts(parts: &mut Parts, desk: &Desk) -> Result<Self, Self::Rejection> {
        // EventSource cannot set headers: the events stream goes by the login's cookie.
        let token = runtime::routes::presented_token(parts)
            .ok_or_else(|| DeskError::new(StatusCode::UNAUTHORIZED, "log in first: no session token (Authorization: Bearer ..., or the login's cookie)"))?;
        let mut session = desk.inner.keys.verify(&token, contract::now_millis()).map_err(|why| DeskError::new(StatusCode::UNAUTHORIZED, why))?;
        // The gatekeeper checked the session against the staff directory: the role is the
        // user's role now, not when the token was issued.
        match parts.extensions.get::<runtime::routes::Caller>() {
            Some(runtime::routes::Caller::Staff { user, role }) if *user == session.user => {
                session.role = (*role).into();
                Ok(session)
            }
            _ => Err(DeskError::new(StatusCode::UNAUTHORIZED, "this session is no longer valid; log in again")),
        }
    }
}

fn supervisor_only(session: &Session) -> Result<(), DeskError> {
    if session.role.is_supervisor() {
        Ok(())
    } else {
        Err(DeskError::new(StatusCode::FORBIDDEN, "only a supervisor may do this"))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct LoginRequest {
    user: String,
    password: String,
}

async fn login(
    State(desk): State<Desk>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> DeskResult {
    let Json(request) = body?;
    let client = runtime::http::client_ip(peer.ip(), &headers, &desk.inner.trusted_proxies);
    let throttle = || desk.inner.throttle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(wait_ms) = throttle().check(&request.user, client, contract::now_millis()) {
        let seconds = (wait_ms + 999) / 1000;
        let refusal = DeskError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many failed logins for this user or from this address; try again in {seconds} s"));
        return Ok(([(axum::http::header::RETRY_AFTER, seconds.to_string())], refusal).into_response());
    }
    // Argon2 takes tens of milliseconds of CPU by design: off the async workers.
    let name = request.user.clone();
    desk.inner.directory.current().await;
    let candidate = desk.inner.directory.read().login_candidate(&request.user);
    let user = tokio::task::spawn_blocking(move || staff_auth::users::check_password(candidate, &request.password))
        .await
        .map_err(|e| DeskError::unavailable("could not check the password", e))?;
    let Some(user) = user else {
        throttle().failed(&name, client, contract::now_millis());
        return Err(DeskError::new(StatusCode::UNAUTHORIZED, "unknown user or wrong password"));
    };
    throttle().succeeded(&name);
    let inner = &desk.inner;
    let hours = i64::try_from(inner.settings.session_hours).unwrap_or(12);
    let issued_at = contract::now_millis();
    let expires_at = issued_at + hours * 3_600_000;
    let (token, _session) = inner.keys.issue(&user.id, user.role, issued_at, expires_at);
    if user.role == Role::Agent {
        desk.agent_event(&user.id, AgentPayload::LoggedIn(LoggedIn {
            place: user.place.clone(),
            skills: user.skills.clone(),
            capacity: user.capacity.clone(),
        }))
        .await?;
    }
    // The cookie serves what cannot send a header (the event streams); writes need the header.
    let secure = if runtime::http::forwarded_https(peer.ip(), &headers, &desk.inner.trusted_proxies) { "; Secure" } else { "" };
    let cookie = format!("{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", runtime::routes::SESSION_COOKIE, hours * 3600);
    let mut response = Json(json!({ "token": token, "user": user.id, "role": user.role, "expires_at": expires_at })).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(axum::http::header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateRequest {
    /// "ready", "not_ready" or "logged_out".
    state: String,
    /// Media it applies to (default: every media the agent has capacity for).
    #[serde(default)]
    media: Vec<String>,
    reason: Option<String>,
}

async fn change_state(State(desk): State<Desk>, session: Session, body: Result<Json<StateRequest>, JsonRejection>) -> DeskResult {
    let Json(request) = body?;
    let user = desk.inner.directory.read().member(&session.user).cloned().ok_or_else(|| DeskError::new(StatusCode::FORBIDDEN, "user no longer exists"))?;
    for m in &request.media {
        m.parse::<MediaType>().map_err(DeskError::bad)?;
    }
    let media = if request.media.is_empty() { user.capacity.keys().cloned().collect() } else { request.media };
    let payload = match request.state.as_str() {
        "ready" => AgentPayload::Ready(Ready { media }),
        "not_ready" => AgentPayload::NotReady(NotReady {
            media,
            reason: request.reason.unwrap_or_else(|| "not given".into()),
        }),
        "logged_out" => AgentPayload::LoggedOut(LoggedOut { reason: request.reason }),
        other => return Err(DeskError::bad(format!("unknown state {other:?}: use ready, not_ready or logged_out"))),
    };
    desk.agent_event(&session.user, payload).await?;
    Ok(Json(json!({ "state": request.state })).into_response())
}

async fn me(State(desk): State<Desk>, session: Session) -> DeskResult {
    let floor = desk.inner.floor.read();
    let agent = floor.agent(&session.user);
    let board = floor.board();
    let detail = |ids: Vec<&String>| -> Vec<&Interaction> { ids.into_iter().filter_map(|id| board.interaction(id)).collect() };
    Ok(Json(json!({
        "user": session.user,
        "role": session.role,
        "state": agent.map(|a| a.state_name()),
        "agent": agent,
        "offers": detail(agent.map(|a| a.offers.keys().collect()).unwrap_or_default()),
        "owned": detail(agent.map(|a| a.owned.keys().collect()).unwrap_or_default()),
        "consulting": detail(agent.map(|a| a.parties.iter().collect()).unwrap_or_default()),
    }))
    .into_response())
}

async fn interaction(State(desk): State<Desk>, session: Session, Path(id): Path<String>) -> DeskResult {
    let floor = desk.inner.floor.read();
    let i = visible_interaction(&floor, &session, &id)?;
    Ok(Json(i).into_response())
}

/// The interaction `id` if the session may see it: its agents see it, supervisors see all.
fn visible_interaction<'f>(floor: &'f floor::Floor, session: &Session, id: &str) -> Result<&'f Interaction, DeskError> {
    let i = floor.board().interaction(id).ok_or_else(|| DeskError::new(StatusCode::NOT_FOUND, format!("no interaction {id}")))?;
    let involved = i.owner.as_deref() == Some(&session.user)
        || i.offer.as_ref().is_some_and(|o| o.agent_id == session.user)
        || i.parties.contains_key(&session.user);
    if !involved && !session.role.is_supervisor() {
        return Err(DeskError::new(StatusCode::FORBIDDEN, format!("interaction {id} is not yours")));
    }
    Ok(i)
}

/// Standard responses for an interaction's media, those of its category (set by the
/// workflow's classify step) first, with merge fields filled: every interaction property
/// (`{{subject}}`, `{{from}}`, ...), `{{interaction_id}}`, `{{agent_id}}`, `{{agent_name}}`.
async fn responses(State(desk): State<Desk>, session: Session, Path(id): Path<String>) -> DeskResult {
    let floor = desk.inner.floor.read();
    let i = visible_interaction(&floor, &session, &id)?;
    // A reply (one QA returned, say) is filled from the customer's interaction it answers:
    // the customer's name, category and reference are there; the reply's own fields win.
    let answered = i.parent_interaction_id.as_deref().and_then(|p| floor.board().interaction(p));
    let mut fields = answered.map(|a| a.properties.clone()).unwrap_or_default();
    fields.extend(i.properties.clone());
    let agent_name = desk.inner.directory.read().member(&session.user).map(|u| u.name.clone()).filter(|n| !n.is_empty());
    fields.insert("interaction_id".into(), answered.map_or(&i.id, |a| &a.id).clone());
    fields.insert("agent_id".into(), session.user.clone());
    fields.insert("agent_name".into(), agent_name.unwrap_or_else(|| session.user.clone()));
    let category = i.properties.get("category").or_else(|| answered.and_then(|a| a.properties.get("category"))).map(String::as_str);
    let suggestions = floor.library().suggestions(i.media_type.as_str(), category, &fields);
    Ok(Json(json!({ "interaction_id": i.id, "category": category, "responses": suggestions })).into_response())
}

/// The interaction's audit timeline, read from the log (supervisors).
async fn timeline(State(desk): State<Desk>, session: Session, Path(id): Path<String>) -> DeskResult {
    supervisor_only(&session)?;
    if id.is_empty() || id.len() > 200 {
        return Err(DeskError::bad("an interaction id is 1 to 200 characters"));
    }
    let audit = history::audit(&desk.inner.kafka, &desk.inner.topics, &id)
        .await
        .map_err(|e| DeskError::unavailable("could not read the log; retry", format!("{e:#}")))?;
    if audit.steps.is_empty() {
        return Err(DeskError::new(StatusCode::NOT_FOUND, format!("nothing on the log for interaction {id}")));
    }
    Ok(Json(audit).into_response())
}

#[derive(Deserialize)]
struct AtQuery {
    /// Epoch milliseconds or RFC 3339.
    at: String,
}

/// Time travel: the queues as they stood at `at`, rebuilt by replaying the log (supervisors).
async fn queues_at(State(desk): State<Desk>, session: Session, axum::extract::Query(q): axum::extract::Query<AtQuery>) -> DeskResult {
    supervisor_only(&session)?;
    let at = q
        .at
        .parse::<i64>()
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(&q.at).ok().map(|t| t.timestamp_millis()))
        .ok_or_else(|| DeskError::bad(format!("`at` {:?} is neither epoch milliseconds nor RFC 3339", q.at)))?;
    if at > contract::now_millis() {
        return Err(DeskError::bad("`at` is in the future: the log cannot tell that yet"));
    }
    let (board, applied) = history::board_at(&desk.inner.kafka, &desk.inner.topics, at)
        .await
        .map_err(|e| DeskError::unavailable("could not read the log; retry", format!("{e:#}")))?;
    let queues: Vec<Value> = board
        .queue_summaries()
        .into_iter()
        .filter(|q| q.counts.total > 0)
        .map(|q| {
            let view = board.queue_view(&q.queue);
            json!({ "queue": q.queue, "waiting": q.counts.waiting, "offered": q.counts.offered, "interactions": view.interactions })
        })
        .collect();
    Ok(Json(json!({ "at": at, "events_applied": applied, "queues": queues })).into_response())
}

async fn queues_summary(State(desk): State<Desk>, session: Session) -> DeskResult {
    supervisor_only(&session)?;
    Ok(Json(json!({ "queues": desk.inner.floor.read().board().queue_summaries() })).into_response())
}

async fn queue_view(State(desk): State<Desk>, session: Session, Path(queue): Path<String>) -> DeskResult {
    supervisor_only(&session)?;
    Ok(Json(desk.inner.floor.read().board().queue_view(&queue)).into_response())
}

async fn act(
    State(desk): State<Desk>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> DeskResult {
    let request: desk_actions::ActionRequest = match body {
        Some(Json(v)) => serde_json::from_value(v).map_err(|e| DeskError::bad(format!("invalid request body: {e}")))?,
        None => desk_actions::ActionRequest::default(),
    };
    let me = session.user.clone();
    let current = desk
        .inner
        .floor
        .read()
        .board()
        .interaction(&id)
        .cloned()
        .ok_or_else(|| DeskError::new(StatusCode::NOT_FOUND, format!("no interaction {id}")))?;
    let actor = desk_actions::Actor { user: me.clone(), supervisor: session.role.is_supervisor() };
    match desk_actions::plan(&action, request, &actor, &current, &desk.rules(), contract::now_millis()) {
        Ok(desk_actions::Plan::Commands(steps)) => desk.run_commands(&session, &id, steps).await,
        Ok(desk_actions::Plan::Release(text)) => desk.release(&session, &current, text).await,
        Err(refusal) => Err(refusal.into()),
    }
}

impl Desk {
    /// The rules the desk's actions follow, from its settings.
    fn rules(&self) -> desk_actions::Rules {
        let (desk, callbacks) = (&self.inner.settings, &self.inner.callbacks);
        desk_actions::Rules {
            send_queue: desk.send_queue.clone(),
            qa_returned_queue: desk.qa_returned_queue.clone(),
            protected_queues: vec![desk.send_queue.clone(), desk.outbound_queue.clone(), desk.qa_returned_queue.clone()],
            agent_targets: self.inner.agent_targets.clone(),
            max_reply_bytes: desk.max_reply_bytes,
            callback_max_attempts: callbacks.max_attempts,
            callback_retry_delay_s: callbacks.retry_delay_s,
        }
    }

    /// An agent's reply leaves: a new outbound interaction (child of the one answered) in the
    /// outbound queue, where the workflow decides on QA. A reply returned by QA goes back there
    /// itself, with its new text.
    async fn release(&self, session: &Session, current: &Interaction, text: String) -> DeskResult {
        let settings = &self.inner.settings;
        let is_returned_reply = current.properties.contains_key("author_agent") && current.parent_interaction_id.is_some();
        if is_returned_reply {
            let steps = vec![
                set_properties([("reply_text", text), ("qa_status", "resubmitted".to_owned())]),
                CommandPayload::Transfer(Transfer { from_agent_id: session.user.clone(), to_agent_id: None, to_queue: Some(settings.outbound_queue.clone()) }),
            ];
            return self.run_commands(session, &current.id, steps).await;
        }
        let reply_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:reply:{}:{}", current.id, contract::now_millis()).as_bytes()).to_string();
        let mut properties = BTreeMap::from([
            ("author_agent".to_owned(), session.user.clone()),
            ("reply_to_interaction".to_owned(), current.id.clone()),
            ("reply_text".to_owned(), text),
        ]);
        if let Some(subject) = current.properties.get("subject") {
            properties.insert("subject".into(), format!("Re: {subject}"));
        }
        if let Some(from) = current.properties.get("from") {
            properties.insert("to".into(), from.clone());
        }
        let submit = CommandPayload::Submit(Submit {
            media_type: current.media_type,
            origin: "desk".into(),
            target_queue: settings.outbound_queue.clone(),
            priority: current.priority,
            properties,
            contact_id: current.contact_id.clone(),
            content_ref: None,
            parent_interaction_id: Some(current.id.clone()),
        });
        let response = self.run_commands(session, &reply_id, vec![submit]).await?;
        // The parent keeps a pointer to its reply.
        self.run_commands(session, &current.id, vec![set_properties([("reply_interaction", reply_id)])]).await?;
        Ok(response)
    }

    /// Sends each command in turn, waiting for its outcome; stops at the first refusal.
    async fn run_commands(&self, session: &Session, id: &str, steps: Vec<CommandPayload>) -> DeskResult {
        for payload in steps {
            let mut command = self.inner.commands.command(id, payload);
            command.issued_by = session.user.clone();
            let mut outcomes = self.inner.floor.subscribe();
            self.inner
                .commands
                .send(&command)
                .await
                .map_err(|e| DeskError::unavailable("could not send the command; retry", e))?;
            let wait = async {
                loop {
                    match outcomes.recv().await {
                        Ok(t) if t.causation_id.as_deref() == Some(&command.command_id) => {
                            if let Some(reason) = &t.rejected {
                                return Err(DeskError::new(StatusCode::CONFLICT, reason.clone()));
                            }
                            if t.last_of_set {
                                return Ok(());
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return Err(DeskError::new(StatusCode::SERVICE_UNAVAILABLE, "the desk is shutting down"));
                        }
                    }
                }
            };
            match tokio::time::timeout(OUTCOME_TIMEOUT, wait).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(DeskError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("command {} is on the log but its outcome was not seen within {} s", command.command_id, OUTCOME_TIMEOUT.as_secs()),
                    ));
                }
            }
        }
        let floor = self.inner.floor.read();
        Ok(Json(json!({ "interaction": floor.board().interaction(id) })).into_response())
    }

    async fn agent_event(&self, agent: &str, payload: AgentPayload) -> Result<(), DeskError> {
        let event = AgentEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            agent_id: agent.to_owned(),
            occurred_at: contract::now_millis(),
            causation_id: None,
            payload,
        };
        match self.inner.agent_events.write(agent, None, &event).await {
            Ok(_) => Ok(()),
            Err(e @ runtime::writer::WriteError::Encode { .. }) => Err(DeskError(ApiError::internal(e))),
            Err(e) => Err(DeskError::unavailable("could not record the agent event; retry", e)),
        }
    }

    fn stream_opened(&self, agent: &str) {
        let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        *streams.entry(agent.to_owned()).or_default() += 1;
    }

    /// On the last stream closing, logs the agent out after the grace period unless a new
    /// stream opened meanwhile.
    fn stream_closed(&self, agent: &str) {
        let remaining = {
            let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
            let n = streams.entry(agent.to_owned()).or_default();
            *n = n.saturating_sub(1);
            *n
        };
        if remaining > 0 {
            return;
        }
        let desk = self.clone();
        let agent = agent.to_owned();
        let grace = Duration::from_secs(self.inner.settings.disconnect_grace_s);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let still_gone = desk.inner.streams.lock().unwrap_or_else(|p| p.into_inner()).get(&agent).copied().unwrap_or(0) == 0;
            let logged_in = desk.inner.floor.read().agent(&agent).is_some_and(|a| a.logged_in);
            if still_gone && logged_in {
                tracing::info!(%agent, "agent disconnected; logging out");
                if let Err(e) = desk
                    .agent_event(&agent, AgentPayload::LoggedOut(LoggedOut { reason: Some("disconnected".into()) }))
                    .await
                {
                    tracing::warn!(%agent, error = %e.0, "could not log out a disconnected agent");
                }
            }
        });
    }

    pub fn users_file(&self) -> &std::path::Path {
        &self.inner.users_file
    }
}

/// Closes the agent's stream count when the SSE stream is dropped.
struct StreamGuard {
    desk: Desk,
    agent: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.desk.stream_closed(&self.agent);
    }
}

async fn events(
    State(desk): State<Desk>,
    session: Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let me = session.user.clone();
    let supervisor = session.role.is_supervisor();
    let mut touched = desk.inner.floor.subscribe();
    desk.stream_opened(&me);
    let guard = StreamGuard { desk: desk.clone(), agent: me.clone() };
    let floor = desk.inner.floor.clone();
    // A stream outlives requests: it ends once the session does (a logout, a removal, a
    // disablement, a new password elsewhere) or the role it was opened with changes.
    let directory = desk.inner.directory.clone();
    let standing = move || directory.read().check(&session).is_ok_and(|m| m.role.is_supervisor() == supervisor);
    let stream = async_stream(move |tx| async move {
        let _guard = guard;
        let mut recheck = tokio::time::interval(SESSION_RECHECK);
        let hello = json!({ "type": "hello", "user": me });
        if tx.send(Event::default().event("hello").data(hello.to_string())).await.is_err() {
            return;
        }
        loop {
            // The client's going away drops the receiving end (hyper notices on the next
            // keep-alive write at the latest); end then, not at the next event for us.
            let received = tokio::select! {
                () = tx.closed() => return,
                _ = recheck.tick() => {
                    if standing() {
                        continue;
                    }
                    let ended = json!({ "reason": "this session ended or its role changed; log in again" });
                    let _ = tx.send(Event::default().event("session_ended").data(ended.to_string())).await;
                    return;
                }
                received = touched.recv() => received,
            };
            let t = match received {
                Ok(t) => t,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx.send(Event::default().event("lagged").data(json!({ "missed": n }).to_string())).await;
                    continue;
                }
                Err(_) => return,
            };
            if !(supervisor || t.agents.contains(&me)) {
                continue;
            }
            let data = {
                let f = floor.read();
                let interaction = t.interaction_id.as_deref().and_then(|id| f.board().interaction(id));
                let kind = match interaction {
                    Some(i) if i.offer.as_ref().is_some_and(|o| o.agent_id == me) => "offer",
                    Some(_) => "interaction",
                    None => "agent",
                };
                (kind, json!({ "interaction": interaction, "agent": f.agent(&me) }))
            };
            if tx.send(Event::default().event(data.0).data(data.1.to_string())).await.is_err() {
                return;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// A stream fed by a task through a channel; the task ends when the client goes away.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}
