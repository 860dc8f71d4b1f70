//! The SMS channel (the seed's SMS Server), paging mode: every inbound SMS is a new
//! interaction; an agent's reply, or an SMS an application submits (outbound paging), waits in
//! the send queue and is sent by the shared [`send_queue::Sender`] through the gateway;
//! delivery receipts become property changes of the sent interaction (`delivery_status`).
//!
//! The gateway is behind [`gateway::Gateway`]; [`twilio::Twilio`] speaks Twilio-compatible
//! webhooks (every one's signature checked) and REST. Routes, for gateway `{g}`:
//! - `POST /v1/sms/{g}/inbound`: an SMS for us. `200` once Kafka has the `Submit` (the
//!   interaction id is derived from the gateway's message id, so a redelivery is one
//!   interaction); `403` for a bad signature; `400` with the reason for what cannot be an
//!   interaction (no sender, an invalid number), which is also parked on the dead-letter topic;
//!   `503` when Kafka did not take it (the gateway retries).
//! - `POST /v1/sms/{g}/status?interaction=<id>`: a delivery receipt.
//!
//! An MMS (an inbound message with media) is fetched part by part from the gateway within
//! `[sms] mms_max_bytes` / `mms_max_parts`, its SMIL presentation parsed ([`inbound_mms`]),
//! and its parts stored in UCS as content-addressed blobs with `part_index` in presentation
//! order, before the `Submit` (claim-check): the agent sees the parts as they were composed.
//!
//! In session mode (`[sms] session_mode`) an SMS conversation is a chat session instead
//! ([`session`]).

pub mod settings;
pub use settings::{SmsSettings};

pub mod gateway;
pub mod segments;
pub mod session;
pub mod twilio;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::command::{ChangeProperties, CommandPayload, MediaType, Submit};
use floor::SharedFloor;
use gateway::Gateway;
use runtime::commands::CommandClient;
use runtime::dead_letter::DeadLetters;
use queues::board::Interaction;
use serde::Deserialize;
use serde_json::json;

/// The SMS sender's name: its lock holders are `sms-sender@<instance>`; it issues commands as it.
pub const HOLDER: &str = "sms-sender";

/// The SMS service (Twilio): webhooks, the sender and, in session mode, the relay of SMS
/// sessions through the chat sessions. Webhooks are only as safe as their signatures: it
/// refuses to start without the gateway's token.
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    use anyhow::Context as _;
    let settings = &ctx.settings;
    let (kafka, topics) = (&settings.kafka, &ctx.topics);
    let sms = &ctx.section::<SmsSettings>();
    anyhow::ensure!(!sms.auth_token.is_empty(), "[sms] auth_token is unset: webhooks could not be verified");
    anyhow::ensure!(sms.gateway == "twilio", "[sms] gateway {:?} is not supported (twilio)", sms.gateway);
    let floor = floor::service::shared_with_library(ctx)?;
    // In session mode the SMS server also answers from the chat sessions.
    let sessions = if sms.session_mode { Some(chat_sessions::shared(ctx)?) } else { None };
    let (f, s) = (floor.clone(), sessions.clone());
    let mut service = runtime::service::Service::new("sms-server").ready_when(move || {
        let sessions_ready = s.as_ref().is_none_or(|s| s.caught_up());
        runtime::health::Status::when(f.caught_up() && sessions_ready, if sessions_ready { "replaying the floor" } else { "replaying chat.events" })
    });
    let gateway = Arc::new(twilio::Twilio::new(sms).context("setting up the SMS gateway's client")?);
    let dead_letters = DeadLetters::new(runtime::kafka::producer(kafka)?, topics.name(runtime::topics::DEAD_LETTER), "sms-server");
    let public_url = sms.public_url.clone().unwrap_or_else(|| settings.http.own_url());
    let commands = CommandClient::new(kafka, topics, "sms-server")?;
    let ucs = ucs_client::UcsClient::new(&sms.ucs_url.clone().unwrap_or_else(|| settings.http.own_url()), settings.http.service_key.as_deref());
    let session = match sessions {
        Some(sessions) => {
            let publisher = chat_sessions::Publisher::new(kafka, topics)?;
            let relay = session::Relay {
                sessions: sessions.clone(),
                floor: floor.clone(),
                commands: CommandClient::new(kafka, topics, "sms-relay")?,
                publisher: publisher.clone(),
                send_queue: sms.send_queue.clone(),
                session_queue: sms.session_queue.clone(),
            };
            service = service.task("sms relay", session::relay(relay, ctx.shutdown.clone()));
            Some(SessionMode { sessions, publisher })
        }
        None => None,
    };
    let server = SmsServer::new(gateway, commands, dead_letters, ucs, sms, public_url, session);
    let sender = Arc::new(server.sender(floor, CommandClient::new(kafka, topics, HOLDER).context("the SMS sender's command client")?));
    let token = ctx.shutdown.clone();
    Ok(service.routes(server.routes()).task("sms sender", async move { sender.run(token).await }))
}

