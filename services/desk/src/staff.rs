//! Users and sessions on the log: the admin API (`/v1/desk/users*`), logouts, and the import
//! of the users file.
//!
//! Every change is a `staff.events` record (password hashes go to `staff.credentials`, which
//! only the desk reads); a handler answers once its own directory has read the change, and
//! every other process's gatekeeper reads up to the log's end before it believes a session
//! (`staff_auth::shared`), so a logout, a removal, a disablement or a new role counts on the
//! next request anywhere.
//!
//! The users file (`[desk] users_file`, written by `switchboard desk add-user`) seeds the log:
//! a user in it whose id the log never named is added (with the file's password hash), at
//! start and whenever the file changes. After that the log decides: editing or removing a
//! file entry changes nothing (use the API), and a removed user does not come back from it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::staff::{Because, RoleChanged, SessionEnded, StaffCredential, StaffEvent, StaffPayload, UserAdded};
use runtime::routes::Caller;
use serde::Deserialize;
use serde_json::json;
use staff_auth::users::{Role, Users, hash_password};

use crate::{Desk, DeskError, DeskResult};

/// How often the users file's modification time is looked at.
const USERS_FILE_RECHECK: Duration = Duration::from_secs(2);

/// An admin does not change, remove or log out their own account through the API: no admin
/// locks themself (or the last admin) out by mistake; another admin does it.
fn not_self(caller: &Caller, id: &str) -> Result<(), DeskError> {
    match caller {
        Caller::Staff { user, .. } if user == id => {
            Err(DeskError::new(StatusCode::CONFLICT, "an admin cannot change, remove or end the sessions of their own account here; another admin can"))
        }
        _ => Ok(()),
    }
}

/// Who made a change, as the event records it.
fn actor(caller: &Caller) -> String {
    match caller {
        Caller::Staff { user, .. } => user.clone(),
        Caller::Service { name, .. } => format!("service-key:{name}"),
        _ => "anonymous".into(),
    }
}

impl Desk {
    /// Writes a staff event and waits until this desk's directory has it.
    pub(crate) async fn staff_event(&self, user_id: &str, actor: Option<String>, payload: StaffPayload) -> Result<(), DeskError> {
        let event = StaffEvent { event_id: uuid::Uuid::new_v4().to_string(), user_id: user_id.to_owned(), occurred_at: contract::now_millis(), actor, payload };
        match self.inner.staff_events.write(user_id, None, &event).await {
            Ok(_) => {}
            Err(e @ runtime::writer::WriteError::Encode { .. }) => return Err(DeskError(runtime::http::ApiError::internal(e))),
            Err(e) => return Err(DeskError::unavailable("could not record the change on the log; retry", e)),
        }
        self.inner.directory.current().await;
        Ok(())
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: String) -> Result<(), DeskError> {
        let credential = StaffCredential { user_id: user_id.to_owned(), password_hash, set_at: contract::now_millis() };
        match self.inner.staff_credentials.write(user_id, None, &credential).await {
            Ok(_) => Ok(()),
            Err(e @ runtime::writer::WriteError::Encode { .. }) => Err(DeskError(runtime::http::ApiError::internal(e))),
            Err(e) => Err(DeskError::unavailable("could not record the password; retry", e)),
        }
    }

