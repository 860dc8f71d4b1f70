//! What the router should do now, as a pure function of the floor, the workflow and the clock:
//! [`plan`] returns commands; it neither sends them nor remembers anything. Every step is
//! idempotent by looking at the floor (a category already set is not set again; an
//! acknowledgement's child interaction has a deterministic id, so it exists or it does not),
//! which is what lets a restarted router pick up exactly where the log says things are.
//!
//! The only memory is [`Pending`]: commands sent whose outcome is not on the floor yet. Their
//! interactions are left alone and their offers count against the agent's capacity, so the
//! router never offers past capacity while its own offers are in flight.

use std::collections::{BTreeMap, BTreeSet};

use contract::command::{
    AgentReason, AgentRef, ChangeProperties, CommandPayload, MediaType, MoveToQueue, Offer, ReturnToQueue,
    Stop, Submit,
};
use floor::{Agent, Floor};
use queues::board::{Interaction, Status};

use crate::classifier::NaiveBayes;
use crate::workflow::{LogoutPolicy, Policy, Step, Workflow};

/// Commands sent and not yet reflected on the floor.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    interactions: BTreeSet<String>,
    /// Agent to (interaction, media) of offers in flight.
    offers: BTreeMap<String, Vec<(String, MediaType)>>,
}

impl Pending {
    pub fn contains(&self, interaction: &str) -> bool {
        self.interactions.contains(interaction)
    }

    pub fn add(&mut self, planned: &Planned) {
        self.interactions.extend(planned.blocks.iter().cloned());
        if let Some((agent, media)) = &planned.offer {
            self.offers
                .entry(agent.clone())
                .or_default()
                .push((planned.interaction_id.clone(), *media));
        }
    }

    pub fn remove(&mut self, planned: &Planned) {
        for b in &planned.blocks {
            self.interactions.remove(b);
        }
        if let Some((agent, _)) = &planned.offer
            && let Some(offers) = self.offers.get_mut(agent)
        {
            offers.retain(|(i, _)| *i != planned.interaction_id);
            if offers.is_empty() {
                self.offers.remove(agent);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    fn offers_to(&self, agent: &str, media: MediaType) -> i32 {
        let n = self.offers.get(agent).map_or(0, |o| o.iter().filter(|(_, m)| *m == media).count());
        i32::try_from(n).unwrap_or(i32::MAX)
    }
}

/// One command to send, and what it holds until it is reflected.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub interaction_id: String,
    pub payload: CommandPayload,
    /// Interactions left alone until this command's outcome is on the floor.
    pub blocks: Vec<String>,
    /// An offer counts against this agent's capacity for this media while in flight.
    pub offer: Option<(String, MediaType)>,
    /// Why, for the log.
    pub why: String,
}

impl Planned {
    fn on(i: &Interaction, payload: CommandPayload, why: impl Into<String>) -> Self {
        Self {
            interaction_id: i.id.clone(),
            payload,
            blocks: vec![i.id.clone()],
            offer: None,
            why: why.into(),
        }
    }
}

/// The id of the automatic response `standard_response` to `parent`: the same on every run.
pub fn response_id(parent: &str, standard_response: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:respond:{parent}:{standard_response}").as_bytes())
        .to_string()
}

/// Stable sampling: the same interaction is always in or out of the sample.
fn sampled(id: &str, percent: u8) -> bool {
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes());
    u32::from(digest.as_bytes()[0]) * 100 / 256 < u32::from(percent)
}

/// What an interaction waiting for an agent needs.
struct RouteRequest<'a> {
    interaction: &'a Interaction,
    skills: &'a BTreeMap<String, i32>,
    policy: Policy,
    only_agent: Option<&'a str>,
}

