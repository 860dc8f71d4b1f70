//! The outbound e-mail channel: mail waiting in the send queue (agent replies after release and
//! QA, acknowledgements and auto-responses from the workflow's `respond` step, chat
//! transcripts) goes out over SMTP with lettre, driven by the shared [`send_queue::Sender`]
//! (claim, retries, give-up: see there). A sent mail records `sent_message_id` and
//! `smtp_response`. A mail sent twice after a crash carries the same Message-ID, which mail
//! clients and servers use to drop the copy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contract::command::MediaType;
use floor::SharedFloor;
use floor::library::{fill, fill_html};
use runtime::commands::CommandClient;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use crate::{MailTls, OutboundMailSettings};
use queues::board::{Board, Interaction};

use crate::intake::{outbound_message_id, subject_tag};
use crate::parse::clean_header_text;

/// The sender's name: its lock holders are `email-sender@<instance>`; it issues commands as it.
pub const HOLDER: &str = "email-sender";

#[derive(Debug, thiserror::Error)]
pub enum SenderSetupError {
    #[error("SMTP transport for {host}: {source}")]
    Transport { host: String, source: lettre::transport::smtp::Error },
    #[error("the From address {0:?} is not a mailbox: {1}")]
    From(String, lettre::address::AddressError),
}

/// A mail ready to hand to the SMTP server, or why it cannot be built (no retry helps).
#[derive(Debug)]
pub struct Outgoing {
    pub message: Message,
    pub message_id: String,
    pub recipient: String,
}

/// The e-mail channel of the [`send_queue::Sender`]: builds the mail with lettre and hands it
/// to the SMTP server.
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

pub type Sender = send_queue::Sender<EmailChannel>;

/// The sender configured by `[email.outbound]`; `None` when no SMTP server is set.
pub fn sender(floor: Arc<SharedFloor>, commands: CommandClient, settings: &OutboundMailSettings, domain: &str) -> Result<Option<Sender>, SenderSetupError> {
    let Some(host) = settings.smtp_host.clone() else { return Ok(None) };
    let transport_error = |source| SenderSetupError::Transport { host: host.clone(), source };
    let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(transport_error);
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(settings.smtp_port)
        .timeout(Some(Duration::from_secs(settings.timeout_s)));
    builder = match settings.tls {
        MailTls::None => builder.tls(Tls::None),
        MailTls::Starttls => builder.tls(Tls::Required(tls(&host)?)),
        MailTls::Tls => builder.tls(Tls::Wrapper(tls(&host)?)),
    };
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let from = settings.from.parse().map_err(|e| SenderSetupError::From(settings.from.clone(), e))?;
    let channel = EmailChannel { transport: builder.build(), from, domain: domain.to_owned() };
    let policy = send_queue::Policy {
        send_queue: settings.send_queue.clone(),
        failed_queue: settings.failed_queue.clone(),
        max_attempts: settings.max_attempts,
        retry_initial_ms: settings.retry_initial_ms,
        retry_max_ms: settings.retry_max_ms,
        takeover_after_ms: settings.takeover_after_s.saturating_mul(1000),
    };
    Ok(Some(send_queue::Sender::new(floor, commands, channel, policy)))
}

impl send_queue::Channel for EmailChannel {
    type Outgoing = Outgoing;

    fn holder(&self) -> &'static str {
        HOLDER
    }

    fn media(&self) -> MediaType {
        MediaType::Email
    }

    fn compose(&self, i: &Interaction, floor: &floor::Floor) -> Result<Outgoing, String> {
        compose(i, floor.board(), floor.library(), &self.from, &self.domain)
    }

    async fn send(&self, interaction: &str, outgoing: Outgoing) -> Result<Vec<(String, String)>, String> {
        let response = self.transport.send(outgoing.message).await.map_err(|e| format!("SMTP: {e}"))?;
        let reply = response.message().collect::<Vec<_>>().join(" ");
        tracing::info!(interaction, recipient = %outgoing.recipient, message_id = %outgoing.message_id, "mail sent");
        Ok(vec![("sent_message_id".into(), outgoing.message_id), ("smtp_response".into(), format!("{} {reply}", response.code()))])
    }
}