    /// Adds every user of the users file the log never named; then again whenever the file
    /// changes, until shutdown.
    pub(crate) async fn import_users_file(self, shutdown: runtime::CancellationToken) -> anyhow::Result<()> {
        while !self.inner.directory.caught_up() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let file = self.inner.users_file.clone();
        let mut seen: Option<SystemTime> = None;
        let mut first = true;
        loop {
            let stamp = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            if first || stamp != seen {
                seen = stamp;
                match Users::load(&file) {
                    Ok(users) => {
                        self.inner.directory.current().await;
                        let new: Vec<_> = users.users.into_iter().filter(|u| !self.inner.directory.read().knows(&u.id)).collect();
                        for user in new {
                            // The hash first: the user can log in as soon as they are added.
                            if let Err(e) = self.set_password_hash(&user.id, user.password_hash.clone()).await {
                                tracing::warn!(user = %user.id, error = %e.0, "users file: not imported; trying again at its next change");
                                seen = None;
                                continue;
                            }
                            let added = UserAdded { name: user.name.clone(), role: user.role.name().into(), skills: user.skills.clone(), capacity: user.capacity.clone(), place: user.place.clone() };
                            match self.staff_event(&user.id, Some("users-file".into()), StaffPayload::UserAdded(added)).await {
                                Ok(()) => tracing::info!(user = %user.id, file = %file.display(), "user imported from the users file"),
                                Err(e) => {
                                    tracing::warn!(user = %user.id, error = %e.0, "users file: not imported; trying again");
                                    seen = None;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "users file not imported"),
                }
                if first {
                    first = false;
                    self.inner.imported.store(true, std::sync::atomic::Ordering::Release);
                    if self.inner.directory.read().members().next().is_none() {
                        tracing::warn!(file = %file.display(), "no desk users: add one with `switchboard desk add-user`");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(USERS_FILE_RECHECK) => {}
            }
        }
    }
}

/// `GET /v1/desk/users` (admins): who may log in, with role, enabled, skills and capacity;
/// never a password hash.
pub(crate) async fn list_users(State(desk): State<Desk>) -> Response {
    desk.inner.directory.current().await;
    let users: Vec<_> = desk
        .inner
        .directory
        .read()
        .members()
        .map(|u| json!({ "id": u.id, "name": u.name, "role": u.role, "enabled": u.enabled, "skills": u.skills, "capacity": u.capacity, "place": u.place }))
        .collect();
    Json(json!({ "users": users })).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    id: String,
    #[serde(default)]
    name: String,
    role: String,
    password: String,
    #[serde(default)]
    skills: BTreeMap<String, i32>,
    #[serde(default)]
    capacity: BTreeMap<String, i32>,
    place: Option<String>,
}

/// The shortest password the API accepts.
const MIN_PASSWORD: usize = 8;

fn check_password_rules(password: &str) -> Result<(), DeskError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(DeskError::bad(format!("the password needs at least {MIN_PASSWORD} characters")));
    }
    if password.len() > 1024 {
        return Err(DeskError::bad("the password is longer than 1024 bytes"));
    }
    Ok(())
}

async fn hashed(password: String) -> Result<String, DeskError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| DeskError::unavailable("could not hash the password", e))?
        .map_err(|e| DeskError(runtime::http::ApiError::internal(e)))
}

/// `POST /v1/desk/users` (admins): adds a user (201), or 409 when the id is taken.
pub(crate) async fn add_user(State(desk): State<Desk>, axum::Extension(caller): axum::Extension<Caller>, body: Result<Json<NewUser>, JsonRejection>) -> DeskResult {
    let Json(new) = body?;
    if new.id.is_empty() || new.id.len() > 64 || !new.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
        return Err(DeskError::bad("id: 1 to 64 of letters, digits, '.', '_', '-', '@'"));
    }
    if Role::parse(&new.role).is_none() {
        return Err(DeskError::bad(format!("unknown role {:?}: agent, supervisor or admin", new.role)));
    }
    for media in new.capacity.keys() {
        media.parse::<contract::command::MediaType>().map_err(DeskError::bad)?;
    }
    check_password_rules(&new.password)?;
    desk.inner.directory.current().await;
    if desk.inner.directory.read().member(&new.id).is_some() {
        return Err(DeskError::new(StatusCode::CONFLICT, format!("user {:?} exists", new.id)));
    }
    let hash = hashed(new.password).await?;
    desk.set_password_hash(&new.id, hash).await?;
    let added = UserAdded { name: new.name, role: new.role, skills: new.skills, capacity: new.capacity, place: new.place };
    desk.staff_event(&new.id, Some(actor(&caller)), StaffPayload::UserAdded(added)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": new.id, "added": true }))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    role: Option<String>,
    enabled: Option<bool>,
    password: Option<String>,
    reason: Option<String>,
}

/// `PATCH /v1/desk/users/{id}` (admins): a new role (counts on the user's next request), enabled
/// or not (disabling ends every session), a new password (ends every session).
pub(crate) async fn change_user(
    State(desk): State<Desk>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> DeskResult {
    let Json(change) = body?;
    if change.role.is_none() && change.enabled.is_none() && change.password.is_none() {
        return Err(DeskError::bad("nothing to change: give role, enabled or password"));
    }
    if let Some(role) = &change.role
        && Role::parse(role).is_none()
    {
        return Err(DeskError::bad(format!("unknown role {role:?}: agent, supervisor or admin")));
    }
    if let Some(password) = &change.password {
        check_password_rules(password)?;
    }
    not_self(&caller, &id)?;
    desk.inner.directory.current().await;
    let Some(member) = desk.inner.directory.read().member(&id).cloned() else {
        return Err(DeskError::new(StatusCode::NOT_FOUND, format!("no user {id:?}")));
    };
    let by = Some(actor(&caller));
    if let Some(password) = change.password {
        let hash = hashed(password).await?;
        desk.set_password_hash(&id, hash).await?;
        desk.staff_event(&id, by.clone(), StaffPayload::PasswordChanged(Because { reason: change.reason.clone() })).await?;
    }
    if let Some(role) = change.role.filter(|r| Role::parse(r) != Some(member.role)) {
        desk.staff_event(&id, by.clone(), StaffPayload::RoleChanged(RoleChanged { role })).await?;
    }
    match change.enabled {
        Some(false) if member.enabled => desk.staff_event(&id, by, StaffPayload::UserDisabled(Because { reason: change.reason })).await?,
        Some(true) if !member.enabled => desk.staff_event(&id, by, StaffPayload::UserEnabled(Because { reason: change.reason })).await?,
        _ => {}
    }
    let member = desk.inner.directory.read().member(&id).cloned();
    Ok(Json(json!({ "user": member.map(|u| json!({ "id": u.id, "name": u.name, "role": u.role, "enabled": u.enabled })) })).into_response())
}

/// `DELETE /v1/desk/users/{id}` (admins): the user may no longer log in; every session ends.
pub(crate) async fn remove_user(State(desk): State<Desk>, axum::Extension(caller): axum::Extension<Caller>, Path(id): Path<String>) -> DeskResult {
    not_self(&caller, &id)?;
    desk.inner.directory.current().await;
    if desk.inner.directory.read().member(&id).is_none() {
        return Err(DeskError::new(StatusCode::NOT_FOUND, format!("no user {id:?}")));
    }
    desk.staff_event(&id, Some(actor(&caller)), StaffPayload::UserRemoved(Because { reason: None })).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/desk/users/{id}/logout` (admins): ends every session of the user.
pub(crate) async fn end_sessions(State(desk): State<Desk>, axum::Extension(caller): axum::Extension<Caller>, Path(id): Path<String>) -> DeskResult {
    not_self(&caller, &id)?;
    desk.inner.directory.current().await;
    if desk.inner.directory.read().member(&id).is_none() {
        return Err(DeskError::new(StatusCode::NOT_FOUND, format!("no user {id:?}")));
    }
    let ended = SessionEnded { session_id: None, expires_at: contract::now_millis(), reason: Some("ended by an admin".into()) };
    desk.staff_event(&id, Some(actor(&caller)), StaffPayload::SessionEnded(ended)).await?;
    Ok(Json(json!({ "user": id, "sessions_ended": true })).into_response())
}

/// `POST /v1/desk/logout`: ends the presented session everywhere (a `SessionEnded` on the
/// log) and clears the cookie in this browser. Without a valid session it only clears the
/// cookie.
pub(crate) async fn logout(State(desk): State<Desk>, parts: axum::http::request::Parts) -> DeskResult {
    if let Some(token) = runtime::routes::presented_token(&parts)
        && let Ok(session) = desk.inner.keys.verify(&token, contract::now_millis())
    {
        let ended = SessionEnded { session_id: Some(session.id.clone()), expires_at: session.expires_at, reason: Some("logged out".into()) };
        desk.staff_event(&session.user, None, StaffPayload::SessionEnded(ended)).await?;
    }
    let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", runtime::routes::SESSION_COOKIE);
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(json!({ "logged_out": true }))).into_response())
}
