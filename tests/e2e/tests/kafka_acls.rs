//! Least privilege on a real cluster: Apache Kafka with `StandardAuthorizer`, a `SASL_SSL`
//! listener and one SCRAM principal per service. Topics are created by the admin; each service's
//! ACLs are granted with exactly the `kafka-acls.sh` commands `switchboard topics acls` prints
//! from `infra/kafka/acls.toml` (run through Kafka's own `AclCommand`). Every service then runs
//! as its own process and principal with topic creation off, and an e-mail, a web submission,
//! a chat and an SMS go through routing, the desk, UCS and statistics with no authorization
//! error in any log. A service run as a principal without its ACLs is refused at start with a
//! message that says so.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::tls::TestTls;
use e2e::{free_port, kafka_jars, poll_json, run_dir, spawn_service, start_kafka_blocking, switchboard_bin};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use runtime::broker::KafkaOptions;
use runtime::broker::kafka::SaslSslListener;
use serde_json::{Value, json};

const PREFIX: &str = "acl.";
const ADMIN_PASSWORD: &str = "admin-Pa55";

/// `switchboard run` name, SCRAM user.
const SERVICES: [(&str, &str); 10] = [
    ("interaction-server", "is"),
    ("queues", "queues"),
    ("web-api", "webapi"),
    ("ucs", "ucs"),
    ("router", "router"),
    ("desk", "desk"),
    ("stats", "stats"),
    ("email", "email"),
    ("chat-server", "chat"),
    ("sms-server", "sms"),
];

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "web-q"
steps = [{ type = "route" }]
[[queue]]
name = "inbound"
steps = [{ type = "route" }]
[[queue]]
name = "chat-inbound"
steps = [{ type = "route" }]
[[queue]]
name = "sms-inbound"
steps = [{ type = "route" }]
"#;

fn password(user: &str) -> String {
    format!("pw-{user}-x1")
}

/// The `[kafka]` section of a process that connects as `user`.
fn kafka_section(bootstrap: &str, user: &str, secrets: &Path, ca: &Path, create_topics: bool) -> String {
    let file = secrets.join(format!("{user}.password"));
    std::fs::write(&file, password_or_admin(user)).unwrap();
    format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopic_prefix = \"{PREFIX}\"\ncreate_topics = {create_topics}\n[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{user}\"\n\"sasl.password_file\" = \"{}\"\n\"ssl.ca.location\" = \"{}\"\n",
        file.display(),
        ca.display()
    )
}

fn password_or_admin(user: &str) -> String {
    if user == "admin" { ADMIN_PASSWORD.to_owned() } else { password(user) }
}

async fn switchboard(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(switchboard_bin()).arg("--config").arg(config).args(args).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("switchboard {args:?} did not finish within 120 s"))
    .unwrap()
}

