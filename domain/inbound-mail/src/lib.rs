//! Inbound mail: MIME parsed with `mail-parser`, then checked against limits, so every mail is
//! either an [`InboundMail`] or a [`Refusal`] with a reason a person can read (and an SMTP
//! reply code for the sender). Nothing here panics on any input (the fuzz target checks it).

use std::fmt;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message, as received.
    pub max_bytes: usize,
    /// MIME parts of every kind, nested messages included.
    pub max_parts: usize,
    /// Multipart and message/rfc822 nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: 10 * 1024 * 1024, max_parts: 100, max_depth: 10 }
    }
}

/// A mail as the contact center needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMail {
    /// Message-ID without angle brackets; for a mail without one, `sha256:<hex of the bytes>`
    /// (so the same bytes delivered twice are still one mail).
    pub message_id: String,
    pub from_address: String,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub subject: String,
    /// Message-IDs this mail answers (In-Reply-To, then References), without brackets.
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Why this mail is automatic (RFC 3834 `Auto-Submitted`, bulk `Precedence`, a null
    /// sender, a delivery report), if it is: it must never be acknowledged.
    pub automatic: Option<String>,
}

#[derive(Clone, PartialEq)]
pub struct Attachment {
    pub filename: Option<String>,
    pub mime_type: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("mime_type", &self.mime_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why a mail is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message has {count} MIME parts; the limit is {limit}")]
    TooManyParts { count: usize, limit: usize },
    #[error("MIME parts are nested {depth} deep; the limit is {limit}")]
    TooDeep { depth: usize, limit: usize },
    #[error("text in charset {charset:?} cannot be decoded (unknown charset and not UTF-8)")]
    Undecodable { charset: String },
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Acceptable as mail, but the contact store refused a part of it (e.g. an attachment
    /// over its blob size limit).
    #[error("the contact store cannot keep it: {0}")]
    NotStorable(String),
}

impl Refusal {
    /// The SMTP reply (code, enhanced status) for the sending server.
    pub fn smtp_status(&self) -> (u16, &'static str) {
        match self {
            Self::TooLarge { .. } => (552, "5.3.4"),
            Self::TooManyParts { .. } | Self::TooDeep { .. } => (554, "5.6.0"),
            Self::Undecodable { .. } => (554, "5.6.0"),
            Self::Malformed(_) => (550, "5.6.0"),
            Self::NotStorable(_) => (552, "5.3.4"),
        }
    }

    /// A short machine-readable kind, for dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooManyParts { .. } => "too_many_parts",
            Self::TooDeep { .. } => "too_deep",
            Self::Undecodable { .. } => "undecodable_charset",
            Self::Malformed(_) => "malformed",
            Self::NotStorable(_) => "not_storable",
        }
    }
}

