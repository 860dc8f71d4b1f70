//! The topics Switchboard uses, declared once in `infra/topics.toml` and created at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// The built-in copy of `infra/topics.toml`.
pub const BUILT_IN: &str = include_str!("../../../infra/topics.toml");

pub const INTERACTION_COMMANDS: &str = "interaction.commands";
pub const INTERACTION_EVENTS: &str = "interaction.events";
pub const AGENT_EVENTS: &str = "agent.events";
pub const CHAT_EVENTS: &str = "chat.events";
pub const UCS_EVENTS: &str = "ucs.events";
pub const DEAD_LETTER: &str = "deadletter";
pub const STAFF_EVENTS: &str = "staff.events";
pub const STAFF_CREDENTIALS: &str = "staff.credentials";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsFile {
    topic: Vec<TopicSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot read topic definitions {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("invalid topic definitions: {0}")]
    Invalid(String),
    #[error("cannot create topic {topic}: {detail}")]
    Create { topic: String, detail: String },
    #[error(
        "topic {topic} has {actual} partitions but infra/topics.toml says {declared}; partition counts never change once data exists"
    )]
    PartitionMismatch {
        topic: String,
        declared: i32,
        actual: i32,
    },
    #[error(
        "topics missing and kafka.create_topics = false: {topics}; create them as infra/topics.toml declares (see infra/kafka/README.md) or allow creation"
    )]
    Missing { topics: String },
    #[error(
        "not authorized to describe topics {topics}: the cluster's ACLs do not let this principal use them; grant the service's ACLs (`switchboard topics acls`, infra/kafka/README.md)"
    )]
    NotAuthorized { topics: String },
    #[error("cannot read metadata of topic {topic}: {detail}")]
    Metadata { topic: String, detail: String },
}

/// The topic list with every name carrying the deployment's prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    specs: Vec<TopicSpec>,
}