pub struct SmsServer<G: Gateway> {
    gateway: Arc<G>,
    commands: CommandClient,
    dead_letters: DeadLetters,
    /// Where MMS parts are stored.
    ucs: ucs_client::UcsClient,
    settings: SmsSettings,
    /// Base URL the gateway calls us at (signatures cover it).
    public_url: String,
    /// Session mode: the chat sessions and their writer.
    session: Option<SessionMode>,
    /// `[sms] default_region`, parsed once (an unknown code reads no national forms).
    region: Option<runtime::phone::Region>,
}

pub struct SessionMode {
    pub sessions: Arc<chat_sessions::SharedSessions>,
    pub publisher: chat_sessions::Publisher,
}

/// Why an MMS did not become an interaction.
enum MmsError {
    /// The message is at fault: parked with the reason, `400`.
    Refused(String),
    /// The gateway or UCS is: `503`, the gateway retries.
    Unavailable(String),
}

impl<G: Gateway> SmsServer<G> {
    pub fn new(
        gateway: Arc<G>,
        commands: CommandClient,
        dead_letters: DeadLetters,
        ucs: ucs_client::UcsClient,
        settings: &SmsSettings,
        public_url: String,
        session: Option<SessionMode>,
    ) -> Arc<Self> {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let region = settings.default_region.as_deref().and_then(|r| r.parse().ok());
        Arc::new(Self { gateway, commands, dead_letters, ucs, settings: settings.clone(), public_url, session, region })
    }

    /// Fetches, checks and stores an MMS's parts in UCS; returns properties for the interaction.
    async fn store_mms(&self, interaction: &str, sms: &gateway::Inbound) -> Result<BTreeMap<String, String>, MmsError> {
        let limits = inbound_mms::Limits { max_total_bytes: self.settings.mms_max_bytes, max_parts: self.settings.mms_max_parts, ..inbound_mms::Limits::default() };
        if sms.media.len() > limits.max_parts {
            return Err(MmsError::Refused(inbound_mms::Refusal::TooManyParts { count: sms.media.len(), limit: limits.max_parts }.to_string()));
        }
        let mut fetched = Vec::with_capacity(sms.media.len());
        let mut left = limits.max_total_bytes;
        for (url, declared_type) in &sms.media {
            let mut part = self.gateway.fetch(url, left).await.map_err(|e| match e {
                gateway::FetchError::Refused(why) => MmsError::Refused(why),
                gateway::FetchError::Unavailable(why) => MmsError::Unavailable(why),
            })?;
            if part.content_type == "application/octet-stream" {
                part.content_type.clone_from(declared_type);
            }
            left = left.saturating_sub(part.bytes.len());
            fetched.push(part);
        }
        let parts: Vec<inbound_mms::Part> = fetched
            .iter()
            .map(|f| inbound_mms::Part { content_type: f.content_type.clone(), content_id: f.content_id.clone(), location: f.location.clone(), size: f.bytes.len() })
            .collect();
        let smil = fetched.iter().find(|f| inbound_mms::is_smil(&f.content_type)).map(|f| f.bytes.as_slice());
        let presentation = inbound_mms::present(&parts, smil, &limits).map_err(|r| MmsError::Refused(r.to_string()))?;
        let unavailable = |e: ucs_client::UcsError| match e {
            ucs_client::UcsError::Refused { .. } => MmsError::Refused(format!("the contact store cannot keep it: {e}")),
            ucs_client::UcsError::Unavailable { .. } => MmsError::Unavailable(e.to_string()),
        };
        let mut index = 0;
        if !sms.body.trim().is_empty() {
            let body = ucs_client::ContentPart { part_index: 0, role: "text_body".into(), mime_type: "text/plain".into(), size: sms.body.len(), blob_ref: None, filename: None, text: Some(sms.body.clone()) };
            self.ucs.add_content(interaction, &body).await.map_err(unavailable)?;
            index += 1;
        }
        // Presented parts first, in presentation order, then the SMIL itself.
        for n in presentation.order.iter().copied().chain(presentation.smil) {
            let part = &fetched[n];
            let blob = self.ucs.put_blob(part.bytes.clone()).await.map_err(unavailable)?;
            let text = (part.content_type.starts_with("text/plain") && part.bytes.len() <= 64 * 1024).then(|| String::from_utf8_lossy(&part.bytes).into_owned());
            let role = if Some(n) == presentation.smil { "smil" } else { "mms_part" };
            let content = ucs_client::ContentPart { part_index: index, role: role.into(), mime_type: part.content_type.clone(), size: part.bytes.len(), blob_ref: Some(blob), filename: part.location.clone(), text };
            self.ucs.add_content(interaction, &content).await.map_err(unavailable)?;
            index += 1;
        }
        Ok(BTreeMap::from([
            ("mms_parts".to_owned(), presentation.order.len().to_string()),
            ("mms_slides".to_owned(), presentation.slides.to_string()),
            ("mms_bytes".to_owned(), (limits.max_total_bytes - left).to_string()),
        ]))
    }

