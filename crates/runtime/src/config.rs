//! Settings, layered lowest to highest: built-in defaults, the TOML file (`switchboard.toml`
//! or `--config`), `SWITCHBOARD_*` environment variables (`__` separates sections, e.g.
//! `SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS`), then command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::telemetry::TelemetrySettings;

/// The settings every process shares. Each service's own section (`[ucs]`, `[email]`, ...) is
/// a [`Section`] its crate defines; the binary composes them all and hands each service its
/// own through `service::Context::section`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where the embedded broker keeps its log and services keep local state.
    pub data_dir: PathBuf,
    pub kafka: KafkaSettings,
    pub broker: EmbeddedBrokerSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    /// Shared by the web API (which takes callbacks) and the desk (their outcomes).
    pub callback: CallbackSettings,
    /// Rate limits of the public HTTP endpoints (web API, chat server).
    pub web_api: WebApiSettings,
    pub live: LiveSettings,
    /// The key that signs desk session tokens: the desk's `[desk] session_secret_file`, else
    /// `<data_dir>/desk-secret` (created on first use). The desk and the chat server check
    /// the same tokens; the binary fills this in from the desk's section.
    #[serde(skip)]
    pub desk_secret_file: Option<PathBuf>,
    /// The workflow file (`[router] workflow`; `None`: the built-in one), whose queue marks the
    /// web API (public queues) and the desk (agent targets) enforce. Filled in by the binary.
    #[serde(skip)]
    pub workflow_file: Option<PathBuf>,
}

/// A service's own table of the configuration (`[ucs]`): defined by the service's crate,
/// layered like the rest (defaults, file, `SWITCHBOARD_<SECTION>__<KEY>`), unknown keys refused.
pub trait Section: Serialize + serde::de::DeserializeOwned + Default + Clone + Send + Sync + 'static {
    /// The table's name.
    const NAME: &'static str;
    /// Reads its `*_file` secrets into their settings.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }
    /// A copy fit to print or log: every secret `***`.
    fn redacted(&self) -> Self {
        self.clone()
    }
}

/// What the in-memory projections keep: only live work, so memory and start-up do not grow
/// with history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// A stopped interaction leaves the Interaction Server's, the queues' and the floor's boards
    /// this long after it stopped, in log time (event times, so a replay agrees with the live
    /// fold). Its id is still remembered, so a duplicate is refused for ever; its history stays
    /// in the log and UCS (`/v1/interactions/{id}`). Changing it makes the next start replay in
    /// full (snapshots record the window they were taken with).
    pub keep_stopped_s: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self { keep_stopped_s: 3600 }
    }
}