/// Builds the mail for an outbound interaction: an agent's reply (`reply_text`, `to`,
/// `subject`) or a standard response (`standard_response`, answering `reply_to_interaction`).
/// Threading: Message-ID `sb.<id>@<domain>`, In-Reply-To the answered mail, References its
/// chain, and `[ref:<answered id>]` in the subject. Everything that reaches a header is
/// cleaned of CR/LF and control characters first.
pub fn compose(i: &Interaction, board: &Board, library: &floor::library::Library, from: &Mailbox, domain: &str) -> Result<Outgoing, String> {
    let answered = i.properties.get("reply_to_interaction").and_then(|id| board.interaction(id));
    let answered_props = answered.map(|a| &a.properties);
    let answered_prop = |key: &str| answered_props.and_then(|p| p.get(key)).cloned();
    let prop = |key: &str| i.properties.get(key).cloned();

    let (subject, text, html, automatic) = if let Some(text) = prop("reply_text") {
        let subject = prop("subject").or_else(|| answered_prop("subject").map(|s| format!("Re: {s}"))).unwrap_or_default();
        (subject, text, None, false)
    } else if let Some(name) = prop("standard_response") {
        // RFC 3834: never answer automatic mail, whatever the workflow says.
        if let Some(why) = answered_prop("auto_submitted").filter(|v| v != "no") {
            return Err(format!("not answering automatic mail ({why})"));
        }
        let response = library.find(&name).ok_or_else(|| format!("no standard response named {name:?} in UCS"))?;
        let mut fields: BTreeMap<String, String> = answered_props.cloned().unwrap_or_default();
        if let Some(a) = answered {
            fields.insert("interaction_id".into(), a.id.clone());
        }
        let original_subject = prop("original_subject").or_else(|| answered_prop("subject")).unwrap_or_default();
        let subject = response.subject.as_deref().map(|s| fill(s, &fields)).unwrap_or_else(|| format!("Re: {original_subject}"));
        (subject, fill(&response.body_text, &fields), response.body_html.as_deref().map(|h| fill_html(h, &fields)), true)
    } else {
        return Err("neither reply_text nor standard_response: nothing to send".into());
    };

    let recipient_text = prop("to").or_else(|| prop("original_from")).or_else(|| answered_prop("from")).ok_or("no recipient (to)")?;
    let recipient: Mailbox = clean_header_text(&recipient_text).parse().map_err(|e| format!("recipient {recipient_text:?} is not an address: {e}"))?;

    let mut subject = clean_header_text(&subject);
    if let Some(a) = answered {
        let tag = subject_tag(&a.id);
        if !subject.contains(&tag) {
            subject = format!("{subject} {tag}").trim_start().to_owned();
        }
    }
    let message_id = outbound_message_id(&i.id, domain);
    let mut builder = Message::builder()
        .from(from.clone())
        .to(recipient.clone())
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date_now();
    let in_reply_to = prop("original_message_id").or_else(|| answered_prop("message_id").or_else(|| answered_prop("sent_message_id")));
    if let Some(parent) = in_reply_to.map(|m| clean_message_id(&m)).filter(|m| !m.is_empty()) {
        let mut chain: Vec<String> = answered_prop("references").unwrap_or_default().split_whitespace().map(clean_message_id).filter(|m| !m.is_empty()).collect();
        chain.retain(|m| *m != parent);
        chain.push(parent.clone());
        builder = builder.in_reply_to(format!("<{parent}>")).references(chain.iter().map(|m| format!("<{m}>")).collect::<Vec<_>>().join(" "));
    }
    if automatic {
        builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-replied".into()));
    }
    let message = match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
        None => builder.body(text),
    }
    .map_err(|e| format!("could not build the mail: {e}"))?;
    Ok(Outgoing { message, message_id, recipient: recipient.email.to_string() })
}

