//! The few UCS calls the media channels need, over UCS's HTTP API: store a blob, find-or-create a
//! contact, record a content part, and ask whether an interaction is known.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum UcsError {
    #[error("UCS at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    #[error("UCS refused {what}: {status} {detail}")]
    Refused { what: String, status: u16, detail: String },
}

#[derive(Clone)]
pub struct UcsClient {
    http: reqwest::Client,
    base: String,
}

#[derive(Debug, Deserialize)]
struct Stored {
    reference: String,
}

#[derive(Debug, Deserialize)]
struct Identified {
    contact_id: String,
}

/// One part of an interaction's content, as `POST /v1/interactions/{id}/contents` takes it.
#[derive(Debug, Clone, Serialize)]
pub struct ContentPart {
    pub part_index: i32,
    pub role: String,
    pub mime_type: String,
    pub size: usize,
    /// `sha256:<hex>` of a stored blob.
    pub blob_ref: Option<String>,
    pub filename: Option<String>,
    /// Inline text of a small text part.
    pub text: Option<String>,
}

impl UcsClient {
    /// A client of the UCS at `base`, presenting the service key `key` (`[http] service_key`;
    /// UCS refuses its routes to anyone without a credential).
    pub fn new(base: &str, key: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(Ok(mut value)) = key.map(|k| reqwest::header::HeaderValue::from_str(&format!("Bearer {k}"))) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> UcsError {
        UcsError::Unavailable { url: self.base.clone(), detail: e.to_string() }
    }

    async fn check(&self, what: &str, response: reqwest::Response) -> Result<reqwest::Response, UcsError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let detail = response.text().await.unwrap_or_default();
        if status.is_server_error() {
            return Err(self.unavailable(format!("{what}: {status} {detail}")));
        }
        Err(UcsError::Refused { what: what.to_owned(), status: status.as_u16(), detail })
    }

    /// Stores `bytes` content-addressed; returns `sha256:<hex>`.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<String, UcsError> {
        let r = self.http.post(format!("{}/v1/blobs", self.base)).body(bytes).send().await.map_err(|e| self.unavailable(e))?;
        let stored: Stored = self.check("a blob", r).await?.json().await.map_err(|e| self.unavailable(e))?;
        Ok(stored.reference)
    }

    pub async fn identify_email(&self, address: &str, display_name: Option<&str>) -> Result<String, UcsError> {
        let r = self
            .http
            .post(format!("{}/v1/contacts/identify", self.base))
            .json(&json!({ "kind": "email", "value": address, "display_name": display_name }))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        let identified: Identified = self.check("the sender's address", r).await?.json().await.map_err(|e| self.unavailable(e))?;
        Ok(identified.contact_id)
    }

    pub async fn add_content(&self, interaction_id: &str, part: &ContentPart) -> Result<(), UcsError> {
        let r = self
            .http
            .post(format!("{}/v1/interactions/{interaction_id}/contents", self.base))
            .json(part)
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        self.check("a content part", r).await.map(|_| ())
    }

    /// Whether UCS has a record of the interaction (used to link replies to earlier mail).
    pub async fn knows_interaction(&self, interaction_id: &str) -> Result<bool, UcsError> {
        let r = self
            .http
            .get(format!("{}/v1/interactions/{interaction_id}/detail", self.base))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check("an interaction lookup", r).await.map(|_| true)
    }

    pub async fn get_blob(&self, reference: &str) -> Result<Vec<u8>, UcsError> {
        let r = self.http.get(format!("{}/v1/blobs/{reference}", self.base)).send().await.map_err(|e| self.unavailable(e))?;
        let bytes = self.check("a blob read", r).await?.bytes().await.map_err(|e| self.unavailable(e))?;
        Ok(bytes.to_vec())
    }
}
