//! The Stat Server role: per queue, how many entered, were answered (within the service-level
//! threshold or not) or abandoned, and handle times; per agent, time spent in each state.
//! Times come from the events' `occurred_at`, so a replay gives the same figures; only the
//! still-running intervals (current waits, the current state) use the `now` of the query.

use std::collections::{BTreeMap, HashMap};

use contract::event::{EventPayload, InteractionEvent};
use queues::board::{Interaction, QueueCounts, QueueSummary, Status};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueTotals {
    /// Placements into the queue.
    pub entered: u64,
    /// Assigned to an agent from this queue.
    pub answered: u64,
    /// Of those, assigned within the service-level threshold of entering the queue.
    pub answered_within_threshold: u64,
    /// Stopped while waiting in this queue, by anyone but the holder of its lock (the customer
    /// gave up, a supervisor or the workflow ended it).
    pub abandoned: u64,
    /// Stopped while waiting by the holder of its lock: work a service finished in the queue
    /// (a channel's sender claims a reply with a lock, sends it, then stops it "sent").
    pub processed: u64,
    /// Handlings finished (an owner stopped, transferred or returned it).
    pub handled: u64,
    pub handle_ms_total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTotals {
    pub state: String,
    pub since: i64,
    /// Finished intervals per state, milliseconds.
    pub ms_in_state: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    threshold_ms: i64,
    queues: BTreeMap<String, QueueTotals>,
    agents: BTreeMap<String, AgentTotals>,
    /// Interaction id to (assigned at, queue it was answered from).
    handling: HashMap<String, (i64, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatsView {
    pub queue: String,
    pub waiting: usize,
    pub offered: usize,
    pub oldest_wait_ms: Option<i64>,
    pub average_handle_ms: Option<i64>,
    /// Share of answered interactions answered within the threshold (None before the first).
    pub service_level: Option<f64>,
    pub service_level_threshold_ms: i64,
    #[serde(flatten)]
    pub totals: QueueTotals,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatsView {
    pub agent_id: String,
    pub state: String,
    pub in_state_ms: i64,
    /// Including the current interval up to `now`.
    pub ms_in_state: BTreeMap<String, i64>,
}

impl Stats {
    pub fn new(threshold_ms: i64) -> Self {
        Self {
            threshold_ms,
            ..Self::default()
        }
    }

    pub fn threshold_ms(&self) -> i64 {
        self.threshold_ms
    }

    pub fn queue_totals(&self) -> &BTreeMap<String, QueueTotals> {
        &self.queues
    }

    pub(crate) fn on_interaction_event(
        &mut self,
        event: &InteractionEvent,
        before: Option<&Interaction>,
        after: Option<&Interaction>,
    ) {
        let at = event.occurred_at;
        let id = event.interaction_id.as_str();
        match &event.payload {
            EventPayload::PlacedInQueue(p) => self.queue(&p.queue).entered += 1,
            EventPayload::Assigned(_) => {
                if let Some(i) = after
                    && let Some(queue) = &i.queue
                {
                    let within = at - i.queued_at <= self.threshold_ms;
                    let totals = self.queue(queue);
                    totals.answered += 1;
                    if within {
                        totals.answered_within_threshold += 1;
                    }
                    self.handling.insert(id.to_owned(), (at, queue.clone()));
                }
            }
            EventPayload::Stopped(_) | EventPayload::Transferred(_) | EventPayload::ReturnedToQueue(_) => {
                if let Some((since, queue)) = self.handling.remove(id) {
                    let totals = self.queue(&queue);
                    totals.handled += 1;
                    totals.handle_ms_total += (at - since).max(0);
                } else if let EventPayload::Stopped(stopped) = &event.payload
                    && let Some(i) = before
                    && matches!(i.status, Status::Waiting | Status::Offered)
                    && let Some(queue) = &i.queue
                {
                    let by_lock_holder = i.lock.as_ref().is_some_and(|lock| lock.holder == stopped.stopped_by);
                    let totals = self.queue(queue);
                    if by_lock_holder {
                        totals.processed += 1;
                    } else {
                        totals.abandoned += 1;
                    }
                }
            }
            _ => {}
        }
    }

    pub(crate) fn on_agent_state(&mut self, agent: &str, state: &str, at: i64) {
        let totals = self
            .agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentTotals {
                state: state.to_owned(),
                since: at,
                ms_in_state: BTreeMap::new(),
            });
        if totals.state != state {
            *totals.ms_in_state.entry(totals.state.clone()).or_default() += (at - totals.since).max(0);
            totals.state = state.to_owned();
            totals.since = at;
        }
    }

    fn queue(&mut self, queue: &str) -> &mut QueueTotals {
        self.queues.entry(queue.to_owned()).or_default()
    }

    /// Every queue seen, with the live counts the board keeps in its queue index.
    pub fn queue_views(&self, now: i64, live: &[QueueSummary]) -> Vec<QueueStatsView> {
        let live: BTreeMap<&str, &QueueCounts> = live.iter().map(|q| (q.queue.as_str(), &q.counts)).collect();
        let names: std::collections::BTreeSet<&str> =
            self.queues.keys().map(String::as_str).chain(live.keys().copied()).collect();
        names
            .into_iter()
            .map(|q| {
                let totals = self.queues.get(q).cloned().unwrap_or_default();
                let counts = live.get(q).copied().cloned().unwrap_or_default();
                QueueStatsView {
                    queue: q.to_owned(),
                    waiting: counts.waiting,
                    offered: counts.offered,
                    oldest_wait_ms: counts.oldest_queued_at.map(|o| (now - o).max(0)),
                    average_handle_ms: (totals.handled > 0)
                        .then(|| totals.handle_ms_total / i64::try_from(totals.handled).unwrap_or(i64::MAX)),
                    service_level: (totals.answered > 0)
                        .then(|| totals.answered_within_threshold as f64 / totals.answered as f64),
                    service_level_threshold_ms: self.threshold_ms,
                    totals,
                }
            })
            .collect()
    }

    pub fn agent_view(&self, agent: &str, now: i64) -> Option<AgentStatsView> {
        let totals = self.agents.get(agent)?;
        let current = (now - totals.since).max(0);
        let mut ms_in_state = totals.ms_in_state.clone();
        *ms_in_state.entry(totals.state.clone()).or_default() += current;
        Some(AgentStatsView {
            agent_id: agent.to_owned(),
            state: totals.state.clone(),
            in_state_ms: current,
            ms_in_state,
        })
    }

    pub fn agent_views(&self, now: i64) -> Vec<AgentStatsView> {
        self.agents.keys().filter_map(|a| self.agent_view(a, now)).collect()
    }
}
