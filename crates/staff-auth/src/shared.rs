//! The staff directory of a process: followed from `staff.events` (and `staff.credentials`
//! in the desk, which checks passwords), shared by the process's gatekeeper and the desk.
//!
//! [`SharedDirectory::current`] is what makes a revocation count "on the next request on every
//! instance": before a desk session is believed, the process asks the broker where the staff
//! topics end and waits until its follower has applied everything up to there. One round trip
//! to the broker per staff request (about a millisecond; staff requests are few). When the
//! broker cannot say within [`ASK_LIMIT`], the directory answers with what it has read (a
//! revocation needs the broker to be written at all, so little can be missed) and says so in
//! the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use contract::AvroMessage;
use contract::staff::{StaffCredential, StaffEvent};
use runtime::config::KafkaSettings;
use runtime::follow::{Fold, Following, LogEnds};
use runtime::topics::{self, Topics};
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;

/// How long a request waits for the broker to say where the staff topics end.
pub const ASK_LIMIT: Duration = Duration::from_secs(2);
/// How long a request waits for the follower to get there.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);
/// The directory's snapshot format; bump it when [`Directory`] changes shape.
const SNAPSHOT_FORMAT: u32 = 1;

pub struct SharedDirectory {
    state: RwLock<Directory>,
    events_topic: String,
    /// Followed only where passwords are checked (the desk).
    credentials_topic: Option<String>,
    /// Topic partition → next offset applied.
    read_to: Mutex<BTreeMap<(String, i32), i64>>,
    advanced: tokio::sync::Notify,
    caught_up: AtomicBool,
    ends: LogEnds,
    /// Partitions of each followed topic.
    partitions: Vec<(String, i32)>,
}

impl SharedDirectory {
    /// A directory of `staff.events`, with the password hashes of `staff.credentials` when
    /// `with_credentials` (the desk).
    pub fn new(kafka: &KafkaSettings, topics: &Topics, with_credentials: bool) -> anyhow::Result<Arc<Self>> {
        let events_topic = topics.name(topics::STAFF_EVENTS);
        let credentials_topic = with_credentials.then(|| topics.name(topics::STAFF_CREDENTIALS));
        let ends = LogEnds::new(kafka)?;
        let mut partitions = Vec::new();
        for topic in std::iter::once(&events_topic).chain(credentials_topic.as_ref()) {
            for p in 0..ends.partitions(topic)? {
                partitions.push((topic.clone(), p));
            }
        }
        Ok(Arc::new(Self {
            state: RwLock::new(Directory::default()),
            events_topic,
            credentials_topic,
            read_to: Mutex::new(BTreeMap::new()),
            advanced: tokio::sync::Notify::new(),
            caught_up: AtomicBool::new(false),
            ends,
            partitions,
        }))
    }

    /// The process's directory, followed in the background from the first ask on; the desk
    /// asks first `with_credentials` (a process without the desk never reads the hashes).
    pub fn in_process(ctx: &runtime::service::Context, with_credentials: bool) -> anyhow::Result<Arc<Self>> {
        ctx.shared(|ctx| {
            let directory = Self::new(&ctx.settings.kafka, &ctx.topics, with_credentials)?;
            ctx.background("staff directory", directory.clone().follow(ctx.settings.kafka.clone(), ctx.shutdown.clone()));
            Ok(directory)
        })
    }

    /// Follows the staff topics until `shutdown`. Never snapshotted: the topics are small
    /// (staff changes and logouts), and a snapshot would put password hashes on disk.
    pub async fn follow(self: Arc<Self>, kafka: KafkaSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut followed = vec![self.events_topic.clone()];
        followed.extend(self.credentials_topic.clone());
        let name = if self.credentials_topic.is_some() { "staff-directory-desk" } else { "staff-directory" };
        let following = Following { name: format!("{name}-{}", self.events_topic), topics: followed, format: SNAPSHOT_FORMAT, snapshot_every: 0, snapshots: None };
        runtime::follow::follow(&kafka, following, self.as_ref(), shutdown).await
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Waits until this directory holds everything written to the staff topics before the
    /// call; `false` when the broker or the follower could not be waited for (the directory
    /// then answers with what it has read).
    pub async fn current(self: &Arc<Self>) -> bool {
        let asking = self.clone();
        let ends = tokio::task::spawn_blocking(move || {
            asking.partitions.iter().map(|(t, p)| Ok(((t.clone(), *p), asking.ends.end(t, *p, ASK_LIMIT)?))).collect::<Result<Vec<_>, String>>()
        })
        .await;
        let ends = match ends {
            Ok(Ok(ends)) => ends,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the broker did not say where staff.events ends; sessions checked against what this process has read");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking where staff.events ends failed");
                return false;
            }
        };
        let reached = || {
            let read_to = self.read_to.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            ends.iter().all(|(key, end)| *end <= 0 || read_to.get(key).is_some_and(|at| at >= end))
        };
        let waiting = async {
            loop {
                let advanced = self.advanced.notified();
                if reached() {
                    return;
                }
                advanced.await;
            }
        };
        if tokio::time::timeout(CATCH_UP_LIMIT, waiting).await.is_err() {
            tracing::warn!("the staff directory is behind staff.events; sessions checked against what this process has read");
            return false;
        }
        true
    }
}

impl Fold for SharedDirectory {
    type Snapshot = Directory;

    fn apply(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        if payload.is_empty() {
            // A tombstone on the compacted credentials topic: the removal event did the work.
            return Ok(());
        }
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if Some(topic) == self.credentials_topic.as_deref() {
            let credential = StaffCredential::decode(payload).map_err(|e| e.to_string())?;
            state.apply_credential(&credential);
            return Ok(());
        }
        let event = StaffEvent::decode(payload).map_err(|e| e.to_string())?;
        state.apply(&event)
    }

    fn snapshot(&self) -> Directory {
        self.read().clone()
    }

    fn restore(&self, snapshot: Directory) -> Result<(), String> {
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
        Ok(())
    }

    fn caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
        self.advanced.notify_waiters();
    }

    fn read_to(&self, topic: &str, partition: i32, next_offset: i64) {
        self.read_to.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((topic.to_owned(), partition), next_offset);
        self.advanced.notify_waiters();
    }
}
