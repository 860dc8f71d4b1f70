//! The e-mail channel (the seed's E-mail Server): mail in by the SMTP listener ([`smtp`])
//! through one [`intake`] (which the IMAP poller and the web form are to share); outbound
//! sending over SMTP with lettre is not built yet.

pub mod intake;
pub mod parse;
pub mod smtp;
pub mod ucs_client;

use std::sync::Arc;

use anyhow::Context;
use interaction_server::client::CommandClient;
use plumbing::CancellationToken;
use plumbing::config::Settings;
use plumbing::dead_letter::DeadLetters;
use plumbing::topics::{self, Topics};

/// The intake as configured: limits, inbound queue, UCS address (by default this process's
/// own HTTP address, where UCS runs under `switchboard up`).
pub fn intake(settings: &Settings, topics: &Topics) -> anyhow::Result<intake::Intake> {
    let email = &settings.email;
    let ucs_url = email.ucs_url.clone().unwrap_or_else(|| {
        let listen = settings.http.listen;
        let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
        format!("http://{host}:{}", listen.port())
    });
    Ok(intake::Intake {
        ucs: ucs_client::UcsClient::new(&ucs_url),
        commands: CommandClient::new(&settings.kafka, topics, "email")?,
        dead_letters: DeadLetters::new(plumbing::kafka::producer(&settings.kafka)?, topics.name(topics::DEAD_LETTER), "email"),
        limits: parse::Limits { max_bytes: email.max_message_bytes, max_parts: email.max_parts, max_depth: email.max_depth },
        inbound_queue: email.inbound_queue.clone(),
        domain: email.domain.clone(),
    })
}

/// Runs the configured inbound paths until `shutdown`.
pub async fn run(settings: &Settings, topics: &Topics, shutdown: CancellationToken) -> anyhow::Result<()> {
    let intake = Arc::new(intake(settings, topics)?);
    let Some(address) = settings.email.smtp_listen else {
        tracing::warn!("email: no [email] smtp_listen configured; nothing to receive");
        shutdown.cancelled().await;
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("SMTP listener on {address}"))?;
    smtp::serve(listener, settings.email.domain.clone(), intake, shutdown).await
}
