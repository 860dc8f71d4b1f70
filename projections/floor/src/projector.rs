//! Keeps a [`Floor`] current from `interaction.events` and `agent.events` (and `ucs.events`
//! for the standard-response library, where a desk needs it): replays them from offset 0 at
//! start (the floor lives in memory, so the replay is the rebuild), then follows.
//! Readers wait on [`SharedFloor::changed`] or subscribe to what each event touched.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

use anyhow::Context;
use contract::AvroMessage;
use contract::agent::AgentEvent;
use contract::event::InteractionEvent;
use contract::ucs::UcsEvent;
use plumbing::config::KafkaSettings;
use plumbing::kafka;
use plumbing::topics::{self, Topics};
use plumbing::{CancellationToken, Message};
use tokio::sync::{broadcast, watch};

use crate::floor::{Floor, Touched};

pub struct SharedFloor {
    floor: RwLock<Floor>,
    caught_up: AtomicBool,
    undecodable: AtomicU64,
    version: watch::Sender<u64>,
    touched: broadcast::Sender<Arc<Touched>>,
}

impl SharedFloor {
    pub fn new(service_level_threshold_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            floor: RwLock::new(Floor::new(service_level_threshold_ms)),
            caught_up: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            version: watch::channel(0).0,
            touched: broadcast::channel(4096).0,
        })
    }

    /// A read view; hold it briefly (the projector waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, Floor> {
        self.floor.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True once the replay reached the end of the followed topics as they were at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Ticks after every applied interaction or agent event (the value counts them); library
    /// changes do not tick: nothing waits on them.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// What each event touched, for push to the agents involved. Slow subscribers lag and
    /// are told so by the channel; they re-read the floor.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Touched>> {
        self.touched.subscribe()
    }

    pub fn apply_interaction_event(&self, event: &InteractionEvent) {
        let touched = self
            .floor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply_interaction_event(event);
        self.announce(touched);
    }

    pub fn apply_ucs_event(&self, event: &UcsEvent) {
        self.floor.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply_ucs_event(event);
    }

    pub fn apply_agent_event(&self, event: &AgentEvent) {
        let touched = self
            .floor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply_agent_event(event);
        self.announce(touched);
    }

    fn announce(&self, touched: Touched) {
        self.version.send_modify(|v| *v += 1);
        if self.caught_up() {
            let _ = self.touched.send(Arc::new(touched));
        }
    }
}

/// Whether the floor also follows `ucs.events` into its standard-response library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// For the desk, which offers standard responses.
    Follow,
    /// Router and statistics alone: no need to replay every contact change at start.
    Skip,
}

/// Follows the topics into `floor` until `shutdown`.
pub async fn run(
    kafka_settings: &KafkaSettings,
    topics: &Topics,
    floor: Arc<SharedFloor>,
    library: Library,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reader = kafka::reader(kafka_settings)?;
    let interaction_topic = topics.name(topics::INTERACTION_EVENTS);
    let agent_topic = topics.name(topics::AGENT_EVENTS);
    let ucs_topic = topics.name(topics::UCS_EVENTS);
    let followed = match library {
        Library::Follow => vec![interaction_topic.as_str(), agent_topic.as_str(), ucs_topic.as_str()],
        Library::Skip => vec![interaction_topic.as_str(), agent_topic.as_str()],
    };
    let mut replay = kafka::Replay::from_beginning(&reader, &followed)?;
    if replay.caught_up() {
        floor.caught_up.store(true, Ordering::Release);
        floor.version.send_modify(|_| {});
    }
    let started = Instant::now();
    let mut replayed: u64 = 0;
    tracing::info!(records = replay.backlog(), ?library, "floor replaying from offset 0");
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = reader.recv() => message,
        };
        let message = match message {
            Err(e) if kafka::is_partition_end(&e) => {
                if !floor.caught_up() && replay.reached_ends(&reader) {
                    floor.caught_up.store(true, Ordering::Release);
                    floor.version.send_modify(|_| {});
                    tracing::info!(records = replayed, seconds = started.elapsed().as_secs_f64(), "floor projection caught up");
                }
                continue;
            }
            other => other.context("reading the floor's topics")?,
        };
        let bytes = message.payload().unwrap_or_default();
        let decoded = if message.topic() == interaction_topic {
            InteractionEvent::decode(bytes).map(|e| floor.apply_interaction_event(&e))
        } else if message.topic() == agent_topic {
            AgentEvent::decode(bytes).map(|e| floor.apply_agent_event(&e))
        } else {
            UcsEvent::decode(bytes).map(|e| floor.apply_ucs_event(&e))
        };
        if let Err(e) = decoded {
            floor.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %e, "undecodable record skipped by the floor projection");
        }
        if !floor.caught_up() {
            replayed += 1;
            if replay.read(message.topic(), message.partition(), message.offset()) {
                floor.caught_up.store(true, Ordering::Release);
                floor.version.send_modify(|_| {});
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(records = replayed, seconds = secs, "floor projection caught up");
            }
        }
    }
}
