//! Starting services, together (`up`) or one at a time (`run`), and stopping them cleanly.

use std::time::Duration;

use anyhow::Context as _;
use runtime::CancellationToken;
use crate::settings::Settings;
use runtime::service::Context;
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

/// The services, each made by its crate's one entry. What they share within the process
/// (the floor, chat sessions, the e-mail intake) each crate asks the context for.
async fn make(service: Service, ctx: &Context) -> anyhow::Result<runtime::service::Service> {
    Ok(match service {
        Service::InteractionServer => interaction_server::service(ctx)?,
        Service::Queues => floor::service::queues(ctx)?,
        // The contact form is e-mail (the e-mail intake), served with the web API to web sites.
        Service::WebApi => web_api::service(ctx, email::contact_form(ctx)?)?.routes(web_ui::customer_routes()),
        Service::Ucs => ucs::service(ctx).await?,
        Service::Router => router::service(ctx)?,
        Service::Desk => desk::service(ctx)?.routes(web_ui::staff_routes()),
        Service::Stats => floor::service::stats(ctx)?,
        Service::Email => email::service(ctx)?,
        Service::ChatServer => chat_server::service(ctx)?,
        Service::SmsServer => sms_server::service(ctx)?,
    })
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

    let ctx = settings.context(topics.clone(), shutdown.clone());
    // Services that share the floor come before the queues (see `floor::service::queues`).
    let mut ordered = services.to_vec();
    ordered.sort_by_key(|s| matches!(s, Service::Queues));
    let mut router = ctx.health.routes().merge(web_ui::asset_routes());
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let mut all_tasks = Vec::new();
    for service in ordered {
        let made = make(service, &ctx).await.with_context(|| format!("starting {}", service.name()))?;
        let (name, routes, service_tasks, readiness) = made.into_parts();
        ctx.health.register(name, readiness);
        router = router.merge(routes);
        all_tasks.extend(service_tasks);
    }
    all_tasks.extend(ctx.take_background());
    for (name, task) in all_tasks {
        tasks.spawn(async move { (name, task.await) });
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
