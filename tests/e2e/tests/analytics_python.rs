//! `docs/analytics.md` promises that a consumer in another language reads the topics with
//! nothing but `schemas/`. This runs its Python example (confluent-kafka + fastavro, in a
//! virtualenv under `target/`, created on first use) against a real broker and checks it
//! decodes every record, to the same ids and event types as `switchboard tail`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e::{TestEnv, fixtures, switchboard_bin};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_owned()
}

/// A Python with the example's requirements: `SWITCHBOARD_TEST_PYTHON`, or a virtualenv in
/// `target/analytics-venv` made (once) from `docs/examples/requirements.txt`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SWITCHBOARD_TEST_PYTHON") {
        return python.into();
    }
    e2e::python_venv("analytics-venv", &workspace_root().join("docs/examples/requirements.txt"))
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The record's own id (`event_id`, or `command_id`) and its payload's type, from a line of
/// `switchboard tail` (serde: `{"Submitted": {...}}`).
fn from_tail(value: &Value) -> (String, String) {
    let id = value.get("event_id").or_else(|| value.get("command_id")).unwrap();
    let payload = value["payload"].as_object().unwrap();
    (id.as_str().unwrap().to_owned(), payload.keys().next().unwrap().clone())
}

/// The same from the Python example (fastavro, `return_record_name`: `["ns.Submitted", {...}]`).
fn from_python(value: &Value) -> (String, String) {
    let id = value.get("event_id").or_else(|| value.get("command_id")).unwrap();
    let full_name = value["payload"][0].as_str().unwrap();
    let name = full_name.rsplit('.').next().unwrap();
    (id.as_str().unwrap().to_owned(), name.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_decodes_every_topic_with_nothing_but_the_schemas() {
    let python = python();
    let env = TestEnv::start().await.unwrap();
    let (records, _) = fixtures::log(24, 3);
    env.produce_fixture(&env.producer(), &records).await;
    let settings = env.settings(&env.dir.path().join("data"));
    let config = env.write_config(&settings, "tools.toml");

    for topic in [
        runtime::topics::INTERACTION_EVENTS,
        runtime::topics::AGENT_EVENTS,
        runtime::topics::CHAT_EVENTS,
        runtime::topics::UCS_EVENTS,
    ] {
        let produced = records.iter().filter(|r| r.topic == topic).count();
        assert!(produced > 0, "the fixture has no {topic} records");

        let tail = std::process::Command::new(switchboard_bin())
            .arg("--config")
            .arg(&config)
            .args(["tail", topic])
            .env_remove("SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS")
            .output()
            .unwrap();
        assert!(tail.status.success(), "tail {topic}: {}", String::from_utf8_lossy(&tail.stderr));
        let expected: BTreeMap<(i64, i64), (String, String)> = json_lines(&tail.stdout)
            .iter()
            .map(|l| {
                assert!(l["error"].is_null(), "tail could not decode: {l}");
                ((l["partition"].as_i64().unwrap(), l["offset"].as_i64().unwrap()), from_tail(&l["value"]))
            })
            .collect();
        assert_eq!(expected.len(), produced, "tail printed every {topic} record once");

        let example = std::process::Command::new(&python)
            .arg(workspace_root().join("docs/examples/decode_topic.py"))
            .arg(&env.kafka.bootstrap_servers)
            .arg(topic)
            .args(["--prefix", &env.kafka.topic_prefix])
            .output()
            .unwrap();
        assert!(
            example.status.success(),
            "decode_topic.py {topic}: {}",
            String::from_utf8_lossy(&example.stderr)
        );
        let decoded: BTreeMap<(i64, i64), (String, String)> = json_lines(&example.stdout)
            .iter()
            .map(|l| {
                assert!(l.get("error").is_none(), "Python could not decode a {topic} record: {l}");
                ((l["partition"].as_i64().unwrap(), l["offset"].as_i64().unwrap()), from_python(&l["value"]))
            })
            .collect();
        assert_eq!(decoded, expected, "Python and `switchboard tail` disagree on {topic}");
    }
}
