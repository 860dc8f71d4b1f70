//! The desk's rules, with no I/O: [`plan`] turns an action on an interaction (`accept`,
//! `transfer`, `qa`, a callback `outcome`, ...) into the interaction commands it asks the
//! Interaction Server for, checking who may do it and what the interaction's state allows;
//! the desk sends them and answers with the outcome.

use std::collections::BTreeMap;

use contract::command::{
    AgentReason, AgentRef, ChangeProperties, CommandPayload, JoinParty, Lock, LockHolderKind, MediaType, MoveToQueue, Offer,
    PartyRole, ReturnToQueue, Stop, Transfer, Unlock,
};
use interactions::board::{Interaction, Status};
use serde::Deserialize;

/// Body of every interaction action; each action reads the fields it needs.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub reason: Option<String>,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub text: Option<String>,
    pub role: Option<PartyRole>,
    pub priority: Option<i32>,
    pub decision: Option<String>,
    pub comment: Option<String>,
    /// A callback's outcome: `reached`, `no_answer`, `retry_later` (with `retry_at`, RFC 3339).
    pub outcome: Option<String>,
    pub retry_at: Option<String>,
}

/// Who acts.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: String,
    pub supervisor: bool,
}

/// The deployment's rules the actions follow (from `[desk]` and `[callback]`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub send_queue: String,
    pub qa_returned_queue: String,
    pub max_reply_bytes: usize,
    /// Queues where the system takes over (sending, QA): an agent's transfer or return may not
    /// name them, or a reply would skip QA.
    pub protected_queues: Vec<String>,
    /// The queues the workflow marks as agent targets: a transfer or return names one of them.
    pub agent_targets: Vec<String>,
    /// Callback attempts before it is closed unreached.
    pub callback_max_attempts: u32,
    /// After "no answer", the next attempt is this much later.
    pub callback_retry_delay_s: u64,
}

/// What an action comes to.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Send these commands, in order.
    Commands(Vec<CommandPayload>),
    /// Release this reply text (a child interaction; the desk builds it).
    Release(String),
}

/// Why an action is refused; each maps to one HTTP status.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is incomplete or wrong.
    Bad(String),
    /// 403: a supervisor's action.
    SupervisorOnly,
    /// 403: not the actor's to do (someone else's interaction, a queue agents may not use).
    Forbidden(String),
    /// 404: no such action.
    UnknownAction(String),
    /// 409: the interaction's state does not allow it.
    Conflict(String),
    /// 413: a reply over the limit.
    TooLarge { bytes: usize, limit: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(m) | Self::Conflict(m) | Self::Forbidden(m) => f.write_str(m),
            Self::SupervisorOnly => f.write_str("only a supervisor may do this"),
            Self::UnknownAction(a) => write!(f, "unknown action {a:?}"),
            Self::TooLarge { bytes, limit } => write!(f, "reply is {bytes} bytes; the limit is {limit}"),
        }
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::Bad(message.into())
}