impl LiveSettings {
    pub fn keep_stopped_ms(&self) -> i64 {
        i64::try_from(self.keep_stopped_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            kafka: KafkaSettings::default(),
            broker: EmbeddedBrokerSettings::default(),
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            callback: CallbackSettings::default(),
            web_api: WebApiSettings::default(),
            live: LiveSettings::default(),
            desk_secret_file: None,
            workflow_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Empty: `switchboard up` starts the embedded broker and fills this in.
    pub bootstrap_servers: String,
    /// Prepended to every topic name in `infra/topics.toml`; isolates tenants and tests.
    pub topic_prefix: String,
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics Switchboard creates; unset: the cluster's default.
    pub min_insync_replicas: Option<i32>,
    /// Create missing topics at start. Off (least-privilege ACLs without CREATE): a missing
    /// topic is an error that names it.
    pub create_topics: bool,
    /// Topic definitions; the built-in copy of `infra/topics.toml` when unset.
    pub topics_file: Option<PathBuf>,
    /// What the cluster runs: `kafka` (Apache Kafka or compatible: transactions, group
    /// rebalancing) or `tansu` (Tansu 0.6: neither; Switchboard works around both).
    pub broker: crate::broker::BrokerKind,
    /// librdkafka settings for every client: `security.protocol`, `sasl.*`, `ssl.*`, ...
    pub client: BTreeMap<String, String>,
    /// librdkafka settings for producers only (override `client`).
    pub producer: BTreeMap<String, String>,
    /// librdkafka settings for consumers only (override `client`).
    pub consumer: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            topic_prefix: String::new(),
            replication_factor: 1,
            min_insync_replicas: None,
            create_topics: true,
            topics_file: None,
            broker: crate::broker::BrokerKind::Kafka,
            client: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedBrokerSettings {
    /// `kafka` or `tansu`; unset: the broker whose log the data directory holds, else Apache
    /// Kafka when Java 17+ is found, else Tansu.
    pub kind: Option<crate::broker::BrokerKind>,
    /// Port of the embedded broker on 127.0.0.1.
    pub port: u16,
    /// Apache Kafka's KRaft controller port on 127.0.0.1 (0: a free one at each start).
    pub controller_port: u16,
    /// Apache Kafka's JVM heap, in MiB.
    pub heap_mb: u32,
    /// The `java` to run Apache Kafka with; unset: `$JAVA_HOME/bin/java`, else `java`.
    pub java: Option<PathBuf>,
    /// Directory of the Apache Kafka jars; installed into the user cache when unset and missing.
    pub kafka_jars: Option<PathBuf>,
    /// Path of the `tansu` binary; installed into the user cache when unset and missing.
    pub tansu_bin: Option<PathBuf>,
}

impl Default for EmbeddedBrokerSettings {
    fn default() -> Self {
        Self {
            kind: None,
            port: 9092,
            controller_port: 9093,
            heap_mb: 512,
            java: None,
            kafka_jars: None,
            tansu_bin: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// The staff listener: every route (desk, supervisor, UCS, queues, statistics, and the
    /// public ones too). Keep it inside the company's network.
    pub listen: SocketAddr,
    /// The public listener: only what customers and gateways use (contact form, chat, callbacks,
    /// SMS webhooks, the customer pages). The one to expose to the internet.
    pub public_listen: Option<SocketAddr>,
    /// Host names the staff listener answers to (its `Host` header; a DNS-rebinding page
    /// cannot reach the staff APIs through a victim's browser). Empty: `localhost`, the
    /// loopback addresses and the listen address.
    pub allowed_hosts: Vec<String>,
    /// Service keys other processes present (`switchboard service-key add`): names, scopes and
    /// SHA-256 digests, never the keys themselves. Default `<data_dir>/service-keys.toml`.
    pub service_keys_file: Option<PathBuf>,
    /// The key this process presents when it calls another one (UCS, under `run`). Under `up`
    /// without one, a key for this process only is made at start.
    pub service_key: Option<String>,
    /// A file holding `service_key`.
    pub service_key_file: Option<PathBuf>,
    /// Reverse proxies (CIDR) whose `X-Forwarded-For` is believed: behind them the client's
    /// address (for rate limits and the login throttle) is the last one they did not add.
    /// Empty: the peer's own address, and the header is ignored (anyone can send it).
    pub trusted_proxies: Vec<String>,
}

impl HttpSettings {
    /// `trusted_proxies`, parsed (a bare address is a /32 or /128).
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks(&self.trusted_proxies, "[http] trusted_proxies")
    }

    /// The host names the staff listener answers to: `allowed_hosts`, or by default
    /// `localhost`, the loopback addresses and the listen address (without ports).
    pub fn allowed_hosts(&self) -> Vec<String> {
        if !self.allowed_hosts.is_empty() {
            return self.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(str::to_owned).into();
        let own = match self.listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        if !self.listen.ip().is_unspecified() && !hosts.contains(&own) {
            hosts.push(own);
        }
        hosts
    }

    /// This process's own base URL (where UCS answers under `switchboard up`).
    pub fn own_url(&self) -> String {
        let host = if self.listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { self.listen.ip().to_string() };
        format!("http://{host}:{}", self.listen.port())
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            allowed_hosts: Vec::new(),
            service_keys_file: None,
            service_key: None,
            service_key_file: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A setting's list of networks (CIDR; a bare address is a /32 or /128), or which entry is
/// not one, named by `setting`.
pub fn networks(list: &[String], setting: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|n| {
            let n = n.trim();
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| format!("{setting}: {n:?} is not a network (CIDR): {e}"))
        })
        .collect()
}

/// Web callbacks (`POST /v1/callbacks` on the web API; outcomes on the desk).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSettings {
    /// Queue callbacks are submitted to (its route step should set
    /// `not_before_property = "callback_at"`).
    pub queue: String,
    /// Region for numbers given without `+` and country code (ISO 3166 code, e.g. "GB");
    /// unset: numbers must be international.
    pub default_region: Option<String>,
    /// How far ahead a callback may be asked for.
    pub max_days_ahead: u32,
    /// Attempts (an agent's "no answer" counts one) before the callback is closed unreached.
    pub max_attempts: u32,
    /// After "no answer", the next attempt is this much later.
    pub retry_delay_s: u64,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self { queue: "callbacks".into(), default_region: None, max_days_ahead: 30, max_attempts: 3, retry_delay_s: 900 }
    }
}

/// The public web API (`switchboard run web-api`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebApiSettings {
    /// Requests per client address: a burst of `rate_burst`, refilled at `rate_per_minute`;
    /// beyond it, 429 with how long to wait.
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    /// The highest priority an anonymous submission may ask for (the lowest is 0).
    pub max_public_priority: i32,
}

impl Default for WebApiSettings {
    fn default() -> Self {
        Self { rate_per_minute: 120, rate_burst: 30, max_public_priority: 5 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Secret(String),
}

impl Settings {
    /// The key that signs desk session tokens (see [`Settings::desk_secret_file`]).
    /// `[http] service_keys_file`, or `<data_dir>/service-keys.toml`.
    pub fn service_keys_file(&self) -> PathBuf {
        self.http.service_keys_file.clone().unwrap_or_else(|| self.data_dir.join("service-keys.toml"))
    }

    pub fn desk_secret_file(&self) -> PathBuf {
        self.desk_secret_file.clone().unwrap_or_else(|| self.data_dir.join("desk-secret"))
    }

    /// The layers under the command line's: built-in `defaults` (the whole composition,
    /// serialized), the TOML file (`switchboard.toml` or `--config`), `SWITCHBOARD_*`
    /// environment variables.
    pub fn layers(defaults: impl Serialize, file: Option<&Path>) -> Figment {
        let figment = Figment::from(Serialized::defaults(defaults));
        let figment = match file {
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment.merge(Toml::file("switchboard.toml")),
        };
        figment.merge(Env::prefixed("SWITCHBOARD_").split("__"))
    }

    /// The shared settings from `figment`, secrets read (its other tables are the services').
    pub fn extract(figment: &Figment) -> Result<Self, ConfigError> {
        let mut settings: Settings = figment.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        settings.resolve_secrets()?;
        Ok(settings)
    }

    /// Reads every `*_file` secret into its setting, and turns librdkafka keys written with
    /// underscores (as environment variables must: `SWITCHBOARD_KAFKA__CLIENT__SASL_PASSWORD`)
    /// into their dotted names (`sasl.password`); a librdkafka key ending in `_file`
    /// (`sasl.password_file`, `SWITCHBOARD_KAFKA__CLIENT__SASL_PASSWORD_FILE`) is read from
    /// that file. Secrets then never need to sit in a configuration file in clear.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for map in [&mut self.kafka.client, &mut self.kafka.producer, &mut self.kafka.consumer] {
            *map = librdkafka_keys(std::mem::take(map))?;
        }
        let telemetry = &mut self.telemetry;
        secret_from_file(&mut telemetry.otlp_headers, telemetry.otlp_headers_file.take(), "telemetry.otlp_headers")?;
        secret_from_file(&mut self.http.service_key, self.http.service_key_file.take(), "http.service_key")?;
        Ok(())
    }

    /// A copy fit to print or log: every password, token, key and header value is `***`.
    pub fn redacted(&self) -> Settings {
        let mut copy = self.clone();
        for map in [&mut copy.kafka.client, &mut copy.kafka.producer, &mut copy.kafka.consumer] {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    *value = REDACTED.into();
                }
            }
        }
        if copy.telemetry.otlp_headers.is_some() {
            copy.telemetry.otlp_headers = Some(REDACTED.into());
        }
        if copy.http.service_key.is_some() {
            copy.http.service_key = Some(REDACTED.into());
        }
        copy
    }
}