impl Topics {
    pub fn load(path: Option<&Path>, prefix: &str) -> Result<Self, TopicError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|e| TopicError::Read {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?,
            None => BUILT_IN.to_owned(),
        };
        let file: TopicsFile =
            toml::from_str(&text).map_err(|e| TopicError::Invalid(e.to_string()))?;
        for required in [
            INTERACTION_COMMANDS,
            INTERACTION_EVENTS,
            AGENT_EVENTS,
            DEAD_LETTER,
            STAFF_EVENTS,
            STAFF_CREDENTIALS,
        ] {
            if !file.topic.iter().any(|t| t.name == required) {
                return Err(TopicError::Invalid(format!(
                    "topic {required} is not declared"
                )));
            }
        }
        if let Some(bad) = file.topic.iter().find(|t| t.partitions < 1) {
            return Err(TopicError::Invalid(format!(
                "topic {} needs at least 1 partition",
                bad.name
            )));
        }
        let partitions = |name: &str| {
            file.topic
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.partitions)
        };
        if partitions(INTERACTION_COMMANDS) != partitions(INTERACTION_EVENTS) {
            return Err(TopicError::Invalid(format!(
                "{INTERACTION_COMMANDS} and {INTERACTION_EVENTS} must have the same partition count"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            specs: file.topic,
        })
    }

    /// The full name of a declared topic, e.g. `name(INTERACTION_EVENTS)`.
    pub fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    pub fn specs(&self) -> &[TopicSpec] {
        &self.specs
    }

    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.specs
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions)
    }

    /// A declared topic's `retention.ms`, if it is finite (what Kafka may still redeliver).
    pub fn retention_ms(&self, topic: &str) -> Option<i64> {
        let spec = self.specs.iter().find(|t| t.name == topic)?;
        spec.config.get("retention.ms")?.parse::<i64>().ok().filter(|ms| *ms > 0 && *ms < i64::MAX)
    }

    /// The same list cut down to the topics named (a process prepares only the topics its
    /// services use: under least-privilege ACLs it may not even see the others).
    pub fn only<'a>(&self, used: impl IntoIterator<Item = &'a str>) -> Self {
        let used: std::collections::BTreeSet<&str> = used.into_iter().collect();
        Self {
            prefix: self.prefix.clone(),
            specs: self.specs.iter().filter(|s| used.contains(s.name.as_str())).cloned().collect(),
        }
    }

    /// Prepares the topics on the cluster: describes what exists, creates only what is missing
    /// (unless `kafka.create_topics` is off: then missing topics are an error naming them),
    /// waits until new topics show in metadata, refuses declared topics whose partition count
    /// differs (keys would have moved) and warns about settings that differ from the file.
    /// A topic the cluster's ACLs hide from this principal is an error saying so, not "missing".
    pub async fn ensure(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        kafka: &crate::config::KafkaSettings,
    ) -> Result<(), TopicError> {
        let names: Vec<String> = self.specs.iter().map(|s| self.name(&s.name)).collect();
        let mut described = describe(admin.inner(), &names)?;
        let mut existing: std::collections::BTreeSet<String> = described.keys().cloned().collect();
        let missing: Vec<(&TopicSpec, &String)> = self
            .specs
            .iter()
            .zip(&names)
            .filter(|(_, name)| !existing.contains(*name))
            .collect();
        // A listing of all topics leaves out those the principal may not describe; asked by
        // name, the broker says which those are.
        let hidden: Vec<&str> = missing
            .iter()
            .map(|(_, name)| name.as_str())
            .filter(|name| not_authorized(admin.inner(), name))
            .collect();
        if !hidden.is_empty() {
            return Err(TopicError::NotAuthorized { topics: hidden.join(", ") });
        }
        if !missing.is_empty() && !kafka.create_topics {
            return Err(TopicError::Missing {
                topics: missing.iter().map(|(_, n)| (*n).clone()).collect::<Vec<_>>().join(", "),
            });
        }
        if !missing.is_empty() {
            let min_isr = kafka.min_insync_replicas.map(|n| n.to_string());
            let new_topics: Vec<NewTopic<'_>> = missing
                .iter()
                .map(|(spec, name)| {
                    let topic = spec.config.iter().fold(
                        NewTopic::new(name, spec.partitions, TopicReplication::Fixed(kafka.replication_factor)),
                        |topic, (k, v)| topic.set(k, v),
                    );
                    match &min_isr {
                        Some(n) => topic.set("min.insync.replicas", n),
                        None => topic,
                    }
                })
                .collect();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            let results = admin
                .create_topics(new_topics.iter(), &options)
                .await
                .map_err(|e| TopicError::Create {
                    topic: missing.iter().map(|(_, n)| (*n).clone()).collect::<Vec<_>>().join(","),
                    detail: e.to_string(),
                })?;
            let mut created = Vec::new();
            for result in results {
                match result {
                    Ok(topic) => created.push(topic),
                    // Someone else created it between our describe and create (another
                    // instance, an operator; or the cluster's metadata had not shown it yet):
                    // it existed, so its settings are compared like any existing topic's.
                    Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        existing.insert(topic);
                    }
                    Err((topic, code)) => {
                        return Err(TopicError::Create { topic, detail: code.to_string() });
                    }
                }
            }
            if !created.is_empty() {
                tracing::info!(topics = ?created, "topics created");
            }
        }
        // A created topic reaches every broker's metadata, with a leader for each partition, a
        // moment after the controller has it.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        if !missing.is_empty() {
            described = describe(admin.inner(), &names)?;
        }
        loop {
            let absent: Vec<&str> = names.iter().filter(|n| !described.get(*n).is_some_and(|d| d.led)).map(String::as_str).collect();
            if absent.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(TopicError::Metadata {
                    topic: absent.join(", "),
                    detail: "created but not in the cluster's metadata after 30 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            described = describe(admin.inner(), &names)?;
        }
        for (spec, name) in self.specs.iter().zip(&names) {
            let actual = described[name].partitions;
            if actual != spec.partitions {
                return Err(TopicError::PartitionMismatch {
                    topic: name.clone(),
                    declared: spec.partitions,
                    actual,
                });
            }
        }
        let existed: Vec<(&TopicSpec, &String)> =
            self.specs.iter().zip(&names).filter(|(_, n)| existing.contains(*n)).collect();
        if let Err(e) = warn_about_settings(admin, &existed).await {
            tracing::warn!(error = %e, "could not compare the topics' settings with infra/topics.toml");
        }
        Ok(())
    }
}