/// What `action` by `actor` on `current` (as the floor shows it) asks for, at `now`.
pub fn plan(action: &str, request: ActionRequest, actor: &Actor, current: &Interaction, rules: &Rules, now: i64) -> Result<Plan, Refusal> {
    let me = actor.user.clone();
    let id = &current.id;
    let need = |field: Option<String>, name: &str| field.filter(|v| !v.trim().is_empty()).ok_or_else(|| bad(format!("`{name}` is required for {action}")));
    let supervisor_only = || if actor.supervisor { Ok(()) } else { Err(Refusal::SupervisorOnly) };
    let owner_or_supervisor = |what: &str| {
        if actor.supervisor || current.owner.as_deref() == Some(me.as_str()) {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!("only the agent handling interaction {id} or a supervisor may {what}")))
        }
    };
    let agent_target = |queue: &str| {
        if rules.protected_queues.iter().any(|q| q == queue) {
            Err(Refusal::Forbidden(format!("queue {queue:?} is not one agents send work to: the system moves interactions there")))
        } else if !rules.agent_targets.iter().any(|q| q == queue) {
            Err(Refusal::Forbidden(format!("queue {queue:?} is not an agent target in the workflow; agent targets: {}", rules.agent_targets.join(", "))))
        } else {
            Ok(())
        }
    };
    let reply_size = |text: &str| {
        if text.len() > rules.max_reply_bytes { Err(Refusal::TooLarge { bytes: text.len(), limit: rules.max_reply_bytes }) } else { Ok(()) }
    };
    let steps: Vec<CommandPayload> = match action {
        "accept" => vec![CommandPayload::AcceptOffer(AgentRef { agent_id: me.clone() })],
        "reject" => vec![CommandPayload::RejectOffer(AgentReason {
            agent_id: me.clone(),
            reason: request.reason.unwrap_or_else(|| "rejected by agent".into()),
        })],
        "transfer" => match (request.agent, request.queue) {
            (Some(agent), None) => {
                owner_or_supervisor("transfer it")?;
                vec![CommandPayload::Transfer(Transfer { from_agent_id: me.clone(), to_agent_id: Some(agent), to_queue: None })]
            }
            (None, Some(queue)) => {
                owner_or_supervisor("transfer it")?;
                agent_target(&queue)?;
                vec![CommandPayload::Transfer(Transfer { from_agent_id: me.clone(), to_agent_id: None, to_queue: Some(queue) })]
            }
            _ => return Err(bad("transfer needs exactly one of `agent` and `queue`")),
        },
        "consult" => {
            let agent_id = need(request.agent, "agent")?;
            owner_or_supervisor("bring someone into it")?;
            vec![CommandPayload::JoinParty(JoinParty { agent_id, role: request.role.unwrap_or(PartyRole::Consult) })]
        }
        "leave" => {
            let leaving = request.agent.unwrap_or_else(|| me.clone());
            if leaving == me {
                if !current.parties.contains_key(&me) && current.owner.as_deref() != Some(me.as_str()) {
                    return Err(Refusal::Forbidden(format!("you are not in interaction {id}")));
                }
            } else {
                owner_or_supervisor("take someone else out of it")?;
            }
            vec![CommandPayload::LeaveParty(AgentRef { agent_id: leaving })]
        }
        "return" => {
            owner_or_supervisor("return it")?;
            if let Some(queue) = &request.queue {
                agent_target(queue)?;
            }
            vec![CommandPayload::ReturnToQueue(ReturnToQueue { agent_id: me.clone(), queue: request.queue })]
        }
        "draft" => {
            let text = need(request.text, "text")?;
            check_owner(current, &me)?;
            reply_size(&text)?;
            vec![set_properties([("draft_text", text)])]
        }
        "release" => {
            check_owner(current, &me)?;
            let text = request.text.or_else(|| current.properties.get("draft_text").cloned()).filter(|t| !t.trim().is_empty());
            let text = text.ok_or_else(|| bad("nothing to release: save a draft or send `text`"))?;
            reply_size(&text)?;
            return Ok(Plan::Release(text));
        }
        "done" => {
            check_owner(current, &me)?;
            vec![CommandPayload::Stop(Stop { reason: request.reason.unwrap_or_else(|| "done".into()) })]
        }
        // Supervisor actions.
        "move" => {
            supervisor_only()?;
            vec![CommandPayload::MoveToQueue(MoveToQueue { queue: need(request.queue, "queue")?, reason: format!("moved by supervisor {me}") })]
        }
        "lock" => {
            supervisor_only()?;
            vec![CommandPayload::Lock(Lock { holder: me.clone(), holder_kind: LockHolderKind::Supervisor })]
        }
        "unlock" => {
            supervisor_only()?;
            vec![CommandPayload::Unlock(Unlock { holder: me.clone() })]
        }
        "priority" => {
            supervisor_only()?;
            let priority = request.priority.ok_or_else(|| bad("`priority` is required"))?;
            vec![CommandPayload::ChangeProperties(ChangeProperties { set: BTreeMap::new(), remove: vec![], priority: Some(priority) })]
        }
        "pull" => {
            supervisor_only()?;
            if current.status != Status::Waiting {
                return Err(Refusal::Conflict(format!("interaction {id} is not waiting in a queue (the router may be offering it); try again")));
            }
            // Locked first, so the router cannot offer it to someone else in between.
            let mut steps = Vec::new();
            if current.lock.as_ref().is_none_or(|l| l.holder != me) {
                steps.push(CommandPayload::Lock(Lock { holder: me.clone(), holder_kind: LockHolderKind::Supervisor }));
            }
            steps.push(CommandPayload::Offer(Offer { agent_id: me.clone(), timeout_ms: 60_000 }));
            steps.push(CommandPayload::AcceptOffer(AgentRef { agent_id: me.clone() }));
            steps
        }
        "qa" => {
            supervisor_only()?;
            match request.decision.as_deref() {
                Some("approve") => vec![
                    set_properties([("qa_status", "approved".to_owned()), ("qa_reviewer", me.clone())]),
                    CommandPayload::MoveToQueue(MoveToQueue { queue: rules.send_queue.clone(), reason: format!("QA approved by {me}") }),
                ],
                Some("return") => vec![
                    set_properties([
                        ("qa_status", "returned".to_owned()),
                        ("qa_reviewer", me.clone()),
                        ("qa_comment", need(request.comment, "comment")?),
                    ]),
                    CommandPayload::MoveToQueue(MoveToQueue { queue: rules.qa_returned_queue.clone(), reason: format!("QA returned by {me}") }),
                ],
                _ => return Err(bad("`decision` must be \"approve\" or \"return\"")),
            }
        }
        "outcome" => {
            check_owner(current, &me)?;
            callback_outcome(rules, current, &me, request.outcome.as_deref(), request.retry_at.as_deref(), request.comment, now)?
        }
        other => return Err(Refusal::UnknownAction(other.to_owned())),
    };
    Ok(Plan::Commands(steps))
}