    /// The gateway's webhooks: public, each checked against the gateway's signature.
    pub fn routes(self: &Arc<Self>) -> runtime::routes::Table {
        use runtime::routes::{Audience::Public, Policy::Gateway};
        runtime::routes::Routes::new()
            .post("/v1/sms/{gateway}/inbound", Public, Gateway, inbound::<G>)
            .post("/v1/sms/{gateway}/status", Public, Gateway, status::<G>)
            .with_state(self.clone())
    }

    /// The sender of SMS waiting in the send queue.
    pub fn sender(self: &Arc<Self>, floor: Arc<SharedFloor>, commands: CommandClient) -> send_queue::Sender<SmsChannel<G>> {
        let policy = send_queue::Policy {
            send_queue: self.settings.send_queue.clone(),
            failed_queue: self.settings.failed_queue.clone(),
            max_attempts: self.settings.max_attempts,
            retry_initial_ms: self.settings.retry_initial_ms,
            retry_max_ms: self.settings.retry_max_ms,
            takeover_after_ms: self.settings.takeover_after_s.saturating_mul(1000),
        };
        send_queue::Sender::new(floor, commands, SmsChannel { server: self.clone() }, policy)
    }

    /// `raw` as a phone number in E.164, or why it is not one.
    fn phone(&self, raw: &str) -> Result<String, String> {
        runtime::phone::e164(raw, self.region)
    }
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

/// The webhook's fields, after its gateway and signature were checked.
fn checked_params<G: Gateway>(server: &SmsServer<G>, name: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, (StatusCode, String)> {
    if name != server.gateway.name() {
        return Err((StatusCode::NOT_FOUND, format!("this server speaks to gateway {:?}, not {name:?}", server.gateway.name())));
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("the body is not a form: {e}")))?;
    let url = format!("{}{}", server.public_url, uri.path_and_query().map_or("", |p| p.as_str()));
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    server.gateway.verify(&url, &params, signature).map_err(|reason| {
        tracing::warn!(%url, %reason, "webhook refused");
        (StatusCode::FORBIDDEN, reason)
    })?;
    Ok(params)
}

/// The gateway's "received, nothing to answer" (an empty TwiML document).
fn accepted() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>").into_response()
}

async fn inbound<G: Gateway>(State(server): State<Arc<SmsServer<G>>>, Path(name): Path<String>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let params = match checked_params(&server, &name, &uri, &headers, &body) {
        Ok(p) => p,
        Err((status, reason)) => return error(status, reason),
    };
    let checked = server.gateway.inbound(&params).and_then(|sms| Ok((server.phone(&sms.from)?, sms)));
    let (from, sms) = match checked {
        Ok(ok) => ok,
        Err(reason) => return park(&server, &name, &params, &body, reason).await,
    };
    if let Some(mode) = server.session.as_ref().filter(|_| sms.media.is_empty()) {
        let queue = &server.settings.session_queue;
        return match session::inbound(&mode.sessions, &mode.publisher, &server.commands, queue, &from, &sms.gateway_message_id, &sms.body).await {
            Ok(chat) => {
                tracing::info!(session = %chat, gateway_message_id = %sms.gateway_message_id, "SMS into its session");
                accepted()
            }
            Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, format!("not accepted, send it again: {reason}")),
        };
    }
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:sms:{name}:{}", sms.gateway_message_id).as_bytes()).to_string();
    let mms = if sms.media.is_empty() {
        BTreeMap::new()
    } else {
        match server.store_mms(&id, &sms).await {
            Ok(properties) => properties,
            Err(MmsError::Refused(reason)) => return park(&server, &name, &params, &body, reason).await,
            Err(MmsError::Unavailable(reason)) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("not accepted, send it again: {reason}")),
        }
    };
    let mut properties = BTreeMap::from([
        ("from".to_owned(), from),
        ("to".to_owned(), sms.to.clone()),
        ("body".to_owned(), sms.body.clone()),
        ("gateway".to_owned(), name.clone()),
        ("gateway_message_id".to_owned(), sms.gateway_message_id.clone()),
        ("channel".to_owned(), "sms".to_owned()),
    ]);
    properties.extend(mms);
    let submit = Submit {
        media_type: if sms.media.is_empty() { MediaType::Sms } else { MediaType::Mms },
        origin: format!("sms-server:{name}"),
        target_queue: server.settings.inbound_queue.clone(),
        priority: 0,
        properties,
        contact_id: None,
        content_ref: None,
        parent_interaction_id: None,
    };
    let command = server.commands.command(&id, CommandPayload::Submit(submit));
    if let Err(e) = server.commands.send(&command).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("not accepted, send it again: {e}"));
    }
    tracing::info!(interaction = %id, gateway_message_id = %sms.gateway_message_id, "SMS received");
    accepted()
}

