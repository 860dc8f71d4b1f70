//! `agent.events`: agent state changes (`agent-event.avsc`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct AgentEvent {
    pub event_id: String,
    pub agent_id: String,
    pub occurred_at: i64,
    pub causation_id: Option<String>,
    pub payload: AgentPayload,
}
avro_message!(AgentEvent, "agent-event", released: ["v1"]);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum AgentPayload {
    LoggedIn(LoggedIn),
    Ready(Ready),
    NotReady(NotReady),
    LoggedOut(LoggedOut),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct LoggedIn {
    pub place: Option<String>,
    /// Skill name to level.
    pub skills: BTreeMap<String, i32>,
    /// Media type name (see [`crate::command::MediaType`]) to the most interactions held at once.
    pub capacity: BTreeMap<String, i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Ready {
    pub media: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct NotReady {
    pub media: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct LoggedOut {
    pub reason: Option<String>,
}
