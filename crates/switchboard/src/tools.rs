//! Operator and analytics tools that read the log itself, never a projection:
//! `audit` (one interaction's timeline, each step with its cause) and `tail` (any topic as
//! JSON lines).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use contract::AvroMessage;
use contract::agent::AgentEvent;
use contract::chat::ChatEvent;
use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use contract::ucs::UcsEvent;
use plumbing::config::KafkaSettings;
use plumbing::topics::{self, Topics};
use plumbing::{Consumer, Headers, Message, Offset, OwnedMessage, TopicPartitionList, kafka};
use serde::Serialize;
use serde_json::{Value, json};

/// Every record of one partition from `from` up to its end as it is now.
async fn read_partition(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let reader = kafka::reader(settings)?;
    let high = kafka::high_watermark(&reader, topic, partition)
        .with_context(|| format!("reading the end offset of {topic} partition {partition}"))?;
    let mut out = Vec::new();
    if high == 0 {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    reader.assign(&tpl)?;
    while out.last().is_none_or(|m: &OwnedMessage| m.offset() + 1 < high) {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .with_context(|| format!("no record from {topic} partition {partition} within 30 s"))??;
        out.push(message.detach());
    }
    Ok(out)
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
    let (commands, events) = tokio::try_join!(
        read_partition(settings, &commands_topic, partition),
        read_partition(settings, &events_topic, partition)
    )?;
    let mut undecodable = Vec::new();
    let mut by_id: BTreeMap<String, (InteractionCommand, &OwnedMessage)> = BTreeMap::new();
    let mut command_order = Vec::new();
    for m in commands.iter().filter(|m| m.key() == Some(interaction_id.as_bytes())) {
        match InteractionCommand::decode(m.payload().unwrap_or_default()) {
            Ok(c) => {
                command_order.push(c.command_id.clone());
                by_id.insert(c.command_id.clone(), (c, m));
            }
            Err(e) => undecodable.push(format!("{commands_topic} {}@{}: {e}", m.partition(), m.offset())),
        }
    }
    let mut steps: Vec<AuditStep> = Vec::new();
    let mut shown: HashSet<String> = HashSet::new();
    let command_step = |c: &InteractionCommand, m: &OwnedMessage| AuditStep {
        step: 0,
        record: "command",
        kind: c.payload.kind().to_owned(),
        id: c.command_id.clone(),
        at: c.issued_at,
        at_utc: utc(c.issued_at),
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        issued_by: Some(c.issued_by.clone()),
        caused_by: None,
        caused_by_kind: None,
        payload: inner(&c.payload),
    };
    for m in events.iter().filter(|m| m.key() == Some(interaction_id.as_bytes())) {
        let event = match InteractionEvent::decode(m.payload().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                undecodable.push(format!("{events_topic} {}@{}: {e}", m.partition(), m.offset()));
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
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
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

pub fn print_audit(audit: &Audit, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "interaction {}  (partition {} of interaction.commands / interaction.events)",
        audit.interaction_id, audit.partition
    )?;
    if audit.steps.is_empty() {
        writeln!(out, "  no commands or events with this key")?;
    }
    for step in &audit.steps {
        let cause = match (&step.caused_by, &step.caused_by_kind) {
            (Some(id), Some(kind)) => format!("  <- {kind} {}", short(id)),
            (Some(id), None) => format!("  <- {} (command no longer on the commands topic)", short(id)),
            (None, Some(note)) => format!("  {note}"),
            (None, None) => String::new(),
        };
        let who = step.issued_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
        writeln!(
            out,
            "{:>3}. {}  {:<7} {:<18} {}{}{}  [{}#{}@{}]",
            step.step,
            step.at_utc,
            step.record,
            step.kind,
            summary(&step.payload),
            if step.record == "command" { who } else { String::new() },
            cause,
            step.topic,
            step.partition,
            step.offset
        )?;
    }
    for u in &audit.undecodable {
        writeln!(out, "  undecodable: {u}")?;
    }
    Ok(())
}

/// The fields of a payload union branch (`{"Kind": {...}}` -> `{...}`).
fn inner<T: Serialize>(payload: &T) -> Value {
    match serde_json::to_value(payload) {
        Ok(Value::Object(map)) if map.len() == 1 => map.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Ok(v) => v,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// `k=v` pairs of the non-empty fields.
fn summary(payload: &Value) -> String {
    let Value::Object(map) = payload else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !matches!(v, Value::Null) && v.as_object().is_none_or(|o| !o.is_empty()) && v.as_array().is_none_or(|a| !a.is_empty()))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn utc(millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Prints every record of `topic` as one JSON line (decoded with its schema), from the
/// beginning; stops at the end unless `follow`.
pub async fn tail(
    settings: &KafkaSettings,
    topics: &Topics,
    topic: &str,
    follow: bool,
    max: Option<usize>,
    out: &mut (impl Write + Send),
) -> anyhow::Result<usize> {
    let declared = topics
        .specs()
        .iter()
        .find(|s| s.name == topic || topics.name(&s.name) == topic)
        .with_context(|| {
            let known: Vec<String> = topics.specs().iter().map(|s| s.name.clone()).collect();
            format!("unknown topic '{topic}' (known: {})", known.join(", "))
        })?;
    let logical = declared.name.clone();
    let full = topics.name(&logical);
    let reader = kafka::reader(settings)?;
    let partitions = declared.partitions;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in 0..partitions {
        let high = kafka::high_watermark(&reader, &full, p)?;
        if high > 0 {
            ends.insert(p, high);
        }
    }
    kafka::assign_all(&reader, &full, partitions, Offset::Beginning)?;
    let mut printed = 0;
    let started = SystemTime::now();
    while follow || !ends.is_empty() {
        if max.is_some_and(|m| printed >= m) {
            break;
        }
        let message = reader.recv().await?;
        if let Some(&end) = ends.get(&message.partition())
            && message.offset() + 1 >= end
        {
            ends.remove(&message.partition());
        }
        let value = decode_any(&logical, message.payload().unwrap_or_default());
        let headers: BTreeMap<String, String> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let line = json!({
            "topic": full,
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp().to_millis(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": headers,
            "value": value.as_ref().ok(),
            "error": value.as_ref().err(),
        });
        writeln!(out, "{line}")?;
        printed += 1;
    }
    out.flush()?;
    tracing::debug!(printed, elapsed = ?started.elapsed().unwrap_or_default(), "tail done");
    Ok(printed)
}

fn decode_any(topic: &str, bytes: &[u8]) -> Result<Value, String> {
    fn to_json<T: AvroMessage>(bytes: &[u8]) -> Result<Value, String> {
        let value = T::decode(bytes).map_err(|e| e.to_string())?;
        serde_json::to_value(value).map_err(|e| e.to_string())
    }
    match topic {
        topics::INTERACTION_COMMANDS => to_json::<InteractionCommand>(bytes),
        topics::INTERACTION_EVENTS => to_json::<InteractionEvent>(bytes),
        topics::AGENT_EVENTS => to_json::<AgentEvent>(bytes),
        topics::CHAT_EVENTS => to_json::<ChatEvent>(bytes),
        topics::UCS_EVENTS => to_json::<UcsEvent>(bytes),
        // Dead letters are whatever could not be decoded: shown as hex, the reason is in the headers.
        _ => Ok(json!({ "bytes_hex": hex(bytes) })),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