/// Keeps a webhook that cannot be an interaction on the dead-letter topic with the reason, and
/// answers `400` with it (`503` if Kafka did not take it: the gateway retries).
async fn park<G: Gateway>(server: &SmsServer<G>, name: &str, params: &[(String, String)], body: &[u8], reason: String) -> Response {
    let key = params.iter().find(|(k, _)| k == "MessageSid").map_or("unknown", |(_, v)| v.as_str());
    let parked = match server.dead_letters.park_input(key, body, &reason, &format!("sms:{name}")) {
        Ok(delivery) => runtime::kafka::delivered(delivery).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = parked {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("not parked, send it again: {e}"));
    }
    error(StatusCode::BAD_REQUEST, reason)
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    interaction: String,
}

async fn status<G: Gateway>(
    State(server): State<Arc<SmsServer<G>>>,
    Path(name): Path<String>,
    Query(query): Query<StatusQuery>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match checked_params(&server, &name, &uri, &headers, &body) {
        Ok(p) => p,
        Err((status, reason)) => return error(status, reason),
    };
    let receipt = match server.gateway.receipt(&params) {
        Ok(r) => r,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let mut set = BTreeMap::from([
        ("delivery_status".to_owned(), receipt.status.clone()),
        ("delivery_status_at".to_owned(), contract::now_millis().to_string()),
        ("delivery_gateway_message_id".to_owned(), receipt.gateway_message_id.clone()),
    ]);
    if let Some(code) = &receipt.error_code {
        set.insert("delivery_error_code".into(), code.clone());
    }
    let change = CommandPayload::ChangeProperties(ChangeProperties { set, remove: vec![], priority: None });
    if let Err(e) = server.commands.send(&server.commands.command(&query.interaction, change)).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("not recorded, send it again: {e}"));
    }
    tracing::info!(interaction = %query.interaction, status = %receipt.status, "delivery receipt");
    StatusCode::NO_CONTENT.into_response()
}

/// An SMS ready for the gateway.
/// The text of an outbound SMS: its `reply_text`, or the standard response it names with the
/// merge fields filled from the answered interaction (as the e-mail sender fills them).
pub fn message_text(i: &Interaction, answered: Option<&Interaction>, library: &floor::library::Library) -> Result<String, String> {
    if let Some(text) = i.properties.get("reply_text").filter(|t| !t.trim().is_empty()) {
        return Ok(text.clone());
    }
    let Some(name) = i.properties.get("standard_response") else {
        return Err("nothing to send (neither reply_text nor standard_response)".into());
    };
    let response = library.find(name).ok_or_else(|| format!("no standard response named {name:?} in UCS"))?;
    if !response.media.is_empty() && !response.media.iter().any(|m| m == "sms") {
        return Err(format!("standard response {name:?} is written for {}, not SMS", response.media.join(", ")));
    }
    let mut fields = answered.map(|a| a.properties.clone()).unwrap_or_default();
    if let Some(a) = answered {
        fields.insert("interaction_id".into(), a.id.clone());
    }
    let text = floor::library::fill(&response.body_text, &fields);
    if text.trim().is_empty() {
        return Err(format!("standard response {name:?} has no text"));
    }
    Ok(text)
}

pub struct OutgoingSms {
    to: String,
    body: String,
    segments: segments::Segmented,
}

/// The SMS channel of the [`send_queue::Sender`].
pub struct SmsChannel<G: Gateway> {
    server: Arc<SmsServer<G>>,
}

impl<G: Gateway> send_queue::Channel for SmsChannel<G> {
    type Outgoing = OutgoingSms;

