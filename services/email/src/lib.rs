//! The e-mail channel (the seed's E-mail Server): mail in by the SMTP listener ([`smtp`]),
//! the IMAP poller ([`imap`]) and the web form (`web-api`), all through one [`intake`]; mail
//! out (replies, acknowledgements, auto-responses) by the [`outbound`] sender with lettre.

pub mod settings;
pub use settings::{EmailSettings, ImapSettings, MailTls, OutboundMailSettings, AfterAccept};

pub mod imap;
pub mod intake;
pub mod outbound;
/// Inbound MIME parsing with limits (its own crate, so the fuzz target builds it alone).
pub use inbound_mail as parse;
pub mod smtp;
pub mod web_form;
mod openapi;

use std::sync::Arc;

use anyhow::Context;
use runtime::commands::CommandClient;
use floor::SharedFloor;
use runtime::CancellationToken;
use tokio::task::JoinSet;
use runtime::config::Settings;
use runtime::dead_letter::DeadLetters;
use runtime::topics::{self, Topics};

/// The intake as configured: limits, inbound queue, UCS address (by default this process's
/// own HTTP address, where UCS runs under `switchboard up`).
pub fn intake(settings: &Settings, email: &EmailSettings, topics: &Topics) -> anyhow::Result<intake::Intake> {
    let ucs_url = email.ucs_url.clone().unwrap_or_else(|| settings.http.own_url());
    Ok(intake::Intake {
        ucs: ucs_client::UcsClient::new(&ucs_url, settings.http.service_key.as_deref()),
        commands: CommandClient::new(&settings.kafka, topics, "email")?,
        dead_letters: DeadLetters::new(runtime::kafka::producer(&settings.kafka)?, topics.name(topics::DEAD_LETTER), "email"),
        limits: parse::Limits { max_bytes: email.max_message_bytes, max_parts: email.max_parts, max_depth: email.max_depth },
        inbound_queue: email.inbound_queue.clone(),
        domain: email.domain.clone(),
    })
}

/// The process's one e-mail intake (the e-mail service and the contact form share it).
pub fn shared_intake(ctx: &runtime::service::Context) -> anyhow::Result<Arc<intake::Intake>> {
    ctx.shared(|ctx| Ok(Arc::new(intake(&ctx.settings, &ctx.section(), &ctx.topics)?)))
}

/// The contact form's routes (`POST /v1/forms/email`), for the web API to serve.
pub fn contact_form(ctx: &runtime::service::Context) -> anyhow::Result<runtime::routes::Table> {
    Ok(web_form::routes(shared_intake(ctx)?))
}

/// The e-mail service: SMTP listener, IMAP poller and outbound sender as configured, the
/// sender on the process's floor (with the library: standard responses).
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let floor = floor::service::shared_with_library(ctx)?;
    let intake = shared_intake(ctx)?;
    let (settings, email, topics, token, f) = (ctx.settings.clone(), ctx.section::<EmailSettings>(), ctx.topics.clone(), ctx.shutdown.clone(), floor.clone());
    Ok(runtime::service::Service::new("email")
        .ready_when(move || runtime::health::Status::when(f.caught_up(), "replaying the floor (the sender's view of who owns a reply)"))
        .task("email", async move { run(&settings, &email, &topics, intake, floor, token).await }))
}

/// Runs the configured paths until `shutdown`, all through `intake` (made by [`intake()`],
/// shared with the web form where both run in one process): the SMTP listener (`smtp_listen`),
/// the IMAP poller (`[email.imap] host`) and the outbound sender (`[email.outbound]
/// smtp_host`), the last reading `floor` (which must follow `ucs.events` for the standard
/// responses).
pub async fn run(
    settings: &Settings,
    email: &EmailSettings,
    topics: &Topics,
    intake: Arc<intake::Intake>,
    floor: Arc<SharedFloor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    if let Some(address) = email.smtp_listen {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("SMTP listener on {address}"))?;
        let policy = smtp::Policy::from_settings(email)?;
        let (intake, token) = (intake.clone(), shutdown.clone());
        tasks.spawn(async move { ("SMTP listener", smtp::serve(listener, policy, intake, token).await) });
    }
    if let Some(poller) = imap::Poller::new(&email.imap, intake.clone()) {
        let token = shutdown.clone();
        tasks.spawn(async move { ("IMAP poller", poller.run(token).await) });
    }
    let commands = CommandClient::new(&settings.kafka, topics, outbound::HOLDER)?;
    if let Some(sender) = outbound::sender(floor, commands, &email.outbound, &email.domain)? {
        let token = shutdown.clone();
        tasks.spawn(async move { ("sender", Arc::new(sender).run(token).await) });
    }
    if tasks.is_empty() {
        tracing::warn!("email: none of [email] smtp_listen, [email.imap] host, [email.outbound] smtp_host is set; nothing to do");
    }
    // Each part runs until shutdown; one that fails takes the service down with its reason.
    while let Some(done) = tasks.join_next().await {
        let (name, result) = done.context("an e-mail task panicked")?;
        result.with_context(|| format!("email {name}"))?;
    }
    shutdown.cancelled().await;
    Ok(())
}
