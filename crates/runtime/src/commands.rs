//! How other services ask the Interaction Server for something: they put an
//! [`InteractionCommand`] on `interaction.commands`, keyed by interaction id, and get its
//! outcome from `interaction.events` (matched by `causation_id == command_id`).

use contract::command::{CommandPayload, InteractionCommand};

use crate::config::KafkaSettings;
use crate::kafka;
use crate::topics::{self, Topics};
use crate::writer::Writer;

pub use crate::writer::WriteError as SendError;

#[derive(Clone)]
pub struct CommandClient {
    writer: Writer<InteractionCommand>,
    issuer: String,
}

impl CommandClient {
    /// `issuer` names who asks (`issued_by`), e.g. `web-api` or `agent:ann`.
    pub fn new(
        kafka_settings: &KafkaSettings,
        topics: &Topics,
        issuer: impl Into<String>,
    ) -> Result<Self, kafka::KafkaSetupError> {
        Ok(Self {
            writer: Writer::new(kafka_settings, topics.name(topics::INTERACTION_COMMANDS))?,
            issuer: issuer.into(),
        })
    }

    /// The same client issuing as `issuer` (a sender instance issues as its lock holder: the
    /// Interaction Server lets only the holder move a locked interaction).
    #[must_use]
    pub fn issued_as(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// A command with a fresh id, issued now.
    pub fn command(&self, interaction_id: &str, payload: CommandPayload) -> InteractionCommand {
        InteractionCommand {
            command_id: uuid_v4(),
            interaction_id: interaction_id.to_owned(),
            issued_at: contract::now_millis(),
            issued_by: self.issuer.clone(),
            payload,
        }
    }

    /// Sends and waits until Kafka has it (`acks=all`); returns its partition and offset.
    pub async fn send(&self, command: &InteractionCommand) -> Result<(i32, i64), SendError> {
        self.writer.write(&command.interaction_id, Some(&command.command_id), command).await
    }
}

/// A random (v4) UUID as text: command and interaction ids.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
