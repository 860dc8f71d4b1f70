//! Apache Kafka as the embedded broker: a KRaft single node (broker and controller in one JVM)
//! run from the pinned release's jars.
//!
//! The jars come from Maven Central: `infra/kafka/pom.xml` (embedded in the binary) lists the
//! broker as dependencies, and [`ensure_installed`] runs `mvn dependency:copy-dependencies` on
//! it once into the user cache. [`KafkaBroker::start`] formats the log directory with the
//! storage tool the first time (SCRAM users are added then), writes `server.properties` for the
//! ports of this start, runs `java -cp 'jars/*' kafka.Kafka` with a bounded heap and waits until
//! the broker answers a metadata request.
//!
//! A broker must never outlive the process that started it (a crashed `up` or test would leave
//! a JVM holding the log directory and the port): the JVM is started through `setpriv
//! --pdeathsig TERM` from a thread that lives exactly as long as the JVM, so the kernel asks the
//! JVM to stop when this process dies for any reason; it runs in its own process group, so a
//! terminal's Ctrl-C reaches only Switchboard, which then stops the broker cleanly with SIGTERM.
//!
//! TERM, not KILL: a broker killed uncleanly and started again within its session timeout
//! cannot register until the old registration expires, and meanwhile its transaction
//! coordinator drops the markers of a transaction that was being committed at the kill
//! ("Couldn't find leader endpoint … likely deleted already"). That transaction then hangs
//! on the partition: `read_committed` readers stop before it until the next transaction of
//! the same producer closes it. Seen with Apache Kafka 4.4.0 when `up` was killed right after
//! an Interaction Server commit (the restarted server rebuilt a partition without it). A
//! controlled shutdown (about a second) writes the markers and deregisters. Should the JVM
//! hang in it, the next start of the same directory kills the leftover
//! ([`kill_leftover_broker`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The Apache Kafka release Switchboard is tested against (keep `infra/kafka/pom.xml` in step).
pub const KAFKA_VERSION: &str = "4.4.0";
/// Kafka 4's brokers need Java 17.
pub const MIN_JAVA: u32 = 17;

const POM: &str = include_str!("../../../../infra/kafka/pom.xml");
const LOG4J2: &str = include_str!("../../../../infra/kafka/log4j2.xml");

#[derive(Debug, thiserror::Error)]
pub enum KafkaBrokerError {
    #[error(
        "Apache Kafka needs Java {MIN_JAVA} or newer: {0}. Install a JDK (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME; or set [broker] kind = \"tansu\""
    )]
    NoJava(String),
    #[error(
        "installing Apache Kafka {KAFKA_VERSION} needs Maven (`mvn`): {0}. Install it (Debian: apt-get install maven) or set [broker] kind = \"tansu\""
    )]
    NoMaven(String),
    #[error("installing Apache Kafka {KAFKA_VERSION} with Maven failed: {0}")]
    Install(String),
    #[error(
        "Apache Kafka {KAFKA_VERSION} is not installed at {0}; run `switchboard broker install` (or scripts/test) first"
    )]
    NotInstalled(PathBuf),
    #[error("formatting the Kafka log directory {dir} failed: {detail}")]
    Format { dir: PathBuf, detail: String },
    #[error("cannot start Apache Kafka: {0}")]
    Start(String),
    #[error("Apache Kafka exited ({status}) before it answered on {addr}; last lines of {log}:\n{tail}")]
    Exited {
        status: String,
        addr: String,
        log: PathBuf,
        tail: String,
    },
    #[error("Apache Kafka did not answer a metadata request on {addr} within {secs} s; see {log}")]
    Timeout {
        addr: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The `java` to run: `$JAVA_HOME/bin/java` when set, else the one on `PATH`.
pub fn java_path(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_owned();
    }
    match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin").join("java"),
        _ => PathBuf::from("java"),
    }
}

/// The feature version of `java` (17 for "17.0.15", 8 for "1.8.0_392").
pub fn java_version(java: &Path) -> Result<u32, KafkaBrokerError> {
    let output = Command::new(java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KafkaBrokerError::NoJava(format!("cannot run {}: {e}", java.display())))?;
    let text = String::from_utf8_lossy(&output.stderr);
    parse_java_version(&text).ok_or_else(|| {
        KafkaBrokerError::NoJava(format!(
            "cannot read the version of {} from {:?}",
            java.display(),
            text.lines().next().unwrap_or_default()
        ))
    })
}

