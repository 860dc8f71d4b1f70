//! `ucs.events`: changes to the contact store's own records (`ucs-event.avsc`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::avro_message;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct UcsEvent {
    pub event_id: String,
    pub key: String,
    pub occurred_at: i64,
    pub issued_by: String,
    pub payload: UcsPayload,
}
avro_message!(UcsEvent, "ucs-event", released: ["v2"]);

/// Branches in the order of the union in the `.avsc` (the encoding is by position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub enum UcsPayload {
    ContactIdentified(ContactIdentified),
    ContactUpdated(ContactUpdated),
    ContactsMerged(ContactsMerged),
    NoteAdded(NoteAdded),
    ContentAdded(ContentAdded),
    CategorySaved(CategorySaved),
    CategoryDeleted(CategoryDeleted),
    StandardResponseSaved(StandardResponseSaved),
    StandardResponseDeleted(StandardResponseDeleted),
}

impl UcsPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ContactIdentified(_) => "ContactIdentified",
            Self::ContactUpdated(_) => "ContactUpdated",
            Self::ContactsMerged(_) => "ContactsMerged",
            Self::NoteAdded(_) => "NoteAdded",
            Self::ContentAdded(_) => "ContentAdded",
            Self::CategorySaved(_) => "CategorySaved",
            Self::CategoryDeleted(_) => "CategoryDeleted",
            Self::StandardResponseSaved(_) => "StandardResponseSaved",
            Self::StandardResponseDeleted(_) => "StandardResponseDeleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Email,
    Phone,
    WebVisitor,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 3] = [Self::Email, Self::Phone, Self::WebVisitor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::WebVisitor => "web_visitor",
        }
    }
}

impl std::str::FromStr for IdentityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown identity kind '{s}' (known: email, phone, web_visitor)"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ContactIdentified {
    pub contact_id: String,
    pub identity_kind: IdentityKind,
    pub identity_value: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ContactUpdated {
    pub contact_id: String,
    pub display_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ContactsMerged {
    pub merged_contact_id: String,
    pub into_contact_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct NoteAdded {
    pub note_id: String,
    pub contact_id: Option<String>,
    pub interaction_id: Option<String>,
    pub author: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ContentRole {
    TextBody,
    HtmlBody,
    Attachment,
    MmsPart,
    Smil,
    Other,
}

impl ContentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextBody => "text_body",
            Self::HtmlBody => "html_body",
            Self::Attachment => "attachment",
            Self::MmsPart => "mms_part",
            Self::Smil => "smil",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct ContentAdded {
    pub interaction_id: String,
    pub part_index: i32,
    pub role: ContentRole,
    pub mime_type: String,
    pub size: i64,
    pub blob_ref: Option<String>,
    pub filename: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct CategorySaved {
    pub category_id: String,
    pub name: String,
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct CategoryDeleted {
    pub category_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct StandardResponseSaved {
    pub response_id: String,
    pub name: String,
    pub category_id: Option<String>,
    pub subject: Option<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    pub media: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
pub struct StandardResponseDeleted {
    pub response_id: String,
}
