//! The Interaction Server: the only writer of `interaction.events`.
//!
//! It consumes `interaction.commands` in a consumer group, checks each command against the
//! interaction's state ([`decide`]), and writes the resulting events to the *same partition
//! number* of `interaction.events`, so one partition's commands and events stay together.
//! Its state per partition ([`partition::PartitionState`]) is rebuilt from the events log when
//! the partition is assigned; there is no other store.

pub mod settings;
pub use settings::{InteractionServerSettings, Assignment};

pub use interactions::{decide, partition};
mod server;

pub use server::run;

/// What a partition keeps: stopped interactions for `[live] keep_stopped_s`, command ids for
/// the commands topic's `retention.ms` (Kafka cannot redeliver an older command).
pub fn retention(live: &runtime::config::LiveSettings, topics: &runtime::topics::Topics) -> partition::Retention {
    partition::Retention {
        keep_stopped_ms: Some(live.keep_stopped_ms()),
        remember_commands_ms: topics.retention_ms(runtime::topics::INTERACTION_COMMANDS),
    }
}

/// The Interaction Server service: one task, ready once it owns partitions and rebuilt them.
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let own = ctx.section::<InteractionServerSettings>();
    let retention = retention(&ctx.settings.live, &ctx.topics);
    let progress = runtime::health::Progress::detached();
    let ready = progress.clone();
    let (kafka, topics, store, token) = (ctx.settings.kafka.clone(), ctx.topics.clone(), ctx.snapshots.clone(), ctx.shutdown.clone());
    Ok(runtime::service::Service::new("interaction-server")
        .ready_when(move || ready.status())
        .task("interaction-server", async move { run(&kafka, &topics, &own, retention, Some(store), progress, token).await }))
}
