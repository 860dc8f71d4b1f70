//! The read side: what the HTTP API answers, straight from the projected tables.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::db::{Db, placeholders};

/// Merge chains longer than this are treated as broken (a cycle written by hand).
const MAX_MERGE_DEPTH: usize = 16;

#[derive(Debug, Serialize, ToSchema)]
pub struct Contact {
    pub id: String,
    pub display_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Set when this contact was merged into another; follow it.
    pub merged_into: Option<String>,
    /// Its own identities and those of every contact merged into it.
    pub identities: Vec<Identity>,
    /// Contacts merged into this one.
    pub merged_contacts: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Identity {
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionSummary {
    pub id: String,
    pub media_type: Option<String>,
    pub status: String,
    pub queue: Option<String>,
    pub agent_id: Option<String>,
    pub contact_id: Option<String>,
    pub subject: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: i64,
    pub stopped_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionDetail {
    #[serde(flatten)]
    pub summary: InteractionSummary,
    pub origin: Option<String>,
    pub priority: i64,
    pub properties: BTreeMap<String, String>,
    pub content_ref: Option<String>,
    pub parent_id: Option<String>,
    pub stop_reason: Option<String>,
    /// Ancestors, the root first: the thread this interaction belongs to.
    pub thread: Vec<String>,
    /// Direct replies and forwards (interactions whose parent is this one).
    pub children: Vec<String>,
    pub history: Vec<HistoryStep>,
    pub contents: Vec<ContentPart>,
    pub transcript: Vec<TranscriptLine>,
    pub notes: Vec<Note>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryStep {
    pub event_id: String,
    pub occurred_at: i64,
    pub kind: String,
    pub queue: Option<String>,
    pub agent_id: Option<String>,
    pub causation_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContentPart {
    pub part_index: i64,
    pub role: String,
    pub mime_type: String,
    pub size: i64,
    pub blob_ref: Option<String>,
    pub filename: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptLine {
    pub occurred_at: i64,
    pub kind: String,
    pub participant_id: Option<String>,
    pub role: Option<String>,
    pub text: Option<String>,
    pub visibility: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Note {
    pub id: String,
    pub contact_id: Option<String>,
    pub interaction_id: Option<String>,
    pub author: String,
    pub text: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StandardResponse {
    pub id: String,
    pub name: String,
    pub category_id: Option<String>,
    pub subject: Option<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    pub media: Vec<String>,
    pub updated_at: i64,
}

/// The contact that an identity currently stands for (after merges), if known.
pub async fn contact_for_identity(db: &Db, kind: &str, value: &str) -> Result<Option<String>, sqlx::Error> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT contact_id FROM contact_identities WHERE kind = $1 AND value = $2")
            .bind(kind)
            .bind(value)
            .fetch_optional(&db.pool)
            .await?;
    match id {
        Some(id) => Ok(Some(resolve(db, &id).await?)),
        None => Ok(None),
    }
}

/// Follows `merged_into` to the surviving contact.
pub async fn resolve(db: &Db, id: &str) -> Result<String, sqlx::Error> {
    let mut current = id.to_owned();
    for _ in 0..MAX_MERGE_DEPTH {
        let next: Option<Option<String>> =
            sqlx::query_scalar("SELECT merged_into FROM contacts WHERE id = $1")
                .bind(&current)
                .fetch_optional(&db.pool)
                .await?;
        match next.flatten() {
            Some(next) if next != current => current = next,
            _ => break,
        }
    }
    Ok(current)
}

/// The contact and every contact merged into it, transitively.
async fn merged_family(db: &Db, id: &str) -> Result<Vec<String>, sqlx::Error> {
    let mut family = vec![id.to_owned()];
    let mut frontier = vec![id.to_owned()];
    for _ in 0..MAX_MERGE_DEPTH {
        if frontier.is_empty() {
            break;
        }
        let sql = format!(
            "SELECT id FROM contacts WHERE merged_into IN ({}) ORDER BY id",
            placeholders(frontier.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for f in &frontier {
            query = query.bind(f.clone());
        }
        frontier = query
            .fetch_all(&db.pool)
            .await?
            .into_iter()
            .filter(|c| !family.contains(c))
            .collect();
        family.extend(frontier.iter().cloned());
    }
    Ok(family)
}

pub async fn contact(db: &Db, id: &str) -> Result<Option<Contact>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT id, display_name, attributes, merged_into, created_at, updated_at FROM contacts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let family = merged_family(db, id).await?;
    let sql = format!(
        "SELECT kind, value FROM contact_identities WHERE contact_id IN ({}) ORDER BY kind, value",
        placeholders(family.len())
    );
    let mut query = sqlx::query(&sql);
    for f in &family {
        query = query.bind(f.clone());
    }
    let identities = query
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Identity {
                kind: r.try_get("kind")?,
                value: r.try_get("value")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(Contact {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        attributes: serde_json::from_str(&row.try_get::<String, _>("attributes")?).unwrap_or_default(),
        merged_into: row.try_get("merged_into")?,
        identities,
        merged_contacts: family.into_iter().skip(1).collect(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Contacts (survivors of merges) whose name or any identity contains `text`.
pub async fn search_contacts(db: &Db, text: &str, limit: i64) -> Result<Vec<Contact>, sqlx::Error> {
    let pattern = format!("%{}%", text.to_lowercase().replace(['%', '_'], ""));
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM contacts WHERE LOWER(COALESCE(display_name, '')) LIKE $1 \
         UNION SELECT contact_id FROM contact_identities WHERE LOWER(value) LIKE $1 \
         ORDER BY 1 LIMIT $2",
    )
    .bind(&pattern)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out: Vec<Contact> = Vec::new();
    for id in ids {
        let survivor = resolve(db, &id).await?;
        if out.iter().any(|c| c.id == survivor) {
            continue;
        }
        if let Some(c) = contact(db, &survivor).await? {
            out.push(c);
        }
    }
    Ok(out)
}

const SUMMARY_COLUMNS: &str =
    "id, media_type, status, queue, agent_id, contact_id, subject, created_at, updated_at, stopped_at";

fn summary(row: &AnyRow) -> Result<InteractionSummary, sqlx::Error> {
    Ok(InteractionSummary {
        id: row.try_get("id")?,
        media_type: row.try_get("media_type")?,
        status: row.try_get("status")?,
        queue: row.try_get("queue")?,
        agent_id: row.try_get("agent_id")?,
        contact_id: row.try_get("contact_id")?,
        subject: row.try_get("subject")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        stopped_at: row.try_get("stopped_at")?,
    })
}

/// Interactions of the contact and of every contact merged into it, newest first.
pub async fn contact_history(db: &Db, id: &str, limit: i64) -> Result<Vec<InteractionSummary>, sqlx::Error> {
    let family = merged_family(db, id).await?;
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM interactions WHERE contact_id IN ({}) \
         ORDER BY created_at DESC, id LIMIT ${}",
        placeholders(family.len()),
        family.len() + 1
    );
    let mut query = sqlx::query(&sql);
    for f in &family {
        query = query.bind(f.clone());
    }
    query
        .bind(limit)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(summary)
        .collect()
}

pub async fn interaction(db: &Db, id: &str) -> Result<Option<InteractionDetail>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, origin, priority, properties, content_ref, parent_id, stop_reason \
         FROM interactions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let parent_id: Option<String> = row.try_get("parent_id")?;
    let mut thread = Vec::new();
    let mut next = parent_id.clone();
    while let Some(parent) = next.take() {
        if thread.contains(&parent) || thread.len() >= 100 {
            break;
        }
        next = sqlx::query_scalar::<_, Option<String>>("SELECT parent_id FROM interactions WHERE id = $1")
            .bind(&parent)
            .fetch_optional(&db.pool)
            .await?
            .flatten();
        thread.push(parent);
    }
    thread.reverse();
    let children = sqlx::query_scalar("SELECT id FROM interactions WHERE parent_id = $1 ORDER BY created_at, id")
        .bind(id)
        .fetch_all(&db.pool)
        .await?;
    let history = sqlx::query(
        "SELECT event_id, occurred_at, kind, queue, agent_id, causation_id, detail \
         FROM interaction_history WHERE interaction_id = $1 ORDER BY log_offset",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(HistoryStep {
            event_id: r.try_get("event_id")?,
            occurred_at: r.try_get("occurred_at")?,
            kind: r.try_get("kind")?,
            queue: r.try_get("queue")?,
            agent_id: r.try_get("agent_id")?,
            causation_id: r.try_get("causation_id")?,
            detail: serde_json::from_str(&r.try_get::<String, _>("detail")?).unwrap_or_default(),
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let contents = sqlx::query(
        "SELECT part_index, role, mime_type, size, blob_ref, filename, text \
         FROM interaction_contents WHERE interaction_id = $1 ORDER BY part_index",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(ContentPart {
            part_index: r.try_get("part_index")?,
            role: r.try_get("role")?,
            mime_type: r.try_get("mime_type")?,
            size: r.try_get("size")?,
            blob_ref: r.try_get("blob_ref")?,
            filename: r.try_get("filename")?,
            text: r.try_get("text")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let transcript = sqlx::query(
        "SELECT occurred_at, kind, participant_id, role, text, visibility \
         FROM chat_transcript WHERE session_id = $1 ORDER BY log_offset",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(TranscriptLine {
            occurred_at: r.try_get("occurred_at")?,
            kind: r.try_get("kind")?,
            participant_id: r.try_get("participant_id")?,
            role: r.try_get("role")?,
            text: r.try_get("text")?,
            visibility: r.try_get("visibility")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let notes = notes_where(db, "interaction_id", id).await?;
    Ok(Some(InteractionDetail {
        summary: summary(&row)?,
        origin: row.try_get("origin")?,
        priority: row.try_get("priority")?,
        properties: serde_json::from_str(&row.try_get::<String, _>("properties")?).unwrap_or_default(),
        content_ref: row.try_get("content_ref")?,
        parent_id,
        stop_reason: row.try_get("stop_reason")?,
        thread,
        children,
        history,
        contents,
        transcript,
        notes,
    }))
}

pub async fn notes_where(db: &Db, column: &str, id: &str) -> Result<Vec<Note>, sqlx::Error> {
    debug_assert!(column == "interaction_id" || column == "contact_id");
    sqlx::query(&format!(
        "SELECT id, contact_id, interaction_id, author, text, created_at FROM notes \
         WHERE {column} = $1 ORDER BY created_at, id"
    ))
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Note {
            id: r.try_get("id")?,
            contact_id: r.try_get("contact_id")?,
            interaction_id: r.try_get("interaction_id")?,
            author: r.try_get("author")?,
            text: r.try_get("text")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect()
}

pub async fn categories(db: &Db) -> Result<Vec<Category>, sqlx::Error> {
    sqlx::query("SELECT id, name, parent_id, updated_at FROM categories ORDER BY name, id")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Category {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                parent_id: r.try_get("parent_id")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

fn standard_response(r: &AnyRow) -> Result<StandardResponse, sqlx::Error> {
    Ok(StandardResponse {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        category_id: r.try_get("category_id")?,
        subject: r.try_get("subject")?,
        body_text: r.try_get("body_text")?,
        body_html: r.try_get("body_html")?,
        media: serde_json::from_str(&r.try_get::<String, _>("media")?).unwrap_or_default(),
        updated_at: r.try_get("updated_at")?,
    })
}

const RESPONSE_COLUMNS: &str = "id, name, category_id, subject, body_text, body_html, media, updated_at";

/// Standard responses, optionally of one category and suited to one media type.
pub async fn standard_responses(
    db: &Db,
    category: Option<&str>,
    media: Option<&str>,
) -> Result<Vec<StandardResponse>, sqlx::Error> {
    let rows = match category {
        Some(c) => {
            sqlx::query(&format!(
                "SELECT {RESPONSE_COLUMNS} FROM standard_responses WHERE category_id = $1 ORDER BY name, id"
            ))
            .bind(c)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {RESPONSE_COLUMNS} FROM standard_responses ORDER BY name, id"))
                .fetch_all(&db.pool)
                .await?
        }
    };
    let all = rows.iter().map(standard_response).collect::<Result<Vec<_>, _>>()?;
    Ok(all
        .into_iter()
        .filter(|r| media.is_none_or(|m| r.media.is_empty() || r.media.iter().any(|x| x == m)))
        .collect())
}

pub async fn standard_response_by_id(db: &Db, id: &str) -> Result<Option<StandardResponse>, sqlx::Error> {
    sqlx::query(&format!("SELECT {RESPONSE_COLUMNS} FROM standard_responses WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(standard_response)
        .transpose()
}
