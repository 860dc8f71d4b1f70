//! Reads of the log itself, never of a projection (the log is the source of truth):
//! - [`audit`]: one interaction's timeline, each command followed by the events it caused;
//! - [`board_at`]: the queues as they stood at a past moment, rebuilt by replaying
//!   `interaction.events` up to it (time travel).
//!
//! Both read whole partitions from the beginning, so their time grows with the log: they are
//! for an operator's question, not for a page refreshed every second. Their memory does not:
//! the audit keeps only the interaction's own records, time travel folds as it reads; and each
//! gives up after [`READ_LIMIT`] with an error saying so.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use contract::AvroMessage;
use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use runtime::config::KafkaSettings;
use runtime::topics::{self, Topics};
use runtime::kafka;
use runtime::record::Record;
use queues::board::Board;
use serde::Serialize;
use serde_json::{Value, json};

/// The longest an audit or a time travel may read.
pub const READ_LIMIT: Duration = Duration::from_secs(120);

/// The records of one partition with `key`, up to its end as it is now (a stall of 30 s is an
/// error); the others are read and dropped.
pub async fn read_partition_keyed(settings: &KafkaSettings, topic: &str, partition: i32, key: &[u8]) -> anyhow::Result<Vec<Record>> {
    Ok(kafka::read_partition_keyed(settings, topic, partition, key, Some(Duration::from_secs(30))).await?)
}

async fn within_limit<T>(what: &str, read: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(READ_LIMIT, read)
        .await
        .map_err(|_| anyhow::anyhow!("{what} read the log for {} s without finishing; the log is too long for this question", READ_LIMIT.as_secs()))?
}

#[derive(Debug, Serialize)]
pub struct AuditStep {
    pub step: usize,
    /// `command` or `event`.
    pub record: &'static str,
    pub kind: String,
    pub id: String,
    pub at: i64,
    pub at_utc: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Who asked (commands) or the command that caused it (events).
    pub issued_by: Option<String>,
    pub caused_by: Option<String>,
    pub caused_by_kind: Option<String>,
    pub payload: Value,
}

#[derive(Debug, Serialize)]
pub struct Audit {
    pub interaction_id: String,
    pub partition: i32,
    pub steps: Vec<AuditStep>,
    /// Records with this key that could not be decoded, with the reason.
    pub undecodable: Vec<String>,
}

/// The timeline of one interaction from `interaction.commands` and `interaction.events`: each
/// command, then the events it caused, in log order.
pub async fn audit(
    settings: &KafkaSettings,
    topics: &Topics,
    interaction_id: &str,
) -> anyhow::Result<Audit> {
    let commands_topic = topics.name(topics::INTERACTION_COMMANDS);
    let events_topic = topics.name(topics::INTERACTION_EVENTS);
    let partitions = topics
        .partitions(topics::INTERACTION_COMMANDS)
        .context("interaction.commands is not declared in the topic list")?;
    let partition = kafka::partition_for_key(interaction_id.as_bytes(), partitions);
    let key = interaction_id.as_bytes();
    let (commands, events) = within_limit(
        "the audit",
        async { tokio::try_join!(read_partition_keyed(settings, &commands_topic, partition, key), read_partition_keyed(settings, &events_topic, partition, key)) },
    )
    .await?;
    let mut undecodable = Vec::new();
    let mut by_id: BTreeMap<String, (InteractionCommand, &Record)> = BTreeMap::new();
    let mut command_order = Vec::new();
    for m in commands.iter().filter(|m| m.key.as_deref() == Some(interaction_id.as_bytes())) {
        match InteractionCommand::decode(&m.payload) {
            Ok(c) => {
                command_order.push(c.command_id.clone());
                by_id.insert(c.command_id.clone(), (c, m));
            }
            Err(e) => undecodable.push(format!("{commands_topic} {}@{}: {e}", m.partition, m.offset)),
        }
    }
    let mut steps: Vec<AuditStep> = Vec::new();
    let mut shown: HashSet<String> = HashSet::new();
    let command_step = |c: &InteractionCommand, m: &Record| AuditStep {
        step: 0,
        record: "command",
        kind: c.payload.kind().to_owned(),
        id: c.command_id.clone(),
        at: c.issued_at,
        at_utc: utc(c.issued_at),
        topic: m.topic.clone(),
        partition: m.partition,
        offset: m.offset,
        issued_by: Some(c.issued_by.clone()),
        caused_by: None,
        caused_by_kind: None,
        payload: inner(&c.payload),
    };
    for m in events.iter().filter(|m| m.key.as_deref() == Some(interaction_id.as_bytes())) {
        let event = match InteractionEvent::decode(&m.payload) {
            Ok(e) => e,
            Err(e) => {
                undecodable.push(format!("{events_topic} {}@{}: {e}", m.partition, m.offset));
                continue;
            }
        };
        let cause = by_id.get(&event.causation_id);
        if shown.insert(event.causation_id.clone())
            && let Some((c, cm)) = cause
        {
            steps.push(command_step(c, cm));
        }
        steps.push(AuditStep {
            step: 0,
            record: "event",
            kind: event.payload.kind().to_owned(),
            id: event.event_id.clone(),
            at: event.occurred_at,
            at_utc: utc(event.occurred_at),
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            issued_by: cause.map(|(c, _)| c.issued_by.clone()),
            caused_by: Some(event.causation_id.clone()),
            caused_by_kind: cause.map(|(c, _)| c.payload.kind().to_owned()),
            payload: inner(&event.payload),
        });
    }
    // Commands not (yet) answered by any event.
    for id in command_order {
        if !shown.contains(&id)
            && let Some((c, m)) = by_id.get(&id)
        {
            let mut step = command_step(c, m);
            step.record = "command";
            step.caused_by_kind = Some("(no events yet)".into());
            steps.push(step);
        }
    }
    for (i, step) in steps.iter_mut().enumerate() {
        step.step = i + 1;
    }
    Ok(Audit {
        interaction_id: interaction_id.to_owned(),
        partition,
        steps,
        undecodable,
    })
}

/// The board as it stood at `at` (epoch milliseconds): every interaction event that occurred
/// at or before `at`, applied in log order per partition. Returns the board and how many
/// events it applied.
pub async fn board_at(settings: &KafkaSettings, topics: &Topics, at: i64) -> anyhow::Result<(Board, usize)> {
    let topic = topics.name(topics::INTERACTION_EVENTS);
    let partitions = topics.partitions(topics::INTERACTION_EVENTS).context("interaction.events is not declared in the topic list")?;
    let mut board = Board::new();
    let mut applied = 0;
    within_limit("time travel", async {
        for partition in 0..partitions {
            kafka::read_partition_values(settings, &topic, partition, Some(Duration::from_secs(30)), |value| {
                // Undecodable records are parked by the Interaction Server's readers; skipped here.
                let Ok(event) = InteractionEvent::decode(value) else { return };
                if event.occurred_at <= at {
                    board.apply(&event);
                    applied += 1;
                }
            })
            .await?;
        }
        anyhow::Ok(())
    })
    .await?;
    Ok((board, applied))
}

/// The fields of a payload union branch (`{"Kind": {...}}` -> `{...}`).
pub fn inner<T: Serialize>(payload: &T) -> Value {
    match serde_json::to_value(payload) {
        Ok(Value::Object(map)) if map.len() == 1 => map.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Ok(v) => v,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

pub fn utc(millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

