//! How other services ask the Interaction Server for something: they put an
//! [`InteractionCommand`] on `interaction.commands`, keyed by interaction id, and get its
//! outcome from `interaction.events` (matched by `causation_id == command_id`).

use contract::AvroMessage;
use contract::command::{CommandPayload, InteractionCommand};
use crate::FutureProducer;
use crate::config::KafkaSettings;
use crate::headers::Lineage;
use crate::kafka;
use crate::topics::{self, Topics};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot encode the command: {0}")]
    Encode(#[from] contract::ContractError),
    #[error("Kafka did not accept the command: {0}")]
    Kafka(String),
}

#[derive(Clone)]
pub struct CommandClient {
    producer: FutureProducer,
    topic: String,
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
            producer: kafka::producer(kafka_settings)?,
            topic: topics.name(topics::INTERACTION_COMMANDS),
            issuer: issuer.into(),
        })
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
        let payload = command.encode()?;
        let headers = Lineage::new(&command.interaction_id)
            .caused_by(&command.command_id)
            .schema(InteractionCommand::NAME)
            .to_headers();
        let delivery = kafka::send(
            &self.producer,
            &self.topic,
            None,
            &command.interaction_id,
            &payload,
            headers,
        )
        .map_err(|e| SendError::Kafka(e.to_string()))?;
        kafka::delivered(delivery)
            .await
            .map_err(|e| SendError::Kafka(e.to_string()))
    }
}

/// A random (v4) UUID as text: command and interaction ids.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
