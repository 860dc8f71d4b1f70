//! The topics Switchboard uses, declared once in `infra/topics.toml` and created at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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

    /// Creates missing topics and checks that existing ones have the declared partition count.
    pub async fn ensure(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        replication_factor: i32,
    ) -> Result<(), TopicError> {
        let names: Vec<String> = self.specs.iter().map(|s| self.name(&s.name)).collect();
        let new_topics: Vec<NewTopic<'_>> = self
            .specs
            .iter()
            .zip(&names)
            .map(|(spec, name)| {
                spec.config.iter().fold(
                    NewTopic::new(
                        name,
                        spec.partitions,
                        TopicReplication::Fixed(replication_factor),
                    ),
                    |topic, (k, v)| topic.set(k, v),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(new_topics.iter(), &options)
            .await
            .map_err(|e| TopicError::Create {
                topic: names.join(","),
                detail: e.to_string(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(TopicError::Create {
                        topic,
                        detail: code.to_string(),
                    });
                }
            }
        }
        for (spec, name) in self.specs.iter().zip(&names) {
            let actual = partition_count(admin.inner(), name)?;
            if actual != spec.partitions {
                return Err(TopicError::PartitionMismatch {
                    topic: name.clone(),
                    declared: spec.partitions,
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// The partition count of a topic, from broker metadata.
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, TopicError> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| TopicError::Metadata {
            topic: topic.to_owned(),
            detail: e.to_string(),
        })?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() => {
            Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
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
