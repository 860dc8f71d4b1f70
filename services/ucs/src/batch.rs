//! One projector batch: records from the topics in, rows out, in one SQL transaction with the
//! offsets that say where the batch ends. A crash before the commit leaves no trace; after it,
//! the stored offsets say exactly which records are reflected. So a restart neither repeats
//! nor misses anything, on SQLite and PostgreSQL alike, without Kafka transactions.

use std::collections::{BTreeMap, HashMap, HashSet};

use contract::AvroMessage;
use contract::agent::AgentEvent;
use contract::chat::{ChatEvent, ChatPayload};
use contract::event::InteractionEvent;
use contract::ucs::{UcsEvent, UcsPayload};
use sqlx::{AnyConnection, Row};

use crate::db::{Backend, Bulk, Db, DbError, Value, in_list};
use crate::model::{
    AGENT_COLUMNS, AgentRow, HISTORY_COLUMNS, INTERACTION_COLUMNS, InteractionRow, json,
};

/// Which stream a record comes from (topic names carry a deployment prefix; this does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    InteractionEvents,
    AgentEvents,
    ChatEvents,
    UcsEvents,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Self::InteractionEvents,
        Self::AgentEvents,
        Self::ChatEvents,
        Self::UcsEvents,
    ];

    /// The topic's name in `infra/topics.toml`.
    pub fn topic(self) -> &'static str {
        match self {
            Self::InteractionEvents => runtime::topics::INTERACTION_EVENTS,
            Self::AgentEvents => runtime::topics::AGENT_EVENTS,
            Self::ChatEvents => runtime::topics::CHAT_EVENTS,
            Self::UcsEvents => runtime::topics::UCS_EVENTS,
        }
    }
}

/// A record as read from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub source: Source,
    /// The topic's full name, as the offsets are stored under it.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: u64,
    /// Events whose id was already reflected (the log holds them twice).
    pub duplicates: u64,
    /// Records kept in `skipped_records` with the reason.
    pub skipped: u64,
}

