//! `interaction.events`: facts about interactions (`interaction-event.avsc`), written only by
//! the Interaction Server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;
pub use crate::command::{LockHolderKind, MediaType, PartyRole};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct InteractionEvent {
    pub event_id: String,
    pub interaction_id: String,
    pub occurred_at: i64,
    pub causation_id: String,
    pub command_partition: i32,
    pub command_offset: i64,
    pub index: i32,
    pub set_size: i32,
    pub payload: EventPayload,
}
avro_message!(InteractionEvent, "interaction-event", released: ["v1"]);

/// Namespace of the deterministic event ids (UUIDv5).
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5b0a_7d2e_4c1f_4e8a_9f3b_6d2c_1a0e_b7c4);

impl InteractionEvent {
    /// The id of the `index`-th event caused by command `command_id`: the same command always
    /// yields the same ids, so a re-emitted event is recognisable as a duplicate.
    pub fn id_for(command_id: &str, index: i32) -> String {
        uuid::Uuid::new_v5(
            &EVENT_ID_NAMESPACE,
            format!("{command_id}/{index}").as_bytes(),
        )
        .to_string()
    }
}

/// Branches in the order of the union in the `.avsc` (the encoding is by position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum EventPayload {
    Submitted(Submitted),
    PlacedInQueue(PlacedInQueue),
    PropertiesChanged(PropertiesChanged),
    Locked(Locked),
    Unlocked(Unlocked),
    OfferedToAgent(OfferedToAgent),
    OfferAccepted(AgentId),
    OfferRejected(AgentReason),
    OfferTimedOut(AgentId),
    OfferRevoked(AgentReason),
    Assigned(AgentId),
    PartyJoined(PartyJoined),
    PartyLeft(AgentId),
    Transferred(Transferred),
    ReturnedToQueue(ReturnedToQueue),
    Stopped(Stopped),
    CommandRejected(CommandRejected),
}

impl EventPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Submitted(_) => "Submitted",
            Self::PlacedInQueue(_) => "PlacedInQueue",
            Self::PropertiesChanged(_) => "PropertiesChanged",
            Self::Locked(_) => "Locked",
            Self::Unlocked(_) => "Unlocked",
            Self::OfferedToAgent(_) => "OfferedToAgent",
            Self::OfferAccepted(_) => "OfferAccepted",
            Self::OfferRejected(_) => "OfferRejected",
            Self::OfferTimedOut(_) => "OfferTimedOut",
            Self::OfferRevoked(_) => "OfferRevoked",
            Self::Assigned(_) => "Assigned",
            Self::PartyJoined(_) => "PartyJoined",
            Self::PartyLeft(_) => "PartyLeft",
            Self::Transferred(_) => "Transferred",
            Self::ReturnedToQueue(_) => "ReturnedToQueue",
            Self::Stopped(_) => "Stopped",
            Self::CommandRejected(_) => "CommandRejected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Submitted {
    pub media_type: MediaType,
    pub origin: String,
    pub priority: i32,
    pub properties: BTreeMap<String, String>,
    pub contact_id: Option<String>,
    pub content_ref: Option<String>,
    pub parent_interaction_id: Option<String>,
    pub submitted_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct PlacedInQueue {
    pub queue: String,
    pub previous_queue: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct PropertiesChanged {
    pub set: BTreeMap<String, String>,
    pub removed: Vec<String>,
    pub priority: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Locked {
    pub holder: String,
    pub holder_kind: LockHolderKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Unlocked {
    pub holder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct OfferedToAgent {
    pub agent_id: String,
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct AgentId {
    pub agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct AgentReason {
    pub agent_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct PartyJoined {
    pub agent_id: String,
    pub role: PartyRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Transferred {
    pub from_agent_id: String,
    pub to_agent_id: Option<String>,
    pub to_queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ReturnedToQueue {
    pub agent_id: String,
    pub queue: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Stopped {
    pub reason: String,
    pub stopped_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct CommandRejected {
    pub command_type: String,
    pub issued_by: String,
    pub reason: String,
}
