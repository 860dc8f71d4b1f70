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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded broker keeps its log and services keep local state.
    pub data_dir: PathBuf,
    pub kafka: KafkaSettings,
    pub broker: EmbeddedBrokerSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub interaction_server: InteractionServerSettings,
    pub ucs: UcsSettings,
    pub router: RouterSettings,
    pub stats: StatsSettings,
    pub desk: DeskSettings,
    pub email: EmailSettings,
    pub chat: ChatSettings,
    pub callback: CallbackSettings,
    pub web_api: WebApiSettings,
    pub sms: SmsSettings,
    pub live: LiveSettings,
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
            interaction_server: InteractionServerSettings::default(),
            ucs: UcsSettings::default(),
            router: RouterSettings::default(),
            stats: StatsSettings::default(),
            desk: DeskSettings::default(),
            email: EmailSettings::default(),
            chat: ChatSettings::default(),
            callback: CallbackSettings::default(),
            web_api: WebApiSettings::default(),
            sms: SmsSettings::default(),
            live: LiveSettings::default(),
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
    pub listen: SocketAddr,
}

impl HttpSettings {
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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InteractionServerSettings {
    /// Consumer group (committed offsets; membership only with `assignment = "group"`). The
    /// deployment's `topic_prefix` is prepended, as to the transactional ids derived from it.
    pub group_id: String,
    /// `group` or `static`; unset: `group` on Apache Kafka, `static` on Tansu.
    pub assignment: Option<Assignment>,
    /// With `static`: the command partitions this instance owns; all when unset.
    pub partitions: Option<Vec<i32>>,
    /// Write each batch's events and command offsets in one Kafka transaction, with a
    /// `transactional.id` per partition (`<prefix><group_id>-<partition>`) so that a newer
    /// owner fences an older one. Unset: on for Apache Kafka, off for Tansu (no transactions).
    pub transactions: Option<bool>,
    /// Kafka's `transaction.timeout.ms`: the longest a stalled owner's open transaction holds
    /// `read_committed` readers of `interaction.events` back (a new owner aborts it sooner).
    pub transaction_timeout_ms: u64,
    /// Open transactions are committed once no command has arrived for this long (light
    /// load: each command is visible within about this), ...
    pub transaction_linger_ms: u64,
    /// ... or once the oldest has been open this long, or a partition's holds
    /// `transaction_max_commands` (a backlog: large batches, few commits).
    pub transaction_max_ms: u64,
    pub transaction_max_commands: usize,
    /// A partition's state is snapshotted (in `<data_dir>/snapshots/`) after this many events
    /// written since the last snapshot, and at a clean stop; a restart reads only the events
    /// after its snapshot. 0: never (every start replays the whole events log).
    pub snapshot_every_events: u64,
}

/// How an Interaction Server instance gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    /// It owns `partitions` (default all) and starts each where the events log says. Two
    /// instances with the same partitions fence each other on Kafka (transactions); on Tansu
    /// nothing does, so give each its own partitions.
    Static,
    /// Kafka consumer-group membership (cooperative-sticky): replicas share the partitions and
    /// take over a dead member's. Tansu 0.6 did not reassign a killed member's partitions.
    Group,
}

impl Default for InteractionServerSettings {
    fn default() -> Self {
        Self {
            group_id: "interaction-server".into(),
            assignment: None,
            partitions: None,
            transactions: None,
            transaction_timeout_ms: 10_000,
            transaction_linger_ms: 2,
            transaction_max_ms: 200,
            transaction_max_commands: 2000,
            snapshot_every_events: 10_000,
        }
    }
}

impl InteractionServerSettings {
    pub fn assignment(&self, broker: crate::broker::BrokerKind) -> Assignment {
        self.assignment.unwrap_or(match broker {
            crate::broker::BrokerKind::Kafka => Assignment::Group,
            crate::broker::BrokerKind::Tansu => Assignment::Static,
        })
    }

