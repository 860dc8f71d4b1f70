//! The SQL connection: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Portable SQL only: `$N` placeholders (both backends read them; [`Bulk`] writes `?` for
//! SQLite), `TEXT`/`BIGINT` columns, `INSERT .. ON CONFLICT`. sqlx's `QueryBuilder<Any>` writes `?` placeholders, which
//! PostgreSQL rejects (sqlx issue #3000), so multi-row statements are built by [`Bulk`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::{Any, AnyPool, Arguments, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Most bind parameters in one statement (SQLite's default limit is 32766, PG's 65535).
    fn max_binds(self) -> usize {
        match self {
            Self::Sqlite => 30_000,
            Self::Postgres => 60_000,
        }
    }
}

/// A pool on one UCS database, migrated.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    url: String,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects (creating a SQLite file if missing) and applies the backend's migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let connect_url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&connect_url).map_err(|source| {
            DbError::Connect {
                url: redact(url),
                source,
            }
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            // sqlx's default. 10 s ran out at a restart with history on two cores, while every
            // service replayed at once, and UCS (then all of `up`) stopped.
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers (HTTP) never block the projector's writes.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    } else {
                        // Safe for a projection: a commit lost in a server crash loses its
                        // offsets with it, so those records are simply projected again.
                        conn.execute("SET synchronous_commit = off").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate {
                url: redact(url),
                source,
            })?;
        Ok(Self {
            pool,
            backend,
            url: url.to_owned(),
        })
    }

    /// The URL without its password, for logs.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Every projected table, each as its rows in primary-key order, each row as text: what
    /// "a rebuild equals the live database" compares.
    pub async fn dump(&self) -> Result<Vec<(String, Vec<String>)>, DbError> {
        let mut out = Vec::new();
        for (table, order) in PROJECTED_TABLES {
            let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order}"))
                .fetch_all(&self.pool)
                .await?;
            let rows = rows.iter().map(row_text).collect::<Result<Vec<_>, _>>()?;
            out.push(((*table).to_owned(), rows));
        }
        Ok(out)
    }
}

/// Tables written by the projector, with the order that makes a dump deterministic.
pub const PROJECTED_TABLES: &[(&str, &str)] = &[
    ("projector_offsets", "topic, partition_id"),
    ("skipped_records", "topic, partition_id, record_offset"),
    ("contacts", "id"),
    ("contact_identities", "kind, value"),
    ("interactions", "id"),
    ("interaction_history", "event_id"),
    ("interaction_contents", "interaction_id, part_index"),
    ("chat_transcript", "event_id"),
    ("notes", "id"),
    ("categories", "id"),
    ("standard_responses", "id"),
    ("agents", "id"),
];

fn row_text(row: &sqlx::any::AnyRow) -> Result<String, sqlx::Error> {
    use sqlx::Column;
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let cell = match row.try_get::<Option<i64>, _>(i) {
            Ok(Some(n)) => n.to_string(),
            Ok(None) => "NULL".to_owned(),
            Err(_) => match row.try_get::<Option<String>, _>(i)? {
                Some(s) => format!("{s:?}"),
                None => "NULL".to_owned(),
            },
        };
        cells.push(format!("{}={cell}", column.name()));
    }
    Ok(cells.join(", "))
}

fn redact(url: &str) -> String {
    runtime::config::redact_url(url)
}

/// A bind value of the two portable column types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

fn add(args: &mut AnyArguments<'_>, value: Value) -> Result<(), sqlx::Error> {
    match value {
        Value::Int(v) => args.add(v),
        Value::Text(v) => args.add(v),
    }
    .map_err(sqlx::Error::Encode)
}

/// A multi-row `INSERT .. VALUES (..), (..) <tail>`, split into as few statements as the
/// backend's bind limit allows. One round trip per statement instead of one per row is what
/// makes batching pay (per-row statements cap a projector at a few thousand rows/s).
pub struct Bulk {
    head: String,
    tail: String,
    width: usize,
    rows: Vec<Vec<Value>>,
}

impl Bulk {
    /// `tail`: e.g. `ON CONFLICT (id) DO NOTHING`.
    pub fn new(table: &str, columns: &[&str], tail: &str) -> Self {
        Self {
            head: format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")),
            tail: tail.to_owned(),
            width: columns.len(),
            rows: Vec::new(),
        }
    }

    /// An `ON CONFLICT (key) DO UPDATE SET` every other column to the new value.
    pub fn upsert(table: &str, columns: &[&str], key: &[&str]) -> Self {
        let set: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        Self::new(
            table,
            columns,
            &format!("ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), set.join(", ")),
        )
    }

    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.width);
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub async fn execute(
        self,
        conn: &mut sqlx::AnyConnection,
        backend: Backend,
    ) -> Result<u64, sqlx::Error> {
        let per_statement = (backend.max_binds() / self.width.max(1)).max(1);
        let mut affected = 0;
        let mut rows = self.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
            let mut sql = self.head.clone();
            let mut args = AnyArguments::default();
            let mut n = 0;
            for (r, row) in chunk.into_iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for (c, value) in row.into_iter().enumerate() {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    match backend {
                        // sqlx-sqlite resolves `$N` by name, which grows with the square of
                        // the parameter count (a 3,000-parameter insert took ~1 s); plain `?`
                        // binds by position.
                        Backend::Sqlite => sql.push('?'),
                        Backend::Postgres => {
                            sql.push('$');
                            sql.push_str(&n.to_string());
                        }
                    }
                    add(&mut args, value)?;
                }
                sql.push(')');
            }
            sql.push(' ');
            sql.push_str(&self.tail);
            // Not prepared-and-cached: every chunk size is a different statement.
            let result = conn
                .execute(sqlx::query_with::<Any, _>(&sql, args).persistent(false))
                .await?;
            affected += result.rows_affected();
        }
        Ok(affected)
    }
}

/// Placeholders for a long `IN (..)` list that is the statement's only parameters: `?` on
/// SQLite (see [`Bulk::execute`]), `$1 .. $n` on PostgreSQL.
pub fn in_list(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => vec!["?"; n].join(", "),
        Backend::Postgres => placeholders(n),
    }
}

/// `$1, $2, .. $n` for an `IN (..)` list.
pub fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://ucs:secret@db:5432/ucs"),
            "postgres://ucs:***@db:5432/ucs"
        );
        assert_eq!(redact("sqlite://data/ucs.db"), "sqlite://data/ucs.db");
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::of("mysql://h/db").is_err());
    }
}
