//! The interaction workflow router (the seed's Universal Routing Server and interaction
//! workflow): stateless. At start it rebuilds the floor (interactions and agents) from
//! `interaction.events` and `agent.events`, waits until every command already on
//! `interaction.commands` is reflected there (so offers a previous instance sent are counted),
//! then repeatedly asks [`strategy::plan`] what to do and sends those commands.
//!
//! - [`workflow`]: the configuration file and its validation;
//! - [`classifier`]: naive Bayes over labelled examples (the Content Analyzer role);
//! - [`strategy`]: the pure decision;
//! - this module: the loop, the commands in flight, health and status.

pub mod settings;
pub use settings::{RouterSettings};

pub mod classifier;
pub mod strategy;
pub use interaction_workflow as workflow;
mod openapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::Json;
use floor::SharedFloor;
use runtime::commands::CommandClient;
use runtime::config::KafkaSettings;
use runtime::kafka;
use runtime::topics::{self, Topics};
use runtime::CancellationToken;
use serde_json::json;

use crate::classifier::{Evaluation, NaiveBayes};
use crate::strategy::{Pending, Planned};
use crate::workflow::Workflow;

const BUILTIN_EXAMPLES: &str = include_str!("../../../infra/workflow/classifier-examples.jsonl");

/// The workflow and its trained classifier, with the classifier's held-out accuracy.
pub struct LoadedWorkflow {
    pub workflow: Workflow,
    pub model: Option<NaiveBayes>,
    pub evaluation: Option<Evaluation>,
    pub source: String,
}

/// Loads and validates the workflow (`None`: the built-in one) and trains its classifier.
pub fn load_workflow(path: Option<&std::path::Path>) -> anyhow::Result<LoadedWorkflow> {
    let (workflow, examples, source) = match path {
        Some(path) => {
            let workflow = Workflow::load(path)?;
            let examples = match &workflow.classifier {
                Some(c) => Some(classifier::load_examples(&c.examples)?),
                None => None,
            };
            (workflow, examples, path.display().to_string())
        }
        None => {
            let workflow = Workflow::from_toml(workflow::BUILTIN)
                .map_err(|e| anyhow::anyhow!("the built-in workflow is invalid: {e}"))?;
            let examples = classifier::parse_examples(BUILTIN_EXAMPLES, "built-in classifier-examples.jsonl")?;
            (workflow, Some(examples), workflow::BUILTIN_SOURCE.to_owned())
        }
    };
    let evaluation = examples.as_deref().map(classifier::evaluate);
    let model = examples.as_deref().map(NaiveBayes::train);
    Ok(LoadedWorkflow { workflow, model, evaluation, source })
}

/// The router service: plans on the process's floor and sends commands.
pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<runtime::service::Service> {
    let floor = floor::service::shared(ctx)?;
    let own = ctx.section::<RouterSettings>();
    let loaded = load_workflow(own.workflow.as_deref())?;
    let router = Router::new(&ctx.settings.kafka, &ctx.topics, &own, loaded, floor);
    let status = router.status.clone();
    let token = ctx.shutdown.clone();
    Ok(runtime::service::Service::new("router")
        .routes(router.routes())
        .ready_when(move || {
            runtime::health::Status::when(status.is_ready(), "rebuilding the floor and waiting for earlier commands to be reflected")
        })
        .task("router", router.run(token)))
}

#[derive(Default)]
pub struct RouterStatus {
    ready: AtomicBool,
    commands_sent: AtomicU64,
    offers_sent: AtomicU64,
    send_failures: AtomicU64,
    pending: AtomicU64,
}

impl RouterStatus {
    /// Whether the floor is rebuilt and every command sent before the start is reflected.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

pub struct Router {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub settings: RouterSettings,
    pub loaded: Arc<LoadedWorkflow>,
    pub floor: Arc<SharedFloor>,
    pub status: Arc<RouterStatus>,
}

impl Router {
    pub fn new(
        kafka: &KafkaSettings,
        topics: &Topics,
        settings: &RouterSettings,
        loaded: LoadedWorkflow,
        floor: Arc<SharedFloor>,
    ) -> Self {
        Self {
            kafka: kafka.clone(),
            topics: topics.clone(),
            settings: settings.clone(),
            loaded: Arc::new(loaded),
            floor,
            status: Arc::new(RouterStatus::default()),
        }
    }

    /// HTTP: `GET /v1/router/status`, `GET /health/ready/router`.
    pub fn routes(&self) -> runtime::routes::Table {
        use runtime::routes::{Audience::Staff, Policy::Supervisor};
        use utoipa::OpenApi as _;
        runtime::routes::Routes::new()
            .get("/v1/router/openapi.json", Staff, runtime::routes::Policy::Open, || async { Json(openapi::RouterDoc::openapi()) })
            .get("/v1/router/status", Staff, Supervisor, status)
            .with_state((self.status.clone(), self.loaded.clone()))
    }