/// Applies `records` (in log order per partition) and stores the offsets after them, all in
/// one transaction.
pub async fn apply(db: &Db, records: &[Record]) -> Result<BatchOutcome, DbError> {
    let mut outcome = BatchOutcome::default();
    let mut interaction_events = Vec::new();
    let mut agent_events = Vec::new();
    let mut chat_events = Vec::new();
    let mut ucs_events = Vec::new();
    let mut skipped = Bulk::new(
        "skipped_records",
        &["topic", "partition_id", "record_offset", "reason"],
        "ON CONFLICT (topic, partition_id, record_offset) DO NOTHING",
    );
    let mut offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for record in records {
        let next = offsets
            .entry((record.topic.as_str(), record.partition))
            .or_insert(0);
        *next = (*next).max(record.offset + 1);
        let decoded = match record.source {
            Source::InteractionEvents => InteractionEvent::decode(&record.payload)
                .map(|e| interaction_events.push((record.partition, record.offset, e))),
            Source::AgentEvents => AgentEvent::decode(&record.payload).map(|e| agent_events.push(e)),
            Source::ChatEvents => {
                ChatEvent::decode(&record.payload).map(|e| chat_events.push((record.offset, e)))
            }
            Source::UcsEvents => UcsEvent::decode(&record.payload).map(|e| ucs_events.push(e)),
        };
        if let Err(e) = decoded {
            tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "record kept in skipped_records");
            outcome.skipped += 1;
            skipped.push(vec![
                record.topic.clone().into(),
                i64::from(record.partition).into(),
                record.offset.into(),
                e.to_string().into(),
            ]);
        }
    }

    let mut tx = db.pool.begin().await?;
    let conn: &mut AnyConnection = &mut tx;
    let (applied, duplicates) = project_interactions(conn, db, &interaction_events).await?;
    outcome.applied += applied;
    outcome.duplicates += duplicates;
    outcome.applied += project_agents(conn, db, &agent_events).await?;
    outcome.applied += project_chat(conn, db, &chat_events).await?;
    for event in &ucs_events {
        project_ucs(conn, db.backend, event).await?;
        outcome.applied += 1;
    }
    if !skipped.is_empty() {
        skipped.execute(conn, db.backend).await?;
    }
    let mut stored = Bulk::upsert(
        "projector_offsets",
        &["topic", "partition_id", "next_offset"],
        &["topic", "partition_id"],
    );
    for ((topic, partition), next) in offsets {
        stored.push(vec![topic.into(), i64::from(partition).into(), next.into()]);
    }
    if !stored.is_empty() {
        stored.execute(conn, db.backend).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Ids in chunks small enough for an `IN (..)` list.
const IN_CHUNK: usize = 1000;

async fn project_interactions(
    conn: &mut AnyConnection,
    db: &Db,
    events: &[(i32, i64, InteractionEvent)],
) -> Result<(u64, u64), DbError> {
    if events.is_empty() {
        return Ok((0, 0));
    }
    let ids: Vec<&str> = unique(events.iter().map(|(_, _, e)| e.interaction_id.as_str()));
    let mut rows: HashMap<String, InteractionRow> = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {} FROM interactions WHERE id IN ({})",
            INTERACTION_COLUMNS.join(", "),
            in_list(db.backend, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let row = interaction_from_row(&row)?;
            rows.insert(row.id.clone(), row);
        }
    }
    let event_ids: Vec<&str> = events.iter().map(|(_, _, e)| e.event_id.as_str()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    for chunk in event_ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT event_id FROM interaction_history WHERE event_id IN ({})",
            in_list(db.backend, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            seen.insert(row.try_get("event_id")?);
        }
    }
    let mut history = Bulk::new(
        "interaction_history",
        HISTORY_COLUMNS,
        "ON CONFLICT (event_id) DO NOTHING",
    );
    let (mut applied, mut duplicates) = (0, 0);
    for (partition, offset, event) in events {
        if !seen.insert(event.event_id.clone()) {
            duplicates += 1;
            continue;
        }
        let row = rows
            .entry(event.interaction_id.clone())
            .or_insert_with(|| InteractionRow::new(&event.interaction_id));
        history.push(row.apply(event, *partition, *offset).to_values());
        applied += 1;
    }
    let mut upsert = Bulk::upsert("interactions", INTERACTION_COLUMNS, &["id"]);
    for id in ids {
        if let Some(row) = rows.get(id) {
            upsert.push(row.to_values());
        }
    }
    upsert.execute(conn, db.backend).await?;
    history.execute(conn, db.backend).await?;
    Ok((applied, duplicates))
}