pub fn plan(floor: &Floor, workflow: &Workflow, model: Option<&NaiveBayes>, pending: &Pending, now: i64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut routable = Vec::new();
    let board = floor.board();
    let offer_timeout_ms = i64::try_from(workflow.offer_timeout_s).unwrap_or(30) * 1000;

    // Queued interactions, and those held by agents who logged out: nothing else can need a
    // command from the router, so the walk stays proportional to live work, not history.
    let held_by_departed = floor
        .agents()
        .filter(|a| a.logged_out_at.is_some())
        .flat_map(|a| a.owned.keys())
        .filter_map(|id| board.interaction(id));
    for i in board.queued().chain(held_by_departed) {
        if pending.contains(&i.id) {
            continue;
        }
        match i.status {
            Status::Offered => {
                if let Some(offer) = &i.offer {
                    let agent_gone = floor.agent(&offer.agent_id).is_some_and(|a| a.logged_out_at.is_some());
                    if agent_gone {
                        out.push(Planned::on(
                            i,
                            CommandPayload::RevokeOffer(AgentReason {
                                agent_id: offer.agent_id.clone(),
                                reason: "agent logged out".into(),
                            }),
                            format!("{} logged out with the offer pending", offer.agent_id),
                        ));
                    } else if now >= offer.offered_at + offer.timeout_ms {
                        out.push(Planned::on(
                            i,
                            CommandPayload::TimeOutOffer(AgentRef { agent_id: offer.agent_id.clone() }),
                            format!("{} did not answer within {} ms", offer.agent_id, offer.timeout_ms),
                        ));
                    }
                }
            }
            Status::Assigned => {
                if workflow.on_agent_logout == LogoutPolicy::Requeue
                    && let Some(owner) = &i.owner
                    && floor.agent(owner).is_some_and(|a| a.logged_out_at.is_some())
                {
                    out.push(Planned::on(
                        i,
                        CommandPayload::ReturnToQueue(ReturnToQueue { agent_id: owner.clone(), queue: None }),
                        format!("owner {owner} logged out (policy: requeue)"),
                    ));
                }
            }
            Status::Waiting => {
                if i.lock.is_some() {
                    continue;
                }
                let Some(queue) = i.queue.as_deref().and_then(|q| workflow.queue(q)) else { continue };
                match next_step(i, &queue.steps, model, workflow, board, now) {
                    Next::Command(planned) => out.push(planned),
                    Next::Route { skills, policy, only_agent } => routable.push(RouteRequest {
                        interaction: i,
                        skills,
                        policy,
                        only_agent,
                    }),
                    Next::Wait => {}
                }
            }
            Status::New | Status::Stopped => {}
        }
    }

    // Highest priority first, then longest waiting: each takes the best agent still free.
    routable.sort_by(|a, b| {
        (std::cmp::Reverse(a.interaction.priority), a.interaction.queued_at, &a.interaction.id)
            .cmp(&(std::cmp::Reverse(b.interaction.priority), b.interaction.queued_at, &b.interaction.id))
    });
    let mut in_flight = pending.clone();
    for request in routable {
        let i = request.interaction;
        let media = i.media_type;
        let free = |a: &Agent| {
            a.can_take(media) && a.load(media) + in_flight.offers_to(&a.id, media) < a.capacity_for(media)
        };
        let eligible: Vec<&Agent> = floor
            .agents()
            .filter(|a| request.only_agent.is_none_or(|only| only == a.id))
            .filter(|a| request.skills.iter().all(|(s, l)| a.skills.get(s).is_some_and(|have| have >= l)))
            .filter(|a| free(a))
            .collect();
        // Agents who already declined this interaction come last, so it does not bounce
        // between the same two agents while others are free.
        let fresh: Vec<&Agent> = eligible.iter().copied().filter(|a| !i.declined_by.contains(&a.id)).collect();
        let pool = if fresh.is_empty() { eligible } else { fresh };
        let best = match request.policy {
            Policy::LongestIdle => pool.into_iter().min_by(|a, b| (a.idle_since, &a.id).cmp(&(b.idle_since, &b.id))),
            Policy::LeastBusy => pool.into_iter().min_by(|a, b| {
                a.occupancy()
                    .total_cmp(&b.occupancy())
                    .then((a.idle_since, &a.id).cmp(&(b.idle_since, &b.id)))
            }),
        };
        if let Some(agent) = best {
            let planned = Planned {
                interaction_id: i.id.clone(),
                payload: CommandPayload::Offer(Offer { agent_id: agent.id.clone(), timeout_ms: offer_timeout_ms }),
                blocks: vec![i.id.clone()],
                offer: Some((agent.id.clone(), media)),
                why: format!("route: {} is free for {media}", agent.id),
            };
            in_flight.add(&planned);
            out.push(planned);
        }
    }
    out
}

