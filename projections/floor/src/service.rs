//! The floor as a component shared by the services of a process, and the two read-model
//! services served from it: the queue API and the statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime::health::Status;
use runtime::service::{Context, Service};

use crate::projector::{self, Library, SharedFloor};

/// Whether some service of the process needs the library (`ucs.events`): read when the
/// follower starts, after every service was made.
#[derive(Clone)]
struct FollowLibrary(Arc<AtomicBool>);

/// The process's floor, followed by one background task (made by the first service that asks).
pub fn shared(ctx: &Context) -> anyhow::Result<Arc<SharedFloor>> {
    ctx.shared(|ctx| {
        let settings = &ctx.settings;
        let threshold_ms = i64::try_from(ctx.section::<crate::StatsSettings>().service_level_threshold_s).unwrap_or(20) * 1000;
        let floor = SharedFloor::new(threshold_ms, settings.live.keep_stopped_ms());
        let library = follow_library(ctx)?;
        let (kafka, topics, token, f, store) =
            (settings.kafka.clone(), ctx.topics.clone(), ctx.shutdown.clone(), floor.clone(), ctx.snapshots.clone());
        ctx.background("floor", async move {
            let library = if library.0.load(Ordering::Acquire) { Library::Follow } else { Library::Skip };
            projector::run(&kafka, &topics, f, library, Some(store), token).await
        });
        let f = floor.clone();
        ctx.health.register("floor", move || Status::when(f.caught_up(), "replaying agent.events and interaction.events"));
        Ok(floor)
    })
}

/// The process's floor, following `ucs.events` too (standard responses and categories).
pub fn shared_with_library(ctx: &Context) -> anyhow::Result<Arc<SharedFloor>> {
    follow_library(ctx)?.0.store(true, Ordering::Release);
    shared(ctx)
}

fn follow_library(ctx: &Context) -> anyhow::Result<FollowLibrary> {
    ctx.shared(|_| Ok(FollowLibrary(Arc::new(AtomicBool::new(false)))))
}

/// The queue API (`/queues`, `/interactions/{id}`). Where the process already has a floor it
/// serves the floor's board (one fold of `interaction.events` per process); alone it follows
/// `interaction.events` itself. So it must be made after the services that use the floor.
pub fn queues(ctx: &Context) -> anyhow::Result<Service> {
    let service = Service::new("queues");
    if let Some(floor) = ctx.existing::<Arc<SharedFloor>>() {
        let f = floor.clone();
        return Ok(service.routes(queues::http::routes(floor)).ready_when(move || {
            Status::when(f.caught_up(), "replaying interaction.events (the floor's board)").with("events_applied", f.read().board().events_applied())
        }));
    }
    let projection = queues::projector::Projection::new(ctx.settings.live.keep_stopped_ms());
    let (kafka, topics, token, p, store) =
        (ctx.settings.kafka.clone(), ctx.topics.clone(), ctx.shutdown.clone(), projection.clone(), ctx.snapshots.clone());
    let ready = projection.clone();
    Ok(service
        .routes(queues::http::routes(projection))
        .ready_when(move || Status::when(ready.caught_up(), "replaying interaction.events").with("events_applied", ready.board().events_applied()))
        .task("queues", async move { queues::projector::run(&kafka, &topics, p, Some(store), token).await }))
}

/// The statistics API (`/v1/stats/*`, `/v1/agents`), from the floor.
pub fn stats(ctx: &Context) -> anyhow::Result<Service> {
    let floor = shared(ctx)?;
    let f = floor.clone();
    Ok(Service::new("stats").routes(crate::http::routes(floor)).ready_when(move || Status::when(f.caught_up(), "replaying the floor")))
}
