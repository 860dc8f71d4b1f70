//! The UCS HTTP API. Reads come from the SQL read model; writes become events on
//! `ucs.events` (answered `202 Accepted` once Kafka has them) and show in reads once projected,
//! so the log stays the only source of truth. `GET /v1/openapi.json` describes all of it and is
//! generated from these handlers.

#![allow(clippy::result_large_err)] // handlers return a ready `Response` as their error

use runtime::http::ApiError;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler as _;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use runtime::routes::{Routes, Table};
use contract::ucs::{
    CategoryDeleted, CategorySaved, ContactIdentified, ContactUpdated, ContactsMerged, ContentAdded,
    ContentRole, IdentityKind, NoteAdded, StandardResponseDeleted, StandardResponseSaved, UcsPayload,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::blobs::{BlobError, BlobStore, StoredBlob};
use crate::contacts;
use crate::db::Db;
use crate::projector::ProjectorStatus;
use crate::publisher::Publisher;
use crate::queries::{self, Category, Contact, InteractionDetail, InteractionSummary, StandardResponse};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub blobs: BlobStore,
    pub publisher: Publisher,
    pub status: Arc<ProjectorStatus>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard Universal Contact Server", description = "Contacts, interaction history and contents, standard responses and categories; claim-check blobs. Writes are events on ucs.events and appear in reads once projected."),
    paths(
        identify, search_contacts, get_contact, update_contact, merge_contact, contact_history,
        get_interaction, add_note, add_content, list_categories, create_category, save_category,
        delete_category, list_standard_responses, get_standard_response, create_standard_response,
        save_standard_response, delete_standard_response, put_blob, get_blob
    ),
    components(schemas(
        Contact, queries::Identity, InteractionSummary, InteractionDetail, queries::HistoryStep,
        queries::ContentPart, queries::TranscriptLine, queries::Note, Category, StandardResponse,
        StoredBlob, IdentifyRequest, Identified, UpdateContactRequest, MergeRequest, NoteRequest,
        ContentRequest, CategoryRequest, StandardResponseRequest, Accepted, ErrorBody
    ))
)]
pub struct ApiDoc;

/// UCS is staff-only: reading contacts and history needs an agent, changing the library and
/// merging contacts a supervisor, and what the channels write (contents, identification,
/// blobs) a service key.
pub fn routes(state: AppState) -> Table {
    use runtime::routes::{Audience::Staff, Policy::{Agent, Open, Service, Supervisor}};
    let blob_limit = usize::try_from(state.blobs.max_bytes()).unwrap_or(usize::MAX);
    Routes::new()
        .get("/v1/openapi.json", Staff, Open, || async { Json(ApiDoc::openapi()) })
        .get("/v1/contacts", Staff, Agent, search_contacts)
        .post("/v1/contacts/identify", Staff, Service, identify)
        .get("/v1/contacts/{id}", Staff, Agent, get_contact)
        .route(Method::PATCH, "/v1/contacts/{id}", Staff, Agent, update_contact)
        .post("/v1/contacts/{id}/merge", Staff, Supervisor, merge_contact)
        .get("/v1/contacts/{id}/history", Staff, Agent, contact_history)
        .get("/v1/interactions/{id}/detail", Staff, Agent, get_interaction)
        .post("/v1/interactions/{id}/contents", Staff, Service, add_content)
        .post("/v1/notes", Staff, Agent, add_note)
        .get("/v1/categories", Staff, Agent, list_categories)
        .post("/v1/categories", Staff, Supervisor, create_category)
        .route(Method::PUT, "/v1/categories/{id}", Staff, Supervisor, save_category)
        .route(Method::DELETE, "/v1/categories/{id}", Staff, Supervisor, delete_category)
        .get("/v1/standard-responses", Staff, Agent, list_standard_responses)
        .post("/v1/standard-responses", Staff, Supervisor, create_standard_response)
        .get("/v1/standard-responses/{id}", Staff, Agent, get_standard_response)
        .route(Method::PUT, "/v1/standard-responses/{id}", Staff, Supervisor, save_standard_response)
        .route(Method::DELETE, "/v1/standard-responses/{id}", Staff, Supervisor, delete_standard_response)
        .post("/v1/blobs", Staff, Service, put_blob.layer(DefaultBodyLimit::max(blob_limit.saturating_add(1))))
        .get("/v1/blobs/{reference}", Staff, Agent, get_blob)
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A refusal the caller can act on, as `{"error": ...}` (`runtime::http::ApiError`).
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// A failure of ours (the database, the blob store): logged with a reference, which is all
/// the client sees.
fn internal(e: impl std::fmt::Display) -> Response {
    ApiError::internal(e).into_response()
}

fn bad_json(rejection: JsonRejection) -> Response {
    error(StatusCode::BAD_REQUEST, rejection.body_text())
}

/// A write was accepted: its event is in Kafka and shows in reads once projected.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub event_id: String,
}

