//! The contact form of a web site as e-mail (`POST /v1/forms/email`, served by `web-api`).
//!
//! The form becomes an RFC 5322 message (built with lettre) and goes through the same
//! [`Intake`] as mail from the SMTP listener and IMAP: same UCS claim-check, contact lookup,
//! threading by `[ref:…]` in the subject, same limits. The browser is told the outcome
//! directly (`202` with the interaction id, `4xx` with the reason, `503` to retry), so nothing
//! needs parking. An `Idempotency-Key` header makes the Message-ID, and so the interaction,
//! the same for every retry of one submission.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lettre::Message;
use lettre::message::Mailbox;
use serde::Deserialize;
use serde_json::json;

use crate::intake::{Intake, IntakeError, Source};
use crate::parse::clean_header_text;

const MAX_NAME: usize = 200;
const MAX_SUBJECT: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebForm {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
}

pub fn routes(intake: Arc<Intake>) -> runtime::routes::Table {
    use runtime::routes::{Audience::Public, Policy::Customer};
    use runtime::routes::Policy::Open;
    use utoipa::OpenApi as _;
    runtime::routes::Routes::new()
        .get("/v1/forms/openapi.json", Public, Open, || async { Json(crate::openapi::FormsDoc::openapi()) })
        .post("/v1/forms/email", Public, Customer, submit)
        .with_state(intake)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn submit(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Json<WebForm>, JsonRejection>,
) -> Response {
    let form = match body {
        Ok(Json(form)) => form,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= 200 => Some(key.to_owned()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "Idempotency-Key must be 1 to 200 visible ASCII characters"),
    };
    let raw = match to_message(&form, key.as_deref(), &intake.domain) {
        Ok(raw) => raw,
        Err(reason) => return error(StatusCode::UNPROCESSABLE_ENTITY, reason),
    };
    let source = Source {
        channel: "web-form",
        envelope_from: Some(form.email.trim().to_owned()),
        detail: key.as_deref().map_or_else(|| "web form".to_owned(), |k| format!("web form, idempotency key {k}")),
    };
    match intake.accept(&raw, &source).await {
        Ok(accepted) => (
            StatusCode::ACCEPTED,
            Json(json!({ "interaction_id": accepted.interaction_id, "thread_parent": accepted.thread_parent })),
        )
            .into_response(),
        Err(IntakeError::Refused(refusal)) => {
            let status = if matches!(refusal.kind(), "too_large" | "not_storable") { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::UNPROCESSABLE_ENTITY };
            error(status, refusal.to_string())
        }
        Err(e @ IntakeError::Unavailable(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The form as a mail from the customer to the contact center.
pub fn to_message(form: &WebForm, idempotency_key: Option<&str>, domain: &str) -> Result<Vec<u8>, String> {
    let address = clean_header_text(&form.email);
    let name = form.name.as_deref().map(clean_header_text).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME) {
        return Err(format!("name is longer than {MAX_NAME} characters"));
    }
    let subject = form.subject.as_deref().map(clean_header_text).unwrap_or_default();
    if subject.chars().count() > MAX_SUBJECT {
        return Err(format!("subject is longer than {MAX_SUBJECT} characters"));
    }
    if form.message.trim().is_empty() {
        return Err("message is empty".into());
    }
    let from: Mailbox = format!("{}<{address}>", name.as_deref().map(|n| format!("\"{}\" ", n.replace(['"', '\\'], ""))).unwrap_or_default())
        .parse()
        .map_err(|e| format!("email {:?} is not an address: {e}", form.email))?;
    let local = match idempotency_key {
        Some(key) => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:web-form:{key}").as_bytes()),
        None => uuid::Uuid::new_v4(),
    };
    let to: Mailbox = format!("web-form@{domain}").parse().map_err(|e| format!("domain {domain:?}: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(if subject.is_empty() { "Contact form".to_owned() } else { subject })
        .message_id(Some(format!("<webform.{local}@{domain}>")))
        .date_now()
        .body(form.message.clone())
        .map_err(|e| format!("could not build the mail: {e}"))?;
    Ok(message.formatted())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn form(email: &str, subject: &str) -> WebForm {
        WebForm { email: email.into(), name: Some("Ada\r\nBcc: x@example.com".into()), subject: Some(subject.into()), message: "Hello\nthere".into() }
    }

    #[test]
    fn a_form_is_a_parseable_mail_with_a_stable_message_id_per_key() {
        let raw = to_message(&form("ada@example.com", "Order\r\nBcc: evil@example.com"), Some("k1"), "shop.example").unwrap();
        let limits = crate::parse::Limits { max_bytes: 1 << 20, max_parts: 10, max_depth: 5 };
        let mail = crate::parse::parse(&raw, None, &limits).unwrap();
        assert_eq!(mail.from_address, "ada@example.com");
        assert_eq!(mail.subject, "Order Bcc: evil@example.com");
        assert!(mail.text_body.as_deref().unwrap().contains("Hello"));
        let again = crate::parse::parse(&to_message(&form("ada@example.com", "x"), Some("k1"), "shop.example").unwrap(), None, &limits).unwrap();
        assert_eq!(mail.message_id, again.message_id);
        let text = String::from_utf8(raw).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn bad_forms_are_refused_with_reasons() {
        assert!(to_message(&form("not an address", "s"), None, "d.example").unwrap_err().contains("not an address"));
        let mut f = form("a@example.com", "s");
        f.message = "  ".into();
        assert_eq!(to_message(&f, None, "d.example").unwrap_err(), "message is empty");
    }
}
