//! The interaction state machine: which commands are valid in which state, and what events
//! they cause. Pure: the same board and command always give the same answer, which is what
//! lets a restarted server re-derive exactly the events it would have written.

use contract::command::{CommandPayload, InteractionCommand};
use contract::event::{
    AgentId, AgentReason, CommandRejected, EventPayload, Locked, OfferedToAgent, PartyJoined,
    PlacedInQueue, PropertiesChanged, ReturnedToQueue, Stopped, Submitted, Transferred, Unlocked,
};
use crate::board::{Board, Interaction, Status};

/// Longest accepted offer timeout: an offer outliving this is certainly a mistake.
const MAX_OFFER_TIMEOUT_MS: i64 = 24 * 60 * 60 * 1000;

/// The events `command` causes, or the reason it is refused.
pub fn decide(board: &Board, command: &InteractionCommand) -> Result<Vec<EventPayload>, String> {
    let id = &command.interaction_id;
    if id.trim().is_empty() {
        return Err("interaction_id is empty".into());
    }
    if let CommandPayload::Submit(s) = &command.payload {
        if board.interaction(id).is_some() {
            return Err(format!("interaction {id} already exists"));
        }
        if board.has_left(id) {
            return Err(format!("interaction {id} already exists (it has ended)"));
        }
        if s.target_queue.trim().is_empty() {
            return Err("target_queue is empty".into());
        }
        return Ok(vec![
            EventPayload::Submitted(Submitted {
                media_type: s.media_type,
                origin: s.origin.clone(),
                priority: s.priority,
                properties: s.properties.clone(),
                contact_id: s.contact_id.clone(),
                content_ref: s.content_ref.clone(),
                parent_interaction_id: s.parent_interaction_id.clone(),
                submitted_by: command.issued_by.clone(),
            }),
            EventPayload::PlacedInQueue(PlacedInQueue {
                queue: s.target_queue.clone(),
                previous_queue: None,
                reason: "submitted".into(),
            }),
        ]);
    }
    let Some(i) = board.interaction(id) else {
        if board.has_left(id) {
            return Err(format!(
                "interaction {id} ended more than {} s ago and is no longer live: its history is in UCS and the log",
                board.keep_stopped_ms().unwrap_or(0) / 1000
            ));
        }
        return Err(format!("no interaction {id} (it was never submitted)"));
    };
    // Closed to work, not to facts learnt later (a delivery receipt after "sent").
    if i.status == Status::Stopped
        && let CommandPayload::ChangeProperties(c) = &command.payload
        && c.priority.is_none()
        && !(c.set.is_empty() && c.remove.is_empty())
    {
        return Ok(vec![EventPayload::PropertiesChanged(PropertiesChanged {
            set: c.set.clone(),
            removed: c.remove.clone(),
            priority: None,
        })]);
    }
    if i.status == Status::Stopped {
        return Err(format!(
            "interaction {id} is stopped ({})",
            i.stop_reason.as_deref().unwrap_or("no reason given")
        ));
    }
    let by = command.issued_by.as_str();
    match &command.payload {
        CommandPayload::Submit(_) => Err(format!("interaction {id} already exists")),
        CommandPayload::ChangeProperties(c) => {
            if c.set.is_empty() && c.remove.is_empty() && c.priority.is_none() {
                return Err("nothing to change: set, remove and priority are all empty".into());
            }
            Ok(vec![EventPayload::PropertiesChanged(PropertiesChanged {
                set: c.set.clone(),
                removed: c.remove.clone(),
                priority: c.priority,
            })])
        }
        CommandPayload::Lock(l) => {
            if let Some(lock) = &i.lock {
                return Err(format!(
                    "interaction {id} is already locked by {}",
                    lock.holder
                ));
            }
            if i.status != Status::Waiting {
                return Err(format!(
                    "only a waiting interaction can be locked; {id} is {}",
                    status_name(i)
                ));
            }
            Ok(vec![EventPayload::Locked(Locked {
                holder: l.holder.clone(),
                holder_kind: l.holder_kind,
            })])
        }
        CommandPayload::Unlock(u) => match &i.lock {
            None => Err(format!("interaction {id} is not locked")),
            Some(lock) if lock.holder != u.holder => Err(format!(
                "interaction {id} is locked by {}, not by {}",
                lock.holder, u.holder
            )),
            Some(_) => Ok(vec![EventPayload::Unlocked(Unlocked {
                holder: u.holder.clone(),
            })]),
        },
        CommandPayload::Offer(o) => {
            if i.status != Status::Waiting {
                return Err(format!(
                    "only a waiting interaction can be offered; {id} is {}",
                    status_name(i)
                ));
            }
            // Only the lock holder may offer a locked interaction (a supervisor pulling it).
            if let Some(lock) = &i.lock
                && lock.holder != by
            {
                return Err(format!("interaction {id} is locked by {}", lock.holder));
            }
            check_agent(&o.agent_id)?;
            if !(1..=MAX_OFFER_TIMEOUT_MS).contains(&o.timeout_ms) {
                return Err(format!(
                    "offer timeout {} ms is outside 1..={MAX_OFFER_TIMEOUT_MS} ms",
                    o.timeout_ms
                ));
            }
            Ok(vec![EventPayload::OfferedToAgent(OfferedToAgent {
                agent_id: o.agent_id.clone(),
                timeout_ms: o.timeout_ms,
            })])
        }
        CommandPayload::AcceptOffer(a) => {
            check_offered_to(i, &a.agent_id)?;
            Ok(vec![
                EventPayload::OfferAccepted(AgentId {
                    agent_id: a.agent_id.clone(),
                }),
                EventPayload::Assigned(AgentId {
                    agent_id: a.agent_id.clone(),
                }),
            ])
        }
        CommandPayload::RejectOffer(r) => {
            check_offered_to(i, &r.agent_id)?;
            Ok(vec![EventPayload::OfferRejected(AgentReason {
                agent_id: r.agent_id.clone(),
                reason: r.reason.clone(),
            })])
        }
        CommandPayload::TimeOutOffer(a) => {
            check_offered_to(i, &a.agent_id)?;
            Ok(vec![EventPayload::OfferTimedOut(AgentId {
                agent_id: a.agent_id.clone(),
            })])
        }
        CommandPayload::RevokeOffer(r) => {
            check_offered_to(i, &r.agent_id)?;
            Ok(vec![EventPayload::OfferRevoked(AgentReason {
                agent_id: r.agent_id.clone(),
                reason: r.reason.clone(),
            })])
        }
        CommandPayload::JoinParty(j) => {
            let owner = check_assigned(i)?;
            check_agent(&j.agent_id)?;
            if owner == j.agent_id {
                return Err(format!("{} owns interaction {id} already", j.agent_id));
            }
            if i.parties.contains_key(&j.agent_id) {
                return Err(format!(
                    "{} is already a party to interaction {id}",
                    j.agent_id
                ));
            }
            Ok(vec![EventPayload::PartyJoined(PartyJoined {
                agent_id: j.agent_id.clone(),
                role: j.role,
            })])
        }
        CommandPayload::LeaveParty(a) => {
            if !i.parties.contains_key(&a.agent_id) {
                return Err(format!("{} is not a party to interaction {id}", a.agent_id));
            }
            Ok(vec![EventPayload::PartyLeft(AgentId {
                agent_id: a.agent_id.clone(),
            })])
        }
        CommandPayload::Transfer(t) => {
            check_owned_by(i, &t.from_agent_id)?;
            let transferred = EventPayload::Transferred(Transferred {
                from_agent_id: t.from_agent_id.clone(),
                to_agent_id: t.to_agent_id.clone(),
                to_queue: t.to_queue.clone(),
            });
            match (&t.to_agent_id, &t.to_queue) {
                (Some(agent), None) => {
                    check_agent(agent)?;
                    if *agent == t.from_agent_id {
                        return Err(format!("cannot transfer interaction {id} to its own owner"));
                    }
                    Ok(vec![
                        transferred,
                        EventPayload::OfferedToAgent(OfferedToAgent {
                            agent_id: agent.clone(),
                            timeout_ms: DEFAULT_TRANSFER_OFFER_MS,
                        }),
                    ])
                }
                (None, Some(queue)) => {
                    check_queue(queue)?;
                    Ok(vec![transferred, placed(i, queue, "transferred")])
                }
                _ => Err("a transfer needs exactly one target: to_agent_id or to_queue".into()),
            }
        }
        CommandPayload::ReturnToQueue(r) => {
            check_owned_by(i, &r.agent_id)?;
            let queue = match (&r.queue, &i.queue) {
                (Some(q), _) | (None, Some(q)) => q.clone(),
                (None, None) => return Err(format!("interaction {id} has no queue to return to")),
            };
            check_queue(&queue)?;
            Ok(vec![
                EventPayload::ReturnedToQueue(ReturnedToQueue {
                    agent_id: r.agent_id.clone(),
                    queue: queue.clone(),
                }),
                placed(i, &queue, "returned by agent"),
            ])
        }
        CommandPayload::MoveToQueue(m) => {
            check_queue(&m.queue)?;
            if i.status != Status::Waiting {
                return Err(format!(
                    "only a waiting interaction can be moved; {id} is {}",
                    status_name(i)
                ));
            }
            if let Some(lock) = &i.lock
                && lock.holder != by {
                    return Err(format!("interaction {id} is locked by {}", lock.holder));
                }
            if i.queue.as_deref() == Some(m.queue.as_str()) {
                return Err(format!("interaction {id} is already in queue {}", m.queue));
            }
            Ok(vec![placed(i, &m.queue, &m.reason)])
        }
        CommandPayload::Stop(s) => Ok(vec![EventPayload::Stopped(Stopped {
            reason: s.reason.clone(),
            stopped_by: command.issued_by.clone(),
        })]),
    }
}