fn authorization_errors(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("authoriz") || l.contains("not allowed") || l.contains("denied")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_under_exactly_its_documented_acls() {
    let dir = run_dir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let tls = TestTls::generate(dir.path()).unwrap();
    let mut users: Vec<(String, String)> = SERVICES.iter().map(|(_, u)| ((*u).to_owned(), password(u))).collect();
    users.push(("admin".into(), ADMIN_PASSWORD.into()));
    let mut options = KafkaOptions::new(dir.path().join("kafka"), kafka_jars());
    options.sasl_ssl = Some(SaslSslListener { certificate_pem: tls.cert_pem.clone(), private_key_pem: tls.key_pem.clone(), scram_users: users });
    // The broker reaches itself (and its controller) over loopback PLAINTEXT listeners that
    // are not advertised; their principal is ANONYMOUS.
    options.properties.insert("authorizer.class.name".into(), "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into());
    options.properties.insert("super.users".into(), "User:admin;User:ANONYMOUS".into());
    options.client = tls.scram_client("admin", ADMIN_PASSWORD);
    let broker = tokio::task::spawn_blocking(move || start_kafka_blocking(options)).await.unwrap().unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();

    // The administrator creates the topics and grants each service its ACLs.
    let admin_config = dir.path().join("admin.toml");
    std::fs::write(&admin_config, kafka_section(&bootstrap, "admin", &secrets, &tls.ca_file, true)).unwrap();
    let created = switchboard(&admin_config, &["topics", "create"]).await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let grants: Vec<String> = SERVICES.iter().map(|(s, u)| format!("{s}=User:{u}")).collect();
    let mut args = vec!["topics", "acls"];
    args.extend(grants.iter().map(String::as_str));
    let printed = switchboard(&admin_config, &args).await;
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let script = String::from_utf8(printed.stdout).unwrap();
    assert!(script.lines().filter(|l| l.starts_with("kafka-acls.sh ")).count() >= SERVICES.len(), "{script}");
    // admin.properties, as the README's AclCommand example expects it.
    std::fs::write(
        dir.path().join("admin.properties"),
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{ADMIN_PASSWORD}\";\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
            tls.ca_file.display()
        ),
    )
    .unwrap();
    // The printed lines as they are, four at a time (each is a JVM start).
    std::fs::write(dir.path().join("printed-acls.sh"), &script).unwrap();
    let granting = format!(
        "set -u\nkafka-acls.sh() {{ java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp '{}/*' org.apache.kafka.tools.AclCommand \"$@\" >> acl-command.log 2>&1 || echo \"$*\" >> acl-command.failed; }}\nwhile IFS= read -r line; do\n  while [ \"$(jobs -rp | wc -l)\" -ge 4 ]; do wait -n; done\n  eval \"$line\" &\ndone < <(grep '^kafka-acls.sh ' printed-acls.sh)\nwait\n",
        kafka_jars().display()
    );
    std::fs::write(dir.path().join("grant-acls.sh"), &granting).unwrap();
    let started = Instant::now();
    let granted = tokio::process::Command::new("bash").arg("grant-acls.sh").current_dir(dir.path()).output().await.unwrap();
    assert!(
        granted.status.success() && !dir.path().join("acl-command.failed").exists(),
        "granting the printed ACLs failed: {}\n{}",
        String::from_utf8_lossy(&granted.stderr),
        std::fs::read_to_string(dir.path().join("acl-command.log")).unwrap_or_default()
    );
    eprintln!("{} kafka-acls.sh commands took {:?}", script.lines().filter(|l| l.starts_with("kafka-acls.sh")).count(), started.elapsed());

    // A service run as a principal without its ACLs: refused at start, saying why.
    let refused_config = dir.path().join("refused.toml");
    std::fs::write(
        &refused_config,
        format!("data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{}", dir.path().join("refused").display(), free_port(), kafka_section(&bootstrap, "webapi", &secrets, &tls.ca_file, false)),
    )
    .unwrap();
    let refused = switchboard(&refused_config, &["run", "queues"]).await;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "queues ran as the web API's principal: {said}");
    assert!(said.contains("not authorized") && said.contains("acl.interaction.events"), "{said}");

    // Every service as its own process and principal, creation off.
    let data = dir.path().join("data");
    let workflow = dir.path().join("workflow.toml");
    std::fs::write(&workflow, WORKFLOW).unwrap();
    let users_file = dir.path().join("desk-users.toml");
    let capacity: BTreeMap<String, i32> = [("email", 5), ("chat", 2), ("sms", 2)].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    write_users(
        &users_file,
        vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())],
    );
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|(s, _)| (*s, free_port())).collect();
    let (smtp_port, gateway_port) = (free_port(), e2e::sms::start(Default::default(), axum::Router::new()).await);
    let sms_url = format!("http://127.0.0.1:{}", ports["sms-server"]);
    let ucs_url = format!("http://127.0.0.1:{}", ports["ucs"]);
    let mut processes = Vec::new();
    let mut logs: Vec<PathBuf> = Vec::new();
    for (service, user) in SERVICES {
        let config = dir.path().join(format!("{service}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{data}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_lines}[router]\nworkflow = \"{workflow}\"\ntick_ms = 50\n[desk]\nusers_file = \"{users}\"\n[email]\nucs_url = \"{ucs_url}\"\nsmtp_listen = \"127.0.0.1:{smtp_port}\"\ndomain = \"shop.example\"\n[chat]\nucs_url = \"{ucs_url}\"\n[sms]\naccount_sid = \"{sid}\"\nauth_token = \"{token}\"\napi_base = \"http://127.0.0.1:{gateway_port}\"\nfrom_number = \"+441234567890\"\npublic_url = \"{sms_url}\"\nucs_url = \"{ucs_url}\"\n{kafka}",
                data = data.display(),
                port = ports[service],
                http_lines = e2e::http_config_lines(dir.path()),
                workflow = workflow.display(),
                users = users_file.display(),
                sid = e2e::sms::SID,
                token = e2e::sms::TOKEN,
                kafka = kafka_section(&bootstrap, user, &secrets, &tls.ca_file, false),
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{service}.log"));
        processes.push((service, spawn_service(&config, service, &log)));
        logs.push(log);
    }
    let http = e2e::http();
    let url = |service: &str, path: &str| format!("http://127.0.0.1:{}{path}", ports[service]);
    for (service, path) in [
        ("interaction-server", "/health/ready/interaction-server"),
        ("queues", "/health/ready/queues"),
        ("web-api", "/health/ready/web-api"),
        ("ucs", "/health/ready/ucs"),
        ("router", "/health/ready/router"),
        ("desk", "/health/ready/desk"),
        ("stats", "/health/ready/stats"),
        ("email", "/health/ready/email"),
        ("chat-server", "/health/ready/chat-server"),
        ("sms-server", "/health/ready/sms-server"),
    ] {
        wait_ready(&http, &url(service, path)).await;
    }
    let desk = DeskClient::new(&http, ports["desk"]);
    let (ann, sue) = (desk.login("ann").await, desk.login("sue").await);
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    // A standard response kept by UCS (published on ucs.events, followed by the desk).
    let r = http
        .post(url("ucs", "/v1/standard-responses"))
        .json(&json!({"name": "Hello", "media": [], "subject": "Re: {{subject}}", "body_text": "Hello from {{agent_name}}"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    // 1. The web API.
    let submitted: Value = http
        .post(url("web-api", "/v1/interactions"))
        .json(&json!({"media_type": "email", "queue": "web-q", "properties": {"subject": "From the web"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let web_id = submitted["interaction_id"].as_str().unwrap().to_owned();
    // 2. An e-mail into the SMTP listener.
    let smtp: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port).timeout(Some(Duration::from_secs(30))).build();
    let envelope = lettre::address::Envelope::new(Some("ada@example.com".parse().unwrap()), vec!["support@shop.example".parse().unwrap()]).unwrap();
    let mail = "From: Ada <ada@example.com>\r\nTo: support@shop.example\r\nSubject: By mail\r\nMessage-ID: <acl-1@example.com>\r\n\r\nHello.\r\n";
    smtp.send_raw(&envelope, mail.as_bytes()).await.unwrap();
    let mail_id = email::intake::interaction_id_for("acl-1@example.com");
    // 3. A chat.
    let (chat_id, chat_token) = e2e::chat::start(&http, ports["chat-server"], json!({"name": "Bea", "email": "bea@example.com", "subject": "Chat"})).await;
    let mut customer = e2e::chat::connect(ports["chat-server"], &chat_id, &chat_token, None).await.unwrap();
    e2e::chat::say(&mut customer, "c1", "hello there").await;
    // 4. An SMS, signed as the gateway signs it.
    let inbound = url("sms-server", "/v1/sms/twilio/inbound");
    let params = [("MessageSid", "SM22222222222222222222222222222222"), ("AccountSid", e2e::sms::SID), ("From", "+447911123456"), ("To", "+441234567890"), ("Body", "Hi by SMS"), ("NumMedia", "0")];
    let (s, body) = e2e::sms::post_webhook(&http, &inbound, &params, &e2e::sms::sign(&inbound, &params)).await;
    assert_eq!(s, 200, "{body}");
    let sms = desk
        .get_until(&sue, "/v1/desk/queues/sms-inbound", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| !a.is_empty()))
        .await;
    let sms_id = sms["interactions"][0]["id"].as_str().unwrap().to_owned();

    // Each is routed to Ann (router), accepted and finished on the desk (desk).
    for id in [&web_id, &mail_id, &chat_id, &sms_id] {
        let path = format!("/v1/desk/interactions/{id}");
        desk.get_until(&sue, &path, Duration::from_secs(60), |i| i["status"] == "offered" && i["offer"]["agent_id"] == "ann").await;
        let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
        assert_eq!(s, 200, "{id}: {b}");
    }
    // The chat: Ann joins and sees what the customer wrote (chat.events).
    let mut agent = e2e::chat::connect(ports["chat-server"], &chat_id, &ann, None).await.unwrap();
    e2e::chat::send(&mut agent, json!({"type": "resume", "after": 0})).await;
    e2e::chat::read_until(&mut agent, |v| e2e::chat::text_of(v) == Some("hello there")).await;
    // The desk: responses from UCS, and the timeline from the log.
    let web_path = format!("/v1/desk/interactions/{web_id}");
    desk.get_until(&ann, &format!("{web_path}/responses"), Duration::from_secs(60), |b| b["responses"].as_array().is_some_and(|r| !r.is_empty())).await;
    let (s, timeline) = desk.get(&sue, &format!("{web_path}/timeline")).await;
    assert_eq!(s, 200, "{timeline}");
    for id in [&web_id, &mail_id] {
        let (s, b) = desk.post(&ann, &format!("/v1/desk/interactions/{id}/done"), json!({})).await;
        assert_eq!(s, 200, "{id}: {b}");
    }
    // The queue projection, UCS and the statistics saw it all.
    poll_json(&http, &url("queues", &format!("/interactions/{web_id}")), Duration::from_secs(60), |v| v["status"] == "stopped").await;
    let detail = poll_json(&http, &url("ucs", &format!("/v1/interactions/{mail_id}/detail")), Duration::from_secs(60), |_| true).await;
    assert_eq!(detail["subject"], "By mail");
    poll_json(&http, &url("stats", "/v1/agents/ann"), Duration::from_secs(60), |v| v.to_string().contains("ready")).await;

    // Nobody was refused anything, and every service is still running.
    for ((service, process), log) in processes.iter_mut().zip(&logs) {
        assert!(process.try_wait().unwrap().is_none(), "{service} stopped; see {}", log.display());
        let errors = authorization_errors(log);
        assert!(errors.is_empty(), "{service} ran into the ACLs:\n{}", errors.join("\n"));
    }
    drop(processes);
    drop(broker);
}
