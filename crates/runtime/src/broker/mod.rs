//! The embedded broker of `switchboard up` and of the tests.
//!
//! - [`kafka`]: Apache Kafka (the reference broker), run from the pinned release's jars with
//!   the system's Java; the default whenever Java 17+ is found.
//! - [`tansu`]: Tansu 0.6, a Kafka-protocol broker in Rust: the fallback where there is no
//!   JVM. No transactions, no group rebalancing to speak of; see the README's "Kafka
//!   compatibility".
//!
//! A data directory keeps the broker it started with: the log of one cannot be read by the
//! other, so [`choose`] never starts a different broker on a directory that holds a log.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{EmbeddedBrokerSettings, KafkaSettings};

pub mod kafka;
pub mod tansu;

pub use kafka::{KafkaBroker, KafkaBrokerError, KafkaOptions};
pub use tansu::{BrokerError as TansuError, TansuBroker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    Kafka,
    Tansu,
}

impl std::fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kafka => "Apache Kafka",
            Self::Tansu => "Tansu",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Kafka(#[from] KafkaBrokerError),
    #[error(transparent)]
    Tansu(#[from] TansuError),
    #[error(
        "{data_dir} holds the log of {found} ({path}) but [broker] kind = \"{wanted}\"; a broker cannot read the other's log. \
         Keep kind = \"{found_key}\" for this data directory, or start {wanted_name} on a new data_dir (history does not move with it)"
    )]
    OtherLog {
        data_dir: String,
        found: BrokerKind,
        found_key: &'static str,
        path: String,
        wanted: &'static str,
        wanted_name: BrokerKind,
    },
}

/// The user cache (`$XDG_CACHE_HOME/switchboard` or `~/.cache/switchboard`) where brokers are
/// installed.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("switchboard")
}

/// A port on 127.0.0.1 that is free now, for a child process to listen on. Taken below the
/// kernel's ephemeral range (32768-60999 on Linux), so that no outgoing connection of this
/// machine can be holding it by the time the child binds it (a port from `bind(0)` can).
pub fn free_listen_port() -> std::io::Result<u16> {
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let random = u16::from_le_bytes([uuid::Uuid::new_v4().as_bytes()[0], uuid::Uuid::new_v4().as_bytes()[1]]);
    for step in 0..SPAN {
        let port = LOW + (random.wrapping_add(step) % SPAN);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `lines` lines of a broker's log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where each broker keeps its log inside a data directory.
pub fn kafka_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("kafka")
}

pub fn tansu_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("broker")
}

fn key(kind: BrokerKind) -> &'static str {
    match kind {
        BrokerKind::Kafka => "kafka",
        BrokerKind::Tansu => "tansu",
    }
}

/// Which broker `up` runs on `data_dir`, and why (for the log).
pub fn choose(settings: &EmbeddedBrokerSettings, data_dir: &Path) -> Result<(BrokerKind, String), EmbeddedError> {
    let tansu_log = tansu_dir(data_dir).join("tansu.db");
    let kafka_log = kafka_dir(data_dir).join("log").join("meta.properties");
    let other = |found: BrokerKind, path: &Path, wanted: BrokerKind| EmbeddedError::OtherLog {
        data_dir: data_dir.display().to_string(),
        found,
        found_key: key(found),
        path: path.display().to_string(),
        wanted: key(wanted),
        wanted_name: wanted,
    };
    match settings.kind {
        Some(BrokerKind::Kafka) if tansu_log.exists() && !kafka_log.exists() => {
            Err(other(BrokerKind::Tansu, &tansu_log, BrokerKind::Kafka))
        }
        Some(BrokerKind::Tansu) if kafka_log.exists() && !tansu_log.exists() => {
            Err(other(BrokerKind::Kafka, &kafka_log, BrokerKind::Tansu))
        }
        Some(kind) => Ok((kind, "[broker] kind says so".into())),
        None if kafka_log.exists() => Ok((BrokerKind::Kafka, format!("{} holds its log", kafka_dir(data_dir).display()))),
        None if tansu_log.exists() => Ok((
            BrokerKind::Tansu,
            format!(
                "{} holds a Tansu log, so this data directory stays on Tansu (Apache Kafka cannot read it; \
                 to move to Kafka, start on a new data_dir)",
                tansu_log.display()
            ),
        )),
        None => {
            let java = kafka::java_path(settings.java.as_deref());
            match kafka::check_java(&java) {
                Ok(version) => Ok((BrokerKind::Kafka, format!("Java {version} found ({})", java.display()))),
                Err(e) => Ok((BrokerKind::Tansu, format!("no Apache Kafka without Java: {e}"))),
            }
        }
    }
}

/// The embedded broker, whichever it is.
pub enum EmbeddedBroker {
    Kafka(KafkaBroker),
    Tansu(TansuBroker),
}

impl EmbeddedBroker {
    /// Chooses, installs if needed and starts the embedded broker of `data_dir`.
    pub async fn start(settings: &EmbeddedBrokerSettings, data_dir: &Path) -> Result<Self, EmbeddedError> {
        let (kind, why) = choose(settings, data_dir)?;
        tracing::info!(broker = %kind, reason = %why, "embedded broker");
        match kind {
            BrokerKind::Kafka => {
                let jars = kafka::ensure_installed(settings.kafka_jars.as_deref()).await?;
                let mut options = KafkaOptions::new(kafka_dir(data_dir), jars);
                options.port = settings.port;
                options.controller_port = settings.controller_port;
                options.heap_mb = settings.heap_mb;
                options.java = kafka::java_path(settings.java.as_deref());
                Ok(Self::Kafka(KafkaBroker::start(options).await?))
            }
            BrokerKind::Tansu => {
                let tansu = tansu::ensure_installed(settings.tansu_bin.as_deref()).await?;
                Ok(Self::Tansu(TansuBroker::start(&tansu, &tansu_dir(data_dir), settings.port).await?))
            }
        }
    }

    pub fn kind(&self) -> BrokerKind {
        match self {
            Self::Kafka(_) => BrokerKind::Kafka,
            Self::Tansu(_) => BrokerKind::Tansu,
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Self::Kafka(b) => b.bootstrap_servers(),
            Self::Tansu(b) => b.bootstrap_servers(),
        }
    }

    /// Points `kafka` at this broker, with the client settings this broker needs.
    pub fn configure(&self, kafka: &mut KafkaSettings) {
        kafka.bootstrap_servers = self.bootstrap_servers().to_owned();
        kafka.broker = self.kind();
        if self.kind() == BrokerKind::Tansu {
            tansu::tune_for_tansu(kafka);
        }
    }

    pub async fn stop(self) -> Result<(), EmbeddedError> {
        match self {
            Self::Kafka(b) => Ok(b.stop().await?),
            Self::Tansu(b) => Ok(b.stop().await?),
        }
    }
}