async fn publish(state: &AppState, key: &str, payload: UcsPayload, event_id: Option<String>) -> Result<String, Response> {
    state
        .publisher
        .publish(key, payload, event_id)
        .await
        .map_err(|e| ApiError::unavailable("the contact store cannot take this write now; retry", e).into_response())
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Response> {
    if value.len() > max {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

// ---------- contacts ----------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRequest {
    /// email, phone or web_visitor
    pub kind: String,
    pub value: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Identified {
    pub contact_id: String,
    /// True when this call introduced the identity (concurrent first calls may all say so;
    /// they all get the same contact).
    pub created: bool,
    pub normalised_value: String,
}

/// Find-or-create a contact by e-mail address, phone number or web visitor id.
#[utoipa::path(post, path = "/v1/contacts/identify", request_body = IdentifyRequest,
    responses((status = 200, body = Identified), (status = 400, body = ErrorBody)))]
async fn identify(State(state): State<AppState>, body: Result<Json<IdentifyRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let kind: IdentityKind = match request.kind.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let value = match contacts::normalise(kind, &request.value) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(name) = &request.display_name
        && let Err(r) = check_len("display_name", name, 200)
    {
        return r;
    }
    match queries::contact_for_identity(&state.db, kind.as_str(), &value).await {
        Ok(Some(contact_id)) => {
            return Json(Identified { contact_id, created: false, normalised_value: value }).into_response();
        }
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    let contact_id = contacts::contact_id_for(kind, &value);
    let payload = UcsPayload::ContactIdentified(ContactIdentified {
        contact_id: contact_id.clone(),
        identity_kind: kind,
        identity_value: value.clone(),
        display_name: request.display_name,
    });
    let event_id = contacts::identified_event_id(&contact_id);
    match publish(&state, &contact_id, payload, Some(event_id)).await {
        Ok(_) => Json(Identified { contact_id, created: true, normalised_value: value }).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// Text in the name or any identity (case-insensitive).
    pub q: String,
    pub limit: Option<i64>,
}

/// Contacts whose name or identity contains `q` (merged contacts show as their survivor).
#[utoipa::path(get, path = "/v1/contacts", params(SearchParams), responses((status = 200, body = [Contact]), (status = 400, body = ErrorBody, description = "q empty, or a parameter out of range")))]
async fn search_contacts(State(state): State<AppState>, Query(params): Query<SearchParams>) -> Response {
    if params.q.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "q must not be empty");
    }
    let limit = params.limit.unwrap_or(20).clamp(1, 200);
    match queries::search_contacts(&state.db, params.q.trim(), limit).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => internal(e),
    }
}

/// A contact with all its identities (including those of contacts merged into it).
#[utoipa::path(get, path = "/v1/contacts/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Contact), (status = 404, body = ErrorBody)))]
async fn get_contact(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match queries::contact(&state.db, &id).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no contact {id}")),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContactRequest {
    pub display_name: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub issued_by: Option<String>,
}

/// Set a contact's name and attributes (attributes given are set, others kept).
#[utoipa::path(patch, path = "/v1/contacts/{id}", params(("id" = String, Path)), request_body = UpdateContactRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn update_contact(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateContactRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if request.attributes.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "at most 100 attributes");
    }
    let payload = UcsPayload::ContactUpdated(ContactUpdated {
        contact_id: id.clone(),
        display_name: request.display_name,
        attributes: request.attributes,
    });
    accepted(&state, &id, payload).await
}

async fn accepted(state: &AppState, key: &str, payload: UcsPayload) -> Response {
    match publish(state, key, payload, None).await {
        Ok(event_id) => (StatusCode::ACCEPTED, Json(Accepted { id: key.to_owned(), event_id })).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The surviving contact.
    pub into: String,
}

/// Merge contact `id` into `into`: its identities and history show under the survivor.
#[utoipa::path(post, path = "/v1/contacts/{id}/merge", params(("id" = String, Path)), request_body = MergeRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn merge_contact(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<MergeRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let survivor = match queries::resolve(&state.db, &request.into).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    if survivor == id {
        return error(StatusCode::BAD_REQUEST, "a contact cannot be merged into itself (or into a contact merged into it)");
    }
    for contact in [&id, &request.into] {
        match queries::contact(&state.db, contact).await {
            Ok(Some(_)) => {}
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("no contact {contact}")),
            Err(e) => return internal(e),
        }
    }
    let payload = UcsPayload::ContactsMerged(ContactsMerged {
        merged_contact_id: id.clone(),
        into_contact_id: survivor,
    });
    accepted(&state, &id, payload).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LimitParams {
    pub limit: Option<i64>,
}

