//! The Universal Contact Server: the SQL read model of contacts, interaction history,
//! contents, chat transcripts, standard responses and categories, on SQLite (embedded
//! default) or PostgreSQL.
//!
//! - [`projector`] follows `interaction.events`, `agent.events`, `chat.events` and
//!   `ucs.events` into SQL; [`batch`] is one transaction of it, offsets included; [`model`]
//!   is the pure fold of events into rows.
//! - [`http`] answers queries and turns writes (contacts, notes, contents, categories,
//!   standard responses) into `ucs.events` via [`publisher`]; nothing writes the tables but
//!   the projector, so `switchboard ucs rebuild` recreates all of them from the log.
//! - [`blobs`] is the claim-check store (content-addressed, outside SQL); [`contacts`] the
//!   find-or-create rules.

pub mod settings;
pub use settings::{UcsSettings};

pub mod batch;
pub mod blobs;
pub mod contacts;
pub mod db;
pub mod http;
pub mod model;
pub mod projector;
pub mod publisher;
pub mod queries;

use std::path::Path;
use std::time::Instant;

use runtime::CancellationToken;
use runtime::config::Settings;
use runtime::topics::Topics;

pub use db::Db;
pub use projector::{Projector, ProjectorStatus, Until};

/// UCS's readiness (`/health/ready/ucs`): ready once the projector has caught up with the
/// topics as they were at start.
pub fn readiness(status: &ProjectorStatus) -> runtime::health::Status {
    runtime::health::Status::when(status.caught_up(), "projecting the topics into the database")
        .with("applied", status.applied())
        .with("skipped", status.skipped())
        .with("duplicates", status.duplicates())
}

/// The UCS service: its API and the projector.
pub async fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let (routes, projector) = parts(&ctx.settings, &ctx.section(), &ctx.topics).await?;
    let status = projector.status.clone();
    let token = ctx.shutdown.clone();
    Ok(runtime::service::Service::new("ucs")
        .routes(routes)
        .ready_when(move || readiness(&status))
        .task("ucs", async move { projector.run(Until::Shutdown, token).await.map_err(anyhow::Error::from) }))
}

/// UCS's router and the projector task to run until `shutdown`.
pub async fn parts(
    settings: &Settings,
    own: &UcsSettings,
    topics: &Topics,
) -> anyhow::Result<(runtime::routes::Table, Projector)> {
    let url = own.database_url(&settings.data_dir);
    if db::Backend::of(&url)? == db::Backend::Sqlite {
        std::fs::create_dir_all(&settings.data_dir)?;
    }
    let db = Db::open(&url, own.max_connections).await?;
    let status = ProjectorStatus::new();
    let state = http::AppState {
        db: db.clone(),
        blobs: blobs::BlobStore::new(
            own.blob_dir(&settings.data_dir),
            own.max_blob_bytes,
        ),
        publisher: publisher::Publisher::new(&settings.kafka, topics, "ucs")?,
        status: status.clone(),
    };
    let projector = Projector {
        kafka: settings.kafka.clone(),
        topics: topics.clone(),
        settings: own.clone(),
        db,
        status,
    };
    Ok((http::routes(state), projector))
}

/// What a rebuild did.
#[derive(Debug)]
pub struct RebuildReport {
    pub database: String,
    pub records: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub seconds: f64,
}

/// Replays every topic from offset 0 into `target_url`, which must be a fresh (empty)
/// database, and returns once it has caught up with the log as it was at start.
pub async fn rebuild(
    settings: &Settings,
    own: &UcsSettings,
    topics: &Topics,
    target_url: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<RebuildReport> {
    if let Some(path) = target_url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            !Path::new(path).exists(),
            "{path} exists; a rebuild writes a fresh database (remove it or choose another --into)"
        );
        if let Some(parent) = Path::new(path).parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let db = Db::open(target_url, own.max_connections).await?;
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projector_offsets")
        .fetch_one(&db.pool)
        .await?;
    anyhow::ensure!(
        used == 0,
        "{} already holds a projection; a rebuild writes a fresh database",
        db.display_url()
    );
    let status = ProjectorStatus::new();
    let projector = Projector {
        kafka: settings.kafka.clone(),
        topics: topics.clone(),
        settings: own.clone(),
        db: db.clone(),
        status: status.clone(),
    };
    let started = Instant::now();
    projector.run(Until::CaughtUp, shutdown).await?;
    db.close().await;
    Ok(RebuildReport {
        database: db.display_url(),
        records: status.applied() + status.skipped() + status.duplicates(),
        skipped: status.skipped(),
        duplicates: status.duplicates(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