fn parse_java_version(text: &str) -> Option<u32> {
    let quoted = text.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Checks that `java` exists and is new enough; returns its version.
pub fn check_java(java: &Path) -> Result<u32, KafkaBrokerError> {
    let version = java_version(java)?;
    if version < MIN_JAVA {
        return Err(KafkaBrokerError::NoJava(format!(
            "{} is Java {version}",
            java.display()
        )));
    }
    Ok(version)
}

/// Where the pinned release's jars live: `$SWITCHBOARD_KAFKA_JARS`, else the user cache.
pub fn jars_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os("SWITCHBOARD_KAFKA_JARS") {
        return PathBuf::from(path);
    }
    install_root().join("jars")
}

fn install_root() -> PathBuf {
    super::cache_dir().join(format!("kafka-{KAFKA_VERSION}"))
}

fn installed(jars: &Path) -> bool {
    jars.join(format!("kafka_2.13-{KAFKA_VERSION}.jar")).exists()
}

/// Fetches the pinned Kafka release with Maven into the user cache if it is not there yet.
pub async fn ensure_installed(configured: Option<&Path>) -> Result<PathBuf, KafkaBrokerError> {
    let jars = jars_dir(configured);
    if installed(&jars) {
        return Ok(jars);
    }
    if configured.is_some() || std::env::var_os("SWITCHBOARD_KAFKA_JARS").is_some() {
        return Err(KafkaBrokerError::NotInstalled(jars));
    }
    let root = install_root();
    std::fs::create_dir_all(&root)?;
    let pom = root.join("pom.xml");
    std::fs::write(&pom, POM)?;
    // Into a fresh directory first, so an interrupted download never looks installed.
    let partial = root.join("jars.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    tracing::info!(into = %jars.display(), "installing Apache Kafka {KAFKA_VERSION} from Maven Central (once; under a minute)");
    let mvn = std::env::var_os("SWITCHBOARD_MVN").unwrap_or_else(|| "mvn".into());
    let output = tokio::process::Command::new(&mvn)
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            KafkaBrokerError::NoMaven(format!("cannot run {}: {e}", PathBuf::from(&mvn).display()))
        })?;
    if !output.status.success() || !installed(&partial) {
        let mut detail = String::from_utf8_lossy(&output.stdout).into_owned();
        detail.push_str(&String::from_utf8_lossy(&output.stderr));
        let tail: Vec<&str> = detail.lines().rev().take(15).collect();
        return Err(KafkaBrokerError::Install(format!(
            "mvn exited with {}:\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    if jars.exists() {
        std::fs::remove_dir_all(&jars)?;
    }
    std::fs::rename(&partial, &jars)?;
    Ok(jars)
}

/// A SASL_SSL listener with SCRAM-SHA-512 users (added to the log directory when it is
/// formatted) and a PEM certificate.
#[derive(Debug, Clone)]
pub struct SaslSslListener {
    /// PEM certificate chain of the broker (with SANs for the host clients connect to).
    pub certificate_pem: String,
    /// Its PKCS#8 PEM private key.
    pub private_key_pem: String,
    /// `(user, password)`; passwords must not contain `,`, `]`, `=` (the storage tool's syntax).
    pub scram_users: Vec<(String, String)>,
}

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Its own directory: `server.properties`, `log/` (the data), `server.log`.
    pub dir: PathBuf,
    /// Client port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// KRaft controller port on 127.0.0.1 (0: a free one).
    pub controller_port: u16,
    pub heap_mb: u32,
    pub java: PathBuf,
    pub jars: PathBuf,
    /// With a SASL_SSL listener as the client port; the broker talks to itself over a
    /// loopback PLAINTEXT listener that is not advertised.
    pub sasl_ssl: Option<SaslSslListener>,
    /// `server.properties` entries over Switchboard's defaults.
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings the readiness check connects with (SASL credentials, CA).
    pub client: BTreeMap<String, String>,
}

impl KafkaOptions {
    pub fn new(dir: PathBuf, jars: PathBuf) -> Self {
        Self {
            dir,
            port: 0,
            controller_port: 0,
            heap_mb: 512,
            java: java_path(None),
            jars,
            sasl_ssl: None,
            properties: BTreeMap::new(),
            client: BTreeMap::new(),
        }
    }
}

/// A running Apache Kafka; stopped cleanly by [`KafkaBroker::stop`], killed when dropped.
pub struct KafkaBroker {
    pid: Option<nix::unistd::Pid>,
    exited: Mutex<Receiver<String>>,
    bootstrap: String,
    log: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker").field("bootstrap", &self.bootstrap).field("dir", &self.dir).finish()
    }
}