/// Timeout of the offer a transfer to an agent makes.
pub const DEFAULT_TRANSFER_OFFER_MS: i64 = 30_000;

/// The event that records a refused command, with the reason a person reads.
pub fn rejection(command: &InteractionCommand, reason: String) -> EventPayload {
    EventPayload::CommandRejected(CommandRejected {
        command_type: command.payload.kind().to_owned(),
        issued_by: command.issued_by.clone(),
        reason,
    })
}

fn placed(i: &Interaction, queue: &str, reason: &str) -> EventPayload {
    EventPayload::PlacedInQueue(PlacedInQueue {
        queue: queue.to_owned(),
        previous_queue: i.queue.clone(),
        reason: reason.to_owned(),
    })
}

fn status_name(i: &Interaction) -> &'static str {
    match i.status {
        Status::New => "new",
        Status::Waiting => "waiting",
        Status::Offered => "offered to an agent",
        Status::Assigned => "assigned to an agent",
        Status::Stopped => "stopped",
    }
}

fn check_agent(agent: &str) -> Result<(), String> {
    if agent.trim().is_empty() {
        Err("agent_id is empty".into())
    } else {
        Ok(())
    }
}

fn check_queue(queue: &str) -> Result<(), String> {
    if queue.trim().is_empty() {
        Err("queue name is empty".into())
    } else {
        Ok(())
    }
}

fn check_offered_to(i: &Interaction, agent: &str) -> Result<(), String> {
    match &i.offer {
        Some(offer) if offer.agent_id == agent => Ok(()),
        Some(offer) => Err(format!(
            "interaction {} is offered to {}, not to {agent}",
            i.id, offer.agent_id
        )),
        None => Err(format!(
            "interaction {} has no pending offer (it is {})",
            i.id,
            status_name(i)
        )),
    }
}

fn check_assigned(i: &Interaction) -> Result<&str, String> {
    match (&i.status, &i.owner) {
        (Status::Assigned, Some(owner)) => Ok(owner),
        _ => Err(format!(
            "interaction {} is not assigned to an agent (it is {})",
            i.id,
            status_name(i)
        )),
    }
}

fn check_owned_by(i: &Interaction, agent: &str) -> Result<(), String> {
    let owner = check_assigned(i)?;
    if owner == agent {
        Ok(())
    } else {
        Err(format!(
            "interaction {} is owned by {owner}, not by {agent}",
            i.id
        ))
    }
}
