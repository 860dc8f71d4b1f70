//! The one way an in-memory projection is kept current: restore its latest snapshot (if any),
//! replay the topics from the snapshot's offsets (or from offset 0), say when it has caught up
//! with the log as it stood at start, then follow; snapshot every so many records and at a
//! clean stop. A projection supplies only its fold ([`Fold`]); no rdkafka type leaves here.
//!
//! Undecodable records are the fold's to count (it returns the reason); they are logged here
//! and skipped: a projection never stops on one record.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::kafka::{self, Replay, ReplayError};
use crate::snapshots::{Snapshot, SnapshotStore, position_key};

/// A fold of records into shared in-memory state (interior mutability: readers hold it too).
pub trait Fold: Send + Sync {
    type Snapshot: Serialize + DeserializeOwned + Send + 'static;

    /// Applies one record's value from `topic`; `Err` with the reason when it cannot be
    /// decoded (the fold counts those it wants to show).
    fn apply(&self, topic: &str, payload: &[u8]) -> Result<(), String>;

    /// The state as stored.
    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the state with a stored one, or says why it cannot (then the follower
    /// replays from offset 0 on the fresh state).
    fn restore(&self, snapshot: Self::Snapshot) -> Result<(), String>;

    /// Called once, when the replay has reached the log's end as it was at start.
    fn caught_up(&self);

    /// Everything of `topic`/`partition` below `next_offset` is applied (after each record,
    /// and for a restored snapshot's offsets): for a fold whose readers must see every record
    /// written before they asked (see [`LogEnds`]).
    fn read_to(&self, _topic: &str, _partition: i32, _next_offset: i64) {}
}

/// Where partitions end now, asked of the broker with a short limit: with
/// [`Fold::read_to`], a reader waits until its fold has applied everything written before
/// the moment it asked ("read your writes" across processes: a logout on one instance counts
/// on the next request to another).
pub struct LogEnds {
    reader: kafka::Reader,
}

impl LogEnds {
    pub fn new(settings: &KafkaSettings) -> Result<Self, kafka::KafkaSetupError> {
        Ok(Self { reader: kafka::reader(settings)? })
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: &str) -> Result<i32, crate::topics::TopicError> {
        crate::topics::partition_count(self.reader.client(), topic)
    }

    /// One past the last record of `topic`/`partition`, or why the broker did not say within
    /// `limit`. Blocking: call it off the async workers.
    pub fn end(&self, topic: &str, partition: i32, limit: std::time::Duration) -> Result<i64, String> {
        self.reader.fetch_watermarks(topic, partition, limit).map(|(_, high)| high).map_err(|e| e.to_string())
    }
}

/// What to follow and how to snapshot it.
pub struct Following {
    /// The projection's name in logs and its snapshot's file name (with the deployment's
    /// prefix in it when two deployments may share a data directory).
    pub name: String,
    pub topics: Vec<String>,
    /// The snapshot's format; bump it when [`Fold::Snapshot`] changes shape.
    pub format: u32,
    /// Records applied between two snapshots (0: only at a clean stop).
    pub snapshot_every: u64,
    pub snapshots: Option<SnapshotStore>,
}

/// Follows `following.topics` into `fold` until `shutdown` (then snapshots, if anything
/// changed since the last one).
pub async fn follow<F: Fold>(kafka_settings: &KafkaSettings, following: Following, fold: &F, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Following { name, topics, format, snapshot_every, snapshots } = following;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let reader = kafka::reader(kafka_settings)?;
    let mut positions: BTreeMap<String, i64> = BTreeMap::new();
    let mut from_snapshot = None;
    if let Some(snapshot) = snapshots.as_ref().and_then(|store| store.load::<F::Snapshot>(&name, format)) {
        match Replay::from_offsets(&reader, &topic_refs, &snapshot.offsets) {
            Ok(replay) => match fold.restore(snapshot.state) {
                Ok(()) => {
                    tracing::info!(projection = %name, records = replay.backlog(), "restored from its snapshot; reading the records after it");
                    for (key, offset) in &snapshot.offsets {
                        if let Some((topic, partition)) = key.rsplit_once('/').and_then(|(t, p)| Some((t, p.parse().ok()?))) {
                            fold.read_to(topic, partition, *offset);
                        }
                    }
                    positions = snapshot.offsets;
                    from_snapshot = Some(replay);
                }
                Err(why) => tracing::warn!(projection = %name, %why, "snapshot not usable: replaying from the start"),
            },
            Err(e @ ReplayError::PastTheEnd { .. }) => {
                tracing::warn!(projection = %name, error = %e, "snapshot does not match the log: replaying from the start");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut replay = match from_snapshot {
        Some(replay) => replay,
        None => Replay::from_beginning(&reader, &topic_refs)?,
    };
    let started = Instant::now();
    let mut replayed: u64 = 0;
    let mut since_snapshot: u64 = 0;
    tracing::info!(projection = %name, records = replay.backlog(), "replaying");
    let caught_up = |replayed: u64| {
        fold.caught_up();
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(projection = %name, records = replayed, seconds = secs, records_per_sec = (replayed as f64 / secs.max(1e-9)) as u64, "caught up");
    };
    if replay.caught_up() {
        caught_up(0);
    }
    let mut done = replay.caught_up();
    let mut outage = kafka::Outage::new("following");
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => {
                if since_snapshot > 0 && let Some(store) = &snapshots {
                    save(store, &name, format, positions, fold.snapshot()).await;
                }
                return Ok(());
            }
            message = reader.recv() => message,
        };
        let message = match message {
            Err(e) if kafka::is_partition_end(&e) => {
                if !done && replay.reached_ends(&reader) {
                    done = true;
                    caught_up(replayed);
                }
                continue;
            }
            // A broker away is waited out; only what waiting cannot mend ends the projection.
            Err(e) => {
                outage.ride_out(e).await.with_context(|| format!("{name}: reading {}", topics.join(", ")))?;
                continue;
            }
            Ok(message) => {
                outage.over();
                message
            }
        };
        positions.insert(position_key(message.topic(), message.partition()), message.offset() + 1);
        since_snapshot += 1;
        if let Err(why) = fold.apply(message.topic(), message.payload().unwrap_or_default()) {
            tracing::error!(projection = %name, topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %why, "undecodable record skipped");
        }
        fold.read_to(message.topic(), message.partition(), message.offset() + 1);
        if !done {
            replayed += 1;
            if replay.read(message.topic(), message.partition(), message.offset()) {
                done = true;
                caught_up(replayed);
            }
        }
        if snapshot_every > 0 && since_snapshot >= snapshot_every && let Some(store) = &snapshots {
            save(store, &name, format, positions.clone(), fold.snapshot()).await;
            since_snapshot = 0;
        }
    }
}

/// Writes a snapshot off the async workers (a large state serialises for a while).
async fn save<T: Serialize + Send + 'static>(store: &SnapshotStore, name: &str, format: u32, offsets: BTreeMap<String, i64>, state: T) {
    let (store, name_owned) = (store.clone(), name.to_owned());
    let written = tokio::task::spawn_blocking(move || {
        let snapshot = Snapshot { format, offsets, taken_at: contract::now_millis(), state };
        store.save(&name_owned, &snapshot)
    })
    .await;
    match written {
        Ok(Ok(path)) => tracing::debug!(projection = %name, file = %path.display(), "snapshot written"),
        Ok(Err(e)) => tracing::warn!(projection = %name, error = %e, "snapshot not written; the next start reads more"),
        Err(e) => tracing::warn!(projection = %name, error = %e, "snapshot task failed"),
    }
}