/// Parses `raw` (as received, CRLF or LF line ends). `envelope_from` is the SMTP `MAIL FROM`
/// when there was one: an empty one (`<>`) marks a bounce.
pub fn parse(raw: &[u8], envelope_from: Option<&str>, limits: &Limits) -> Result<InboundMail, Refusal> {
    if raw.len() > limits.max_bytes {
        return Err(Refusal::TooLarge { size: raw.len(), limit: limits.max_bytes });
    }
    if !looks_like_headers(raw) {
        return Err(Refusal::Malformed("it does not start with header fields (\"Name: value\")".into()));
    }
    // mail-parser 0.11 has `debug_assert!`s that some broken multipart structures reach (the
    // fuzz target found one): in a build with debug assertions they panic. Such a mail is
    // malformed, not a reason to drop the connection.
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(raw))
        .map_err(|_| Refusal::Malformed("the MIME structure is inconsistent (parts that do not nest)".into()))?;
    let message = parsed.ok_or_else(|| Refusal::Malformed("no header fields could be read".into()))?;

    check_structure(&message, limits)?;

    let from = first_mailbox(message.from()).or_else(|| first_mailbox(message.sender()));
    let (from_address, from_name) = match from {
        Some((address, name)) => (address, name),
        None => match envelope_from.filter(|e| !e.is_empty()) {
            Some(envelope) => (envelope.to_owned(), None),
            None => return Err(Refusal::Malformed("no sender: the From header is missing or has no address".into())),
        },
    };
    if !from_address.contains('@') {
        return Err(Refusal::Malformed(format!("sender {from_address:?} is not an e-mail address")));
    }

    let message_id = message
        .message_id()
        .map(|id| clean_header_text(id.trim().trim_start_matches('<').trim_end_matches('>')))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(raw))));

    let text_body = message.text_bodies().filter_map(|p| p.text_contents()).find(|t| !t.is_empty()).map(str::to_owned);
    let html_body = message
        .html_bodies()
        .filter(|p| p.is_text_html())
        .filter_map(|p| p.text_contents())
        .next()
        .map(str::to_owned);
    let attachments = message
        .attachments()
        .filter(|p| !p.is_message())
        .map(|p| Attachment {
            filename: p.attachment_name().map(clean_header_text),
            mime_type: p
                .content_type()
                .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("octet-stream")).to_ascii_lowercase())
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes: p.contents().to_vec(),
        })
        .collect();

    Ok(InboundMail {
        message_id,
        from_address: clean_header_text(&from_address),
        from_name: from_name.map(|n| clean_header_text(&n)).filter(|n| !n.is_empty()),
        to: message
            .to()
            .map(|a| a.iter().filter_map(|m| m.address()).map(clean_header_text).collect())
            .unwrap_or_default(),
        subject: message.subject().map(clean_header_text).unwrap_or_default(),
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        text_body,
        html_body,
        attachments,
        automatic: automatic(&message, envelope_from),
    })
}

/// The first line must be a header field or an mbox/`Received` style line; mail-parser
/// accepts almost anything, so arbitrary bytes are refused here with a reason.
fn looks_like_headers(raw: &[u8]) -> bool {
    let first = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    match first.iter().position(|b| *b == b':') {
        Some(colon) => colon > 0 && first[..colon].iter().all(|b| b.is_ascii_graphic() && *b != b':'),
        None => false,
    }
}

fn check_structure(message: &mail_parser::Message<'_>, limits: &Limits) -> Result<(), Refusal> {
    // Walk parts and nested messages with an explicit stack (no recursion on input).
    let mut count = 0usize;
    let mut stack: Vec<(&mail_parser::Message<'_>, usize, usize)> = vec![(message, 0, 0)];
    while let Some((m, part_id, depth)) = stack.pop() {
        let Some(part) = m.parts.get(part_id) else { continue };
        count += 1;
        if count > limits.max_parts {
            return Err(Refusal::TooManyParts { count: total_parts(message), limit: limits.max_parts });
        }
        if depth > limits.max_depth {
            return Err(Refusal::TooDeep { depth, limit: limits.max_depth });
        }
        match &part.body {
            PartType::Multipart(children) => {
                if part.content_type().and_then(|ct| ct.attribute("boundary")).is_none_or(str::is_empty) {
                    return Err(Refusal::Malformed(format!("multipart part {part_id} has no boundary")));
                }
                for child in children {
                    stack.push((m, *child as usize, depth + 1));
                }
            }
            PartType::Message(nested) => stack.push((nested, 0, depth + 1)),
            PartType::Text(text) | PartType::Html(text) => {
                if text.contains('\u{FFFD}')
                    && let Some(charset) = part.content_type().and_then(|ct| ct.attribute("charset"))
                    && mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()).is_none()
                    && !charset.eq_ignore_ascii_case("utf-8")
                {
                    return Err(Refusal::Undecodable { charset: clean_header_text(charset) });
                }
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => {}
        }
    }
    Ok(())
}

fn total_parts(message: &mail_parser::Message<'_>) -> usize {
    let mut count = 0;
    let mut stack = vec![message];
    while let Some(m) = stack.pop() {
        count += m.parts.len();
        stack.extend(m.parts.iter().filter_map(|p| p.message()));
    }
    count
}

fn first_mailbox(address: Option<&Address<'_>>) -> Option<(String, Option<String>)> {
    let mailbox = address?.first()?;
    let addr = mailbox.address()?.trim();
    (!addr.is_empty()).then(|| (addr.to_owned(), mailbox.name().map(str::to_owned)))
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<String> = match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => vec![],
    };
    raw.iter()
        .map(|id| clean_header_text(id.trim().trim_start_matches('<').trim_end_matches('>')))
        .filter(|id| !id.is_empty())
        .collect()
}