/// A secret set directly or as a file (`name_file`), as an empty-means-unset string.
pub fn string_secret_from_file(secret: &mut String, file: Option<PathBuf>, name: &str) -> Result<(), ConfigError> {
    let mut value = (!secret.is_empty()).then(|| std::mem::take(secret));
    secret_from_file(&mut value, file, name)?;
    *secret = value.unwrap_or_default();
    Ok(())
}

pub const REDACTED: &str = "***";

/// librdkafka settings that hold secrets (`sasl.password`, `ssl.key.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`, ...).
fn is_secret_key(key: &str) -> bool {
    ["password", "secret", "key.pem", "jaas", "token", "credentials"].iter().any(|s| key.contains(s))
}

fn librdkafka_keys(map: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        // librdkafka's own keys never contain `_`; ours end in `_file`.
        let (key, value) = match key.strip_suffix("_file") {
            Some(base) => (base.replace('_', "."), read_secret(Path::new(&value), base)?),
            None => (key.replace('_', "."), value),
        };
        out.insert(key, value);
    }
    Ok(out)
}

pub fn secret_from_file(secret: &mut Option<String>, file: Option<PathBuf>, name: &str) -> Result<(), ConfigError> {
    let Some(file) = file else { return Ok(()) };
    if secret.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ConfigError::Secret(format!("{name} and {name}_file are both set; set one")));
    }
    *secret = Some(read_secret(&file, name)?);
    Ok(())
}

