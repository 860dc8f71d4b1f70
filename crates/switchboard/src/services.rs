//! Starting services, together (`up`) or one at a time (`run`), and stopping them cleanly.

use std::time::Duration;

use anyhow::Context;
use runtime::CancellationToken;
use runtime::config::Settings;
use runtime::health::Status;
use runtime::broker::EmbeddedBroker;
use runtime::topics::Topics;
use tokio::task::JoinSet;

use crate::cli::Service;

/// How long services get to finish in-flight work after a shutdown request.
const GRACE: Duration = Duration::from_secs(20);

pub async fn up(mut settings: Settings, topics: Topics) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    let broker = if settings.kafka.bootstrap_servers.trim().is_empty() {
        let broker = EmbeddedBroker::start(&settings.broker, &settings.data_dir)
            .await
            .context("starting the embedded broker")?;
        broker.configure(&mut settings.kafka);
        Some(broker)
    } else {
        None
    };
    let mut services = vec![
        Service::InteractionServer,
        Service::Queues,
        Service::WebApi,
        Service::Ucs,
        Service::Router,
        Service::Desk,
        Service::Stats,
        Service::Email,
        Service::ChatServer,
    ];
    // Webhooks are only as safe as their signatures: no SMS without the gateway's token.
    if settings.sms.auth_token.is_empty() {
        tracing::info!("SMS channel off: [sms] auth_token is unset");
    } else {
        services.push(Service::SmsServer);
    }
    let result = run_services(&settings, &topics, &services, shutdown).await;
    if let Some(broker) = broker {
        broker.stop().await?;
    }
    result
}

pub async fn run_one(service: Service, settings: Settings, topics: Topics) -> anyhow::Result<()> {
    run_services(&settings, &topics, &[service], shutdown_on_signal()).await
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = terminate => {},
        }
        tracing::info!("shutdown requested; finishing in-flight work");
        cancel.cancel();
    });
    token
}

/// The topics `services` read or write, as infra/kafka/acls.toml declares them.
fn used_topics(services: &[Service]) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let acls = runtime::acls::Acls::built_in()?;
    let mut used = std::collections::BTreeSet::new();
    for service in services {
        let service = acls.service(&service.name())?;
        used.extend(service.read.iter().chain(&service.write).cloned());
    }
    Ok(used)
}

