//! The embedded broker of `switchboard up` and of the tests: Tansu, a Kafka-protocol broker,
//! with SQLite storage in a data directory, so the log survives restarts.
//!
//! Tansu is installed from crates.io with `cargo install` at a pinned version into the user
//! cache (once; about 10 minutes on 2 cores). It does not auto-create topics and refuses
//! transactions; see `docs/ARCHITECTURE.md` for what Switchboard relies on instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub const TANSU_VERSION: &str = "0.6.0";
pub const TANSU_FEATURES: &str = "dynostore,libsql,postgres";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "Tansu {TANSU_VERSION} is not installed at {0}; run `switchboard broker install` (or scripts/test) first"
    )]
    NotInstalled(PathBuf),
    #[error("installing Tansu failed: {0}")]
    Install(String),
    #[error("cannot start Tansu ({path}): {detail}")]
    Start { path: PathBuf, detail: String },
    #[error("Tansu exited before it answered on {addr}; last lines of {log}:\n{tail}")]
    Exited {
        addr: String,
        log: PathBuf,
        tail: String,
    },
    #[error("Tansu did not answer on {addr} within {secs} s; see {log}")]
    Timeout {
        addr: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Consumer settings for talking to Tansu 0.6, applied unless configured otherwise:
/// - its Fetch sleeps about half of `fetch.wait.max.ms` even when it has data;
/// - it fills a partition's response one SQL query per record (headers) over a window of the
///   whole remaining partition, so librdkafka's default 50 MB fetch on a long log outlives the
///   request timeout and is retried forever; small fetches always come back.
pub const TANSU_CONSUMER_TUNING: [(&str, &str); 3] = [
    ("fetch.wait.max.ms", "10"),
    ("fetch.max.bytes", "1048576"),
    ("max.partition.fetch.bytes", "262144"),
];

/// Adds [`TANSU_CONSUMER_TUNING`] to `settings` (only ever for Tansu: on Apache Kafka these
/// small fetches would only cost throughput) where it does not set those keys itself.
pub fn tune_for_tansu(settings: &mut crate::config::KafkaSettings) {
    for (key, value) in TANSU_CONSUMER_TUNING {
        settings
            .consumer
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
}

/// Where the pinned Tansu binary lives: `$SWITCHBOARD_TANSU_BIN`, else the user cache.
pub fn tansu_path(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os("SWITCHBOARD_TANSU_BIN") {
        return PathBuf::from(path);
    }
    install_root().join("bin").join("tansu")
}

fn install_root() -> PathBuf {
    super::cache_dir().join(format!("tansu-{TANSU_VERSION}"))
}

/// Installs the pinned Tansu if missing, showing cargo's progress on stderr.
pub async fn ensure_installed(configured: Option<&Path>) -> Result<PathBuf, BrokerError> {
    let path = tansu_path(configured);
    if path.exists() {
        return Ok(path);
    }
    if configured.is_some() || std::env::var_os("SWITCHBOARD_TANSU_BIN").is_some() {
        return Err(BrokerError::NotInstalled(path));
    }
    let root = install_root();
    tracing::info!(
        root = %root.display(),
        "installing Tansu {TANSU_VERSION} with cargo (once; about 10 minutes on 2 cores)"
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "--locked", &format!("tansu@{TANSU_VERSION}")])
        .args(["--features", TANSU_FEATURES, "--root"])
        .arg(&root)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| BrokerError::Install(format!("cannot run cargo: {e}")))?;
    if !status.success() || !path.exists() {
        return Err(BrokerError::Install(format!(
            "cargo install exited with {status}"
        )));
    }
    Ok(path)
}

/// A running Tansu process; stopped on [`TansuBroker::stop`], killed if dropped.
pub struct TansuBroker {
    child: Child,
    bootstrap: String,
    log: PathBuf,
}

impl TansuBroker {
    /// Starts Tansu on 127.0.0.1:`port` (0 picks a free port) with its log in `data_dir`, and
    /// waits until it accepts connections.
    pub async fn start(tansu: &Path, data_dir: &Path, port: u16) -> Result<Self, BrokerError> {
        if !tansu.exists() {
            return Err(BrokerError::NotInstalled(tansu.to_owned()));
        }
        std::fs::create_dir_all(data_dir)?;
        let port = if port == 0 { super::free_listen_port()? } else { port };
        let addr = format!("127.0.0.1:{port}");
        let log = data_dir.join("tansu.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(tansu)
            .arg("broker")
            .args(["--listener-url", &format!("tcp://{addr}")])
            .args(["--advertised-listener-url", &format!("tcp://{addr}")])
            // Tansu resolves the sqlite path against its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(data_dir)
            // Not Switchboard's own filter: at `info` Tansu logs every span it enters, tens of
            // gigabytes an hour under load. SWITCHBOARD_TANSU_LOG raises it when debugging.
            .env("RUST_LOG", std::env::var("SWITCHBOARD_TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BrokerError::Start {
                path: tansu.to_owned(),
                detail: e.to_string(),
            })?;
        let mut broker = Self {
            child,
            bootstrap: addr.clone(),
            log,
        };
        broker.wait_until_ready(Duration::from_secs(30)).await?;
        tracing::info!(bootstrap = %addr, data_dir = %data_dir.display(), "embedded Tansu broker up");
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    async fn wait_until_ready(&mut self, limit: Duration) -> Result<(), BrokerError> {
        let started = Instant::now();
        loop {
            if let Some(_status) = self.child.try_wait()? {
                return Err(BrokerError::Exited {
                    addr: self.bootstrap.clone(),
                    log: self.log.clone(),
                    tail: super::tail(&self.log, 10),
                });
            }
            if tokio::net::TcpStream::connect(&self.bootstrap)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(BrokerError::Timeout {
                    addr: self.bootstrap.clone(),
                    secs: limit.as_secs(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Asks Tansu to stop (SIGTERM) and waits; kills it after 10 s.
    pub async fn stop(mut self) -> Result<(), BrokerError> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                tracing::info!(status = ?status?, "embedded Tansu broker stopped");
            }
            Err(_) => {
                tracing::warn!("Tansu did not stop within 10 s; killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}


