//! The stateless sender every outbound channel runs over its send queue (e-mail, SMS).
//!
//! What to send, how often it was tried and when to try again are interaction properties, so
//! a restarted sender (or another instance) picks up where this one stopped. One interaction
//! at a time is claimed with a `Lock` (holder [`Channel::holder`]); a supervisor's lock holds it
//! back. Per interaction of the channel's media waiting in `send_queue`:
//! - sent: `sent_at`, `send_attempts` and what the channel reports (a message id, the server's
//!   answer) set, then `Stop("sent")`;
//! - refused or unreachable: `send_attempts`, `send_error`, `send_next_attempt_at` set (doubling
//!   back-off), still locked; after `max_attempts` (or at once when it cannot be built, e.g.
//!   no valid recipient) it moves to `failed_queue` with `send_error` and is unlocked, so the
//!   workflow routes it back to its author.
//!
//! Two instances never send one message twice: each claims with a holder of its own
//! (`email-sender@3f2a…`), the Interaction Server lets one lock win, and only the lock's holder
//! sends. A lock whose holder has gone (an instance killed or stopped) is taken over: when the
//! interaction has been due for sending and unchanged for [`Policy::takeover_after_ms`] (a live
//! holder sends within a second of it being due), another instance unlocks it in the dead
//! holder's name and claims it. A supervisor's lock is never taken over.
//!
//! Delivery is at-least-once: a crash between the gateway's acceptance and the `sent_at`
//! event sends again on restart (channels give the copy the same message id where they can).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::command::{ChangeProperties, CommandPayload, Lock, LockHolderKind, MediaType, MoveToQueue, Stop, Unlock};
use floor::{Floor, SharedFloor};
use runtime::commands::CommandClient;
use runtime::CancellationToken;
use queues::board::{Interaction, Status};

/// How long a claim (a `Lock` sent, not yet seen on the floor) keeps others from re-claiming.
const CLAIM_PATIENCE: Duration = Duration::from_secs(30);

/// One outbound channel: how to build what an interaction asks to send, and how to send it.
pub trait Channel: Send + Sync + 'static {
    type Outgoing: Send + 'static;
    /// The channel's sender name: lock holders are `<name>@<instance>`.
    fn holder(&self) -> &'static str;
    fn media(&self) -> MediaType;
    /// What to send, or why it cannot be sent at all (no retry helps).
    fn compose(&self, interaction: &Interaction, floor: &Floor) -> Result<Self::Outgoing, String>;
    /// Sends; `Ok` carries properties to record (message id, the server's answer), `Err` the
    /// reason it was not taken (retried).
    fn send(&self, interaction: &str, outgoing: Self::Outgoing) -> impl Future<Output = Result<Vec<(String, String)>, String>> + Send;
}

/// Where and how often.
#[derive(Debug, Clone)]
pub struct Policy {
    pub send_queue: String,
    pub failed_queue: String,
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How long a message due for sending may sit unchanged under another instance's lock
    /// before this one takes it over (that instance is taken for gone).
    pub takeover_after_ms: u64,
}

pub struct Sender<C: Channel> {
    floor: Arc<SharedFloor>,
    commands: CommandClient,
    channel: C,
    settings: Policy,
    /// This instance's lock holder: `<channel>@<random>`.
    holder: String,
}

