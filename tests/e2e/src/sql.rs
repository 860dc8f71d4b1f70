//! Databases for the UCS tests: a SQLite file in the run directory, or a fresh schema in the
//! PostgreSQL that `scripts/test` installs and starts (127.0.0.1:5432, role `switchboard`,
//! database `test`; override with SWITCHBOARD_TEST_POSTGRES_URL). An unreachable PostgreSQL fails the
//! test with the reason: these tests never skip.

use std::path::Path;

/// The server the PostgreSQL tests use.
pub fn postgres_base_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://switchboard:switchboard@127.0.0.1:5432/test".to_owned())
}

/// A new, empty schema on the test PostgreSQL and a URL whose connections use it.
pub async fn fresh_postgres(label: &str) -> String {
    use sqlx::Connection;
    let base = postgres_base_url();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for this test and is not reachable at {base}: {e}. \
             Start it (scripts/test checks it first) or set SWITCHBOARD_TEST_POSTGRES_URL."
        )
    });
    let schema = format!("e2e_{label}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema} on {base}: {e}"));
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// A SQLite database file (not yet created) in `dir`.
pub fn sqlite_in(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}
