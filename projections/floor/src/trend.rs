//! The last hours per queue, minute by minute, for the dashboard's charts: how many waited
//! (waiting + offered) and the cumulative answered counts, sampled at each minute boundary
//! *of event time* as events are applied. So a replay of the log rebuilds the same trend,
//! and a restarted service has its last hour again.

use std::collections::{BTreeMap, VecDeque};

use queues::board::QueueSummary;
use serde::{Deserialize, Serialize};

use crate::stats::QueueTotals;

const MINUTE_MS: i64 = 60_000;
/// Minutes kept.
const KEPT: usize = 180;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSample {
    /// Waiting and offered at the sample's moment.
    pub waiting: usize,
    /// Cumulative answered, and answered within the service-level threshold.
    pub answered: u64,
    pub within: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    at: i64,
    queues: BTreeMap<String, QueueSample>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trend {
    /// Start of the minute of the latest event applied.
    minute: Option<i64>,
    samples: VecDeque<Sample>,
}

/// One point of [`Trend::view`] for one queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub waiting: usize,
    /// Answered within the threshold / answered, during the minute ending here (None: no
    /// interaction was answered in it).
    pub service_level: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub at: i64,
    pub queues: BTreeMap<String, Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendView {
    pub from: i64,
    pub to: i64,
    pub samples: Vec<TrendPoint>,
}

pub fn sample_of(live: &[QueueSummary], totals: &BTreeMap<String, QueueTotals>) -> BTreeMap<String, QueueSample> {
    let mut out: BTreeMap<String, QueueSample> = BTreeMap::new();
    for q in live {
        out.entry(q.queue.clone()).or_default().waiting = q.counts.waiting + q.counts.offered;
    }
    for (queue, t) in totals {
        let s = out.entry(queue.clone()).or_default();
        s.answered = t.answered;
        s.within = t.answered_within_threshold;
    }
    out
}

impl Trend {
    /// Called before an event at `at` is applied: when `at` is in a later minute than the
    /// previous event, the state now (what held until `at`) is recorded at every minute
    /// boundary in between. `current` is only called when a sample is taken.
    pub fn before_event(&mut self, at: i64, current: impl FnOnce() -> BTreeMap<String, QueueSample>) {
        let minute = at - at.rem_euclid(MINUTE_MS);
        let Some(previous) = self.minute else {
            self.minute = Some(minute);
            return;
        };
        if minute <= previous {
            return;
        }
        let state = current();
        let boundaries = (minute - previous) / MINUTE_MS;
        let first = minute - MINUTE_MS * (boundaries.min(KEPT as i64) - 1);
        let mut boundary = first;
        while boundary <= minute {
            self.samples.push_back(Sample { at: boundary, queues: state.clone() });
            boundary += MINUTE_MS;
        }
        while self.samples.len() > KEPT {
            self.samples.pop_front();
        }
        self.minute = Some(minute);
    }

    /// The minutes from `now - minutes` to `now`, the last point being the state now. A minute
    /// with no event holds the state of the one before it.
    pub fn view(&self, now: i64, minutes: i64, current: BTreeMap<String, QueueSample>) -> TrendView {
        let from = now - minutes * MINUTE_MS;
        let mut points: Vec<(i64, &BTreeMap<String, QueueSample>)> = Vec::new();
        let mut last_before: Option<&Sample> = None;
        for s in &self.samples {
            if s.at < from {
                last_before = Some(s);
            } else if s.at <= now {
                points.push((s.at, &s.queues));
            }
        }
        // Quiet minutes since the last sample held the current state.
        let last_at = points.last().map(|p| p.0).or(last_before.map(|s| s.at)).unwrap_or(now);
        let mut filler = Vec::new();
        let mut t = last_at + MINUTE_MS;
        while t < now {
            if t >= from {
                filler.push(t);
            }
            t += MINUTE_MS;
        }
        let mut previous = last_before.map(|s| &s.queues);
        let mut samples = Vec::new();
        let mut push = |at: i64, queues: &BTreeMap<String, QueueSample>, previous: &mut Option<&BTreeMap<String, QueueSample>>| {
            let point = queues
                .iter()
                .map(|(name, s)| {
                    let before = previous.and_then(|p| p.get(name)).copied().unwrap_or_default();
                    let answered = s.answered.saturating_sub(before.answered);
                    let within = s.within.saturating_sub(before.within);
                    (name.clone(), Point { waiting: s.waiting, service_level: (answered > 0).then(|| within as f64 / answered as f64) })
                })
                .collect();
            samples.push(TrendPoint { at, queues: point });
        };
        for (at, queues) in points {
            push(at, queues, &mut previous);
            previous = Some(queues);
        }
        let mut previous_owned = previous.cloned();
        for at in filler {
            let mut prev_ref = previous_owned.as_ref();
            push(at, &current, &mut prev_ref);
            previous_owned = Some(current.clone());
        }
        let mut prev_ref = previous_owned.as_ref();
        push(now, &current, &mut prev_ref);
        TrendView { from, to: now, samples }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(waiting: usize, answered: u64, within: u64) -> BTreeMap<String, QueueSample> {
        BTreeMap::from([("inbound".to_owned(), QueueSample { waiting, answered, within })])
    }

    #[test]
    fn minutes_are_sampled_by_event_time_and_service_level_is_per_minute() {
        let mut trend = Trend::default();
        let t0 = 10 * MINUTE_MS;
        trend.before_event(t0 + 5_000, || unreachable!("the first event only starts the clock"));
        trend.before_event(t0 + 50_000, || unreachable!("same minute"));
        // The next event is two minutes on: what held (3 waiting, 4 answered, 3 in time) is
        // recorded at both boundaries.
        trend.before_event(t0 + 2 * MINUTE_MS + 1_000, || state(3, 4, 3));
        trend.before_event(t0 + 3 * MINUTE_MS + 1_000, || state(1, 6, 3));
        let view = trend.view(t0 + 5 * MINUTE_MS, 60, state(0, 6, 3));
        let at: Vec<i64> = view.samples.iter().map(|p| (p.at - t0) / MINUTE_MS).collect();
        assert_eq!(at, [1, 2, 3, 4, 5], "minutes 1-3 sampled, 4 filled, 5 is now");
        let waiting: Vec<usize> = view.samples.iter().map(|p| p.queues["inbound"].waiting).collect();
        assert_eq!(waiting, [3, 3, 1, 0, 0]);
        let level: Vec<Option<f64>> = view.samples.iter().map(|p| p.queues["inbound"].service_level).collect();
        assert_eq!(level, [Some(0.75), None, Some(0.0), None, None], "3 of 4 in time, then 0 of 2, then none answered");
    }

    #[test]
    fn only_the_asked_window_is_shown_and_old_minutes_are_dropped() {
        let mut trend = Trend::default();
        trend.before_event(0, || unreachable!());
        trend.before_event(500 * MINUTE_MS, || state(2, 0, 0));
        assert!(trend.samples.len() <= KEPT);
        let view = trend.view(510 * MINUTE_MS, 5, state(2, 0, 0));
        assert_eq!(view.samples.len(), 6, "minutes 505..=509 and now: {view:?}");
        assert!(view.samples.iter().all(|p| p.at >= view.from));
    }
}