/// RFC 3834 and common practice: mail that must not be answered automatically.
fn automatic(message: &mail_parser::Message<'_>, envelope_from: Option<&str>) -> Option<String> {
    if envelope_from.is_some_and(|e| e.trim().is_empty() || e.trim() == "<>") {
        return Some("null sender (a bounce)".into());
    }
    if let Some(value) = message.header_raw("Auto-Submitted").map(str::trim)
        && !value.eq_ignore_ascii_case("no")
        && !value.is_empty()
    {
        return Some(format!("Auto-Submitted: {value}"));
    }
    if let Some(value) = message.header_raw("Precedence").map(str::trim)
        && ["bulk", "junk", "list", "auto_reply"].iter().any(|p| value.eq_ignore_ascii_case(p))
    {
        return Some(format!("Precedence: {value}"));
    }
    if message.header_raw("X-Autoreply").is_some() || message.header_raw("X-Autorespond").is_some() {
        return Some("X-Autoreply header".into());
    }
    if message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
    }) {
        return Some("delivery or disposition report".into());
    }
    None
}

/// Text from a header, safe to put into another header: control characters (CR and LF
/// above all) become spaces, runs of whitespace one space.
pub fn clean_header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Found by the fuzz target: mail-parser's debug assertion on parts that do not nest.
    #[test]
    fn inconsistent_nesting_is_a_refusal_or_a_mail_never_a_panic() {
        let raw = include_bytes!("../tests/data/mail-parser-debug-assert.eml");
        let limits = Limits::default();
        match super::parse(raw, None, &limits) {
            Ok(mail) => assert_eq!(mail.from_address, "a@example.com"),
            Err(refusal) => assert!(refusal.to_string().contains("MIME structure"), "{refusal}"),
        }
    }

    use super::*;

    fn limits() -> Limits {
        Limits { max_bytes: 64 * 1024, max_parts: 20, max_depth: 4 }
    }

    const SIMPLE: &str = "From: Ada Lovelace <ada@example.com>\r\nTo: support@shop.example\r\nSubject: =?utf-8?q?Double_charge_=E2=82=AC?=\r\nMessage-ID: <m1@example.com>\r\nIn-Reply-To: <sb.42@shop.example>\r\nReferences: <first@example.com> <sb.42@shop.example>\r\n\r\nI was charged twice.\r\n";

    #[test]
    fn a_plain_mail_is_read() {
        let mail = parse(SIMPLE.as_bytes(), Some("ada@example.com"), &limits()).unwrap();
        assert_eq!(mail.message_id, "m1@example.com");
        assert_eq!(mail.from_address, "ada@example.com");
        assert_eq!(mail.from_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(mail.to, ["support@shop.example"]);
        assert_eq!(mail.subject, "Double charge €");
        assert_eq!(mail.in_reply_to, ["sb.42@shop.example"]);
        assert_eq!(mail.references, ["first@example.com", "sb.42@shop.example"]);
        assert_eq!(mail.text_body.as_deref().map(str::trim), Some("I was charged twice."));
        assert_eq!(mail.automatic, None);
    }

    #[test]
    fn multipart_with_html_attachment_and_latin1() {
        let raw = "From: b@example.com\r\nSubject: pics\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: multipart/alternative; boundary=\"Y\"\r\n\r\n--Y\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n--Y\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\u{e9}</p>\r\n--Y--\r\n--X\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"a.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--X--\r\n";
        let mail = parse(raw.as_bytes(), None, &limits()).unwrap();
        assert_eq!(mail.text_body.as_deref().map(str::trim), Some("Café"));
        assert!(mail.html_body.as_deref().is_some_and(|h| h.contains("<p>Café</p>")), "{mail:?}");
        assert_eq!(mail.attachments.len(), 1);
        assert_eq!(mail.attachments[0].filename.as_deref(), Some("a.png"));
        assert_eq!(mail.attachments[0].mime_type, "image/png");
        assert_eq!(mail.attachments[0].bytes, b"\x89PNG\r\n\x1a\n");
        assert!(mail.message_id.starts_with("sha256:"), "no Message-ID: derived from the bytes");
    }

    #[test]
    fn refusals_say_why() {
        let big = format!("From: a@example.com\r\n\r\n{}", "x".repeat(70 * 1024));
        assert_eq!(parse(big.as_bytes(), None, &limits()), Err(Refusal::TooLarge { size: big.len(), limit: 64 * 1024 }));

        let garbage = b"\x00\x01binary junk without headers";
        assert!(matches!(parse(garbage, None, &limits()), Err(Refusal::Malformed(r)) if r.contains("header fields")));

        let no_from = "Subject: hi\r\n\r\nbody\r\n";
        assert!(matches!(parse(no_from.as_bytes(), None, &limits()), Err(Refusal::Malformed(r)) if r.contains("no sender")));

        let mut deep = String::from("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
        for level in 1..=6 {
            deep.push_str(&format!("--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n", level - 1));
        }
        deep.push_str("--b6\r\nContent-Type: text/plain\r\n\r\nhi\r\n");
        for level in (0..=6).rev() {
            deep.push_str(&format!("--b{level}--\r\n"));
        }
        assert!(matches!(parse(deep.as_bytes(), None, &limits()), Err(Refusal::TooDeep { limit: 4, .. })), "{:?}", parse(deep.as_bytes(), None, &limits()));

        let mut many = String::from("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n");
        for n in 0..30 {
            many.push_str(&format!("--B\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n"));
        }
        many.push_str("--B--\r\n");
        assert!(matches!(parse(many.as_bytes(), None, &limits()), Err(Refusal::TooManyParts { limit: 20, .. })));

        let unknown = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-martian\r\n\r\n\xff\xfe\xfd text\r\n";
        assert_eq!(parse(unknown, None, &limits()), Err(Refusal::Undecodable { charset: "x-martian".into() }));
        // An unknown charset over plain ASCII loses nothing: accepted.
        let ascii = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-martian\r\n\r\nplain text\r\n";
        assert!(parse(ascii, None, &limits()).is_ok());

        let no_boundary = "From: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\nwhat\r\n";
        let got = parse(no_boundary.as_bytes(), None, &limits());
        assert!(matches!(&got, Err(Refusal::Malformed(r)) if r.contains("boundary")) || got.is_ok(), "{got:?}");
    }

    #[test]
    fn automatic_mail_is_recognised() {
        let auto = "From: a@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\naway\r\n";
        assert_eq!(parse(auto.as_bytes(), None, &limits()).unwrap().automatic.as_deref(), Some("Auto-Submitted: auto-replied"));
        let no = "From: a@example.com\r\nAuto-Submitted: no\r\n\r\nhi\r\n";
        assert_eq!(parse(no.as_bytes(), None, &limits()).unwrap().automatic, None);
        let bulk = "From: a@example.com\r\nPrecedence: bulk\r\n\r\nhi\r\n";
        assert!(parse(bulk.as_bytes(), None, &limits()).unwrap().automatic.is_some());
        let bounce = "From: MAILER-DAEMON@example.com\r\n\r\nfailed\r\n";
        assert!(parse(bounce.as_bytes(), Some(""), &limits()).unwrap().automatic.is_some());
    }

    #[test]
    fn header_text_cannot_carry_line_breaks() {
        assert_eq!(clean_header_text("Hello\r\nBcc: victim@example.com"), "Hello Bcc: victim@example.com");
        assert_eq!(clean_header_text("  a \t b\u{0}c\n"), "a b c");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse(&raw, None, &limits());
        }

        #[test]
        fn never_panics_on_mime_like_input(body in "(From: a@b\r\n)?(Content-Type: multipart/(mixed|alternative); boundary=\"?[a-c]\"?\r\n)?\r\n(--[a-c]\r\n(Content-Type: [a-z]+/[a-z]+(; charset=[a-z0-9-]+)?\r\n)?\r\n[ -~]{0,20}\r\n){0,6}(--[a-c]--)?") {
            let _ = parse(body.as_bytes(), None, &limits());
        }
    }
}
