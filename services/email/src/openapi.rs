//! `GET /v1/forms/openapi.json`: the contact form's API as OpenAPI 3.1, for the web sites that
//! post to it (held to the live service by schemathesis in `tests/e2e/tests/api_schemas.rs`).
#![allow(dead_code)] // The function below exists for its `#[utoipa::path]` only.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The form as the web site posts it.
#[derive(Serialize, ToSchema)]
pub struct Form {
    /// The customer's address (answers go there).
    pub email: String,
    /// At most 200 characters.
    pub name: Option<String>,
    /// At most 500 characters.
    pub subject: Option<String>,
    /// Not empty.
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct Received {
    pub interaction_id: String,
    /// The interaction it continues, when the form answers an earlier one.
    pub thread_parent: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard contact form", description = "A web site's contact form: taken in as an e-mail (the same intake, screening and routing), rate limited per client address."),
    paths(submit),
    components(schemas(ErrorBody, Form, Received))
)]
pub struct FormsDoc;

#[utoipa::path(post, path = "/v1/forms/email", request_body = Form,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 200 visible ASCII characters; a repeat with the same key is the same interaction")),
    responses((status = 202, body = Received), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many requests from this address"), (status = 503, body = ErrorBody)))]
fn submit() {}