impl<C: Channel> Sender<C> {
    pub fn new(floor: Arc<SharedFloor>, commands: CommandClient, channel: C, policy: Policy) -> Self {
        let holder = format!("{}@{}", channel.holder(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self { floor, commands: commands.issued_as(holder.clone()), channel, settings: policy, holder }
    }

    /// Whether `holder` is another instance of this channel's sender (or this channel's
    /// holder from before holders were per instance).
    fn is_peer(&self, holder: &str) -> bool {
        let name = self.channel.holder();
        holder != self.holder && (holder == name || holder.strip_prefix(name).is_some_and(|rest| rest.starts_with('@')))
    }

    /// Sends what the send queue holds, as it arrives, until `shutdown`; then lets the mails
    /// in flight finish.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut changed = self.floor.changed();
        while !self.floor.caught_up() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = changed.changed() => r?,
            }
        }
        tracing::info!(queue = %self.settings.send_queue, media = %self.channel.media(), holder = %self.holder, "sender started");
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut claimed: HashMap<String, Instant> = HashMap::new();
        let mut unlocking: HashMap<String, Instant> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            for work in self.next_work(&mut claimed, &mut unlocking, &in_flight) {
                match work {
                    Work::TakeOver { id, from } => {
                        tracing::warn!(interaction = %id, from = %from, "taking over a message another sender locked and left (due and unchanged past the takeover time)");
                        let unlock = CommandPayload::Unlock(Unlock { holder: from });
                        if let Err(e) = self.commands.send(&self.commands.command(&id, unlock)).await {
                            tracing::warn!(interaction = %id, error = %e, "could not take over; will retry");
                        }
                    }
                    Work::Claim(id) => {
                        let lock = CommandPayload::Lock(Lock { holder: self.holder.clone(), holder_kind: LockHolderKind::Router });
                        if let Err(e) = self.commands.send(&self.commands.command(&id, lock)).await {
                            tracing::warn!(interaction = %id, error = %e, "could not claim work to send; will retry");
                            claimed.remove(&id);
                        }
                    }
                    Work::Send(job) => {
                        let sender = self.clone();
                        let in_flight = in_flight.clone();
                        tasks.spawn(async move {
                            let id = job.id.clone();
                            if let Err(e) = sender.deliver(job).await {
                                tracing::warn!(interaction = %id, error = %e, "could not record a send outcome; will retry");
                            }
                            lock_set(&in_flight).remove(&id);
                        });
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                r = changed.changed() => r?,
                Some(_) = tasks.join_next() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// What to do now: claim unlocked work, send claimed work that is due.
    fn next_work(&self, claimed: &mut HashMap<String, Instant>, unlocking: &mut HashMap<String, Instant>, in_flight: &Mutex<HashSet<String>>) -> Vec<Work<C::Outgoing>> {
        let floor = self.floor.read();
        let board = floor.board();
        let now = contract::now_millis();
        claimed.retain(|id, at| at.elapsed() < CLAIM_PATIENCE && board.interaction(id).is_some_and(|i| i.lock.is_none()));
        unlocking.retain(|id, at| at.elapsed() < CLAIM_PATIENCE && board.interaction(id).is_some_and(|i| i.lock.is_some()));
        let mut in_flight = lock_set(in_flight);
        let mut work = Vec::new();
        for i in board.queued() {
            if i.queue.as_deref() != Some(self.settings.send_queue.as_str()) || i.media_type != self.channel.media() || i.status != Status::Waiting {
                continue;
            }
            match &i.lock {
                None => {
                    if !claimed.contains_key(&i.id) {
                        claimed.insert(i.id.clone(), Instant::now());
                        work.push(Work::Claim(i.id.clone()));
                    }
                }
                Some(lock) if lock.holder == self.holder => {
                    let due = i.properties.get("send_next_attempt_at").and_then(|t| t.parse::<i64>().ok()).is_none_or(|t| t <= now);
                    if due && !in_flight.contains(&i.id) {
                        in_flight.insert(i.id.clone());
                        let attempts = i.properties.get("send_attempts").and_then(|a| a.parse().ok()).unwrap_or(0);
                        let mail = if i.properties.contains_key("sent_at") {
                            Mail::AlreadySent
                        } else {
                            match self.channel.compose(i, &floor) {
                                Ok(outgoing) => Mail::Ready(Box::new(outgoing)),
                                Err(reason) => Mail::Unsendable(reason),
                            }
                        };
                        work.push(Work::Send(Job { id: i.id.clone(), attempts, mail }));
                    }
                }
                Some(lock) if lock.holder_kind == LockHolderKind::Router && self.is_peer(&lock.holder) => {
                    let patience = i64::try_from(self.settings.takeover_after_ms).unwrap_or(i64::MAX);
                    let due_since = i.properties.get("send_next_attempt_at").and_then(|t| t.parse::<i64>().ok()).unwrap_or(lock.since);
                    let quiet_since = due_since.max(i.updated_at).max(lock.since);
                    if now.saturating_sub(quiet_since) > patience && !unlocking.contains_key(&i.id) {
                        // The unlock goes once; the claim follows when the floor shows it.
                        unlocking.insert(i.id.clone(), Instant::now());
                        work.push(Work::TakeOver { id: i.id.clone(), from: lock.holder.clone() });
                    }
                }
                Some(_) => {} // a supervisor holds it back
            }
        }
        work
    }

    /// One attempt at one mail, and its outcome as commands; returns once the floor shows them.
    async fn deliver(&self, job: Job<C::Outgoing>) -> anyhow::Result<()> {
        let attempts = job.attempts + 1;
        let now = contract::now_millis();
        let commands = match job.mail {
            Mail::AlreadySent => vec![stop_sent()],
            Mail::Unsendable(reason) => self.give_up(attempts, &reason),
            Mail::Ready(outgoing) => match self.channel.send(&job.id, *outgoing).await {
                Ok(reported) => {
                    tracing::info!(interaction = %job.id, media = %self.channel.media(), "sent");
                    let mut done = ChangeProperties {
                        set: reported.into_iter().collect(),
                        remove: vec!["send_next_attempt_at".into()],
                        priority: None,
                    };
                    done.set.insert("sent_at".into(), now.to_string());
                    done.set.insert("send_attempts".into(), attempts.to_string());
                    vec![CommandPayload::ChangeProperties(done), stop_sent()]
                }
                Err(reason) => {
                    if attempts >= self.settings.max_attempts {
                        self.give_up(attempts, &reason)
                    } else {
                        let delay = backoff_ms(attempts, self.settings.retry_initial_ms, self.settings.retry_max_ms);
                        tracing::warn!(interaction = %job.id, attempt = attempts, retry_in_ms = delay, error = %reason, "not sent; will retry");
                        let next = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
                        vec![set(
                            [("send_attempts", attempts.to_string()), ("send_error", reason), ("send_next_attempt_at", next.to_string())],
                            &[],
                        )]
                    }
                }
            },
        };
        let mut last = None;
        for payload in commands {
            last = Some(self.commands.send(&self.commands.command(&job.id, payload)).await?);
        }
        // Until the floor reflects the outcome, the same mail must not be picked again.
        if let Some((partition, offset)) = last {
            let mut changed = self.floor.changed();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while self.floor.read().reflected(partition).is_none_or(|r| r < offset) {
                if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                    anyhow::bail!("the outcome of {} was not reflected within 60 s", job.id);
                }
            }
        }
        Ok(())
    }

    fn give_up(&self, attempts: u32, reason: &str) -> Vec<CommandPayload> {
        tracing::warn!(attempts, reason, queue = %self.settings.failed_queue, "not sent; giving up and returning it");
        vec![
            set([("send_error", reason.to_owned()), ("send_failed_at", contract::now_millis().to_string())], &["send_attempts", "send_next_attempt_at"]),
            CommandPayload::MoveToQueue(MoveToQueue {
                queue: self.settings.failed_queue.clone(),
                reason: format!("not sent after {attempts} attempt(s): {reason}"),
            }),
            CommandPayload::Unlock(Unlock { holder: self.holder.clone() }),
        ]
    }
}

enum Work<O> {
    Claim(String),
    /// Unlock a message `from` a sender instance that is gone.
    TakeOver { id: String, from: String },
    Send(Job<O>),
}

struct Job<O> {
    id: String,
    attempts: u32,
    mail: Mail<O>,
}

enum Mail<O> {
    Ready(Box<O>),
    Unsendable(String),
    /// `sent_at` is on the log but the `Stop` is not (a crash in between).
    AlreadySent,
}

fn lock_set(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set<const N: usize>(pairs: [(&str, String); N], remove: &[&str]) -> CommandPayload {
    CommandPayload::ChangeProperties(ChangeProperties {
        set: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        remove: remove.iter().map(|r| (*r).to_owned()).collect(),
        priority: None,
    })
}

fn stop_sent() -> CommandPayload {
    CommandPayload::Stop(Stop { reason: "sent".into() })
}

/// Doubling from `initial`, capped at `max`.
pub fn backoff_ms(attempt: u32, initial: u64, max: u64) -> u64 {
    initial.saturating_mul(1u64 << attempt.saturating_sub(1).min(32)).min(max)
}


#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn back_off_doubles_and_is_capped() {
        assert_eq!([1, 2, 3, 4, 40].map(|a| backoff_ms(a, 100, 500)), [100, 200, 400, 500, 500]);
    }
}