    fn holder(&self) -> &'static str {
        HOLDER
    }

    fn media(&self) -> MediaType {
        MediaType::Sms
    }

    /// An agent's reply (`reply_text`, to the `to` number or the sender of the answered SMS),
    /// an application's paging SMS (`reply_text` and `to`), or a workflow's `respond` step
    /// (`standard_response`, answering `reply_to_interaction`).
    fn compose(&self, i: &Interaction, floor: &floor::Floor) -> Result<OutgoingSms, String> {
        let answered = i.properties.get("reply_to_interaction").or(i.parent_interaction_id.as_ref()).and_then(|id| floor.board().interaction(id));
        let to = i.properties.get("to").or_else(|| answered.and_then(|a| a.properties.get("from"))).ok_or("no recipient (to)")?;
        let to = self.server.phone(to)?;
        let body = message_text(i, answered, floor.library())?;
        let chars = body.chars().count();
        if chars > self.server.settings.max_text_chars {
            return Err(format!("the text is {chars} characters; the limit is {}", self.server.settings.max_text_chars));
        }
        Ok(OutgoingSms { to, segments: segments::segment(&body), body })
    }

    async fn send(&self, interaction: &str, sms: OutgoingSms) -> Result<Vec<(String, String)>, String> {
        let callback = format!("{}/v1/sms/{}/status?interaction={interaction}", self.server.public_url, self.server.gateway.name());
        let id = self.server.gateway.send(&sms.to, &sms.body, &callback).await?;
        tracing::info!(interaction, to = %sms.to, segments = sms.segments.segments.len(), "SMS sent");
        Ok(vec![
            ("gateway_message_id".into(), id),
            ("sent_to".into(), sms.to),
            ("sms_encoding".into(), sms.segments.encoding.name().into()),
            ("sms_segments".into(), sms.segments.segments.len().to_string()),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::ucs::{StandardResponseSaved, UcsEvent, UcsPayload};

    fn interaction(id: &str, properties: &[(&str, &str)]) -> Interaction {
        Interaction {
            id: id.into(),
            media_type: MediaType::Sms,
            origin: "test".into(),
            status: queues::board::Status::Waiting,
            queue: Some("outbound-send".into()),
            priority: 0,
            properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
            submitted_at: 0,
            queued_at: 0,
            lock: None,
            offer: None,
            owner: None,
            parties: BTreeMap::new(),
            stop_reason: None,
            stopped_at: None,
            declined_by: Default::default(),
            updated_at: 0,
            rejected_commands: 0,
        }
    }

    fn library(responses: &[(&str, &str, &[&str])]) -> floor::library::Library {
        let mut library = floor::library::Library::default();
        for (name, body, media) in responses {
            library.apply(&UcsEvent {
                event_id: format!("e-{name}"),
                key: (*name).into(),
                occurred_at: 0,
                issued_by: "test".into(),
                payload: UcsPayload::StandardResponseSaved(StandardResponseSaved {
                    response_id: format!("r-{name}"),
                    name: (*name).into(),
                    category_id: None,
                    subject: None,
                    body_text: (*body).into(),
                    body_html: None,
                    media: media.iter().map(|m| (*m).to_owned()).collect(),
                }),
            });
        }
        library
    }

    #[test]
    fn a_standard_response_is_filled_from_the_answered_sms_and_must_fit_the_medium() {
        let library = library(&[("sms-ack", "Thanks {{from}}, ref {{interaction_id}}. {{unknown}}", &["sms"]), ("mail-only", "Dear customer", &["email"]), ("any", "Hello", &[])]);
        let parent = interaction("p1", &[("from", "+447911123456")]);
        let ack = interaction("c1", &[("standard_response", "SMS-ACK")]);
        assert_eq!(message_text(&ack, Some(&parent), &library).unwrap(), "Thanks +447911123456, ref p1. {{unknown}}");
        assert_eq!(message_text(&interaction("c2", &[("standard_response", "any")]), None, &library).unwrap(), "Hello");
        let e = message_text(&interaction("c3", &[("standard_response", "mail-only")]), Some(&parent), &library).unwrap_err();
        assert!(e.contains("written for email"), "{e}");
        let e = message_text(&interaction("c4", &[("standard_response", "gone")]), Some(&parent), &library).unwrap_err();
        assert!(e.contains("no standard response named \"gone\""), "{e}");
        let e = message_text(&interaction("c5", &[("reply_text", "  ")]), None, &library).unwrap_err();
        assert!(e.contains("nothing to send"), "{e}");
        // An agent's text wins over a response name.
        assert_eq!(message_text(&interaction("c6", &[("reply_text", "Hi"), ("standard_response", "any")]), None, &library).unwrap(), "Hi");
    }
}