    pub fn transactions(&self, broker: crate::broker::BrokerKind) -> bool {
        self.transactions.unwrap_or(broker == crate::broker::BrokerKind::Kafka)
    }
}

/// The Universal Contact Server: its SQL read model and claim-check blob store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UcsSettings {
    /// `sqlite://PATH` or `postgres://...`; unset: `sqlite://<data_dir>/ucs.db`.
    pub database_url: Option<String>,
    /// A file holding `database_url` (a secret: it carries the password).
    pub database_url_file: Option<PathBuf>,
    /// Content-addressed blobs; unset: `<data_dir>/blobs`.
    pub blob_dir: Option<PathBuf>,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Most records the projector writes in one SQL transaction.
    pub batch_size: usize,
    /// How long the projector waits to fill a batch, in milliseconds.
    pub batch_linger_ms: u64,
    pub max_connections: u32,
}

impl Default for UcsSettings {
    fn default() -> Self {
        Self {
            database_url: None,
            database_url_file: None,
            blob_dir: None,
            max_blob_bytes: 25 * 1024 * 1024,
            batch_size: 2000,
            batch_linger_ms: 20,
            max_connections: 8,
        }
    }
}

impl UcsSettings {
    pub fn database_url(&self, data_dir: &Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ucs.db").display()))
    }

