//! Operator and analytics tools that read the log itself, never a projection:
//! `audit` (one interaction's timeline, each step with its cause; built by the `history`
//! crate, printed here) and `tail` (any topic as JSON lines).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use anyhow::Context;
use contract::AvroMessage;
use contract::agent::AgentEvent;
use contract::chat::ChatEvent;
use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use contract::ucs::UcsEvent;
use runtime::config::KafkaSettings;
use runtime::topics::{self, Topics};
use runtime::kafka;
use serde_json::{Value, json};

pub use history::{Audit, AuditStep, audit};

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
    let mut printed = 0;
    let started = SystemTime::now();
    if max != Some(0) {
        kafka::read_topic(settings, &full, follow, |record| {
            let value = decode_any(&logical, &record.payload);
            let headers: BTreeMap<String, String> =
                record.headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
            let line = json!({
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp_ms,
                "key": record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "headers": headers,
                "value": value.as_ref().ok(),
                "error": value.as_ref().err(),
            });
            writeln!(out, "{line}")?;
            printed += 1;
            Ok(max.is_none_or(|m| printed < m))
        })
        .await?;
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