/// The contact's interactions, newest first (including those of merged contacts).
#[utoipa::path(get, path = "/v1/contacts/{id}/history", params(("id" = String, Path), LimitParams),
    responses((status = 200, body = [InteractionSummary]), (status = 400, body = ErrorBody, description = "a parameter out of range")))]
async fn contact_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<LimitParams>,
) -> Response {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    match queries::contact_history(&state.db, &id, limit).await {
        Ok(h) => Json(h).into_response(),
        Err(e) => internal(e),
    }
}

// ---------- interactions ----------

/// An interaction with its trail, contents, chat transcript, notes and thread.
#[utoipa::path(get, path = "/v1/interactions/{id}/detail", params(("id" = String, Path)),
    responses((status = 200, body = InteractionDetail), (status = 404, body = ErrorBody)))]
async fn get_interaction(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match queries::interaction(&state.db, &id).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no interaction {id} in the contact store")),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub contact_id: Option<String>,
    pub interaction_id: Option<String>,
    pub author: String,
    pub text: String,
}

/// Attach a note to a contact, an interaction, or both.
#[utoipa::path(post, path = "/v1/notes", request_body = NoteRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn add_note(State(state): State<AppState>, body: Result<Json<NoteRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let Some(key) = request.interaction_id.clone().or_else(|| request.contact_id.clone()) else {
        return error(StatusCode::BAD_REQUEST, "a note needs a contact_id or an interaction_id");
    };
    if let Err(r) = check_len("text", &request.text, 64 * 1024) {
        return r;
    }
    let note_id = uuid::Uuid::new_v4().to_string();
    let payload = UcsPayload::NoteAdded(NoteAdded {
        note_id: note_id.clone(),
        contact_id: request.contact_id,
        interaction_id: request.interaction_id,
        author: request.author,
        text: request.text,
    });
    match publish(&state, &key, payload, None).await {
        Ok(event_id) => (StatusCode::ACCEPTED, Json(Accepted { id: note_id, event_id })).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentRequest {
    pub part_index: i32,
    /// text_body, html_body, attachment, mms_part, smil, other
    pub role: String,
    pub mime_type: String,
    pub size: i64,
    /// `sha256:<hex>` from `POST /v1/blobs`.
    pub blob_ref: Option<String>,
    pub filename: Option<String>,
    /// Inline text of a small text part.
    pub text: Option<String>,
}

/// Record one content part of an interaction (a body, an attachment, an MMS part).
#[utoipa::path(post, path = "/v1/interactions/{id}/contents", params(("id" = String, Path)), request_body = ContentRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn add_content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ContentRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let role: ContentRole = match serde_json::from_value(json!(request.role)) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown role '{}' (known: text_body, html_body, attachment, mms_part, smil, other)", request.role),
            );
        }
    };
    if let Some(reference) = &request.blob_ref {
        if let Err(e) = crate::blobs::parse_reference(reference) {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
        match state.blobs.get(reference).await {
            Ok(Some(_)) => {}
            Ok(None) => return error(StatusCode::BAD_REQUEST, format!("no blob {reference}: store it first (POST /v1/blobs)")),
            Err(e) => return internal(e),
        }
    }
    if let Some(text) = &request.text
        && let Err(r) = check_len("text", text, 64 * 1024)
    {
        return r;
    }
    let event_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("content/{id}/{}", request.part_index).as_bytes()).to_string();
    let payload = UcsPayload::ContentAdded(ContentAdded {
        interaction_id: id.clone(),
        part_index: request.part_index,
        role,
        mime_type: request.mime_type,
        size: request.size,
        blob_ref: request.blob_ref,
        filename: request.filename,
        text: request.text,
    });
    match publish(&state, &id, payload, Some(event_id)).await {
        Ok(event_id) => (StatusCode::ACCEPTED, Json(Accepted { id, event_id })).into_response(),
        Err(r) => r,
    }
}

// ---------- categories and standard responses ----------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryRequest {
    pub name: String,
    pub parent_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/categories", responses((status = 200, body = [Category])))]
async fn list_categories(State(state): State<AppState>) -> Response {
    match queries::categories(&state.db).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => internal(e),
    }
}

#[utoipa::path(post, path = "/v1/categories", request_body = CategoryRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn create_category(State(state): State<AppState>, body: Result<Json<CategoryRequest>, JsonRejection>) -> Response {
    save_category_as(state, uuid::Uuid::new_v4().to_string(), body).await
}

#[utoipa::path(put, path = "/v1/categories/{id}", params(("id" = String, Path)), request_body = CategoryRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn save_category(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<CategoryRequest>, JsonRejection>,
) -> Response {
    save_category_as(state, id, body).await
}