    pub fn blob_dir(&self, data_dir: &Path) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("blobs"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// The interaction workflow (queues and strategies); unset: the built-in
    /// `infra/workflow/workflow.toml`.
    pub workflow: Option<PathBuf>,
    /// How often the router looks again without a new event (offer and queue timeouts).
    pub tick_ms: u64,
    /// Producer `linger.ms` for the router's commands: low, routing is latency-bound.
    pub linger_ms: u32,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            workflow: None,
            tick_ms: 100,
            linger_ms: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsSettings {
    /// An interaction answered within this many seconds of entering its queue counts towards
    /// the service level.
    pub service_level_threshold_s: u64,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self { service_level_threshold_s: 20 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskSettings {
    /// Agents and supervisors who may log in to the desk (TOML, `[[user]]` with an argon2
    /// `password_hash`); unset: `<data_dir>/desk-users.toml`.
    pub users_file: Option<PathBuf>,
    /// Key that signs session tokens; unset: a random key kept in `<data_dir>/desk-secret`.
    pub session_secret_file: Option<PathBuf>,
    pub session_hours: u64,
    /// Queue where released replies go (the workflow's QA step usually watches it).
    pub outbound_queue: String,
    /// Queue a supervisor's QA return sends a reply to (routed back to its author).
    pub qa_returned_queue: String,
    /// Queue an approved reply goes to, for the channel to send.
    pub send_queue: String,
    /// An agent whose every event stream has been closed this long is logged out.
    pub disconnect_grace_s: u64,
    /// Largest reply text accepted, in bytes.
    pub max_reply_bytes: usize,
}

impl Default for DeskSettings {
    fn default() -> Self {
        Self {
            users_file: None,
            session_secret_file: None,
            session_hours: 12,
            outbound_queue: "outbound".into(),
            qa_returned_queue: "qa-returned".into(),
            send_queue: "outbound-send".into(),
            disconnect_grace_s: 30,
            max_reply_bytes: 64 * 1024,
        }
    }
}

/// The chat server (`switchboard run chat-server`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Queue new chats are submitted to.
    pub inbound_queue: String,
    /// Largest message text accepted, in bytes.
    pub max_message_bytes: usize,
    /// Frames a connection may send per `rate_window_ms` before they are refused.
    pub max_frames_per_window: u32,
    pub rate_window_ms: u64,
    /// Browser origins allowed to open a WebSocket (exact `scheme://host[:port]`); empty:
    /// only clients that send no Origin (not browsers).
    pub allowed_origins: Vec<String>,
    /// System message to the customer when a chat starts (`{{customer_name}}`,
    /// `{{subject}}` filled); empty: none.
    pub greeting: String,
    /// Tell a waiting customer their place in the queue whenever it changes.
    pub queue_position_notices: bool,
    /// While an agent is in the chat and nobody has written for this long, a warning is
    /// posted; `idle_timeout_s` after the last message the chat ends. 0: no idle timeout.
    pub idle_warning_s: u64,
    pub idle_timeout_s: u64,
    /// Queue a transcript mail is submitted to (the e-mail sender's `send_queue`).
    pub transcript_queue: String,
    /// UCS base URL (a customer who gives an e-mail address is found or created as a
    /// contact there); unset: this process's own HTTP address (UCS runs in it under `up`).
    pub ucs_url: Option<String>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            inbound_queue: "chat-inbound".into(),
            max_message_bytes: 4096,
            max_frames_per_window: 20,
            rate_window_ms: 10_000,
            allowed_origins: Vec::new(),
            greeting: "Hello {{customer_name}}, thank you for contacting us. An agent will be with you shortly.".into(),
            queue_position_notices: true,
            idle_warning_s: 240,
            idle_timeout_s: 300,
            transcript_queue: "outbound-send".into(),
            ucs_url: None,
        }
    }
}

/// The SMS channel (`switchboard run sms-server`), `[sms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// The gateway protocol: "twilio" (Twilio-compatible webhooks and REST API).
    pub gateway: String,
    pub account_sid: String,
    /// Signs the gateway's webhooks (checked on every one) and authenticates our sends.
    pub auth_token: String,
    /// A file holding `auth_token`.
    pub auth_token_file: Option<PathBuf>,
    pub api_base: String,
    /// Our number, the sender of what we send.
    pub from_number: String,
    /// The base URL the gateway calls us at, as it signs it (behind a proxy this is not our
    /// listen address); unset: this process's own HTTP address.
    pub public_url: Option<String>,
    /// Region for numbers without `+` and country code (ISO 3166, e.g. "GB").
    pub default_region: Option<String>,
    pub inbound_queue: String,
    /// Session mode: an SMS from a number with an active SMS session goes into it, any other
    /// starts one (a chat session, submitted to `session_queue`), and agents' chat messages
    /// go back by SMS. Off: paging mode, every SMS a new interaction in `inbound_queue`.
    pub session_mode: bool,
    pub session_queue: String,
    /// MMS limits: all parts together, number of parts.
    pub mms_max_bytes: usize,
    pub mms_max_parts: usize,
    /// UCS base URL (MMS parts are stored there); unset: this process's own HTTP address.
    pub ucs_url: Option<String>,
    /// Longest text accepted to send (characters; the gateway splits it into segments).
    pub max_text_chars: usize,
    /// The send queue replies and paging wait in (shared with e-mail; each sender takes its
    /// own media), and where it goes after `max_attempts`.
    pub send_queue: String,
    pub failed_queue: String,
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            gateway: "twilio".into(),
            account_sid: String::new(),
            auth_token: String::new(),
            auth_token_file: None,
            api_base: "https://api.twilio.com".into(),
            from_number: String::new(),
            public_url: None,
            default_region: None,
            inbound_queue: "sms-inbound".into(),
            session_mode: false,
            session_queue: "chat-inbound".into(),
            mms_max_bytes: 5 * 1024 * 1024,
            mms_max_parts: 20,
            ucs_url: None,
            max_text_chars: 1600,
            send_queue: "outbound-send".into(),
            failed_queue: "send-failed".into(),
            max_attempts: 5,
            retry_initial_ms: 30_000,
            retry_max_ms: 15 * 60_000,
        }
    }
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
}

impl Default for WebApiSettings {
    fn default() -> Self {
        Self { rate_per_minute: 120, rate_burst: 30 }
    }
}