    /// Routes until `shutdown`. The floor must be followed by its projector meanwhile.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut producer_settings = self.kafka.clone();
        producer_settings
            .producer
            .entry("linger.ms".into())
            .or_insert_with(|| self.settings.linger_ms.to_string());
        let client = CommandClient::new(&producer_settings, &self.topics, "router")?;
        if let Some(e) = &self.loaded.evaluation {
            tracing::info!(
                workflow = %self.loaded.source,
                trained_on = e.trained_on,
                held_out = e.held_out,
                accuracy = e.accuracy,
                "classifier trained; accuracy on held-out examples"
            );
        }
        if !self.wait_until_reflected(&shutdown).await? {
            return Ok(());
        }
        self.status.ready.store(true, Ordering::Release);
        tracing::info!(queues = self.loaded.workflow.queues.len(), "router routing");

        let mut changed = self.floor.changed();
        let tick = Duration::from_millis(self.settings.tick_ms.max(10));
        let mut pending = Pending::default();
        let mut in_flight: Vec<(Planned, i32, i64)> = Vec::new();
        loop {
            // Outcomes now on the floor release their interactions and agents.
            in_flight.retain(|(planned, partition, offset)| {
                let done = self.floor.read().reflected(*partition).is_some_and(|r| r >= *offset);
                if done {
                    pending.remove(planned);
                }
                !done
            });
            let planned = {
                let floor = self.floor.read();
                strategy::plan(&floor, &self.loaded.workflow, self.loaded.model.as_ref(), &pending, contract::now_millis())
            };
            if !planned.is_empty() {
                for p in &planned {
                    pending.add(p);
                }
                let sends = planned.iter().map(|p| {
                    let command = client.command(&p.interaction_id, p.payload.clone());
                    let client = &client;
                    async move { client.send(&command).await }
                });
                let results = futures::future::join_all(sends).await;
                for (p, result) in planned.into_iter().zip(results) {
                    match result {
                        Ok((partition, offset)) => {
                            tracing::debug!(interaction = %p.interaction_id, command = p.payload.kind(), why = %p.why, "sent");
                            self.status.commands_sent.fetch_add(1, Ordering::Relaxed);
                            if p.offer.is_some() {
                                self.status.offers_sent.fetch_add(1, Ordering::Relaxed);
                            }
                            in_flight.push((p, partition, offset));
                        }
                        Err(e) => {
                            // Not on the log: nothing happened, the next plan tries again.
                            tracing::warn!(interaction = %p.interaction_id, error = %e, "command not sent; will retry");
                            self.status.send_failures.fetch_add(1, Ordering::Relaxed);
                            pending.remove(&p);
                        }
                    }
                }
                self.status.pending.store(pending.len() as u64, Ordering::Relaxed);
                continue;
            }
            self.status.pending.store(pending.len() as u64, Ordering::Relaxed);
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = changed.changed() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Waits for the floor's replay, then until the outcome of every command that was on
    /// `interaction.commands` at start is on the floor. False on shutdown.
    async fn wait_until_reflected(&self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let topic = self.topics.name(topics::INTERACTION_COMMANDS);
        let ends: Vec<(i32, i64)> = kafka::end_offsets(&self.kafka, &topic)
            .context("reading command offsets")?
            .into_iter()
            .filter(|(_, high)| *high > 0)
            .map(|(p, high)| (p, high - 1))
            .collect();
        let started = Instant::now();
        let mut last_report = Instant::now();
        loop {
            // The replay must be done even when no command was ever sent: agents' states come
            // from it.
            let caught_up = self.floor.caught_up();
            let outstanding: Vec<(i32, i64)> = if caught_up {
                let floor = self.floor.read();
                ends.iter().copied().filter(|(p, last)| floor.reflected(*p).is_none_or(|r| r < *last)).collect()
            } else {
                ends.clone()
            };
            if caught_up && outstanding.is_empty() {
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "router: floor rebuilt and every earlier command reflected");
                return Ok(true);
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = Instant::now();
                tracing::info!(caught_up = self.floor.caught_up(), ?outstanding, "router waiting for the floor (partition, last command offset)");
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

type StatusState = (Arc<RouterStatus>, Arc<LoadedWorkflow>);

async fn status(State((s, loaded)): State<StatusState>) -> Json<serde_json::Value> {
    Json(json!({
        "ready": s.ready.load(Ordering::Acquire),
        "commands_sent": s.commands_sent.load(Ordering::Relaxed),
        "offers_sent": s.offers_sent.load(Ordering::Relaxed),
        "send_failures": s.send_failures.load(Ordering::Relaxed),
        "pending": s.pending.load(Ordering::Relaxed),
        "workflow": loaded.source,
        "queues": loaded.workflow.queues.iter().map(|q| json!({
            "name": q.name,
            "steps": q.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "classifier": loaded.evaluation.as_ref().map(|e| json!({
            "trained_on": e.trained_on, "held_out": e.held_out, "correct": e.correct, "accuracy": e.accuracy,
        })),
    }))
}