fn interaction_from_row(row: &sqlx::any::AnyRow) -> Result<InteractionRow, sqlx::Error> {
    Ok(InteractionRow {
        id: row.try_get("id")?,
        media_type: row.try_get("media_type")?,
        origin: row.try_get("origin")?,
        status: row.try_get("status")?,
        queue: row.try_get("queue")?,
        agent_id: row.try_get("agent_id")?,
        contact_id: row.try_get("contact_id")?,
        subject: row.try_get("subject")?,
        priority: row.try_get("priority")?,
        properties: serde_json::from_str(&row.try_get::<String, _>("properties")?)
            .unwrap_or_default(),
        content_ref: row.try_get("content_ref")?,
        parent_id: row.try_get("parent_id")?,
        submitted_by: row.try_get("submitted_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        stopped_at: row.try_get("stopped_at")?,
        stop_reason: row.try_get("stop_reason")?,
        event_count: row.try_get("event_count")?,
    })
}

async fn project_agents(
    conn: &mut AnyConnection,
    db: &Db,
    events: &[AgentEvent],
) -> Result<u64, DbError> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = unique(events.iter().map(|e| e.agent_id.as_str()));
    let mut rows: HashMap<String, AgentRow> = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {} FROM agents WHERE id IN ({})",
            AGENT_COLUMNS.join(", "),
            in_list(db.backend, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let agent = AgentRow {
                id: row.try_get("id")?,
                state: row.try_get("state")?,
                place: row.try_get("place")?,
                skills: serde_json::from_str(&row.try_get::<String, _>("skills")?)
                    .unwrap_or_default(),
                capacity: serde_json::from_str(&row.try_get::<String, _>("capacity")?)
                    .unwrap_or_default(),
                ready_media: serde_json::from_str(&row.try_get::<String, _>("ready_media")?)
                    .unwrap_or_default(),
                reason: row.try_get("reason")?,
                updated_at: row.try_get("updated_at")?,
                event_count: row.try_get("event_count")?,
            };
            rows.insert(agent.id.clone(), agent);
        }
    }
    for event in events {
        rows.entry(event.agent_id.clone())
            .or_insert_with(|| AgentRow::new(&event.agent_id))
            .apply(event);
    }
    let mut upsert = Bulk::upsert("agents", AGENT_COLUMNS, &["id"]);
    for id in ids {
        if let Some(row) = rows.get(id) {
            upsert.push(row.to_values());
        }
    }
    upsert.execute(conn, db.backend).await?;
    Ok(events.len() as u64)
}