async fn run_services(
    settings: &Settings,
    topics: &Topics,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(client = %runtime::kafka::client_library(), bootstrap = %settings.kafka.bootstrap_servers, "connecting to Kafka");
    let kafka = settings.kafka.clone();
    tokio::task::spawn_blocking(move || runtime::kafka::check_connection(&kafka, Duration::from_secs(15))).await??;
    let admin = runtime::kafka::admin(&settings.kafka)?;
    topics
        .only(used_topics(services)?.iter().map(String::as_str))
        .ensure(&admin, &settings.kafka)
        .await
        .with_context(|| format!("preparing topics on {}", settings.kafka.bootstrap_servers))?;

    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    // Every service registers its readiness here: `/health/ready` is all of them.
    let health = runtime::health::Health::new();
    // Where the in-memory states of this process keep their snapshots.
    let snapshots = runtime::snapshots::SnapshotStore::new(settings.data_dir.join("snapshots"));
    let mut router = health.routes();
    // The e-mail service and the web API's contact form share one e-mail intake in a process.
    let mail_intake = if services.iter().any(|s| matches!(s, Service::Email | Service::WebApi)) {
        Some(std::sync::Arc::new(email::intake(settings, topics)?))
    } else {
        None
    };
    // Router, desk, statistics and the e-mail sender share one floor projection in a process.
    let floor = if services.iter().any(|s| matches!(s, Service::Router | Service::Desk | Service::Stats | Service::Email | Service::ChatServer | Service::SmsServer)) {
        let threshold_ms = i64::try_from(settings.stats.service_level_threshold_s).unwrap_or(20) * 1000;
        let floor = floor::SharedFloor::new(threshold_ms, settings.live.keep_stopped_ms());
        let library = if services.iter().any(|s| matches!(s, Service::Desk | Service::Email | Service::SmsServer)) {
            floor::projector::Library::Follow
        } else {
            floor::projector::Library::Skip
        };
        let (kafka, topics, token, f) = (settings.kafka.clone(), topics.clone(), shutdown.clone(), floor.clone());
        let store = snapshots.clone();
        tasks.spawn(async move { ("floor", floor::projector::run(&kafka, &topics, f, library, Some(store), token).await) });
        let f = floor.clone();
        health.register("floor", move || Status::when(f.caught_up(), "replaying agent.events and interaction.events"));
        Some(floor)
    } else {
        None
    };
    // The chat server and the SMS server's session mode share one follower of chat.events.
    let chat_sessions = if services.iter().any(|s| matches!(s, Service::ChatServer))
        || (services.iter().any(|s| matches!(s, Service::SmsServer)) && settings.sms.session_mode)
    {
        let sessions = chat_sessions::SharedSessions::new();
        let (kafka, topics, token, s, store) = (settings.kafka.clone(), topics.clone(), shutdown.clone(), sessions.clone(), snapshots.clone());
        tasks.spawn(async move { ("chat sessions", chat_sessions::projector::run(&kafka, &topics, s, Some(store), token).await) });
        Some(sessions)
    } else {
        None
    };
    if services.iter().any(|s| matches!(s, Service::Desk | Service::WebApi)) {
        router = router.merge(web_ui::asset_routes());
    }
    for service in services {
        let (kafka, topics, token) = (settings.kafka.clone(), topics.clone(), shutdown.clone());
        match service {
            Service::InteractionServer => {
                let own = settings.interaction_server.clone();
                let retention = interaction_server::retention(&settings.live, &topics);
                let progress = health.progress("interaction-server", "starting");
                let store = snapshots.clone();
                tasks.spawn(async move {
                    (
                        "interaction-server",
                        interaction_server::run(&kafka, &topics, &own, retention, Some(store), progress, token).await,
                    )
                });
            }
            Service::Queues => match &floor {
                // One fold of interaction.events per process: the queues read the floor's board.
                Some(floor) => {
                    router = router.merge(queues::http::routes(floor.clone()));
                    let f = floor.clone();
                    health.register("queues", move || {
                        Status::when(f.caught_up(), "replaying interaction.events (the floor's board)").with("events_applied", f.read().board().events_applied())
                    });
                }
                None => {
                    let projection = queues::projector::Projection::new(settings.live.keep_stopped_ms());
                    let store = snapshots.clone();
                    router = router.merge(queues::http::routes(projection.clone()));
                    let p = projection.clone();
                    health.register("queues", move || {
                        Status::when(p.caught_up(), "replaying interaction.events").with("events_applied", p.board().events_applied())
                    });
                    tasks.spawn(async move { ("queues", queues::projector::run(&kafka, &topics, projection, Some(store), token).await) });
                }
            },
            Service::WebApi => {
                let client =
                    runtime::commands::CommandClient::new(&kafka, &topics, "web-api")?;
                // The contact form is e-mail: it goes through the e-mail intake.
                let public = web_api::routes(client, &settings.callback).merge(email::web_form::routes(mail_intake.clone().context("e-mail intake")?));
                router = router.merge(runtime::http::rate_limited(public, &settings.web_api).map_err(anyhow::Error::msg)?);
                router = router.merge(web_ui::customer_routes());
                // It only writes: a submission accepted is on interaction.commands.
                health.register("web-api", Status::ready);
            }
            Service::Router => {
                let floor = floor.clone().context("floor")?;
                let loaded = router::load_workflow(settings.router.workflow.as_deref())?;
                let service = router::Router::new(&kafka, &topics, &settings.router, loaded, floor);
                router = router.merge(service.routes());
                let status = service.status.clone();
                health.register("router", move || {
                    Status::when(status.is_ready(), "rebuilding the floor and waiting for earlier commands to be reflected")
                });
                tasks.spawn(async move { ("router", service.run(token).await) });
            }
            Service::Desk => {
                let floor = floor.clone().context("floor")?;
                let f = floor.clone();
                health.register("desk", move || Status::when(f.caught_up(), "replaying the floor"));
                let desk = desk::Desk::new(settings, &topics, floor)?;
                router = router.merge(desk.routes()).merge(web_ui::staff_routes());
            }
            Service::Stats => {
                let floor = floor.clone().context("floor")?;
                let f = floor.clone();
                health.register("stats", move || Status::when(f.caught_up(), "replaying the floor"));
                router = router.merge(floor::http::routes(floor));
            }
            Service::Email => {
                let floor = floor.clone().context("floor")?;
                let settings = settings.clone();
                let intake = mail_intake.clone().context("e-mail intake")?;
                let f = floor.clone();
                health.register("email", move || Status::when(f.caught_up(), "replaying the floor (the sender's view of who owns a reply)"));
                tasks.spawn(async move { ("email", email::run(&settings, &topics, intake, floor, token).await) });
            }
            Service::ChatServer => {
                let sessions = chat_sessions.clone().context("chat sessions")?;
                let floor = floor.clone().context("floor")?;
                let keys = desk::session_keys(settings)?;
                let ucs = ucs_client::UcsClient::new(&settings.chat.ucs_url.clone().unwrap_or_else(|| settings.http.own_url()));
                let (s, f) = (sessions.clone(), floor.clone());
                health.register("chat-server", move || {
                    Status::when(s.caught_up() && f.caught_up(), if s.caught_up() { "replaying the floor" } else { "replaying chat.events" })
                });
                let server = chat_server::ChatServer::new(&kafka, &topics, &settings.chat, sessions.clone(), floor, keys, ucs)?;
                router = router.merge(server.routes(&settings.web_api)?);
                let post_token = token.clone();
                tasks.spawn(async move { ("chat upkeep", chat_server::upkeep::run(server, post_token).await) });
            }
            Service::SmsServer => {
                let floor = floor.clone().context("floor")?;
                let f = floor.clone();
                // In session mode the SMS server also answers from the chat sessions.
                let sessions = if settings.sms.session_mode { chat_sessions.clone() } else { None };
                health.register("sms-server", move || {
                    let sessions_ready = sessions.as_ref().is_none_or(|s| s.caught_up());
                    Status::when(f.caught_up() && sessions_ready, if sessions_ready { "replaying the floor" } else { "replaying chat.events" })
                });
                let sms = &settings.sms;
                anyhow::ensure!(!sms.auth_token.is_empty(), "[sms] auth_token is unset: webhooks could not be verified");
                anyhow::ensure!(sms.gateway == "twilio", "[sms] gateway {:?} is not supported (twilio)", sms.gateway);
                let gateway = std::sync::Arc::new(sms_server::twilio::Twilio::new(&sms.api_base, &sms.account_sid, &sms.auth_token, &sms.from_number));
                let dead_letters = runtime::dead_letter::DeadLetters::new(runtime::kafka::producer(&kafka)?, topics.name(runtime::topics::DEAD_LETTER), "sms-server");
                let public_url = sms.public_url.clone().unwrap_or_else(|| settings.http.own_url());
                let commands = runtime::commands::CommandClient::new(&kafka, &topics, "sms-server")?;
                let ucs = ucs_client::UcsClient::new(&sms.ucs_url.clone().unwrap_or_else(|| settings.http.own_url()));
                let session = if sms.session_mode {
                    let sessions = chat_sessions.clone().context("chat sessions")?;
                    let publisher = chat_sessions::Publisher::new(&kafka, &topics)?;
                    let relay = sms_server::session::Relay {
                        sessions: sessions.clone(),
                        floor: floor.clone(),
                        commands: runtime::commands::CommandClient::new(&kafka, &topics, "sms-relay")?,
                        publisher: publisher.clone(),
                        send_queue: sms.send_queue.clone(),
                        session_queue: sms.session_queue.clone(),
                    };
                    let relay_token = token.clone();
                    tasks.spawn(async move { ("sms relay", sms_server::session::relay(relay, relay_token).await) });
                    Some(sms_server::SessionMode { sessions, publisher })
                } else {
                    None
                };
                let server = sms_server::SmsServer::new(gateway, commands, dead_letters, ucs, sms, public_url, session);
                router = router.merge(server.routes());
                let sender = server.sender(floor, runtime::commands::CommandClient::new(&kafka, &topics, sms_server::HOLDER)?);
                tasks.spawn(async move { ("sms sender", std::sync::Arc::new(sender).run(token).await) });
            }
            Service::Ucs => {
                let (routes, projector) = ucs::service(settings, &topics).await?;
                let status = projector.status.clone();
                health.register("ucs", move || ucs::readiness(&status));
                router = router.merge(routes);
                tasks.spawn(async move {
                    (
                        "ucs",
                        projector
                            .run(ucs::Until::Shutdown, token)
                            .await
                            .map_err(anyhow::Error::from),
                    )
                });
            }
        }
    }
    let (addr, http) = runtime::http::serve(router, settings.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("listening on {}", settings.http.listen))?;
    tasks.spawn(async move {
        (
            "http",
            http.await.map_err(anyhow::Error::from).and_then(|r| Ok(r?)),
        )
    });
    tracing::info!(http = %format!("http://{addr}"), kafka = %settings.kafka.bootstrap_servers, "switchboard is up");
    eprintln!(
        "switchboard is up: http://{addr}  (Kafka at {}; Ctrl-C stops)",
        settings.kafka.bootstrap_servers
    );

    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        // Shutdown first: a service that ends because shutdown was asked for has not failed
        // (a quick one, like the chat post-processing, can end in the same instant).
        biased;
        () = shutdown.cancelled() => {}
        Some(done) = tasks.join_next() => {
            let (name, result) = done.context("a service task panicked")?;
            let error = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped unexpectedly"));
            tracing::error!(service = name, error = %format!("{error:#}"), "service stopped; shutting down");
            failure = Some(error.context(format!("{name} failed")));
            shutdown.cancel();
        }
    }
    let finished = tokio::time::timeout(GRACE, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((name, Err(e))) => tracing::error!(service = name, error = %format!("{e:#}"), "service failed while stopping"),
                Ok((name, Ok(()))) => tracing::info!(service = name, "stopped"),
                Err(e) => tracing::error!(error = %e, "service task panicked"),
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "services did not stop within {} s; leaving anyway",
            GRACE.as_secs()
        );
    }
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::ValueEnum;

    #[test]
    fn every_service_has_its_acls_and_no_other_is_declared() {
        let acls = runtime::acls::Acls::built_in().unwrap();
        let services: Vec<String> = crate::cli::Service::value_variants().iter().map(|s| s.name()).collect();
        let declared: Vec<String> = acls.services().map(str::to_owned).collect();
        let mut sorted = services.clone();
        sorted.sort();
        assert_eq!(sorted, declared);
        assert!(super::used_topics(crate::cli::Service::value_variants()).unwrap().len() >= 6);
    }
}