/// The e-mail channel (`switchboard run email`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// Where the SMTP listener accepts mail relayed by the enterprise mail server; unset: no
    /// listener.
    pub smtp_listen: Option<std::net::SocketAddr>,
    /// Name the listener greets with and the domain of the Message-IDs of mail we send.
    pub domain: String,
    /// UCS base URL (bodies and attachments are stored there before the interaction is
    /// submitted); unset: this process's own HTTP address (UCS runs in it under `up`).
    pub ucs_url: Option<String>,
    /// Queue new inbound mail is submitted to.
    pub inbound_queue: String,
    /// Limits on inbound mail.
    pub max_message_bytes: usize,
    pub max_parts: usize,
    pub max_depth: usize,
    /// Sending replies, acknowledgements and auto-responses.
    pub outbound: OutboundMailSettings,
    /// Polling a mailbox of the enterprise mail server.
    pub imap: ImapSettings,
}

/// How a connection to a mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain TCP (loopback and tests only).
    None,
    /// Plain TCP upgraded with STARTTLS (SMTP submission, port 587).
    Starttls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Tls,
}

/// The outbound sender (`[email.outbound]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundMailSettings {
    /// SMTP server mail is sent through; unset: nothing is sent (mail waits in `send_queue`).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub tls: MailTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding `password`.
    pub password_file: Option<PathBuf>,
    /// The From of every mail sent, e.g. `Customer Service <support@example.com>`.
    pub from: String,
    /// Queue of mail ready to send (where QA approval or the `respond` step puts it).
    pub send_queue: String,
    /// Queue a mail moves to when every attempt failed (the workflow routes it back to its author).
    pub failed_queue: String,
    /// Attempts before giving up, and the back-off between them (doubling, capped).
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Per SMTP conversation.
    pub timeout_s: u64,
}

impl Default for OutboundMailSettings {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: 587,
            tls: MailTls::Starttls,
            username: None,
            password: None,
            password_file: None,
            from: "Customer Service <support@switchboard.localhost>".into(),
            send_queue: "outbound-send".into(),
            failed_queue: "send-failed".into(),
            max_attempts: 5,
            retry_initial_ms: 30_000,
            retry_max_ms: 15 * 60_000,
            timeout_s: 60,
        }
    }
}

/// What the IMAP poller does with a mail once its interaction is on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterAccept {
    /// Flag it `\Deleted` and expunge.
    Delete,
    /// Give it the keyword `$SwitchboardQueued` and leave it.
    Flag,
}

/// The IMAP poller (`[email.imap]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapSettings {
    /// IMAP server; unset: no polling.
    pub host: Option<String>,
    pub port: u16,
    /// `tls` or `none` (STARTTLS is not offered for IMAP here).
    pub tls: MailTls,
    pub username: String,
    pub password: String,
    /// A file holding `password`.
    pub password_file: Option<PathBuf>,
    pub mailbox: String,
    pub poll_interval_ms: u64,
    pub after_accept: AfterAccept,
    /// Mails fetched per poll at most.
    pub batch: u32,
}

impl Default for ImapSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: 993,
            tls: MailTls::Tls,
            username: String::new(),
            password: String::new(),
            password_file: None,
            mailbox: "INBOX".into(),
            poll_interval_ms: 30_000,
            after_accept: AfterAccept::Flag,
            batch: 50,
        }
    }
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            smtp_listen: None,
            domain: "switchboard.localhost".into(),
            ucs_url: None,
            inbound_queue: "inbound".into(),
            max_message_bytes: 10 * 1024 * 1024,
            max_parts: 100,
            max_depth: 10,
            outbound: OutboundMailSettings::default(),
            imap: ImapSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Secret(String),
}

impl Settings {
    /// The key that signs desk session tokens: `[desk] session_secret_file`, else
    /// `<data_dir>/desk-secret` (created on first use). Every process that checks desk tokens
    /// (the desk, the chat server) reads the same one.
    pub fn desk_secret_file(&self) -> PathBuf {
        self.desk.session_secret_file.clone().unwrap_or_else(|| self.data_dir.join("desk-secret"))
    }