async fn project_chat(
    conn: &mut AnyConnection,
    db: &Db,
    events: &[(i64, ChatEvent)],
) -> Result<u64, DbError> {
    let mut transcript = Bulk::new(
        "chat_transcript",
        &[
            "event_id",
            "session_id",
            "log_offset",
            "occurred_at",
            "kind",
            "participant_id",
            "role",
            "text",
            "visibility",
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    );
    for (offset, event) in events {
        // Typing notifications are live signals, not part of the kept transcript.
        let (participant, role, text, visibility): (Option<&str>, Option<String>, Option<&str>, Option<String>) =
            match &event.payload {
                ChatPayload::ParticipantJoined(j) => (
                    Some(&j.participant_id),
                    Some(enum_text(&j.role)),
                    Some(&j.display_name),
                    j.agents_only.then(|| "agents".to_owned()),
                ),
                ChatPayload::ParticipantLeft(l) => {
                    (Some(&l.participant_id), None, Some(&l.reason), None)
                }
                ChatPayload::MessagePosted(m) => (
                    Some(&m.participant_id),
                    None,
                    Some(&m.text),
                    Some(enum_text(&m.visibility)),
                ),
                ChatPayload::SessionEnded(s) => (Some(&s.ended_by), None, Some(&s.reason), None),
                ChatPayload::SessionStarted(s) => (
                    Some("customer"),
                    Some("customer".to_owned()),
                    s.subject.as_deref().or(Some(s.customer_name.as_str())),
                    None,
                ),
                ChatPayload::TranscriptRequested(t) => (Some("customer"), None, Some(&t.email), None),
                ChatPayload::TypingChanged(_) => continue,
            };
        transcript.push(vec![
            event.event_id.clone().into(),
            event.session_id.clone().into(),
            (*offset).into(),
            event.occurred_at.into(),
            event.payload.kind().into(),
            participant.map(str::to_owned).into(),
            role.into(),
            text.map(str::to_owned).into(),
            visibility.into(),
        ]);
    }
    if transcript.is_empty() {
        return Ok(0);
    }
    transcript.execute(conn, db.backend).await?;
    Ok(events.len() as u64)
}

/// Changes to UCS's own records: few and small, so one statement each.
async fn project_ucs(
    conn: &mut AnyConnection,
    backend: Backend,
    event: &UcsEvent,
) -> Result<(), DbError> {
    let at = event.occurred_at;
    match &event.payload {
        UcsPayload::ContactIdentified(c) => {
            sqlx::query(
                "INSERT INTO contacts (id, display_name, attributes, merged_into, created_at, updated_at) \
                 VALUES ($1, $2, '{}', NULL, $3, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&c.contact_id)
            .bind(&c.display_name)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO contact_identities (kind, value, contact_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kind, value) DO NOTHING",
            )
            .bind(c.identity_kind.as_str())
            .bind(&c.identity_value)
            .bind(&c.contact_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        UcsPayload::ContactUpdated(c) => {
            let current: Option<String> =
                sqlx::query_scalar("SELECT attributes FROM contacts WHERE id = $1")
                    .bind(&c.contact_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let mut attributes: BTreeMap<String, String> = current
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default();
            attributes.extend(c.attributes.clone());
            sqlx::query(
                "INSERT INTO contacts (id, display_name, attributes, merged_into, created_at, updated_at) \
                 VALUES ($1, $2, $3, NULL, $4, $4) ON CONFLICT (id) DO UPDATE SET \
                 display_name = COALESCE(excluded.display_name, contacts.display_name), \
                 attributes = excluded.attributes, updated_at = excluded.updated_at",
            )
            .bind(&c.contact_id)
            .bind(&c.display_name)
            .bind(json(&attributes))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        UcsPayload::ContactsMerged(m) => {
            sqlx::query("UPDATE contacts SET merged_into = $2, updated_at = $3 WHERE id = $1")
                .bind(&m.merged_contact_id)
                .bind(&m.into_contact_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        UcsPayload::NoteAdded(n) => {
            sqlx::query(
                "INSERT INTO notes (id, contact_id, interaction_id, author, text, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&n.note_id)
            .bind(&n.contact_id)
            .bind(&n.interaction_id)
            .bind(&n.author)
            .bind(&n.text)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        UcsPayload::ContentAdded(c) => {
            let mut upsert = Bulk::upsert(
                "interaction_contents",
                &[
                    "interaction_id",
                    "part_index",
                    "role",
                    "mime_type",
                    "size",
                    "blob_ref",
                    "filename",
                    "text",
                ],
                &["interaction_id", "part_index"],
            );
            upsert.push(vec![
                c.interaction_id.clone().into(),
                i64::from(c.part_index).into(),
                c.role.as_str().into(),
                c.mime_type.clone().into(),
                c.size.into(),
                c.blob_ref.clone().into(),
                c.filename.clone().into(),
                c.text.clone().into(),
            ]);
            upsert.execute(conn, backend).await?;
        }
        UcsPayload::CategorySaved(c) => {
            sqlx::query(
                "INSERT INTO categories (id, name, parent_id, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id, \
                 updated_at = excluded.updated_at",
            )
            .bind(&c.category_id)
            .bind(&c.name)
            .bind(&c.parent_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        UcsPayload::CategoryDeleted(c) => {
            sqlx::query("DELETE FROM categories WHERE id = $1")
                .bind(&c.category_id)
                .execute(&mut *conn)
                .await?;
        }
        UcsPayload::StandardResponseSaved(r) => {
            let mut upsert = Bulk::upsert(
                "standard_responses",
                &[
                    "id",
                    "name",
                    "category_id",
                    "subject",
                    "body_text",
                    "body_html",
                    "media",
                    "updated_at",
                ],
                &["id"],
            );
            upsert.push(vec![
                r.response_id.clone().into(),
                r.name.clone().into(),
                r.category_id.clone().into(),
                r.subject.clone().into(),
                r.body_text.clone().into(),
                r.body_html.clone().into(),
                json(&r.media).into(),
                Value::from(at),
            ]);
            upsert.execute(conn, backend).await?;
        }
        UcsPayload::StandardResponseDeleted(r) => {
            sqlx::query("DELETE FROM standard_responses WHERE id = $1")
                .bind(&r.response_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The Avro symbol of an enum (its serde name).
fn enum_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Distinct values in first-seen order.
fn unique<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    values.filter(|v| seen.insert(*v)).collect()
}
