//! `interaction.commands`: requests to change an interaction (`interaction-command.avsc`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct InteractionCommand {
    pub command_id: String,
    pub interaction_id: String,
    pub issued_at: i64,
    pub issued_by: String,
    pub payload: CommandPayload,
}
avro_message!(InteractionCommand, "interaction-command", released: ["v1"]);

/// Branches in the order of the union in the `.avsc` (the encoding is by position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum CommandPayload {
    Submit(Submit),
    ChangeProperties(ChangeProperties),
    Lock(Lock),
    Unlock(Unlock),
    Offer(Offer),
    AcceptOffer(AgentRef),
    RejectOffer(AgentReason),
    TimeOutOffer(AgentRef),
    RevokeOffer(AgentReason),
    JoinParty(JoinParty),
    LeaveParty(AgentRef),
    Transfer(Transfer),
    ReturnToQueue(ReturnToQueue),
    MoveToQueue(MoveToQueue),
    Stop(Stop),
}

impl CommandPayload {
    /// The union branch name, as a person reads it in a rejection.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Submit(_) => "Submit",
            Self::ChangeProperties(_) => "ChangeProperties",
            Self::Lock(_) => "Lock",
            Self::Unlock(_) => "Unlock",
            Self::Offer(_) => "Offer",
            Self::AcceptOffer(_) => "AcceptOffer",
            Self::RejectOffer(_) => "RejectOffer",
            Self::TimeOutOffer(_) => "TimeOutOffer",
            Self::RevokeOffer(_) => "RevokeOffer",
            Self::JoinParty(_) => "JoinParty",
            Self::LeaveParty(_) => "LeaveParty",
            Self::Transfer(_) => "Transfer",
            Self::ReturnToQueue(_) => "ReturnToQueue",
            Self::MoveToQueue(_) => "MoveToQueue",
            Self::Stop(_) => "Stop",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum MediaType {
    Email,
    Chat,
    Sms,
    Mms,
    Callback,
    Other,
}

impl MediaType {
    pub const ALL: [MediaType; 6] = [
        Self::Email,
        Self::Chat,
        Self::Sms,
        Self::Mms,
        Self::Callback,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Chat => "chat",
            Self::Sms => "sms",
            Self::Mms => "mms",
            Self::Callback => "callback",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MediaType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown media type '{s}' (known: {})", known.join(", "))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Submit {
    pub media_type: MediaType,
    pub origin: String,
    pub target_queue: String,
    pub priority: i32,
    pub properties: BTreeMap<String, String>,
    pub contact_id: Option<String>,
    pub content_ref: Option<String>,
    pub parent_interaction_id: Option<String>,
}

impl Submit {
    /// A new interaction of `media_type` from `origin` for `target_queue`: priority 0, no
    /// properties, contact, content or parent (set those with struct update syntax).
    pub fn new(media_type: MediaType, origin: impl Into<String>, target_queue: impl Into<String>) -> Self {
        Self {
            media_type,
            origin: origin.into(),
            target_queue: target_queue.into(),
            priority: 0,
            properties: BTreeMap::new(),
            contact_id: None,
            content_ref: None,
            parent_interaction_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ChangeProperties {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
    pub priority: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum LockHolderKind {
    Router,
    Supervisor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Lock {
    pub holder: String,
    pub holder_kind: LockHolderKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Unlock {
    pub holder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Offer {
    pub agent_id: String,
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct AgentRef {
    pub agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct AgentReason {
    pub agent_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum PartyRole {
    Consult,
    Conference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct JoinParty {
    pub agent_id: String,
    pub role: PartyRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Transfer {
    pub from_agent_id: String,
    pub to_agent_id: Option<String>,
    pub to_queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ReturnToQueue {
    pub agent_id: String,
    pub queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct MoveToQueue {
    pub queue: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Stop {
    pub reason: String,
}

/// Interaction properties the system owns: set by the channels, the workflow, the desk and the
/// senders, never by a customer. A property named here, or starting with one of
/// [`SYSTEM_PROPERTY_PREFIXES`], is refused where a customer's submission enters (the public
/// web API): `to` with `reply_text` in `outbound-send` would make Switchboard an open relay,
/// `from` would send the acknowledgement to someone else.
pub const SYSTEM_PROPERTIES: &[&str] = &[
    "to",
    "to_addresses",
    "from",
    "reply_text",
    "reply_to_interaction",
    "author_agent",
    "agent_id",
    "agent_name",
    "auto_submitted",
    "auto_response",
    "standard_response",
    "category",
    "channel",
    "message_id",
    "references",
    "in_reply_to",
    "receipt",
    "status",
    "interaction_id",
    "attachments",
    "unclassified",
    "phone",
];

/// Prefixes of system-owned property families (QA, sending, delivery, callbacks, chat, MMS/SMS,
/// classification, SMTP, gateways, drafts, contact lookup).
pub const SYSTEM_PROPERTY_PREFIXES: &[&str] =
    &["qa_", "send_", "sent_", "delivery_", "callback_", "chat_", "mms_", "sms_", "category_", "smtp_", "gateway_", "draft_", "contact_", "dlq."];

/// Whether `name` is a property only the system may set.
pub fn is_system_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SYSTEM_PROPERTIES.contains(&name.as_str()) || SYSTEM_PROPERTY_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod system_property_tests {
    #[test]
    fn system_properties_are_recognised_in_any_case_and_customers_keep_theirs() {
        for owned in ["to", "Reply_Text", "qa_status", "send_attempts", "callback_attempts", "reply_to_interaction", "author_agent", "FROM"] {
            assert!(super::is_system_property(owned), "{owned}");
        }
        for theirs in ["subject", "customer_name", "order_number", "body", "topic"] {
            assert!(!super::is_system_property(theirs), "{theirs}");
        }
    }
}