impl KafkaBroker {
    /// Formats (first time) and starts the broker, and waits until it answers metadata.
    /// Blocks: call it from a blocking context (see [`KafkaBroker::start`]).
    pub fn start_blocking(options: &KafkaOptions) -> Result<Self, KafkaBrokerError> {
        if !installed(&options.jars) {
            return Err(KafkaBrokerError::NotInstalled(options.jars.clone()));
        }
        check_java(&options.java)?;
        let dir = std::path::absolute(&options.dir)?;
        std::fs::create_dir_all(&dir)?;
        let port = if options.port == 0 { super::free_listen_port()? } else { options.port };
        let controller_port = if options.controller_port == 0 { super::free_listen_port()? } else { options.controller_port };
        let internal_port = if options.sasl_ssl.is_some() { super::free_listen_port()? } else { 0 };
        let log4j = dir.join("log4j2.xml");
        std::fs::write(&log4j, LOG4J2)?;
        let properties = dir.join("server.properties");
        kill_leftover_broker(&properties);
        std::fs::write(&properties, server_properties(options, &dir, port, controller_port, internal_port)?)?;
        let classpath = format!("{}/*", options.jars.display());
        let jvm = |heap_mb: u32| {
            let mut command = Command::new(&options.java);
            command
                .arg(format!("-Xmx{heap_mb}m"))
                .args(["-XX:+UseSerialGC", "-Djava.awt.headless=true"])
                .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
                .arg(format!("-Dkafka.logs.dir={}", dir.display()))
                .arg("-cp")
                .arg(&classpath);
            command
        };
        if !dir.join("log").join("meta.properties").exists() {
            format_log_dir(jvm(256), &dir, &properties, options.sasl_ssl.as_ref())?;
        }
        let mut command = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "TERM", "--"]).arg(&options.java);
            c.args(jvm(options.heap_mb).get_args());
            c
        } else {
            tracing::warn!("setpriv not found: a killed Switchboard may leave its Kafka running");
            jvm(options.heap_mb)
        };
        command.arg("kafka.Kafka").arg(&properties);
        let log = dir.join("server.log");
        let stdout = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stdout.log"))?;
        command
            .stdin(Stdio::null())
            .stdout(stdout.try_clone()?)
            .stderr(stdout);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let (pid, exited) = spawn_kept(command)?;
        let mut broker = Self {
            pid: Some(pid),
            exited: Mutex::new(exited),
            bootstrap: format!("127.0.0.1:{port}"),
            log,
            dir,
        };
        broker.wait_until_ready(&options.client, Duration::from_secs(90))?;
        tracing::info!(bootstrap = %broker.bootstrap, dir = %broker.dir.display(), "Apache Kafka {KAFKA_VERSION} up");
        Ok(broker)
    }

    /// [`KafkaBroker::start_blocking`] on tokio's blocking pool.
    pub async fn start(options: KafkaOptions) -> Result<Self, KafkaBrokerError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(&options))
            .await
            .map_err(|e| KafkaBrokerError::Start(e.to_string()))?
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exit_status(&self) -> Option<String> {
        self.exited.lock().ok().and_then(|r| r.try_recv().ok())
    }

    fn wait_until_ready(&mut self, client: &BTreeMap<String, String>, limit: Duration) -> Result<(), KafkaBrokerError> {
        let started = Instant::now();
        let mut config = ClientConfig::new();
        for (k, v) in client {
            config.set(k, v);
        }
        config.set("bootstrap.servers", &self.bootstrap);
        let probe: BaseConsumer = config
            .create()
            .map_err(|e| KafkaBrokerError::Start(format!("cannot create the readiness probe: {e}")))?;
        loop {
            if let Some(status) = self.exit_status() {
                self.pid = None;
                return Err(KafkaBrokerError::Exited {
                    status,
                    addr: self.bootstrap.clone(),
                    log: self.log.clone(),
                    tail: super::tail(&self.log, 15),
                });
            }
            if std::net::TcpStream::connect(&self.bootstrap).is_ok()
                && let Ok(metadata) = probe.fetch_metadata(None, Duration::from_secs(2))
                && !metadata.brokers().is_empty()
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(KafkaBrokerError::Timeout {
                    addr: self.bootstrap.clone(),
                    secs: limit.as_secs(),
                    log: self.log.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the broker to stop (SIGTERM: a controlled shutdown that closes the log cleanly)
    /// and waits up to 30 s, then kills it.
    pub async fn stop(mut self) -> Result<(), KafkaBrokerError> {
        let Some(pid) = self.pid.take() else { return Ok(()) };
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = std::mem::replace(&mut self.exited, Mutex::new(mpsc::channel().1));
        let waited = tokio::task::spawn_blocking(move || {
            exited
                .into_inner()
                .map_err(|_| RecvTimeoutError::Disconnected)
                .and_then(|r| r.recv_timeout(Duration::from_secs(30)))
        })
        .await
        .map_err(|e| KafkaBrokerError::Start(e.to_string()))?;
        match waited {
            Ok(status) => tracing::info!(%status, "Apache Kafka stopped"),
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("Apache Kafka did not stop within 30 s; killing it");
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            Err(RecvTimeoutError::Disconnected) => {}
        }
        Ok(())
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker of an earlier run of this directory still running (its controlled shutdown hung
/// after its parent died) holds the log directory's lock: it is killed, with a warning.
fn kill_leftover_broker(properties: &Path) {
    let needle = properties.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ours = args.contains(&b"kafka.Kafka".as_slice()) && args.contains(&needle.as_bytes());
        if is_ours {
            tracing::warn!(pid, properties = %needle, "an Apache Kafka of an earlier run of this directory is still running: killing it");
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Alive and not a zombie (a dead process not yet reaped no longer holds the log's lock).
fn is_running(pid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Spawns `command` from a thread that waits for it, so that `PR_SET_PDEATHSIG` (which fires
/// when the *thread* that forked the child ends) fires exactly when this process dies.
fn spawn_kept(mut command: Command) -> Result<(nix::unistd::Pid, Receiver<String>), KafkaBrokerError> {
    let (started_tx, started_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("kafka-broker".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id()));
                let status = child
                    .wait()
                    .map_or_else(|e| format!("unknown: {e}"), |s| s.to_string());
                let _ = exit_tx.send(status);
            }
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
        })?;
    let id = started_rx
        .recv()
        .map_err(|e| KafkaBrokerError::Start(e.to_string()))?
        .map_err(|e| KafkaBrokerError::Start(format!("cannot run java: {e}")))?;
    let pid = i32::try_from(id).map_err(|e| KafkaBrokerError::Start(e.to_string()))?;
    Ok((nix::unistd::Pid::from_raw(pid), exit_rx))
}

fn server_properties(
    options: &KafkaOptions,
    dir: &Path,
    port: u16,
    controller_port: u16,
    internal_port: u16,
) -> Result<String, KafkaBrokerError> {
    let mut p: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set("process.roles", "broker,controller".into());
    set("node.id", "1".into());
    set("controller.quorum.voters", format!("1@127.0.0.1:{controller_port}"));
    set("controller.listener.names", "CONTROLLER".into());
    set("log.dirs", dir.join("log").display().to_string());
    // One node: the internal topics can have only one replica, or groups and transactions hang.
    for key in [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "min.insync.replicas",
        "default.replication.factor",
    ] {
        set(key, "1".into());
    }
    // Fewer partitions for the internal topics: created at the first group or transaction,
    // fifty of each cost seconds on a small machine and buy nothing on one node.
    set("offsets.topic.num.partitions", "10".into());
    set("transaction.state.log.num.partitions", "10".into());
    set("group.initial.rebalance.delay.ms", "0".into());
    // Topics are created by Switchboard from infra/topics.toml, never by a stray producer.
    set("auto.create.topics.enable", "false".into());
    set("num.partitions", "1".into());
    match &options.sasl_ssl {
        None => {
            set("listeners", format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"));
            set("advertised.listeners", format!("PLAINTEXT://127.0.0.1:{port}"));
            set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into());
            set("inter.broker.listener.name", "PLAINTEXT".into());
        }
        Some(sasl) => {
            let pem = |s: &str| s.trim().replace('\n', "\\n");
            set(
                "listeners",
                format!("SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port},CONTROLLER://127.0.0.1:{controller_port}"),
            );
            set("advertised.listeners", format!("SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port}"));
            set("listener.security.protocol.map", "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into());
            set("inter.broker.listener.name", "INTERNAL".into());
            set("sasl.enabled.mechanisms", "SCRAM-SHA-512".into());
            set(
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            );
            set("listener.name.sasl_ssl.ssl.keystore.type", "PEM".into());
            set("listener.name.sasl_ssl.ssl.keystore.certificate.chain", pem(&sasl.certificate_pem));
            set("listener.name.sasl_ssl.ssl.keystore.key", pem(&sasl.private_key_pem));
        }
    }
    for (k, v) in &options.properties {
        p.insert(k.clone(), v.clone());
    }
    let mut text = String::from("# Written by Switchboard at every start of the embedded Apache Kafka; edits are lost.\n");
    for (k, v) in p {
        if k.contains(['\n', '=']) || v.contains('\n') {
            return Err(KafkaBrokerError::Start(format!("invalid broker property {k:?}")));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(text)
}

fn format_log_dir(
    mut jvm: Command,
    dir: &Path,
    properties: &Path,
    sasl: Option<&SaslSslListener>,
) -> Result<(), KafkaBrokerError> {
    let cluster_id = cluster_id();
    jvm.arg("kafka.tools.StorageTool")
        .args(["format", "--ignore-formatted", "-t", &cluster_id, "-c"])
        .arg(properties);
    for (user, password) in sasl.map(|s| s.scram_users.as_slice()).unwrap_or_default() {
        if [user, password].iter().any(|s| s.contains([',', ']', '=', '[', '\n'])) {
            return Err(KafkaBrokerError::Format {
                dir: dir.to_owned(),
                detail: format!("SCRAM user {user}: names and passwords may not contain , ] [ ="),
            });
        }
        jvm.arg("--add-scram").arg(format!("SCRAM-SHA-512=[name={user},password={password}]"));
    }
    let output = jvm.stdin(Stdio::null()).output().map_err(|e| KafkaBrokerError::Format {
        dir: dir.to_owned(),
        detail: format!("cannot run java: {e}"),
    })?;
    if !output.status.success() {
        return Err(KafkaBrokerError::Format {
            dir: dir.to_owned(),
            detail: format!(
                "{}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

/// A KRaft cluster id: a random UUID in URL-safe base64 without padding (22 characters), as
/// `kafka-storage random-uuid` prints. Never one that starts with `-`, which the storage tool
/// would take for an option (Kafka's own `Uuid.randomUuid` draws again for the same reason; one
/// id in 64 did, and the format failed).
fn cluster_id() -> String {
    use base64::Engine as _;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}



#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Command, Duration, Instant, Path, kill_leftover_broker, parse_java_version};

    #[test]
    fn java_versions_old_and_new() {
        assert_eq!(parse_java_version("openjdk version \"17.0.15\" 2025-04-15"), Some(17));
        assert_eq!(parse_java_version("java version \"1.8.0_392\""), Some(8));
        assert_eq!(parse_java_version("openjdk version \"25\" 2025-09-16"), Some(25));
        assert_eq!(parse_java_version("nonsense"), None);
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters_never_led_by_a_dash() {
        // 1000 draws: a dash-led id (1 in 64 before) would show up many times.
        for _ in 0..1000 {
            let id = super::cluster_id();
            assert_eq!(id.len(), 22);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn a_leftover_broker_of_the_same_directory_is_killed_and_no_other() {
        let dir = std::env::temp_dir().join(format!("switchboard-leftover-{}", std::process::id()));
        let (ours, other) = (dir.join("a").join("server.properties"), dir.join("b").join("server.properties"));
        // Stand-ins whose command lines look like brokers of two directories.
        let spawn = |properties: &Path| {
            Command::new("sh").args(["-c", "sleep 30; true", "kafka.Kafka"]).arg(properties).spawn().unwrap()
        };
        let (mut left, mut unrelated) = (spawn(&ours), spawn(&other));
        std::thread::sleep(Duration::from_millis(200));
        kill_leftover_broker(&ours);
        let deadline = Instant::now() + Duration::from_secs(5);
        while left.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the leftover was not killed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(unrelated.try_wait().unwrap().is_none(), "a broker of another directory was killed");
        unrelated.kill().unwrap();
        let _ = unrelated.wait();
    }
}