/// A Message-ID as stored (no brackets), safe inside `<…>`.
fn clean_message_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>')).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::event::{EventPayload, InteractionEvent, PlacedInQueue, Submitted};

    fn event(id: &str, offset: i64, index: i32, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: format!("{id}:{offset}:{index}"),
            interaction_id: id.to_owned(),
            occurred_at: 1_700_000_000_000 + offset,
            causation_id: format!("c{offset}"),
            command_partition: 0,
            command_offset: offset,
            index,
            set_size: 2,
            payload,
        }
    }

    /// `(id, parent, properties)` of each interaction.
    type Item<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

    fn board_with(items: &[Item<'_>]) -> Board {
        let mut board = Board::new();
        for (n, (id, parent, props)) in items.iter().enumerate() {
            let submitted = Submitted {
                media_type: MediaType::Email,
                origin: "test".into(),
                priority: 0,
                properties: props.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: parent.map(str::to_owned),
                submitted_by: "test".into(),
            };
            for (index, payload) in [
                EventPayload::Submitted(submitted),
                EventPayload::PlacedInQueue(PlacedInQueue { queue: "q".into(), previous_queue: None, reason: "submitted".into() }),
            ]
            .into_iter()
            .enumerate()
            {
                board.apply(&event(id, i64::try_from(n).unwrap(), i32::try_from(index).unwrap(), payload));
            }
        }
        board
    }

    /// The mail as sent, long header lines unfolded.
    fn render(outgoing: &Outgoing) -> String {
        String::from_utf8(outgoing.message.formatted()).unwrap().replace("\r\n ", " ")
    }

    #[test]
    fn a_reply_threads_and_tags_and_cannot_inject_headers() {
        let board = board_with(&[
            ("11111111-1111-1111-1111-111111111111", None, &[("subject", "Help"), ("from", "ada@example.com"), ("message_id", "m1@example.com"), ("references", "m0@example.com")]),
            (
                "22222222-2222-2222-2222-222222222222",
                Some("11111111-1111-1111-1111-111111111111"),
                &[
                    ("reply_to_interaction", "11111111-1111-1111-1111-111111111111"),
                    ("reply_text", "Here you are."),
                    ("subject", "Re: Help\r\nBcc: victim@example.com"),
                    ("to", "ada@example.com\r\nBcc: other@example.com"),
                ],
            ),
        ]);
        let i = board.interaction("22222222-2222-2222-2222-222222222222").unwrap();
        let from: Mailbox = "Support <support@shop.example>".parse().unwrap();
        let e = compose(i, &board, &floor::library::Library::default(), &from, "shop.example");
        // The injected recipient makes the address invalid: refused, not sent to anyone.
        assert!(e.as_ref().is_err_and(|e| e.contains("not an address")), "{e:?}");

        let mut board = board;
        board.apply(&event(
            "22222222-2222-2222-2222-222222222222",
            9,
            0,
            EventPayload::PropertiesChanged(contract::event::PropertiesChanged {
                set: [("to".to_owned(), "ada@example.com".to_owned())].into(),
                removed: vec![],
                priority: None,
            }),
        ));
        let i = board.interaction("22222222-2222-2222-2222-222222222222").unwrap();
        let out = compose(i, &board, &floor::library::Library::default(), &from, "shop.example").unwrap();
        let text = render(&out);
        assert!(text.contains("Message-ID: <sb.22222222-2222-2222-2222-222222222222@shop.example>"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.com>"), "{text}");
        assert!(text.contains("References: <m0@example.com> <m1@example.com>"), "{text}");
        assert!(text.contains("Subject: Re: Help Bcc: victim@example.com [ref:11111111-1111-1111-1111-111111111111]"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "no injected header: {text}");
        assert!(!text.contains("Auto-Submitted"), "{text}");
        assert_eq!(out.recipient, "ada@example.com");
    }

    /// A library with one standard response, "acknowledgement".
    fn library_with(subject: &str, body_text: &str, body_html: Option<&str>) -> floor::library::Library {
        let mut library = floor::library::Library::default();
        library.apply(&contract::ucs::UcsEvent {
            event_id: "e1".into(),
            key: "r1".into(),
            occurred_at: 0,
            issued_by: "test".into(),
            payload: contract::ucs::UcsPayload::StandardResponseSaved(contract::ucs::StandardResponseSaved {
                response_id: "r1".into(),
                name: "acknowledgement".into(),
                category_id: None,
                subject: Some(subject.into()),
                body_text: body_text.into(),
                body_html: body_html.map(Into::into),
                media: vec![],
            }),
        });
        library
    }

    #[test]
    fn an_acknowledgement_is_filled_marked_automatic_and_never_answers_automatic_mail() {
        let library = library_with("We have your mail: {{subject}}", "Dear {{from_name}}, we will answer soon.", None);
        let parent = "11111111-1111-1111-1111-111111111111";
        let board = board_with(&[
            (parent, None, &[("subject", "Help"), ("from", "ada@example.com"), ("from_name", "Ada"), ("message_id", "m1@example.com")]),
            ("33333333-3333-3333-3333-333333333333", Some(parent), &[("reply_to_interaction", parent), ("standard_response", "Acknowledgement"), ("original_from", "ada@example.com")]),
            ("44444444-4444-4444-4444-444444444444", None, &[("subject", "Out of office"), ("from", "bot@example.com"), ("auto_submitted", "auto-replied")]),
            ("55555555-5555-5555-5555-555555555555", None, &[("reply_to_interaction", "44444444-4444-4444-4444-444444444444"), ("standard_response", "acknowledgement")]),
        ]);
        let from: Mailbox = "support@shop.example".parse().unwrap();
        let out = compose(board.interaction("33333333-3333-3333-3333-333333333333").unwrap(), &board, &library, &from, "shop.example").unwrap();
        let text = render(&out);
        assert!(text.contains("Subject: We have your mail: Help [ref:11111111-1111-1111-1111-111111111111]"), "{text}");
        assert!(text.contains("Dear Ada, we will answer soon."), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.com>"), "{text}");
        let e = compose(board.interaction("55555555-5555-5555-5555-555555555555").unwrap(), &board, &library, &from, "shop.example").unwrap_err();
        assert!(e.contains("automatic mail"), "{e}");
    }

    #[test]
    fn merge_fields_in_an_html_response_are_escaped() {
        let library = library_with("We have your mail: {{subject}}", "Dear {{from_name}}, about {{subject}}.", Some("<p>Dear {{from_name}}, about {{subject}}.</p>"));
        let parent = "11111111-1111-1111-1111-111111111111";
        let board = board_with(&[
            (parent, None, &[("subject", "<form action=\"https://evil.example\">"), ("from", "ada@example.com"), ("from_name", "<a href=\"https://evil.example\">Ada</a>")]),
            ("33333333-3333-3333-3333-333333333333", Some(parent), &[("reply_to_interaction", parent), ("standard_response", "acknowledgement")]),
        ]);
        let from: Mailbox = "support@shop.example".parse().unwrap();
        let out = compose(board.interaction("33333333-3333-3333-3333-333333333333").unwrap(), &board, &library, &from, "shop.example").unwrap();
        let text = render(&out);
        let (plain, html) = text.split_once("Content-Type: text/html").unwrap_or_else(|| panic!("no HTML part: {text}"));
        assert!(html.contains("&lt;a href") && html.contains("&lt;form action"), "{html}");
        assert!(!html.contains("<a href") && !html.contains("<form"), "{html}");
        // Plain text is not markup: the name stays as the customer wrote it.
        assert!(plain.contains("Dear <a href"), "{plain}");
    }
}
