//! `chat.events`: what happened in a chat session (`chat-event.avsc`); the transcript.

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ChatEvent {
    pub event_id: String,
    /// The chat interaction's id; the record key.
    pub session_id: String,
    pub occurred_at: i64,
    pub payload: ChatPayload,
}
avro_message!(ChatEvent, "chat-event", released: ["v2", "v3"]);

/// Branches in the order of the union in the `.avsc` (the encoding is by position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum ChatPayload {
    ParticipantJoined(ParticipantJoined),
    ParticipantLeft(ParticipantLeft),
    MessagePosted(MessagePosted),
    SessionEnded(SessionEnded),
    SessionStarted(SessionStarted),
    TypingChanged(TypingChanged),
    TranscriptRequested(TranscriptRequested),
}

impl ChatPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ParticipantJoined(_) => "ParticipantJoined",
            Self::ParticipantLeft(_) => "ParticipantLeft",
            Self::MessagePosted(_) => "MessagePosted",
            Self::SessionEnded(_) => "SessionEnded",
            Self::SessionStarted(_) => "SessionStarted",
            Self::TypingChanged(_) => "TypingChanged",
            Self::TranscriptRequested(_) => "TranscriptRequested",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    Customer,
    Agent,
    Supervisor,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    All,
    Agents,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ParticipantJoined {
    pub participant_id: String,
    pub role: ChatRole,
    pub display_name: String,
    /// A consult the customer is not shown.
    #[serde(default)]
    pub agents_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ParticipantLeft {
    pub participant_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct MessagePosted {
    pub participant_id: String,
    pub text: String,
    pub visibility: Visibility,
    /// The sender's id for the message: a resend with the same id is the same event.
    #[serde(default)]
    pub client_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct SessionEnded {
    pub ended_by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct SessionStarted {
    pub interaction_id: String,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub subject: Option<String>,
    pub origin: String,
    /// Hex SHA-256 of the customer's session token; the token is never logged.
    pub customer_token_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct TypingChanged {
    pub participant_id: String,
    pub typing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct TranscriptRequested {
    pub email: String,
}
