//! `staff.events` (`staff-event.avsc`): who may use the desk, and ended sessions;
//! `staff.credentials` (`staff-credential.avsc`): password hashes, for the desk alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct StaffEvent {
    pub event_id: String,
    pub user_id: String,
    pub occurred_at: i64,
    pub actor: Option<String>,
    pub payload: StaffPayload,
}
avro_message!(StaffEvent, "staff-event", released: []);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum StaffPayload {
    UserAdded(UserAdded),
    RoleChanged(RoleChanged),
    UserDisabled(Because),
    UserEnabled(Because),
    UserRemoved(Because),
    PasswordChanged(Because),
    SessionEnded(SessionEnded),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct UserAdded {
    pub name: String,
    /// `agent`, `supervisor` or `admin`.
    pub role: String,
    pub skills: BTreeMap<String, i32>,
    pub capacity: BTreeMap<String, i32>,
    pub place: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct RoleChanged {
    pub role: String,
}

/// The body of the events that carry nothing but an optional reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct Because {
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct SessionEnded {
    /// `None`: every session of the user.
    pub session_id: Option<String>,
    pub expires_at: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct StaffCredential {
    pub user_id: String,
    pub password_hash: String,
    pub set_at: i64,
}
avro_message!(StaffCredential, "staff-credential", released: []);