#[allow(clippy::large_enum_variant)] // one per interaction per plan, short-lived
enum Next<'a> {
    Command(Planned),
    Route {
        skills: &'a BTreeMap<String, i32>,
        policy: Policy,
        only_agent: Option<&'a str>,
    },
    Wait,
}

fn next_step<'a>(
    i: &'a Interaction,
    steps: &'a [Step],
    model: Option<&NaiveBayes>,
    workflow: &Workflow,
    board: &queues::board::Board,
    now: i64,
) -> Next<'a> {
    let move_to = |queue: &str, reason: String| {
        Next::Command(Planned::on(
            i,
            CommandPayload::MoveToQueue(MoveToQueue { queue: queue.to_owned(), reason: reason.clone() }),
            reason,
        ))
    };
    for (n, step) in steps.iter().enumerate() {
        let label = format!("step {} ({})", n + 1, step.name());
        match step {
            Step::Screen { matcher, move_to: target, stop, set } => {
                if !matcher.matches(&i.properties) {
                    continue;
                }
                if let Some(q) = target {
                    return move_to(q, format!("screened by {label}"));
                }
                if let Some(reason) = stop {
                    return Next::Command(Planned::on(
                        i,
                        CommandPayload::Stop(Stop { reason: reason.clone() }),
                        format!("screened by {label}"),
                    ));
                }
                let missing: BTreeMap<String, String> =
                    set.iter().filter(|(k, v)| i.properties.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
                if !missing.is_empty() {
                    return Next::Command(Planned::on(
                        i,
                        CommandPayload::ChangeProperties(ChangeProperties { set: missing, remove: vec![], priority: None }),
                        format!("screened by {label}"),
                    ));
                }
            }
            Step::Classify { rules, use_model } => {
                if i.properties.contains_key("category") {
                    continue;
                }
                let by_rule = rules.iter().find(|r| r.matcher.matches(&i.properties));
                let (category, confidence, source) = if let Some(rule) = by_rule {
                    (rule.category.clone(), 1.0, "rule")
                } else {
                    let text = format!(
                        "{} {}",
                        i.properties.get("subject").map_or("", String::as_str),
                        i.properties.get("body").map_or("", String::as_str)
                    );
                    let min = workflow.classifier.as_ref().map_or(1.0, |c| c.min_confidence);
                    match model.filter(|_| *use_model).and_then(|m| m.predict(&text)) {
                        Some(p) if p.confidence >= min => (p.category, p.confidence, "model"),
                        _ => ("unclassified".to_owned(), 0.0, "none"),
                    }
                };
                let set = BTreeMap::from([
                    ("category".to_owned(), category.clone()),
                    ("category_confidence".to_owned(), format!("{confidence:.3}")),
                    ("category_source".to_owned(), source.to_owned()),
                ]);
                return Next::Command(Planned::on(
                    i,
                    CommandPayload::ChangeProperties(ChangeProperties { set, remove: vec![], priority: None }),
                    format!("{label}: {category} ({source}, {confidence:.2})"),
                ));
            }
            Step::Respond { standard_response, by_category, media, queue, stop_after } => {
                if !media.is_empty() && !media.iter().any(|m| m == i.media_type.as_str()) {
                    continue;
                }
                // RFC 3834: never answer an automatic message.
                if i.properties.get("auto_submitted").is_some_and(|v| v != "no") {
                    continue;
                }
                let chosen = i
                    .properties
                    .get("category")
                    .and_then(|c| by_category.get(c))
                    .or(standard_response.as_ref());
                let Some(response) = chosen else { continue };
                let child = response_id(&i.id, response);
                if !board.has_seen(&child) {
                    let mut properties = BTreeMap::from([
                        ("standard_response".to_owned(), response.clone()),
                        ("auto_response".to_owned(), "true".to_owned()),
                        ("reply_to_interaction".to_owned(), i.id.clone()),
                    ]);
                    for key in ["from", "subject", "message_id"] {
                        if let Some(v) = i.properties.get(key) {
                            properties.insert(format!("original_{key}"), v.clone());
                        }
                    }
                    return Next::Command(Planned {
                        interaction_id: child.clone(),
                        payload: CommandPayload::Submit(Submit {
                            media_type: i.media_type,
                            origin: "router".into(),
                            target_queue: queue.clone(),
                            priority: i.priority,
                            properties,
                            contact_id: i.contact_id.clone(),
                            content_ref: None,
                            parent_interaction_id: Some(i.id.clone()),
                        }),
                        blocks: vec![i.id.clone(), child],
                        offer: None,
                        why: format!("{label}: standard response {response}"),
                    });
                }
                if *stop_after {
                    return Next::Command(Planned::on(
                        i,
                        CommandPayload::Stop(Stop { reason: format!("answered automatically with {response}") }),
                        label,
                    ));
                }
            }
            Step::MoveTo { queue } => return move_to(queue, label),
            Step::Qa { sample_percent, rules, review_queue, send_queue } => {
                let status = i.properties.get("qa_status").map(String::as_str);
                if status == Some("approved") {
                    return move_to(send_queue, format!("{label}: approved"));
                }
                let reviewed = status == Some("returned") || status == Some("resubmitted");
                if reviewed || sampled(&i.id, *sample_percent) || rules.iter().any(|r| r.matches(&i.properties)) {
                    return move_to(review_queue, format!("{label}: to review"));
                }
                return move_to(send_queue, format!("{label}: not sampled"));
            }
            Step::Route { skills, policy, timeout_s, on_timeout, to_agent_property, not_before_property } => {
                let not_before = not_before_property.as_ref().and_then(|p| i.properties.get(p)).and_then(|t| t.parse::<i64>().ok());
                if not_before.is_some_and(|t| now < t) {
                    return Next::Wait;
                }
                let waiting_since = not_before.map_or(i.queued_at, |t| t.max(i.queued_at));
                if let (Some(t), Some(q)) = (timeout_s, on_timeout)
                    && now - waiting_since >= i64::try_from(*t).unwrap_or(i64::MAX / 1000) * 1000
                {
                    return move_to(q, format!("{label}: waited over {t} s"));
                }
                let only_agent = match to_agent_property {
                    Some(p) => match i.properties.get(p) {
                        Some(agent) => Some(agent.as_str()),
                        None => return Next::Wait,
                    },
                    None => None,
                };
                return Next::Route { skills, policy: *policy, only_agent };
            }
        }
    }
    Next::Wait
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    //! `plan` on a floor built from events, without a broker.

    use contract::agent::{AgentEvent, AgentPayload, LoggedIn, Ready};
    use contract::event::{EventPayload, InteractionEvent, PlacedInQueue, Submitted};

    use super::*;

    const NOW: i64 = 1_000_000;

    const WORKFLOW: &str = r#"
        offer_timeout_s = 20
        [[queue]]
        name = "inbound"
        steps = [
          { type = "screen", field = "subject", regex = "(?i)^out of office", stop = "screened: automatic reply" },
          { type = "classify", use_model = false, rules = [{ field = "subject", regex = "(?i)cancel", category = "cancellation" }] },
          { type = "route", skills = { english = 2 }, policy = "longest_idle" },
        ]
    "#;

    fn event(id: &str, n: i32, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: format!("{id}-{n}"),
            interaction_id: id.into(),
            occurred_at: NOW - 10_000,
            causation_id: format!("c-{id}-{n}"),
            command_partition: 0,
            command_offset: 0,
            index: n,
            set_size: 2,
            payload,
        }
    }

    /// An e-mail waiting in `inbound` with `properties`.
    fn waiting(floor: &mut Floor, id: &str, properties: &[(&str, &str)]) {
        let properties = properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        floor.apply_interaction_event(&event(id, 0, EventPayload::Submitted(Submitted {
            media_type: MediaType::Email,
            origin: "test".into(),
            priority: 0,
            properties,
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
            submitted_by: "test".into(),
        })));
        floor.apply_interaction_event(&event(id, 1, EventPayload::PlacedInQueue(PlacedInQueue {
            queue: "inbound".into(),
            previous_queue: None,
            reason: "submitted".into(),
        })));
    }

    fn agent(floor: &mut Floor, id: &str, english: i32) {
        let at = |payload| AgentEvent { event_id: format!("{id}-{payload:?}"), agent_id: id.into(), occurred_at: NOW - 60_000, causation_id: None, payload };
        floor.apply_agent_event(&at(AgentPayload::LoggedIn(LoggedIn {
            place: None,
            skills: BTreeMap::from([("english".to_owned(), english)]),
            capacity: BTreeMap::from([("email".to_owned(), 1)]),
        })));
        floor.apply_agent_event(&at(AgentPayload::Ready(Ready { media: vec!["email".into()] })));
    }

    fn planned(floor: &Floor, pending: &Pending) -> Vec<Planned> {
        plan(floor, &Workflow::from_toml(WORKFLOW).unwrap(), None, pending, NOW)
    }

    #[test]
    fn screens_classifies_then_offers_to_a_skilled_agent_within_capacity() {
        let mut floor = Floor::new(20_000, 3_600_000);
        waiting(&mut floor, "ooo", &[("subject", "Out of office until Monday")]);
        waiting(&mut floor, "new", &[("subject", "Please cancel my order")]);
        waiting(&mut floor, "ready", &[("subject", "hello"), ("category", "general")]);
        agent(&mut floor, "novice", 1);
        agent(&mut floor, "ann", 3);
        let plan = planned(&floor, &Pending::default());
        let for_id = |id: &str| plan.iter().find(|p| p.interaction_id == id).map(|p| &p.payload);
        assert!(matches!(for_id("ooo"), Some(CommandPayload::Stop(s)) if s.reason == "screened: automatic reply"), "{plan:#?}");
        assert!(
            matches!(for_id("new"), Some(CommandPayload::ChangeProperties(c)) if c.set.get("category").map(String::as_str) == Some("cancellation")),
            "{plan:#?}"
        );
        // Only Ann has the skill; the novice is never offered anything.
        assert!(matches!(for_id("ready"), Some(CommandPayload::Offer(o)) if o.agent_id == "ann"), "{plan:#?}");
        assert!(!plan.iter().any(|p| matches!(&p.payload, CommandPayload::Offer(o) if o.agent_id == "novice")));
    }

    #[test]
    fn an_offer_in_flight_blocks_its_interaction_and_uses_the_agents_capacity() {
        let mut floor = Floor::new(20_000, 3_600_000);
        waiting(&mut floor, "first", &[("subject", "a"), ("category", "general")]);
        waiting(&mut floor, "second", &[("subject", "b"), ("category", "general")]);
        agent(&mut floor, "ann", 3);
        let mut pending = Pending::default();
        let plan = planned(&floor, &pending);
        let offers: Vec<&Planned> = plan.iter().filter(|p| matches!(p.payload, CommandPayload::Offer(_))).collect();
        assert_eq!(offers.len(), 1, "capacity 1: one offer at a time: {plan:#?}");
        pending.add(offers[0]);
        // Until the outcome is on the floor: no second offer to Ann, the first left alone.
        let again = planned(&floor, &pending);
        assert!(again.iter().all(|p| !matches!(p.payload, CommandPayload::Offer(_))), "{again:#?}");
        assert!(again.iter().all(|p| p.interaction_id != offers[0].interaction_id));
    }
}
