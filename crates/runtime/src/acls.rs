//! The Kafka ACLs each service needs (`infra/kafka/acls.toml`, embedded), and the
//! `kafka-acls.sh` commands that grant them to a deployment's principals.
//!
//! The file is the single statement of what each service does on the cluster: the operator's
//! commands are printed from it, and the ACL test runs every service under exactly those.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const BUILT_IN: &str = include_str!("../../../infra/kafka/acls.toml");

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("infra/kafka/acls.toml: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("no ACLs are declared for a service called {0:?} (known: {1})")]
    UnknownService(String, String),
    #[error("{0} reads topics, so its ACLs need described_group_prefixes = [\"{prefix}\"] (its readers' group ids)", prefix = crate::kafka::READER_GROUP_PREFIX)]
    ReaderGroups(String),
    #[error("ACLs for {service} name topic {topic:?}, which infra/topics.toml does not declare")]
    UnknownTopic { service: String, topic: String },
}

/// What one service does on the cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAcls {
    /// Topics it reads (Read, Describe).
    #[serde(default)]
    pub read: Vec<String>,
    /// Topics it writes (Write, Describe).
    #[serde(default)]
    pub write: Vec<String>,
    /// Consumer groups it joins (Read).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Transactional ids it uses, as prefixes (Write, Describe).
    #[serde(default)]
    pub transactional_id_prefixes: Vec<String>,
    /// Consumer group ids it looks up but never joins, as prefixes (Describe).
    #[serde(default)]
    pub described_group_prefixes: Vec<String>,
}

/// Every service's ACLs.
#[derive(Debug, Clone)]
pub struct Acls(BTreeMap<String, ServiceAcls>);

/// Where a grant goes: the cluster's bootstrap servers and the admin client's properties file.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub bootstrap_servers: &'a str,
    pub command_config: &'a str,
    pub topic_prefix: &'a str,
    /// The Interaction Server's consumer group id (`{group_id}` in the file).
    pub group_id: &'a str,
}

impl Acls {
    pub fn built_in() -> Result<Self, AclError> {
        Self::parse(BUILT_IN)
    }

    pub fn parse(text: &str) -> Result<Self, AclError> {
        Ok(Self(toml::from_str(text)?))
    }

    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn service(&self, name: &str) -> Result<&ServiceAcls, AclError> {
        self.0.get(name).ok_or_else(|| {
            AclError::UnknownService(name.to_owned(), self.0.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }

    /// Every topic named is one `topics` declares, and every service that reads a topic may
    /// look up its readers' groups.
    #[allow(clippy::missing_errors_doc)]
    pub fn check_topics(&self, topics: &crate::topics::Topics) -> Result<(), AclError> {
        for (service, acls) in &self.0 {
            for topic in acls.read.iter().chain(&acls.write) {
                if topics.partitions(topic).is_none() {
                    return Err(AclError::UnknownTopic { service: service.clone(), topic: topic.clone() });
                }
            }
            if !acls.read.is_empty() && !acls.described_group_prefixes.iter().any(|g| g == crate::kafka::READER_GROUP_PREFIX) {
                return Err(AclError::ReaderGroups(service.clone()));
            }
        }
        Ok(())
    }

    /// The `kafka-acls.sh` argument lists that grant `service`'s ACLs to `principal`
    /// (`User:name`), one invocation per kind of grant.
    pub fn commands(&self, service: &str, principal: &str, target: &Target<'_>) -> Result<Vec<Vec<String>>, AclError> {
        let acls = self.service(service)?;
        let expand = |name: &str| format!("{}{}", target.topic_prefix, name.replace("{group_id}", target.group_id));
        let grant = |pattern: &str, resource: &str, names: &[String], operations: &[&str]| -> Option<Vec<String>> {
            if names.is_empty() {
                return None;
            }
            let mut args: Vec<String> = [
                "--bootstrap-server",
                target.bootstrap_servers,
                "--command-config",
                target.command_config,
                "--add",
                "--allow-principal",
                principal,
                "--resource-pattern-type",
                pattern,
            ]
            .into_iter()
            .map(str::to_owned)
            .collect();
            for operation in operations {
                args.extend(["--operation".to_owned(), (*operation).to_owned()]);
            }
            for name in names {
                args.extend([format!("--{resource}"), expand(name)]);
            }
            Some(args)
        };
        Ok([
            grant("literal", "topic", &acls.read, &["Read", "Describe"]),
            grant("literal", "topic", &acls.write, &["Write", "Describe"]),
            grant("literal", "group", &acls.groups, &["Read"]),
            grant("prefixed", "transactional-id", &acls.transactional_id_prefixes, &["Write", "Describe"]),
            grant("prefixed", "group", &acls.described_group_prefixes, &["Describe"]),
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}

/// One argument for a POSIX shell: as it is when it is plain, else in single quotes.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_-.,:/=@+%{}".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_built_in_file_names_only_declared_topics() {
        let acls = Acls::built_in().unwrap();
        let topics = crate::topics::Topics::load(None, "").unwrap();
        acls.check_topics(&topics).unwrap();
        assert!(acls.services().count() >= 10);
    }

    #[test]
    fn commands_carry_the_prefix_and_the_group_id() {
        let acls = Acls::built_in().unwrap();
        let target = Target { bootstrap_servers: "b:9093", command_config: "admin.properties", topic_prefix: "prod.", group_id: "is" };
        let commands = acls.commands("interaction-server", "User:is", &target).unwrap();
        let text: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        assert!(text.iter().any(|c| c.contains("--topic prod.interaction.commands") && c.contains("--operation Read")), "{text:?}");
        assert!(text.iter().any(|c| c.contains("--group prod.is") && c.contains("--resource-pattern-type literal")), "{text:?}");
        assert!(
            text.iter().any(|c| c.contains("--transactional-id prod.is-") && c.contains("--resource-pattern-type prefixed")),
            "{text:?}"
        );
        assert!(text.iter().any(|c| c.contains("--group prod.switchboard-reader-") && c.contains("--operation Describe")), "{text:?}");
        assert!(matches!(acls.commands("nope", "User:x", &target), Err(AclError::UnknownService(..))));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("User:is"), "User:is");
        assert_eq!(shell_quote("User:CN=a b"), "'User:CN=a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
