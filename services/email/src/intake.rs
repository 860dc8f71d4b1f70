//! From raw mail to a submitted interaction, the same for every way mail arrives (SMTP
//! listener, IMAP poll, web form): parse and check ([`crate::parse`]); store the message,
//! bodies and attachments in UCS (claim-check) and find-or-create the sender's contact; link
//! a reply to the interaction it answers; then submit, and only when Kafka has the command
//! does the caller acknowledge its source.
//!
//! Idempotent on Message-ID: the interaction id is a UUIDv5 of it, so the same mail delivered
//! twice is submitted twice with one id and the Interaction Server refuses the second.

use std::collections::BTreeMap;

use contract::command::{CommandPayload, MediaType, Submit};
use runtime::commands::CommandClient;
use runtime::dead_letter::DeadLetters;

use crate::parse::{self, InboundMail, Limits, Refusal};
use ucs_client::{ContentPart, UcsClient, UcsError};

/// Text bodies up to this size are kept inline in UCS; longer ones as blobs.
const INLINE_TEXT_BYTES: usize = 60 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The mail itself is unacceptable; retrying cannot help.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// UCS or Kafka cannot take it now; the source should keep the mail and retry.
    #[error("temporarily unable to accept mail: {0}")]
    Unavailable(String),
}

impl From<UcsError> for IntakeError {
    fn from(e: UcsError) -> Self {
        match e {
            UcsError::Unavailable { .. } => Self::Unavailable(e.to_string()),
            // A UCS refusal of what we send is a limit (blob size) or our bug: retrying cannot
            // help, so it is refused (or parked) with UCS's reason.
            UcsError::Refused { .. } => Self::Refused(Refusal::NotStorable(e.to_string())),
        }
    }
}

/// Where a mail came from, for logs and dead-letter records.
#[derive(Debug, Clone)]
pub struct Source {
    /// `smtp`, `imap` or `web-form`.
    pub channel: &'static str,
    /// SMTP `MAIL FROM` (empty for a bounce), when there was one.
    pub envelope_from: Option<String>,
    /// Peer address, mailbox and UID, or client: whatever identifies it.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub interaction_id: String,
    pub thread_parent: Option<String>,
    pub automatic: Option<String>,
}

#[derive(Clone)]
pub struct Intake {
    pub ucs: UcsClient,
    pub commands: CommandClient,
    pub dead_letters: DeadLetters,
    pub limits: Limits,
    pub inbound_queue: String,
    /// Domain of the Message-IDs of mail we send (`sb.<interaction id>@<domain>`).
    pub domain: String,
}

/// The interaction id of an inbound mail: the same for every delivery of it.
pub fn interaction_id_for(message_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("switchboard:email:{message_id}").as_bytes()).to_string()
}

/// The Message-ID (without brackets) of mail sent for `interaction_id`.
pub fn outbound_message_id(interaction_id: &str, domain: &str) -> String {
    format!("sb.{interaction_id}@{domain}")
}

/// The interaction a Message-ID of ours was sent for.
pub fn ours(message_id: &str, domain: &str) -> Option<String> {
    let local = message_id.strip_suffix(&format!("@{domain}"))?.strip_prefix("sb.")?;
    uuid::Uuid::parse_str(local).ok().map(|u| u.to_string())
}

/// The tag put in the subject of mail we send, for mail clients that drop threading headers.
pub fn subject_tag(interaction_id: &str) -> String {
    format!("[ref:{interaction_id}]")
}

fn tagged(subject: &str) -> Option<String> {
    let start = subject.find("[ref:")? + 5;
    let end = start + subject[start..].find(']')?;
    uuid::Uuid::parse_str(&subject[start..end]).ok().map(|u| u.to_string())
}

impl Intake {
    /// Parses and checks `raw`; refusals come back before anything is stored.
    pub fn check(&self, raw: &[u8], source: &Source) -> Result<InboundMail, Refusal> {
        parse::parse(raw, source.envelope_from.as_deref(), &self.limits)
    }

    /// Accepts one mail. `Ok` means the Submit command is on Kafka: the source may now be
    /// acknowledged (SMTP 250, IMAP delete).
    pub async fn accept(&self, raw: &[u8], source: &Source) -> Result<Accepted, IntakeError> {
        let mail = self.check(raw, source)?;
        self.submit(raw, mail, source).await
    }