    pub fn load(
        file: Option<&Path>,
        overrides: impl FnOnce(Figment) -> Figment,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        figment = match file {
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment.merge(Toml::file("switchboard.toml")),
        };
        let mut settings: Settings = overrides(figment.merge(Env::prefixed("SWITCHBOARD_").split("__")))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
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
        secret_from_file(&mut self.ucs.database_url, self.ucs.database_url_file.take(), "ucs.database_url")?;
        let outbound = &mut self.email.outbound;
        secret_from_file(&mut outbound.password, outbound.password_file.take(), "email.outbound.password")?;
        let mut imap = (!self.email.imap.password.is_empty()).then(|| std::mem::take(&mut self.email.imap.password));
        secret_from_file(&mut imap, self.email.imap.password_file.take(), "email.imap.password")?;
        self.email.imap.password = imap.unwrap_or_default();
        let mut token = (!self.sms.auth_token.is_empty()).then(|| std::mem::take(&mut self.sms.auth_token));
        secret_from_file(&mut token, self.sms.auth_token_file.take(), "sms.auth_token")?;
        self.sms.auth_token = token.unwrap_or_default();
        let telemetry = &mut self.telemetry;
        secret_from_file(&mut telemetry.otlp_headers, telemetry.otlp_headers_file.take(), "telemetry.otlp_headers")?;
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
        copy.ucs.database_url = copy.ucs.database_url.as_deref().map(redact_url);
        for secret in [&mut copy.email.outbound.password, &mut copy.telemetry.otlp_headers] {
            if secret.is_some() {
                *secret = Some(REDACTED.into());
            }
        }
        for secret in [&mut copy.email.imap.password, &mut copy.sms.auth_token] {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
        copy
    }
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

fn secret_from_file(secret: &mut Option<String>, file: Option<PathBuf>, name: &str) -> Result<(), ConfigError> {
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
        let db = dir.path().join("db-url");
        std::fs::write(&db, "postgres://ucs:db-s3cret@db/ucs\n").unwrap();
        let config = dir.path().join("switchboard.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka.client]\n\"sasl.username\" = \"sb\"\n\"sasl.password_file\" = \"{}\"\n[ucs]\ndatabase_url_file = \"{}\"\n",
                password.display(),
                db.display()
            ),
        )
        .unwrap();
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHBOARD_KAFKA__PRODUCER__SSL_KEY_PASSWORD", "env-s3cret");
            jail.set_env("SWITCHBOARD_SMS__AUTH_TOKEN", "token-s3cret");
            loaded = Some(Settings::load(Some(&config), |f| f).unwrap());
            Ok(())
        });
        let settings = loaded.unwrap();
        assert_eq!(settings.kafka.client["sasl.password"], "kafka-s3cret");
        assert_eq!(settings.kafka.client["sasl.username"], "sb");
        assert_eq!(settings.kafka.producer["ssl.key.password"], "env-s3cret");
        assert_eq!(settings.ucs.database_url.as_deref(), Some("postgres://ucs:db-s3cret@db/ucs"));
        assert_eq!(settings.sms.auth_token, "token-s3cret");
        let printed = toml::to_string_pretty(&settings.redacted()).unwrap();
        for secret in ["kafka-s3cret", "db-s3cret", "env-s3cret", "token-s3cret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("sasl.username = \"sb\"") || printed.contains("\"sasl.username\" = \"sb\""), "{printed}");
        assert!(printed.contains("postgres://ucs:***@db/ucs"), "{printed}");
    }

    #[test]
    fn a_secret_and_its_file_together_are_refused() {
        let mut settings = Settings::default();
        settings.sms.auth_token = "a".into();
        settings.sms.auth_token_file = Some("/nonexistent".into());
        assert!(settings.resolve_secrets().unwrap_err().to_string().contains("sms.auth_token and sms.auth_token_file"));
    }
}