/// What an agent's callback outcome does: `reached` closes it; `no_answer` puts it back for
/// another attempt `callback_retry_delay_s` later, or closes it unreached after
/// `callback_max_attempts`; `retry_later` puts it back for `retry_at`. The attempt is recorded
/// on the interaction.
fn callback_outcome(
    rules: &Rules,
    current: &Interaction,
    me: &str,
    outcome: Option<&str>,
    retry_at: Option<&str>,
    comment: Option<String>,
    now: i64,
) -> Result<Vec<CommandPayload>, Refusal> {
    if current.media_type != MediaType::Callback {
        return Err(bad("an outcome is for callbacks"));
    }
    let attempts = current.properties.get("callback_attempts").and_then(|a| a.parse::<u32>().ok()).unwrap_or(0) + 1;
    let outcome = outcome.ok_or_else(|| bad("`outcome` is required: reached, no_answer or retry_later"))?;
    let mut set: BTreeMap<String, String> = [
        ("callback_attempts", attempts.to_string()),
        ("callback_last_outcome", outcome.to_owned()),
        ("callback_last_attempt_at", now.to_string()),
        ("callback_last_agent", me.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(comment) = comment.filter(|c| !c.trim().is_empty()) {
        set.insert("callback_comment".into(), comment);
    }
    let back = CommandPayload::ReturnToQueue(ReturnToQueue { agent_id: me.to_owned(), queue: None });
    let (extra, last): (Vec<(&str, String)>, CommandPayload) = match outcome {
        "reached" => (vec![("callback_outcome", "reached".into())], CommandPayload::Stop(Stop { reason: "callback: reached".into() })),
        "no_answer" if attempts >= rules.callback_max_attempts => (
            vec![("callback_outcome", "unreached".into())],
            CommandPayload::Stop(Stop { reason: format!("callback: no answer after {attempts} attempts") }),
        ),
        "no_answer" => {
            let next = now.saturating_add(i64::try_from(rules.callback_retry_delay_s.saturating_mul(1000)).unwrap_or(i64::MAX / 2));
            (vec![("callback_at", next.to_string())], back)
        }
        "retry_later" => {
            let at = retry_at.ok_or_else(|| bad("`retry_at` (RFC 3339) is required for retry_later"))?;
            let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| bad(format!("retry_at {at:?} is not an RFC 3339 time: {e}")))?.timestamp_millis();
            if at <= now {
                return Err(bad("retry_at is not in the future"));
            }
            (vec![("callback_at", at.to_string())], back)
        }
        other => return Err(bad(format!("outcome {other:?} is not one of reached, no_answer, retry_later"))),
    };
    set.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Ok(vec![CommandPayload::ChangeProperties(ChangeProperties { set, remove: vec![], priority: None }), last])
}

/// The owner's work only: someone else's is 403; one nobody holds yet (waiting, offered) is a
/// state that may change, 409.
fn check_owner(i: &Interaction, me: &str) -> Result<(), Refusal> {
    match i.owner.as_deref() {
        Some(owner) if owner == me => Ok(()),
        Some(_) => Err(Refusal::Forbidden(format!("interaction {} is another agent's", i.id))),
        None => Err(Refusal::Conflict(format!("interaction {} is not assigned to you", i.id))),
    }
}

/// A `ChangeProperties` setting `pairs`.
pub fn set_properties<const N: usize>(pairs: [(&str, String); N]) -> CommandPayload {
    CommandPayload::ChangeProperties(ChangeProperties {
        set: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        remove: vec![],
        priority: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn rules() -> Rules {
        Rules {
            send_queue: "outbound-send".into(),
            qa_returned_queue: "qa-returned".into(),
            protected_queues: vec!["outbound-send".into(), "outbound".into(), "qa-returned".into()],
            agent_targets: vec!["billing".into(), "inbound".into()],
            max_reply_bytes: 20,
            callback_max_attempts: 3,
            callback_retry_delay_s: 900,
        }
    }

    fn agent(user: &str) -> Actor {
        Actor { user: user.into(), supervisor: false }
    }

    fn supervisor(user: &str) -> Actor {
        Actor { user: user.into(), supervisor: true }
    }

    /// An interaction as the floor shows it: owned by `owner` (or waiting), of `media`.
    fn interaction(owner: Option<&str>, media: MediaType, properties: &[(&str, &str)]) -> Interaction {
        let value = serde_json::json!({
            "id": "i1", "media_type": "email", "origin": "test", "status": if owner.is_some() { "assigned" } else { "waiting" },
            "queue": "inbound", "priority": 0, "properties": {}, "contact_id": null, "content_ref": null,
            "parent_interaction_id": null, "submitted_at": 0, "queued_at": 0, "lock": null, "offer": null,
            "owner": owner, "parties": {}, "stop_reason": null, "declined_by": [], "updated_at": 0, "rejected_commands": 0,
        });
        let mut i: Interaction = serde_json::from_value(value).unwrap();
        i.media_type = media;
        i.properties = properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        i
    }

    fn request(json: serde_json::Value) -> ActionRequest {
        serde_json::from_value(json).unwrap()
    }

    fn commands(plan: Result<Plan, Refusal>) -> Vec<CommandPayload> {
        match plan {
            Ok(Plan::Commands(c)) => c,
            other => panic!("expected commands, got {other:?}"),
        }
    }

    #[test]
    fn an_agent_accepts_transfers_and_finishes_only_what_is_theirs() {
        let mine = interaction(Some("ann"), MediaType::Email, &[]);
        assert_eq!(
            commands(plan("accept", ActionRequest::default(), &agent("ann"), &mine, &rules(), NOW)),
            vec![CommandPayload::AcceptOffer(AgentRef { agent_id: "ann".into() })]
        );
        let to_queue = commands(plan("transfer", request(serde_json::json!({"queue": "billing"})), &agent("ann"), &mine, &rules(), NOW));
        assert!(matches!(&to_queue[..], [CommandPayload::Transfer(t)] if t.to_queue.as_deref() == Some("billing") && t.to_agent_id.is_none()));
        assert_eq!(
            plan("transfer", request(serde_json::json!({"queue": "billing", "agent": "bob"})), &agent("ann"), &mine, &rules(), NOW),
            Err(Refusal::Bad("transfer needs exactly one of `agent` and `queue`".into()))
        );
        assert!(matches!(plan("done", ActionRequest::default(), &agent("bob"), &mine, &rules(), NOW), Err(Refusal::Forbidden(_))));
        let waiting = interaction(None, MediaType::Email, &[]);
        assert!(matches!(plan("done", ActionRequest::default(), &agent("ann"), &waiting, &rules(), NOW), Err(Refusal::Conflict(_))));
        assert!(matches!(&commands(plan("done", ActionRequest::default(), &agent("ann"), &mine, &rules(), NOW))[..], [CommandPayload::Stop(s)] if s.reason == "done"));
        assert_eq!(plan("fly", ActionRequest::default(), &agent("ann"), &mine, &rules(), NOW), Err(Refusal::UnknownAction("fly".into())));
    }

    #[test]
    fn agents_act_only_on_their_own_work_and_never_into_the_systems_queues() {
        let mut anns = interaction(Some("ann"), MediaType::Chat, &[]);
        anns.parties.insert("bob".into(), PartyRole::Consult);
        let forbidden = |action: &str, body: serde_json::Value, who: &Actor| match plan(action, request(body), who, &anns, &rules(), NOW) {
            Err(Refusal::Forbidden(why)) => why,
            other => panic!("{action} by {}: expected 403, got {other:?}", who.user),
        };
        // Cid is not on Ann's chat: no consulting himself in, no removing anyone, no moving it.
        forbidden("consult", serde_json::json!({"agent": "cid"}), &agent("cid"));
        forbidden("leave", serde_json::json!({"agent": "bob"}), &agent("cid"));
        forbidden("leave", serde_json::json!({}), &agent("cid"));
        forbidden("transfer", serde_json::json!({"agent": "cid"}), &agent("cid"));
        forbidden("transfer", serde_json::json!({"queue": "billing"}), &agent("cid"));
        forbidden("return", serde_json::json!({}), &agent("cid"));
        // Bob, consulted, may leave, not remove the owner.
        assert!(plan("leave", ActionRequest::default(), &agent("bob"), &anns, &rules(), NOW).is_ok());
        forbidden("leave", serde_json::json!({"agent": "ann"}), &agent("bob"));
        // Ann may, but not past QA into the send queue or the QA queues.
        assert!(plan("consult", request(serde_json::json!({"agent": "cid"})), &agent("ann"), &anns, &rules(), NOW).is_ok());
        assert!(plan("leave", request(serde_json::json!({"agent": "bob"})), &agent("ann"), &anns, &rules(), NOW).is_ok());
        assert!(plan("transfer", request(serde_json::json!({"queue": "billing"})), &agent("ann"), &anns, &rules(), NOW).is_ok());
        for queue in ["outbound-send", "outbound", "qa-returned"] {
            let why = forbidden("transfer", serde_json::json!({"queue": queue}), &agent("ann"));
            assert!(why.contains("not one agents send work to"), "{why}");
            forbidden("return", serde_json::json!({"queue": queue}), &agent("ann"));
        }
        // Only queues the workflow marks as agent targets.
        let why = forbidden("transfer", serde_json::json!({"queue": "qa-review"}), &agent("ann"));
        assert!(why.contains("not an agent target in the workflow"), "{why}");
        forbidden("return", serde_json::json!({"queue": "made-up"}), &agent("ann"));
        // A supervisor may step in.
        assert!(plan("consult", request(serde_json::json!({"agent": "cid"})), &supervisor("sue"), &anns, &rules(), NOW).is_ok());
        assert!(plan("leave", request(serde_json::json!({"agent": "bob"})), &supervisor("sue"), &anns, &rules(), NOW).is_ok());
    }

    #[test]
    fn drafts_and_releases_respect_the_reply_limit_and_fall_back_to_the_draft() {
        let drafted = interaction(Some("ann"), MediaType::Email, &[("draft_text", "Saved draft")]);
        assert_eq!(plan("release", ActionRequest::default(), &agent("ann"), &drafted, &rules(), NOW), Ok(Plan::Release("Saved draft".into())));
        let long = request(serde_json::json!({"text": "x".repeat(21)}));
        assert_eq!(plan("draft", long, &agent("ann"), &drafted, &rules(), NOW), Err(Refusal::TooLarge { bytes: 21, limit: 20 }));
        let empty = interaction(Some("ann"), MediaType::Email, &[]);
        assert!(matches!(plan("release", ActionRequest::default(), &agent("ann"), &empty, &rules(), NOW), Err(Refusal::Bad(m)) if m.contains("nothing to release")));
    }

    #[test]
    fn supervisor_actions_are_refused_to_agents_and_pull_locks_first() {
        let waiting = interaction(None, MediaType::Email, &[]);
        assert_eq!(plan("pull", ActionRequest::default(), &agent("ann"), &waiting, &rules(), NOW), Err(Refusal::SupervisorOnly));
        let pulled = commands(plan("pull", ActionRequest::default(), &supervisor("sue"), &waiting, &rules(), NOW));
        assert!(matches!(&pulled[..], [CommandPayload::Lock(_), CommandPayload::Offer(o), CommandPayload::AcceptOffer(_)] if o.agent_id == "sue"), "{pulled:?}");
        let assigned = interaction(Some("ann"), MediaType::Email, &[]);
        assert!(matches!(plan("pull", ActionRequest::default(), &supervisor("sue"), &assigned, &rules(), NOW), Err(Refusal::Conflict(_))));
        let approved = commands(plan("qa", request(serde_json::json!({"decision": "approve"})), &supervisor("sue"), &assigned, &rules(), NOW));
        assert!(matches!(&approved[..], [CommandPayload::ChangeProperties(c), CommandPayload::MoveToQueue(m)]
            if c.set.get("qa_status").map(String::as_str) == Some("approved") && m.queue == "outbound-send"));
        assert!(matches!(plan("qa", request(serde_json::json!({"decision": "return"})), &supervisor("sue"), &assigned, &rules(), NOW), Err(Refusal::Bad(m)) if m.contains("comment")));
    }

    #[test]
    fn callback_outcomes_retry_then_close_unreached() {
        let no_answer = || request(serde_json::json!({"outcome": "no_answer"}));
        let first = interaction(Some("ann"), MediaType::Callback, &[]);
        let retried = commands(plan("outcome", no_answer(), &agent("ann"), &first, &rules(), NOW));
        assert!(matches!(&retried[..], [CommandPayload::ChangeProperties(c), CommandPayload::ReturnToQueue(_)]
            if c.set.get("callback_at") == Some(&(NOW + 900_000).to_string()) && c.set.get("callback_attempts").map(String::as_str) == Some("1")));
        let last = interaction(Some("ann"), MediaType::Callback, &[("callback_attempts", "2")]);
        let closed = commands(plan("outcome", no_answer(), &agent("ann"), &last, &rules(), NOW));
        assert!(matches!(&closed[..], [CommandPayload::ChangeProperties(c), CommandPayload::Stop(s)]
            if c.set.get("callback_outcome").map(String::as_str) == Some("unreached") && s.reason.contains("3 attempts")));
        let past = request(serde_json::json!({"outcome": "retry_later", "retry_at": "2001-01-01T00:00:00Z"}));
        assert_eq!(plan("outcome", past, &agent("ann"), &first, &rules(), NOW), Err(Refusal::Bad("retry_at is not in the future".into())));
        let mail = interaction(Some("ann"), MediaType::Email, &[]);
        assert_eq!(plan("outcome", no_answer(), &agent("ann"), &mail, &rules(), NOW), Err(Refusal::Bad("an outcome is for callbacks".into())));
    }
}