    async fn submit(&self, raw: &[u8], mail: InboundMail, source: &Source) -> Result<Accepted, IntakeError> {
        let id = interaction_id_for(&mail.message_id);
        // Independent UCS calls go together: each waits for its write to reach Kafka, and in
        // sequence those waits were most of the SMTP accept latency.
        let (thread_parent, contact_id, raw_ref) = tokio::try_join!(
            self.thread_parent(&mail, &id),
            async { Ok::<_, IntakeError>(self.ucs.identify_email(&mail.from_address, mail.from_name.as_deref()).await?) },
            // Claim-check: every byte is in UCS before the command that refers to it exists.
            async { Ok::<_, IntakeError>(self.ucs.put_blob(raw.to_vec()).await?) },
        )?;
        let part = |role: &str, mime_type: &str, size: usize, blob_ref: Option<String>| ContentPart {
            part_index: 0,
            role: role.to_owned(),
            mime_type: mime_type.to_owned(),
            size,
            blob_ref,
            filename: None,
            text: None,
        };
        let mut parts = vec![part("other", "message/rfc822", raw.len(), Some(raw_ref.clone()))];
        if let Some(text) = &mail.text_body {
            parts.push(if text.len() <= INLINE_TEXT_BYTES {
                ContentPart { text: Some(text.clone()), ..part("text_body", "text/plain", text.len(), None) }
            } else {
                part("text_body", "text/plain", text.len(), Some(self.ucs.put_blob(text.as_bytes().to_vec()).await?))
            });
        }
        if let Some(html) = &mail.html_body {
            parts.push(part("html_body", "text/html", html.len(), Some(self.ucs.put_blob(html.as_bytes().to_vec()).await?)));
        }
        for attachment in &mail.attachments {
            let blob = self.ucs.put_blob(attachment.bytes.clone()).await?;
            parts.push(ContentPart {
                filename: attachment.filename.clone(),
                ..part("attachment", &attachment.mime_type, attachment.bytes.len(), Some(blob))
            });
        }
        let added = parts.into_iter().enumerate().map(|(index, mut part)| {
            part.part_index = i32::try_from(index).unwrap_or(i32::MAX);
            let (ucs, id) = (&self.ucs, &id);
            async move { ucs.add_content(id, &part).await }
        });
        futures::future::try_join_all(added).await?;

        let mut properties = BTreeMap::from([
            ("subject".to_owned(), mail.subject.clone()),
            ("from".to_owned(), mail.from_address.clone()),
            ("message_id".to_owned(), mail.message_id.clone()),
            ("channel".to_owned(), source.channel.to_owned()),
            ("attachments".to_owned(), mail.attachments.len().to_string()),
        ]);
        if let Some(name) = &mail.from_name {
            properties.insert("from_name".into(), name.clone());
        }
        if !mail.to.is_empty() {
            properties.insert("to_addresses".into(), mail.to.join(", "));
        }
        if !mail.references.is_empty() || !mail.in_reply_to.is_empty() {
            let mut chain = mail.references.clone();
            chain.extend(mail.in_reply_to.iter().filter(|i| !mail.references.contains(i)).cloned());
            properties.insert("references".into(), chain.join(" "));
        }
        if let Some(why) = &mail.automatic {
            properties.insert("auto_submitted".into(), why.clone());
        }
        if let Some(text) = &mail.text_body {
            // A preview for routing rules and the desk; the whole body is in UCS.
            properties.insert("body".into(), text.chars().take(2000).collect());
        }
        let command = self.commands.command(
            &id,
            CommandPayload::Submit(Submit {
                media_type: MediaType::Email,
                origin: format!("email:{}", source.channel),
                target_queue: self.inbound_queue.clone(),
                priority: 0,
                properties,
                contact_id: Some(contact_id),
                content_ref: Some(raw_ref),
                parent_interaction_id: thread_parent.clone(),
            }),
        );
        self.commands.send(&command).await.map_err(|e| IntakeError::Unavailable(format!("Kafka: {e}")))?;
        tracing::info!(interaction = %id, message_id = %mail.message_id, channel = source.channel, source = %source.detail, thread_parent = ?thread_parent, "mail accepted");
        Ok(Accepted { interaction_id: id, thread_parent, automatic: mail.automatic })
    }

    /// The interaction this mail answers: one of ours by Message-ID, an earlier inbound mail
    /// UCS knows, or the subject tag.
    async fn thread_parent(&self, mail: &InboundMail, own_id: &str) -> Result<Option<String>, IntakeError> {
        let candidates = mail.in_reply_to.iter().chain(mail.references.iter().rev());
        for message_id in candidates {
            if let Some(id) = ours(message_id, &self.domain) {
                return Ok(Some(id));
            }
            let earlier = interaction_id_for(message_id);
            if earlier != own_id && self.ucs.knows_interaction(&earlier).await? {
                return Ok(Some(earlier));
            }
        }
        Ok(tagged(&mail.subject).filter(|id| id != own_id))
    }

    /// Parks a mail that cannot be accepted and has no sender to refuse it to (IMAP, web
    /// form): the raw bytes (or, when too large for a record, the start of them) with the
    /// reason. Returns when the dead-letter record is on Kafka.
    pub async fn park(&self, raw: &[u8], reason: &str, source: &Source) -> Result<(), IntakeError> {
        const MAX_RECORD: usize = 512 * 1024;
        let key = format!("{}:{}", source.channel, source.detail);
        let payload = &raw[..raw.len().min(MAX_RECORD)];
        let reason = if raw.len() > MAX_RECORD {
            format!("{reason} (first {MAX_RECORD} of {} bytes kept here; the message stays at its source)", raw.len())
        } else {
            reason.to_owned()
        };
        let future = self
            .dead_letters
            .park_input(&key, payload, &reason, &format!("{}:{}", source.channel, source.detail))
            .map_err(|e| IntakeError::Unavailable(format!("Kafka: {e}")))?;
        runtime::kafka::delivered(future).await.map_err(|e| IntakeError::Unavailable(format!("Kafka: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = interaction_id_for("m1@example.com");
        assert_eq!(id, interaction_id_for("m1@example.com"));
        assert_ne!(id, interaction_id_for("m2@example.com"));
        let ours_id = outbound_message_id(&id, "shop.example");
        assert_eq!(ours(&ours_id, "shop.example"), Some(id.clone()));
        assert_eq!(ours(&ours_id, "other.example"), None);
        assert_eq!(ours("sb.not-a-uuid@shop.example", "shop.example"), None);
        assert_eq!(tagged(&format!("Re: Your order {}", subject_tag(&id))), Some(id));
        assert_eq!(tagged("Re: [ref:nonsense]"), None);
    }
}
