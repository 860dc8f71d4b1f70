//! `GET /v1/desk/openapi.json`: the desk's API as OpenAPI 3.1. The request bodies are the
//! handlers' own types; answers built as JSON in the handlers are described by their shape
//! here, and `tests/e2e/tests/api_schemas.rs` runs schemathesis against the live desk to hold
//! the two together (statuses, content types, bodies).
#![allow(dead_code)] // The functions below exist for their `#[utoipa::path]` only.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::staff::{NewUser, UserChange};
use crate::{LoginRequest, StateRequest};

/// Every refusal: `{"error": "..."}` (a failure of ours carries a reference only).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    /// The session token: `Authorization: Bearer <token>` (also set as an `HttpOnly` cookie).
    pub token: String,
    pub user: String,
    /// agent, supervisor or admin.
    pub role: String,
    pub expires_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedOutAnswer {
    pub logged_out: bool,
}

#[derive(Serialize, ToSchema)]
pub struct StateAnswer {
    pub state: String,
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub role: String,
    pub enabled: bool,
    pub skills: std::collections::BTreeMap<String, i32>,
    pub capacity: std::collections::BTreeMap<String, i32>,
    pub place: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub users: Vec<Member>,
}

#[derive(Serialize, ToSchema)]
pub struct UserAddedAnswer {
    pub id: String,
    pub added: bool,
}

#[derive(Serialize, ToSchema)]
pub struct UserChangedAnswer {
    /// The user as the log now says (`null` if removed meanwhile).
    pub user: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsEndedAnswer {
    pub user: String,
    pub sessions_ended: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MeAnswer {
    pub user: String,
    pub role: String,
    /// ready, not_ready, logged_out; `null` before the first state event.
    pub state: Option<String>,
    pub agent: Option<serde_json::Value>,
    pub offers: Vec<serde_json::Value>,
    pub owned: Vec<serde_json::Value>,
    pub consulting: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct QueuesAt {
    pub at: i64,
    pub events_applied: u64,
    pub queues: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueSummaries {
    pub queues: Vec<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard desk",
        description = "What agents, supervisors and admins use: log in (a session token, `Authorization: Bearer`), state, the interactions offered and held, actions on them, standard responses, the queues, time travel, and (admins) the users. Every action is an event or command on the log; an action answers with its outcome once the Interaction Server decided it."
    ),
    paths(
        login, logout, change_state, me, list_users, add_user, change_user, remove_user, end_sessions, events,
        interaction, responses, timeline, queues_at, act, queues_summary, queue_view
    ),
    components(schemas(
        ErrorBody, LoginRequest, LoginAnswer, LoggedOutAnswer, StateRequest, StateAnswer, Member, MemberList, NewUser,
        UserAddedAnswer, UserChange, UserChangedAnswer, SessionsEndedAnswer, MeAnswer, QueuesAt, QueueSummaries
    )),
    modifiers(&BearerAuth)
)]
pub struct DeskDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("desk_session", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        openapi.security = Some(vec![SecurityRequirement::new("desk_session", Vec::<String>::new())]);
    }
}

pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(DeskDoc::openapi())
}

#[utoipa::path(post, path = "/v1/desk/login", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "unknown user, disabled user or wrong password: the same answer"),
        (status = 429, body = ErrorBody, description = "locked out: too many failed logins for this name or address"), (status = 503, body = ErrorBody)))]
fn login() {}

#[utoipa::path(post, path = "/v1/desk/logout", description = "Ends the presented session everywhere and clears the cookie.",
    responses((status = 200, body = LoggedOutAnswer), (status = 503, body = ErrorBody)))]
fn logout() {}

#[utoipa::path(post, path = "/v1/desk/state", request_body = StateRequest,
    responses((status = 200, body = StateAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn change_state() {}

#[utoipa::path(get, path = "/v1/desk/me", responses((status = 200, body = MeAnswer), (status = 401, body = ErrorBody)))]
fn me() {}

#[utoipa::path(get, path = "/v1/desk/users", description = "Admins: who may log in; never a password hash.",
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn list_users() {}

#[utoipa::path(post, path = "/v1/desk/users", request_body = NewUser, description = "Admins: a new user (a `UserAdded` on staff.events; the hash on staff.credentials).",
    responses((status = 201, body = UserAddedAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn add_user() {}

#[utoipa::path(patch, path = "/v1/desk/users/{id}", request_body = UserChange, params(("id" = String, Path)),
    description = "Admins: a new role (counts on the user's next request), enabled or not (disabling ends every session), a new password (ends every session).",
    responses((status = 200, body = UserChangedAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the caller's own account: another admin changes it"), (status = 503, body = ErrorBody)))]
fn change_user() {}

#[utoipa::path(delete, path = "/v1/desk/users/{id}", params(("id" = String, Path)), description = "Admins: removes a user; every session ends.",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn remove_user() {}

#[utoipa::path(post, path = "/v1/desk/users/{id}/logout", params(("id" = String, Path)), description = "Admins: ends every session of the user.",
    responses((status = 200, body = SessionsEndedAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn end_sessions() {}

#[utoipa::path(get, path = "/v1/desk/events", description = "Server-sent events: offers and changes to the caller's interactions (every change, for supervisors). Authenticated by the login's cookie too (EventSource cannot set headers).",
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 401, body = ErrorBody)))]
fn events() {}

#[utoipa::path(get, path = "/v1/desk/interactions/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "The interaction as the floor shows it"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn interaction() {}

#[utoipa::path(get, path = "/v1/desk/interactions/{id}/responses", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "Standard responses for it, its category's first, merge fields filled"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn responses() {}

#[utoipa::path(get, path = "/v1/desk/interactions/{id}/timeline", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "Every event of the interaction, read from the log"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn timeline() {}

#[utoipa::path(get, path = "/v1/desk/history/queues", params(("at" = String, Query, description = "Epoch milliseconds or RFC 3339, not in the future")),
    description = "Supervisors: the queues as they stood at `at`, rebuilt by replaying the log.",
    responses((status = 200, body = QueuesAt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
fn queues_at() {}

#[utoipa::path(post, path = "/v1/desk/interactions/{id}/{action}", params(("id" = String, Path), ("action" = String, Path, description = "accept, reject, draft, send, done, release, transfer, return, consult, leave, set, priority, move, callback outcome ...")),
    request_body(content = Object, description = "The action's fields (target, reply, properties, ...)", content_type = "application/json"),
    responses((status = 200, body = Object, description = "The interaction after the Interaction Server applied the action"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "refused by the Interaction Server, with its reason"),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
fn act() {}

#[utoipa::path(get, path = "/v1/desk/queues", description = "Supervisors: each queue's counts.",
    responses((status = 200, body = QueueSummaries), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn queues_summary() {}

#[utoipa::path(get, path = "/v1/desk/queues/{queue}", params(("queue" = String, Path)), description = "Supervisors: a queue's interactions.",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn queue_view() {}