/// A secret file's content without its trailing newline (as `echo` and editors leave it).
fn read_secret(path: &Path, name: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Secret(format!("cannot read {name}_file {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// `scheme://user:***@host/...` for a URL that carries a password; other URLs unchanged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:{REDACTED}{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    // figment's `Jail` closure returns its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn secrets_come_from_files_and_the_environment_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("kafka-password");
        std::fs::write(&password, "kafka-s3cret\n").unwrap();
        let config = dir.path().join("switchboard.toml");
        std::fs::write(&config, format!("[kafka.client]\n\"sasl.username\" = \"sb\"\n\"sasl.password_file\" = \"{}\"\n", password.display())).unwrap();
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHBOARD_KAFKA__PRODUCER__SSL_KEY_PASSWORD", "env-s3cret");
            loaded = Some(Settings::extract(&Settings::layers(Settings::default(), Some(&config))).unwrap());
            Ok(())
        });
        let settings = loaded.unwrap();
        assert_eq!(settings.kafka.client["sasl.password"], "kafka-s3cret");
        assert_eq!(settings.kafka.client["sasl.username"], "sb");
        assert_eq!(settings.kafka.producer["ssl.key.password"], "env-s3cret");
        let printed = toml::to_string_pretty(&settings.redacted()).unwrap();
        for secret in ["kafka-s3cret", "env-s3cret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("sasl.username = \"sb\"") || printed.contains("\"sasl.username\" = \"sb\""), "{printed}");
    }

    #[test]
    fn a_secret_and_its_file_together_are_refused() {
        let mut token = "a".to_owned();
        let refused = string_secret_from_file(&mut token, Some("/nonexistent".into()), "sms.auth_token").unwrap_err();
        assert!(refused.to_string().contains("sms.auth_token and sms.auth_token_file"));
    }
}
