//! Flags and subcommands.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use contract::command::{CommandPayload, MediaType, Submit};
use runtime::config::{Figment, Serialized};

use crate::settings::Settings;
use runtime::telemetry::LogFormat;
use runtime::topics::Topics;

use crate::services;

/// Switchboard: an event-sourced, Kafka-native contact center.
///
/// Configuration comes from built-in defaults, then `switchboard.toml` (or --config), then
/// SWITCHBOARD_* environment variables (`__` between sections, e.g.
/// SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS=host:9092), then these flags.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML); default: ./switchboard.toml if it exists.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (embedded broker log, local state).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers; empty means the embedded broker.
    #[arg(long, global = true)]
    pub bootstrap_servers: Option<String>,
    /// Prefix for every topic name (isolates deployments sharing a cluster).
    #[arg(long, global = true)]
    pub topic_prefix: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Port of the embedded broker on 127.0.0.1 (started by `up`, used by tools).
    #[arg(long, global = true)]
    pub broker_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process; starts the embedded broker (Apache Kafka with Java
    /// 17+, else Tansu; installed on first use) when no Kafka bootstrap servers are configured.
    /// Ctrl-C stops it cleanly.
    Up {
        /// The staff listener: every API, the staff pages, health ([http] listen).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// The public listener: only what customers and gateways use ([http] public_listen).
        #[arg(long)]
        public_http: Option<SocketAddr>,
    },
    /// Run one service against the configured Kafka cluster.
    Run {
        service: Service,
        /// The staff listener: the service's APIs and health ([http] listen).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// The public listener, for a service with customer routes ([http] public_listen).
        #[arg(long)]
        public_http: Option<SocketAddr>,
    },
    /// Submit a test interaction (a Submit command) and print its id.
    Submit {
        /// Queue to park it in.
        #[arg(long, default_value = "inbound")]
        queue: String,
        /// Media type: email, chat, sms, mms, callback, other.
        #[arg(long, default_value = "email")]
        media: MediaType,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// A property, as key=value (repeatable).
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// Interaction id; a new UUID when omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// Topics from infra/topics.toml.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// The embedded broker (Apache Kafka, or Tansu where there is no Java).
    Broker {
        #[command(subcommand)]
        action: BrokerAction,
    },
    /// Print the effective configuration as TOML.
    Config,
    /// The Universal Contact Server's database.
    Ucs {
        #[command(subcommand)]
        action: UcsAction,
    },
    /// Print one interaction's whole timeline from the Kafka log (not from UCS): every command
    /// and the events it caused, in order.
    Audit {
        interaction_id: String,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The interaction workflow (queues and strategies).
    Workflow {
        #[command(subcommand)]
        action: WorkflowAction,
    },
    /// Desk users and sessions.
    Desk {
        #[command(subcommand)]
        action: DeskAction,
    },
    /// Service keys: what one process presents to another's staff routes under `run` (the
    /// e-mail server writing UCS, say). Kept in `[http] service_keys_file` as digests.
    ServiceKey {
        #[command(subcommand)]
        action: ServiceKeyAction,
    },
    /// Print a topic's records as JSON lines, decoded with the schemas in schemas/avro.
    Tail {
        /// Topic name as in infra/topics.toml (e.g. interaction.events), with or without prefix.
        topic: String,
        /// Keep waiting for new records instead of stopping at the end.
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowAction {
    /// Validate a workflow file (default: the configured or built-in one) and report the
    /// classifier's accuracy on its held-out examples.
    Check { file: Option<PathBuf> },
}

#[derive(Debug, Subcommand)]
pub enum ServiceKeyAction {
    /// Make a key, add its digest to the keys file and print the key (the only time it is
    /// shown): give it to the process as `[http] service_key` (or SWITCHBOARD_HTTP__SERVICE_KEY).
    Add {
        name: String,
        /// Comma separated: read (what an agent reads), manage (what a supervisor does),
        /// write (UCS contents, identification, blobs: what the channels write).
        #[arg(long, value_delimiter = ',', default_value = "read,write")]
        scopes: Vec<String>,
    },
    /// Remove the key named NAME: processes reading the file refuse it within a second.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeskAction {
    /// Add a desk user to the users file (the password is read from stdin). The file seeds
    /// the log: a running desk adds a user whose id the log never named within seconds; an
    /// existing user is changed or removed with the admin API (`/v1/desk/users`).
    AddUser {
        id: String,
        #[arg(long, value_enum, default_value = "agent")]
        role: RoleArg,
        #[arg(long, default_value = "")]
        name: String,
        /// Skills as name=level, comma separated (e.g. english=5,billing=3).
        #[arg(long, value_parser = parse_levels, default_value = "")]
        skills: BTreeMap<String, i32>,
        /// Capacity per media as media=count (e.g. email=3,chat=1).
        #[arg(long, value_parser = parse_levels, default_value = "email=3,chat=1")]
        capacity: BTreeMap<String, i32>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Supervisor,
    Admin,
}

fn parse_levels(s: &str) -> Result<BTreeMap<String, i32>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("expected name=number, got '{p}'"))?;
            let v: i32 = v.trim().parse().map_err(|_| format!("'{v}' in '{p}' is not a number"))?;
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum UcsAction {
    /// Replay every topic from offset 0 into a fresh database and report how long it took.
    Rebuild {
        /// Database to build (must be new or empty): sqlite://PATH or postgres://...;
        /// default: a new SQLite file in the data directory.
        #[arg(long)]
        into: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Service {
    /// Consumes interaction.commands, writes interaction.events.
    InteractionServer,
    /// The queue projection and its HTTP API.
    Queues,
    /// The public HTTP API.
    WebApi,
    /// The Universal Contact Server: SQL read model, blobs, contact API.
    Ucs,
    /// The interaction workflow router (stateless; rebuilds the floor from the topics).
    Router,
    /// The agent and supervisor desk API (sessions, offers, replies, QA, push events).
    Desk,
    /// Queue and agent statistics (the Stat Server role).
    Stats,
    /// The e-mail channel: SMTP listener, IMAP poller, outbound sender.
    Email,
    /// The chat server: chats over WebSocket, their truth on chat.events.
    ChatServer,
    /// The SMS channel: gateway webhooks in (signed), replies and paging out, receipts.
    SmsServer,
}

impl Service {
    /// Its name on the command line (`run <name>`), also its key in infra/kafka/acls.toml.
    pub fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// Create missing topics and check existing ones.
    Create,
    /// Print the declared topics.
    List,
    /// Print the `kafka-acls.sh` commands that grant each service exactly the ACLs it needs
    /// on this deployment's topics (from infra/kafka/acls.toml; see infra/kafka/README.md).
    Acls {
        /// A service and the principal it runs as, e.g. interaction-server=User:is
        /// (repeatable); default: every service as User:<service>.
        #[arg(value_parser = parse_grant)]
        grants: Vec<(Service, String)>,
        /// The admin client's properties file the commands pass to kafka-acls.sh.
        #[arg(long, default_value = "admin.properties")]
        command_config: String,
    },
}

fn parse_grant(s: &str) -> Result<(Service, String), String> {
    let (service, principal) = s.split_once('=').ok_or_else(|| format!("expected service=User:name, got '{s}'"))?;
    let service = Service::from_str(service, false)?;
    if !principal.contains(':') {
        return Err(format!("the principal '{principal}' needs its type, e.g. User:{principal}"));
    }
    Ok((service, principal.to_owned()))
}

#[derive(Debug, Subcommand)]
pub enum BrokerAction {
    /// Install the pinned broker into the user cache if missing, and print where it is:
    /// Apache Kafka's jars (with Maven; under a minute) or Tansu (with cargo; about 9 minutes).
    Install {
        /// Which broker; default: the one `up` would start on this data directory.
        #[arg(value_enum)]
        which: Option<BrokerChoice>,
    },
    /// Print where each broker is (or would be installed), and which one `up` would start.
    Path,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BrokerChoice {
    Kafka,
    Tansu,
    /// Both (scripts/test does this: the Tansu smoke test needs it).
    All,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got '{s}'"))
}

impl GlobalArgs {
    fn settings(&self, http: Option<SocketAddr>, public_http: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let settings = Settings::load(self.config.as_deref(), |mut f: Figment| {
            if let Some(v) = &self.data_dir {
                f = f.merge(Serialized::default("data_dir", v));
            }
            if let Some(v) = &self.bootstrap_servers {
                f = f.merge(Serialized::default("kafka.bootstrap_servers", v));
            }
            if let Some(v) = &self.topic_prefix {
                f = f.merge(Serialized::default("kafka.topic_prefix", v));
            }
            if let Some(v) = self.log_format {
                let format = match v {
                    LogFormatArg::Pretty => LogFormat::Pretty,
                    LogFormatArg::Json => LogFormat::Json,
                };
                f = f.merge(Serialized::default("telemetry.log_format", format));
            }
            if let Some(v) = http {
                f = f.merge(Serialized::default("http.listen", v));
            }
            if let Some(v) = public_http {
                f = f.merge(Serialized::default("http.public_listen", v));
            }
            if let Some(v) = self.broker_port {
                f = f.merge(Serialized::default("broker.port", v));
            }
            f
        })?;
        Ok(settings)
    }
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let (http, public_http) = match &cli.command {
        Command::Up { http, public_http } | Command::Run { http, public_http, .. } => (*http, *public_http),
        _ => (None, None),
    };
    let mut settings = cli.global.settings(http, public_http)?;
    let _telemetry = runtime::telemetry::init(&settings.telemetry)?;
    let topics = Topics::load(
        settings.kafka.topics_file.as_deref(),
        &settings.kafka.topic_prefix,
    )?;
    match cli.command {
        Command::Up { .. } => services::up(settings, topics).await,
        Command::Run { service, .. } => {
            require_bootstrap(&settings)?;
            services::run_one(service, settings, topics).await
        }
        Command::Submit {
            queue,
            media,
            priority,
            properties,
            id,
        } => {
            use_embedded_broker_if_unset(&mut settings);
            let client =
                runtime::commands::CommandClient::new(&settings.kafka, &topics, "cli")?;
            let interaction_id = id.unwrap_or_else(runtime::commands::uuid_v4);
            let command = client.command(
                &interaction_id,
                CommandPayload::Submit(Submit {
                    media_type: media,
                    origin: "cli".into(),
                    target_queue: queue,
                    priority,
                    properties: properties.into_iter().collect::<BTreeMap<_, _>>(),
                    contact_id: None,
                    content_ref: None,
                    parent_interaction_id: None,
                }),
            );
            let (partition, offset) =
                tokio::time::timeout(std::time::Duration::from_secs(30), client.send(&command))
                    .await
                    .with_context(|| {
                        format!(
                            "no answer from Kafka at {} within 30 s (is `switchboard up` running?)",
                            settings.kafka.bootstrap_servers
                        )
                    })??;
            println!("{interaction_id}");
            tracing::info!(%interaction_id, command_id = %command.command_id, partition, offset, "submitted");
            Ok(())
        }
        Command::Topics {
            action: TopicsAction::List,
        } => {
            for spec in topics.specs() {
                println!(
                    "{:<28} partitions={:<3} {}",
                    topics.name(&spec.name),
                    spec.partitions,
                    spec.description
                );
            }
            Ok(())
        }
        Command::Topics {
            action: TopicsAction::Acls { grants, command_config },
        } => {
            use_embedded_broker_if_unset(&mut settings);
            let acls = runtime::acls::Acls::built_in()?;
            acls.check_topics(&topics)?;
            let grants = if grants.is_empty() {
                Service::value_variants().iter().map(|s| (*s, format!("User:{}", s.name()))).collect()
            } else {
                grants
            };
            let target = runtime::acls::Target {
                bootstrap_servers: &settings.kafka.bootstrap_servers,
                command_config: &command_config,
                topic_prefix: &settings.kafka.topic_prefix,
                group_id: &settings.interaction_server.group_id,
            };
            for (service, principal) in grants {
                println!("# {} as {principal}", service.name());
                for args in acls.commands(&service.name(), &principal, &target)? {
                    let quoted: Vec<String> = args.iter().map(|a| runtime::acls::shell_quote(a)).collect();
                    println!("kafka-acls.sh {}", quoted.join(" "));
                }
            }
            Ok(())
        }
        Command::Topics {
            action: TopicsAction::Create,
        } => {
            use_embedded_broker_if_unset(&mut settings);
            let admin = runtime::kafka::admin(&settings.kafka)?;
            topics
                .ensure(&admin, &settings.kafka)
                .await?;
            println!("topics ready on {}", settings.kafka.bootstrap_servers);
            Ok(())
        }
        Command::Broker {
            action: BrokerAction::Install { which },
        } => {
            use runtime::broker::{BrokerKind, kafka, tansu};
            let which = match which {
                Some(w) => w,
                None => match runtime::broker::choose(&settings.broker, &settings.data_dir)?.0 {
                    BrokerKind::Kafka => BrokerChoice::Kafka,
                    BrokerKind::Tansu => BrokerChoice::Tansu,
                },
            };
            if matches!(which, BrokerChoice::Kafka | BrokerChoice::All) {
                kafka::check_java(&kafka::java_path(settings.broker.java.as_deref()))?;
                let jars = kafka::ensure_installed(settings.broker.kafka_jars.as_deref()).await?;
                println!("Apache Kafka {}: {}", kafka::KAFKA_VERSION, jars.display());
            }
            if matches!(which, BrokerChoice::Tansu | BrokerChoice::All) {
                let path = tansu::ensure_installed(settings.broker.tansu_bin.as_deref()).await?;
                println!("Tansu {}: {}", tansu::TANSU_VERSION, path.display());
            }
            Ok(())
        }
        Command::Broker {
            action: BrokerAction::Path,
        } => {
            use runtime::broker::{kafka, tansu};
            println!(
                "Apache Kafka {}: {}",
                kafka::KAFKA_VERSION,
                kafka::jars_dir(settings.broker.kafka_jars.as_deref()).display()
            );
            println!(
                "Tansu {}: {}",
                tansu::TANSU_VERSION,
                tansu::tansu_path(settings.broker.tansu_bin.as_deref()).display()
            );
            let (kind, why) = runtime::broker::choose(&settings.broker, &settings.data_dir)?;
            println!("`up` on {} starts {kind}: {why}", settings.data_dir.display());
            Ok(())
        }
        Command::Config => {
            // Secrets (passwords, tokens, keys, the database URL's password) as `***`.
            print!("{}", toml::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Command::Ucs {
            action: UcsAction::Rebuild { into },
        } => {
            use_embedded_broker_if_unset(&mut settings);
            let into = match into {
                Some(url) => url,
                None => format!(
                    "sqlite://{}",
                    settings
                        .data_dir
                        .join(format!("ucs-rebuild-{}.db", contract::now_millis()))
                        .display()
                ),
            };
            eprintln!("rebuilding UCS into {into} from {}", settings.kafka.bootstrap_servers);
            let report = ucs::rebuild(&settings, &settings.ucs, &topics, &into, runtime::CancellationToken::new()).await?;
            println!(
                "rebuilt {} from {} records in {:.1} s ({:.0} records/s; {} skipped, {} duplicates)",
                report.database,
                report.records,
                report.seconds,
                report.records as f64 / report.seconds.max(1e-9),
                report.skipped,
                report.duplicates
            );
            Ok(())
        }
        Command::Audit { interaction_id, json } => {
            use_embedded_broker_if_unset(&mut settings);
            let audit = crate::tools::audit(&settings.kafka, &topics, &interaction_id).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &audit)?;
                writeln!(out)?;
            } else {
                crate::tools::print_audit(&audit, &mut out)?;
            }
            Ok(())
        }
        Command::Workflow {
            action: WorkflowAction::Check { file },
        } => {
            let file = file.or(settings.router.workflow.clone());
            let loaded = router::load_workflow(file.as_deref())?;
            println!("{}: valid", loaded.source);
            for q in &loaded.workflow.queues {
                let steps: Vec<&str> = q.steps.iter().map(|s| s.name()).collect();
                println!("  queue {:<16} {}", q.name, steps.join(" -> "));
            }
            if let Some(e) = loaded.evaluation {
                println!(
                    "classifier: trained on {}, {} of {} held-out examples right ({:.1}% accuracy)",
                    e.trained_on,
                    e.correct,
                    e.held_out,
                    e.accuracy * 100.0
                );
            }
            Ok(())
        }
        Command::Desk {
            action: DeskAction::AddUser { id, role, name, skills, capacity },
        } => {
            let path = settings.desk.users_file.clone().unwrap_or_else(|| settings.data_dir.join("desk-users.toml"));
            let mut users = desk::users::Users::load(&path)?;
            eprintln!("password for {id} (read from stdin):");
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            users.upsert(desk::users::User {
                id: id.clone(),
                name,
                role: match role {
                    RoleArg::Agent => desk::users::Role::Agent,
                    RoleArg::Supervisor => desk::users::Role::Supervisor,
                    RoleArg::Admin => desk::users::Role::Admin,
                },
                password_hash: desk::users::hash_password(password)?,
                skills,
                capacity,
                place: None,
            });
            users.save(&path)?;
            // Check what was written reads back (media names, ids).
            desk::users::Users::load(&path)?;
            println!("{id} saved in {}", path.display());
            eprintln!(
                "a running desk adds {id} within seconds if the log has never named that id; to change or remove an existing user, use the admin API (/v1/desk/users, docs/SECURITY.md)"
            );
            Ok(())
        }
        Command::ServiceKey { action } => {
            let path = settings.service_keys_file();
            match action {
                ServiceKeyAction::Add { name, scopes } => {
                    let key = staff_auth::service_keys::add(&path, &name, &scopes)?;
                    eprintln!("key {name:?} ({}) added to {}; it is shown this once:", scopes.join(","), path.display());
                    println!("{key}");
                }
                ServiceKeyAction::Remove { name } => {
                    if !staff_auth::service_keys::remove(&path, &name)? {
                        bail!("no key named {name:?} in {}", path.display());
                    }
                    eprintln!("key {name:?} removed from {}; processes reading it refuse the key within a second", path.display());
                }
            }
            Ok(())
        }
        Command::Tail { topic, follow, max } => {
            use_embedded_broker_if_unset(&mut settings);
            let mut out = std::io::stdout();
            crate::tools::tail(&settings.kafka, &topics, &topic, follow, max, &mut out).await?;
            Ok(())
        }
    }
}

fn require_bootstrap(settings: &Settings) -> anyhow::Result<()> {
    if settings.kafka.bootstrap_servers.trim().is_empty() {
        bail!(
            "`run` needs a Kafka cluster: set kafka.bootstrap_servers (or --bootstrap-servers); \
             `switchboard up` runs everything on an embedded broker instead"
        );
    }
    Ok(())
}

/// Tools talk to the embedded broker of a running `up` when no cluster is configured.
fn use_embedded_broker_if_unset(settings: &mut Settings) {
    if settings.kafka.bootstrap_servers.trim().is_empty() {
        settings.kafka.bootstrap_servers = format!("127.0.0.1:{}", settings.broker.port);
        if runtime::broker::tansu_dir(&settings.data_dir).join("tansu.db").exists() {
            settings.kafka.broker = runtime::broker::BrokerKind::Tansu;
            runtime::broker::tansu::tune_for_tansu(&mut settings.kafka);
        }
    }
}
