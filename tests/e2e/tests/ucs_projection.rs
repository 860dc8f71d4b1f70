//! The UCS projector against a real broker and real databases (SQLite and PostgreSQL):
//! SIGKILLed twice in the middle of its work and restarted, it ends with every row once and no
//! row missing; `switchboard ucs rebuild` from offset 0 then yields the same database, table
//! by table.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{TestEnv, fixtures, free_port, spawn_service, sql, switchboard_bin};


/// Records reflected in the database: the sum of the stored next offsets (topics start at 0).
async fn progress(db: &ucs::Db) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM projector_offsets")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn count(db: &ucs::Db, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn killed_twice_then_rebuilt(backend: &str, live_url: String, rebuild_url: String) {
    let env = TestEnv::start().await.unwrap();
    let (records, expected) = fixtures::log(450, 7);
    env.produce_fixture(&env.producer(), &records).await;
    let total = expected.records;

    let mut settings = env.settings(&env.dir.path().join("data"));
    settings.ucs.database_url = Some(live_url.clone());
    settings.ucs.blob_dir = Some(env.dir.path().join("blobs"));
    // Small batches: many commits, so a kill lands between and inside them.
    settings.ucs.batch_size = 50;
    let http = free_port();
    e2e::listen_on(&mut settings, http);
    let config = env.write_config(&settings, "ucs.toml");
    let db = ucs::Db::open(&live_url, 2).await.unwrap();

    let mut killed_at = Vec::new();
    for run in 1..=2 {
        let mut child = spawn_service(&config, "ucs", &env.dir.path().join(format!("ucs-{run}.log")));
        let target = total * run / 3;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = progress(&db).await;
            assert!(done < total, "{backend}: the projector finished before kill {run}; the log is too small to test a kill");
            if done >= target {
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: no progress to {target} within 120 s (at {done}); see {}", env.dir.path().display());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        killed_at.push(progress(&db).await);
    }
    eprintln!("{backend}: SIGKILLed with {killed_at:?} of {total} records committed");

    let mut child = spawn_service(&config, "ucs", &env.dir.path().join("ucs-3.log"));
    let deadline = Instant::now() + Duration::from_secs(180);
    let ready = format!("http://127.0.0.1:{http}/health/ready/ucs");
    loop {
        let caught_up = e2e::http().get(&ready).send().await.is_ok_and(|r| r.status().is_success());
        if caught_up && progress(&db).await == total {
            break;
        }
        assert!(Instant::now() < deadline, "{backend}: not caught up within 180 s; see {}", env.dir.path().display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{backend}: `run ucs` exited with {status} after SIGTERM");

    // No row missing, none twice: every count is what the fixture wrote, and each interaction
    // applied exactly its own events (a re-applied event would raise event_count).
    let checks = [
        ("SELECT COUNT(*) FROM interactions", expected.interactions),
        ("SELECT COUNT(*) FROM interaction_history", expected.interaction_events),
        ("SELECT CAST(COALESCE(SUM(event_count), 0) AS BIGINT) FROM interactions", expected.interaction_events),
        ("SELECT COUNT(*) FROM interactions WHERE status = 'stopped' AND event_count = 6", expected.interactions),
        ("SELECT COUNT(*) FROM agents", expected.agents),
        ("SELECT CAST(COALESCE(SUM(event_count), 0) AS BIGINT) FROM agents", expected.agents * 2),
        ("SELECT COUNT(*) FROM chat_transcript", expected.chat_lines),
        ("SELECT COUNT(*) FROM contacts", expected.contacts),
        ("SELECT COUNT(*) FROM contact_identities", expected.contacts),
        ("SELECT COUNT(*) FROM interaction_contents", expected.contents),
        ("SELECT COUNT(*) FROM notes", expected.notes),
        ("SELECT COUNT(*) FROM categories", expected.categories),
        ("SELECT COUNT(*) FROM standard_responses", expected.standard_responses),
        ("SELECT COUNT(*) FROM skipped_records", 0),
    ];
    for (sql, want) in checks {
        assert_eq!(count(&db, sql).await, want, "{backend}: {sql}");
    }

    // Rebuild from offset 0 through the CLI, then compare with the live database.
    let output = tokio::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(&config)
        .args(["ucs", "rebuild", "--into", &rebuild_url])
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{backend}: rebuild failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("from {total} records")), "{backend}: {stdout}");
    eprintln!("{backend}: {stdout}");

    let rebuilt = ucs::Db::open(&rebuild_url, 2).await.unwrap();
    let (live, again) = (db.dump().await.unwrap(), rebuilt.dump().await.unwrap());
    assert_eq!(live.len(), again.len());
    for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(&again) {
        assert_eq!(live_rows.len(), rebuilt_rows.len(), "{backend}: table {table}: row counts differ");
        for (a, b) in live_rows.iter().zip(rebuilt_rows) {
            assert_eq!(a, b, "{backend}: table {table}: live and rebuilt rows differ");
        }
    }
    let rows: usize = live.iter().map(|(_, r)| r.len()).sum();
    eprintln!("{backend}: live and rebuilt databases equal: {} tables, {rows} rows", live.len());

    // A rebuild refuses a database that already holds a projection.
    let again = tokio::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(&config)
        .args(["ucs", "rebuild", "--into", &rebuild_url])
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("fresh database"), "{backend}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_projector_killed_mid_batch_then_rebuilt() {
    let dir = e2e::run_dir().unwrap();
    killed_twice_then_rebuilt(
        "sqlite",
        sql::sqlite_in(dir.path(), "live.db"),
        sql::sqlite_in(dir.path(), "rebuilt.db"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projector_killed_mid_batch_then_rebuilt() {
    killed_twice_then_rebuilt(
        "postgres",
        sql::fresh_postgres("live").await,
        sql::fresh_postgres("rebuilt").await,
    )
    .await;
}
