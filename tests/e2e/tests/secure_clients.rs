//! A secured cluster, as a Kafka shop runs one: Apache Kafka with only a `SASL_SSL` listener
//! (SCRAM-SHA-512 user added when the log directory is formatted, a certificate signed by a CA
//! the test generates). `switchboard run` processes configured only by the README's
//! `[kafka.client]` settings (the password from a `*_file`) take a zstd-compressed Submit
//! through to the queue projection, and into UCS on the local PostgreSQL with
//! `sslmode=require`; their traces go to an OTLP endpoint over https (test CA, an auth header
//! from a file). `switchboard config` never prints the secrets, and a wrong password is a clear
//! error within seconds.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::command::MediaType;
use e2e::tls::TestTls;
use e2e::{free_port, kafka_jars, poll_json, run_dir, spawn_service, start_kafka_blocking, switchboard_bin};
use runtime::broker::kafka::SaslSslListener;
use runtime::broker::KafkaOptions;
use runtime::config::KafkaSettings;
use runtime::topics::Topics;

const PASSWORD: &str = "sb-Pa55word-kafka";
const OTLP_SECRET: &str = "Bearer otlp-s3cret-token";

fn config_text(bootstrap: &str, password_file: &std::path::Path, tls: &TestTls, extra: &str) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "secure."

[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "switchboard"
"sasl.password_file" = "{password}"
"ssl.ca.location" = "{ca}"
{extra}
"#,
        password = password_file.display(),
        ca = tls.ca_file.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_zstd_postgres_tls_and_otlp_https() {
    let dir = run_dir().unwrap();
    let tls = TestTls::generate(dir.path()).unwrap();
    let client = tls.scram_client("switchboard", PASSWORD);
    let mut options = KafkaOptions::new(dir.path().join("kafka"), kafka_jars());
    options.sasl_ssl = Some(SaslSslListener {
        certificate_pem: tls.cert_pem.clone(),
        private_key_pem: tls.key_pem.clone(),
        scram_users: vec![("switchboard".into(), PASSWORD.into())],
    });
    options.client = client.clone();
    let broker = tokio::task::spawn_blocking(move || start_kafka_blocking(options)).await.unwrap().unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();

    // Secrets only in files.
    let password_file = dir.path().join("kafka-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let database_file = dir.path().join("database-url");
    let database = e2e::sql::fresh_postgres("secure").await;
    std::fs::write(&database_file, format!("{database}&sslmode=require\n")).unwrap();
    let headers_file = dir.path().join("otlp-headers");
    std::fs::write(&headers_file, format!("authorization={OTLP_SECRET}\n")).unwrap();

    // The OTLP collector: https with the test CA's certificate.
    let (sink_port_file, sink_out) = (dir.path().join("otlp-port"), dir.path().join("otlp-received.jsonl"));
    let _sink = tokio::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/https_sink.py"))
        .args([&tls.cert_file, &tls.key_file, &sink_port_file, &sink_out])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let sink_port = loop {
        if let Ok(p) = std::fs::read_to_string(&sink_port_file)
            && let Ok(p) = p.trim().parse::<u16>()
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the https sink did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let data_dir = dir.path().join("data");
    let service_config = |port: u16| {
        format!(
            "data_dir = \"{data}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_lines}[ucs]\ndatabase_url_file = \"{db}\"\n[telemetry]\notlp_endpoint = \"https://127.0.0.1:{sink_port}/v1/traces\"\notlp_ca_file = \"{ca}\"\notlp_headers_file = \"{headers}\"\n{kafka}",
            data = data_dir.display(),
            http_lines = e2e::http_config_lines(dir.path()),
            db = database_file.display(),
            ca = tls.ca_file.display(),
            headers = headers_file.display(),
            kafka = config_text(&bootstrap, &password_file, &tls, ""),
        )
    };

    // `switchboard config` shows the settings, never the secrets.
    let config_path = dir.path().join("secure.toml");
    std::fs::write(&config_path, service_config(free_port())).unwrap();
    let shown = tokio::process::Command::new(switchboard_bin())
        .arg("--config")
        .arg(&config_path)
        .arg("config")
        .output()
        .await
        .unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("SCRAM-SHA-512"), "{shown}");
    for secret in [PASSWORD, "otlp-s3cret-token", "switchboard:switchboard@"] {
        assert!(!shown.contains(secret), "`switchboard config` printed a secret ({secret}):\n{shown}");
    }

    let mut processes = Vec::new();
    let mut ports = BTreeMap::new();
    for service in ["interaction-server", "queues", "ucs"] {
        let port = free_port();
        let path = dir.path().join(format!("{service}.toml"));
        std::fs::write(&path, service_config(port)).unwrap();
        processes.push(spawn_service(&path, service, &dir.path().join(format!("{service}.log"))));
        ports.insert(service, port);
    }
    let http = e2e::http();
    for (service, path) in [("queues", "/health/ready/queues"), ("ucs", "/health/ready/ucs"), ("interaction-server", "/health/ready/interaction-server")] {
        e2e::desk::wait_ready(&http, &format!("http://127.0.0.1:{}{path}", ports[service])).await;
    }

    // A Submit written zstd-compressed, over SASL_SSL, as any client of the cluster could.
    let mut kafka = KafkaSettings {
        bootstrap_servers: bootstrap.clone(),
        topic_prefix: "secure.".into(),
        client: client.clone(),
        ..KafkaSettings::default()
    };
    kafka.producer.insert("compression.type".into(), "zstd".into());
    let topics = Topics::load(None, &kafka.topic_prefix).unwrap();
    let sender = runtime::commands::CommandClient::new(&kafka, &topics, "secure-test").unwrap();
    let id = "secure-interaction-1";
    let command = sender.command(
        id,
        e2e::submit(MediaType::Email, "inbound", 1, [("subject".to_owned(), "Over TLS".to_owned())].into()),
    );
    sender.send(&command).await.unwrap();
    let shown = poll_json(&http, &format!("http://127.0.0.1:{}/interactions/{id}", ports["queues"]), Duration::from_secs(60), |v| {
        v["status"] == "waiting"
    })
    .await;
    assert_eq!(shown["queue"], "inbound");
    let detail = poll_json(&http, &format!("http://127.0.0.1:{}/v1/interactions/{id}/detail", ports["ucs"]), Duration::from_secs(60), |_| true).await;
    assert_eq!(detail["subject"], "Over TLS");

    // A wrong password: a clear error, fast, not a service that waits forever.
    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password").unwrap();
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        format!("data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{}", data_dir.display(), free_port(), config_text(&bootstrap, &wrong_file, &tls, "")),
    )
    .unwrap();
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(switchboard_bin()).arg("--config").arg(&wrong).args(["run", "queues"]).output(),
    )
    .await
    .expect("a wrong password must end the service, not leave it waiting")
    .unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("refused Switchboard's credentials") && said.contains("SASL"), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
    eprintln!("wrong password refused after {took:?}: {}", said.lines().last().unwrap_or_default());

    // Traces reached the https collector with the header from the file (flushed on SIGTERM).
    let pid = nix::unistd::Pid::from_raw(processes[0].id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(30), processes[0].wait()).await.unwrap().unwrap();
    let received = std::fs::read_to_string(&sink_out).unwrap_or_default();
    assert!(
        received.lines().any(|l| l.contains("/v1/traces") && l.contains(OTLP_SECRET)),
        "no trace export with the configured header reached the https collector: {received:?}"
    );
    drop(broker);
}
