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
    let own_key = own_service_key(&mut settings);
    let result = run_services(&settings, &topics, &services, Some(own_key), shutdown).await;
    if let Some(broker) = broker {
        broker.stop().await?;
    }
    result
}

pub async fn run_one(service: Service, settings: Settings, topics: Topics) -> anyhow::Result<()> {
    if settings.http.service_key.is_none() && matches!(service, Service::Email | Service::ChatServer | Service::SmsServer) {
        tracing::warn!(service = %service.name(), "no [http] service_key: this service's calls to UCS will be refused (switchboard service-key add)");
    }
    run_services(&settings, &topics, &[service], None, shutdown_on_signal()).await
}

/// Under `up`, the services call UCS in the same process over HTTP like any other caller, with
/// the process's own key, which the process accepts: `[http] service_key`, or with none
/// configured a key made now (written nowhere).
fn own_service_key(settings: &mut Settings) -> String {
    let key = settings.http.service_key.clone().unwrap_or_else(staff_auth::service_keys::generate);
    settings.shared.http.service_key = Some(key.clone());
    key
}

/// The gatekeeper of this process's routes: desk sessions and the service keys it accepts.
/// Desk sessions are checked against the process's staff directory (the desk's, when the desk
/// runs here).
fn gatekeeper(settings: &Settings, own_key: Option<&str>, ctx: &runtime::service::Context) -> anyhow::Result<runtime::routes::Gate> {
    let secret_file = settings.desk_secret_file();
    let sessions = staff_auth::auth::SessionKeys::load_or_create(&secret_file).with_context(|| format!("desk session secret {}", secret_file.display()))?;
    let directory = staff_auth::shared::SharedDirectory::in_process(ctx, false).context("following staff.events")?;
    let gatekeeper = crate::gate::Gatekeeper::with_keys_file(sessions, settings.service_keys_file(), own_key.map(str::to_owned))?.with_directory(directory);
    Ok(runtime::routes::Gate(std::sync::Arc::new(gatekeeper)))
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

/// `table` and `GET /v1/routes`, which lists it (itself included): every route this process
/// serves with its audience and policy, for operators and for the authorization matrix test.
fn with_route_listing(table: runtime::routes::Table) -> runtime::routes::Table {
    use runtime::routes::{Audience::Staff, Policy::Supervisor, RouteSpec};
    let mut specs: Vec<RouteSpec> = table.specs().to_vec();
    specs.push(RouteSpec { method: axum::http::Method::GET, path: "/v1/routes", audience: Staff, policy: Supervisor });
    let listing = std::sync::Arc::new(specs);
    table.merge(runtime::routes::Routes::new().get("/v1/routes", Staff, Supervisor, move || async move { axum::Json(serde_json::json!({ "routes": *listing })) }).with_state(()))
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
    own_key: Option<String>,
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
    let mut table = ctx.health.routes().merge(web_ui::asset_routes());
    let baseline_public = table.specs().iter().filter(|s| s.audience == runtime::routes::Audience::Public).count();
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let mut all_tasks = Vec::new();
    for service in ordered {
        let made = make(service, &ctx).await.with_context(|| format!("starting {}", service.name()))?;
        let (name, routes, service_tasks, readiness) = made.into_parts();
        ctx.health.register(name, readiness);
        table = table.merge(routes);
        all_tasks.extend(service_tasks);
    }
    let gate = gatekeeper(settings, own_key.as_deref(), &ctx)?;
    all_tasks.extend(ctx.take_background());
    for (name, task) in all_tasks {
        tasks.spawn(async move { (name, task.await) });
    }
    table = with_route_listing(table);
    // A process with customer-facing services opens the public listener too.
    let serves_public = table.specs().iter().filter(|s| s.audience == runtime::routes::Audience::Public).count() > baseline_public;
    let (staff, public) = table.into_routers();
    let staff = runtime::routes::host_checked(runtime::http::json_errors(staff), settings.http.allowed_hosts()).layer(axum::Extension(gate.clone()));
    let (addr, http) = runtime::http::serve(staff, settings.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("listening on {} ([http] listen)", settings.http.listen))?;
    tasks.spawn(async move { ("http", http.await.map_err(anyhow::Error::from).and_then(|r| Ok(r?))) });
    let mut public_addr = None;
    if let (true, Some(listen)) = (serves_public, settings.http.public_listen) {
        let (addr, http) = runtime::http::serve(runtime::http::json_errors(public).layer(axum::Extension(gate)), listen, shutdown.clone())
            .await
            .with_context(|| format!("listening on {listen} ([http] public_listen)"))?;
        tasks.spawn(async move { ("public http", http.await.map_err(anyhow::Error::from).and_then(|r| Ok(r?))) });
        public_addr = Some(addr);
    }
    let public_text = public_addr.map_or_else(String::new, |a| format!(", public http://{a}"));
    tracing::info!(http = %format!("http://{addr}"), public = ?public_addr.map(|a| format!("http://{a}")), kafka = %settings.kafka.bootstrap_servers, "switchboard is up");
    eprintln!(
        "switchboard is up: staff http://{addr}{public_text}  (Kafka at {}; Ctrl-C stops)",
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