async fn save_category_as(state: AppState, id: String, body: Result<Json<CategoryRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if request.name.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "name must not be empty");
    }
    let payload = UcsPayload::CategorySaved(CategorySaved {
        category_id: id.clone(),
        name: request.name,
        parent_id: request.parent_id,
    });
    accepted(&state, &id, payload).await
}

#[utoipa::path(delete, path = "/v1/categories/{id}", params(("id" = String, Path)), responses((status = 202, body = Accepted)))]
async fn delete_category(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let payload = UcsPayload::CategoryDeleted(CategoryDeleted { category_id: id.clone() });
    accepted(&state, &id, payload).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ResponseFilter {
    pub category_id: Option<String>,
    /// Only responses suited to this media type (or to all).
    pub media: Option<String>,
}

#[utoipa::path(get, path = "/v1/standard-responses", params(ResponseFilter), responses((status = 200, body = [StandardResponse]), (status = 400, body = ErrorBody)))]
async fn list_standard_responses(State(state): State<AppState>, Query(filter): Query<ResponseFilter>) -> Response {
    match queries::standard_responses(&state.db, filter.category_id.as_deref(), filter.media.as_deref()).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}

#[utoipa::path(get, path = "/v1/standard-responses/{id}", params(("id" = String, Path)),
    responses((status = 200, body = StandardResponse), (status = 404, body = ErrorBody)))]
async fn get_standard_response(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match queries::standard_response_by_id(&state.db, &id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no standard response {id}")),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardResponseRequest {
    pub name: String,
    pub category_id: Option<String>,
    pub subject: Option<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    #[serde(default)]
    pub media: Vec<String>,
}

#[utoipa::path(post, path = "/v1/standard-responses", request_body = StandardResponseRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn create_standard_response(
    State(state): State<AppState>,
    body: Result<Json<StandardResponseRequest>, JsonRejection>,
) -> Response {
    save_response_as(state, uuid::Uuid::new_v4().to_string(), body).await
}

#[utoipa::path(put, path = "/v1/standard-responses/{id}", params(("id" = String, Path)), request_body = StandardResponseRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody)))]
async fn save_standard_response(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<StandardResponseRequest>, JsonRejection>,
) -> Response {
    save_response_as(state, id, body).await
}

async fn save_response_as(
    state: AppState,
    id: String,
    body: Result<Json<StandardResponseRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if request.name.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "name must not be empty");
    }
    for (field, value) in [("body_text", Some(&request.body_text)), ("body_html", request.body_html.as_ref())] {
        if let Some(v) = value
            && let Err(r) = check_len(field, v, 256 * 1024)
        {
            return r;
        }
    }
    for m in &request.media {
        if let Err(e) = m.parse::<contract::command::MediaType>() {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    let payload = UcsPayload::StandardResponseSaved(StandardResponseSaved {
        response_id: id.clone(),
        name: request.name,
        category_id: request.category_id,
        subject: request.subject,
        body_text: request.body_text,
        body_html: request.body_html,
        media: request.media,
    });
    accepted(&state, &id, payload).await
}

#[utoipa::path(delete, path = "/v1/standard-responses/{id}", params(("id" = String, Path)), responses((status = 202, body = Accepted)))]
async fn delete_standard_response(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let payload = UcsPayload::StandardResponseDeleted(StandardResponseDeleted { response_id: id.clone() });
    accepted(&state, &id, payload).await
}

// ---------- claim check ----------

/// Store a blob (the request body, any content type); answers its reference. Idempotent:
/// the same bytes always give the same reference.
#[utoipa::path(post, path = "/v1/blobs", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = StoredBlob), (status = 200, body = StoredBlob, description = "already stored"),
              (status = 413, body = ErrorBody)))]
async fn put_blob(State(state): State<AppState>, body: Body) -> Response {
    match state.blobs.put_stream(body.into_data_stream()).await {
        Ok(stored) => {
            let status = if stored.created { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(stored)).into_response()
        }
        Err(e @ BlobError::TooLarge { .. }) => error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        // axum's body limit cuts the stream with its own error once past max_bytes + 1.
        Err(BlobError::Upload(detail)) if detail.contains("length limit") => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            BlobError::TooLarge { limit: state.blobs.max_bytes() }.to_string(),
        ),
        Err(e @ BlobError::Upload(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => internal(e),
    }
}

/// The blob's bytes.
#[utoipa::path(get, path = "/v1/blobs/{reference}", params(("reference" = String, Path, description = "sha256:<hex>")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_blob(State(state): State<AppState>, Path(reference): Path<String>) -> Response {
    match state.blobs.get(&reference).await {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no blob {reference}")),
        Err(e @ BlobError::BadReference(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => internal(e),
    }
}


