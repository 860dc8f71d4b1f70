//! The e-mail channel's settings, `[email]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use runtime::config::{ConfigError, REDACTED, secret_from_file, string_secret_from_file};


/// The e-mail channel (`switchboard run email`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// Where the SMTP listener accepts mail relayed by the enterprise mail server; unset: no
    /// listener.
    pub smtp_listen: Option<std::net::SocketAddr>,
    /// Most SMTP connections served at once; one more is answered `421` and closed.
    pub smtp_max_connections: usize,
    /// Networks (CIDR) allowed to hand mail to the listener: the enterprise mail server's.
    /// Any other peer is answered `554` at connect. Default: loopback only.
    pub smtp_relay_networks: Vec<String>,
    /// Recipient domains the listener takes mail for (`RCPT TO`); any other is `550`, so it
    /// never relays. Empty: `domain` only.
    pub smtp_recipient_domains: Vec<String>,
    /// A certificate chain and its key (PEM) for STARTTLS on the SMTP listener; unset: plain
    /// SMTP only (on a network the mail server and Switchboard share).
    pub smtp_tls_cert_file: Option<std::path::PathBuf>,
    pub smtp_tls_key_file: Option<std::path::PathBuf>,
    /// With STARTTLS configured: refuse mail from a client that did not start TLS (`530`).
    pub smtp_require_tls: bool,
    /// Name the listener greets with and the domain of the Message-IDs of mail we send.
    pub domain: String,
    /// UCS base URL (bodies and attachments are stored there before the interaction is
    /// submitted); unset: this process's own HTTP address (UCS runs in it under `up`).
    pub ucs_url: Option<String>,
    /// Queue new inbound mail is submitted to.
    pub inbound_queue: String,
    /// Limits on inbound mail.
    pub max_message_bytes: usize,
    pub max_parts: usize,
    pub max_depth: usize,
    /// Sending replies, acknowledgements and auto-responses.
    pub outbound: OutboundMailSettings,
    /// Polling a mailbox of the enterprise mail server.
    pub imap: ImapSettings,
}

/// How a connection to a mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain TCP (loopback and tests only).
    None,
    /// Plain TCP upgraded with STARTTLS (SMTP submission, port 587).
    Starttls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Tls,
}

/// The outbound sender (`[email.outbound]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundMailSettings {
    /// SMTP server mail is sent through; unset: nothing is sent (mail waits in `send_queue`).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub tls: MailTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding `password`.
    pub password_file: Option<PathBuf>,
    /// The From of every mail sent, e.g. `Customer Service <support@example.com>`.
    pub from: String,
    /// Queue of mail ready to send (where QA approval or the `respond` step puts it).
    pub send_queue: String,
    /// Queue a mail moves to when every attempt failed (the workflow routes it back to its author).
    pub failed_queue: String,
    /// Attempts before giving up, and the back-off between them (doubling, capped).
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A message due for sending that another sender instance locked and left unchanged this
    /// long is taken over (that instance is taken for gone). A live sender sends within a
    /// second of a message being due; make this longer than the slowest send.
    pub takeover_after_s: u64,
    /// Per SMTP conversation.
    pub timeout_s: u64,
}

impl Default for OutboundMailSettings {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: 587,
            tls: MailTls::Starttls,
            username: None,
            password: None,
            password_file: None,
            from: "Customer Service <support@switchboard.localhost>".into(),
            send_queue: "outbound-send".into(),
            failed_queue: "send-failed".into(),
            max_attempts: 5,
            retry_initial_ms: 30_000,
            retry_max_ms: 15 * 60_000,
            takeover_after_s: 120,
            timeout_s: 60,
        }
    }
}

/// What the IMAP poller does with a mail once its interaction is on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterAccept {
    /// Flag it `\Deleted` and expunge.
    Delete,
    /// Give it the keyword `$SwitchboardQueued` and leave it.
    Flag,
}

/// The IMAP poller (`[email.imap]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapSettings {
    /// IMAP server; unset: no polling.
    pub host: Option<String>,
    pub port: u16,
    /// `tls` or `none` (STARTTLS is not offered for IMAP here).
    pub tls: MailTls,
    pub username: String,
    pub password: String,
    /// A file holding `password`.
    pub password_file: Option<PathBuf>,
    pub mailbox: String,
    pub poll_interval_ms: u64,
    pub after_accept: AfterAccept,
    /// Mails fetched per poll at most.
    pub batch: u32,
}

impl Default for ImapSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: 993,
            tls: MailTls::Tls,
            username: String::new(),
            password: String::new(),
            password_file: None,
            mailbox: "INBOX".into(),
            poll_interval_ms: 30_000,
            after_accept: AfterAccept::Flag,
            batch: 50,
        }
    }
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            smtp_listen: None,
            smtp_max_connections: 100,
            smtp_relay_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            smtp_recipient_domains: Vec::new(),
            smtp_tls_cert_file: None,
            smtp_tls_key_file: None,
            smtp_require_tls: false,
            domain: "switchboard.localhost".into(),
            ucs_url: None,
            inbound_queue: "inbound".into(),
            max_message_bytes: 10 * 1024 * 1024,
            max_parts: 100,
            max_depth: 10,
            outbound: OutboundMailSettings::default(),
            imap: ImapSettings::default(),
        }
    }
}

impl runtime::config::Section for EmailSettings {
    const NAME: &'static str = "email";

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let outbound = &mut self.outbound;
        secret_from_file(&mut outbound.password, outbound.password_file.take(), "email.outbound.password")?;
        let imap = &mut self.imap;
        string_secret_from_file(&mut imap.password, imap.password_file.take(), "email.imap.password")
    }

    fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if copy.outbound.password.is_some() {
            copy.outbound.password = Some(REDACTED.into());
        }
        if !copy.imap.password.is_empty() {
            copy.imap.password = REDACTED.into();
        }
        copy
    }
}