/// Logs a warning for each existing topic whose settings differ from the declared ones
/// (a cluster's operators may have reasons; Switchboard never alters a topic).
async fn warn_about_settings(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[(&TopicSpec, &String)],
) -> Result<(), rdkafka::error::KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let resources: Vec<ResourceSpecifier<'_>> = topics.iter().map(|(_, n)| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin.describe_configs(resources.iter(), &options).await?;
    for ((spec, name), result) in topics.iter().zip(described) {
        let Ok(resource) = result else { continue };
        // Under ACLs without DescribeConfigs the broker answers with no entries at all.
        if resource.entries.is_empty() {
            tracing::info!(topic = %name, "cannot compare the topic's settings with infra/topics.toml: the broker shows none (no DescribeConfigs ACL?)");
            continue;
        }
        for (key, declared) in &spec.config {
            let actual = resource.get(key).and_then(|e| e.value.clone());
            if actual.as_deref() != Some(declared.as_str()) {
                tracing::warn!(
                    topic = %name,
                    setting = %key,
                    declared = %declared,
                    actual = actual.as_deref().unwrap_or("(unset)"),
                    "topic setting differs from infra/topics.toml"
                );
            }
        }
    }
    Ok(())
}

/// What the cluster's metadata says of one topic.
struct Described {
    partitions: i32,
    /// Every partition has a leader (one just created may not yet: it cannot be used).
    led: bool,
}

/// Those of `topics` the cluster knows, from one metadata request.
fn describe<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[String],
) -> Result<BTreeMap<String, Described>, TopicError> {
    let metadata = crate::kafka::blocking(|| client.fetch_metadata(None, Duration::from_secs(10))).map_err(|e| TopicError::Metadata {
        topic: topics.join(", "),
        detail: e.to_string(),
    })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && topics.iter().any(|n| n == t.name()))
        .map(|t| {
            let described = Described {
                partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                led: !t.partitions().is_empty() && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0),
            };
            (t.name().to_owned(), described)
        })
        .collect())
}

/// A topic's metadata error that says the ACLs hide it from this principal.
fn refused(error: Option<rdkafka::types::RDKafkaRespErr>) -> bool {
    error == Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
}

/// The broker refuses to describe `topic` to this principal.
fn not_authorized<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) -> bool {
    let answer = crate::kafka::blocking(|| client.fetch_metadata(Some(topic), Duration::from_secs(10)));
    match answer {
        Ok(metadata) => metadata.topics().iter().any(|t| t.name() == topic && refused(t.error())),
        Err(e) => e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
    }
}

/// How long a start-up metadata request keeps asking a slow broker before giving up.
const METADATA_PATIENCE: Duration = Duration::from_secs(120);

/// The partition count of a topic, from broker metadata.
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, TopicError> {
    // A broker busy with every service replaying at start (Tansu on two cores) can take longer
    // than one request's timeout: that is a slow answer, not a reason to stop the service.
    let deadline = std::time::Instant::now() + METADATA_PATIENCE;
    let metadata = loop {
        match crate::kafka::blocking(|| client.fetch_metadata(Some(topic), Duration::from_secs(10))) {
            Ok(metadata) => break metadata,
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::OperationTimedOut) =>
            {
                tracing::warn!(topic, error = %e, "the broker is slow to answer a metadata request; asking again");
            }
            Err(e) => {
                return Err(TopicError::Metadata { topic: topic.to_owned(), detail: e.to_string() });
            }
        }
    };
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() => {
            Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
        }
        Some(t) if refused(t.error()) => {
            Err(TopicError::NotAuthorized { topics: topic.to_owned() })
        }
        Some(t) => Err(TopicError::Metadata {
            topic: topic.to_owned(),
            detail: format!("{:?}", t.error()),
        }),
        None => Err(TopicError::Metadata {
            topic: topic.to_owned(),
            detail: "not found".into(),
        }),
    }
}
