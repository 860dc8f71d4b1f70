//! `switchboard up` on its embedded defaults: an interaction submitted over HTTP shows in the
//! queue projection; SIGINT stops services and broker cleanly; a second `up` on the same data
//! directory still shows it (the log is durable).
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::{free_port, run_dir, switchboard_bin};
use serde_json::Value;


struct Up {
    child: tokio::process::Child,
    base: String,
}

async fn up(data: &std::path::Path, run: u32, http: u16, broker: u16) -> Up {
    let log = std::fs::File::create(data.join(format!("up-{run}.log"))).unwrap();
    let child = tokio::process::Command::new(switchboard_bin())
        .arg("--data-dir")
        .arg(data.join("data"))
        .args(["--broker-port", &broker.to_string()])
        .args(["up", "--http", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "info")
        .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "`up` not ready within 60 s; see {}",
            data.display()
        );
        if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await
            && r.status().is_success() {
                break;
            }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Up { child, base }
}

async fn stop(mut up: Up) {
    let pid = nix::unistd::Pid::from_raw(up.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "`up` exited with {status} after SIGINT");
}

async fn interaction(base: &str, id: &str) -> Option<Value> {
    let r = reqwest::get(format!("{base}/interactions/{id}"))
        .await
        .unwrap();
    if r.status() == 404 {
        None
    } else {
        Some(r.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_over_http_survives_a_restart() {
    let dir = run_dir().unwrap();
    let (http, broker) = (free_port(), free_port());
    let first = up(dir.path(), 1, http, broker).await;

    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/interactions", first.base))
        .json(&serde_json::json!({
            "media_type": "email",
            "queue": "inbound",
            "priority": 3,
            "properties": {"subject": "Where is my order?"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let id = body["interaction_id"].as_str().unwrap().to_owned();

    // Bad input is refused with a reason.
    let bad = client
        .post(format!("{}/v1/interactions", first.base))
        .json(&serde_json::json!({"media_type": "fax", "queue": "inbound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let reason: Value = bad.json().await.unwrap();
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .contains("unknown media type 'fax'"),
        "{reason}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    // `up` runs the router too: its workflow classifies the interaction (and, with no agent
    // logged in, leaves it waiting). Compare before and after the restart once it has.
    let shown = loop {
        if let Some(i) = interaction(&first.base, &id).await
            && i["properties"].get("category").is_some()
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "interaction never reached the queue projection classified by the router"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown["status"], "waiting");
    assert_eq!(shown["queue"], "inbound");
    let queue: Value = reqwest::get(format!("{}/queues/inbound", first.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue["counts"]["waiting"], 1);
    assert_eq!(queue["interactions"][0]["id"], id.as_str());
    // UCS runs in `up` too, on SQLite in the data directory, and records the interaction.
    let detail_url = format!("{}/v1/interactions/{id}/detail", first.base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(&detail_url).await.unwrap();
        if r.status() == 200 {
            let detail: Value = r.json().await.unwrap();
            assert_eq!(detail["subject"], "Where is my order?");
            break;
        }
        assert!(Instant::now() < deadline, "interaction never reached UCS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dir.path().join("data/ucs.db").exists());
    stop(first).await;

    let second = up(dir.path(), 2, http, broker).await;
    let again = interaction(&second.base, &id)
        .await
        .expect("interaction still there after restart");
    assert_eq!(again, shown);
    stop(second).await;
}
