//! The SMS channel's settings, `[sms]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use runtime::config::{ConfigError, REDACTED, string_secret_from_file};


/// The SMS channel (`switchboard run sms-server`), `[sms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// The gateway protocol: "twilio" (Twilio-compatible webhooks and REST API).
    pub gateway: String,
    pub account_sid: String,
    /// Signs the gateway's webhooks (checked on every one) and authenticates our sends.
    pub auth_token: String,
    /// A file holding `auth_token`.
    pub auth_token_file: Option<PathBuf>,
    pub api_base: String,
    /// Our number, the sender of what we send.
    pub from_number: String,
    /// The base URL the gateway calls us at, as it signs it (behind a proxy this is not our
    /// listen address); unset: this process's own HTTP address.
    pub public_url: Option<String>,
    /// Region for numbers without `+` and country code (ISO 3166, e.g. "GB").
    pub default_region: Option<String>,
    pub inbound_queue: String,
    /// Session mode: an SMS from a number with an active SMS session goes into it, any other
    /// starts one (a chat session, submitted to `session_queue`), and agents' chat messages
    /// go back by SMS. Off: paging mode, every SMS a new interaction in `inbound_queue`.
    pub session_mode: bool,
    pub session_queue: String,
    /// Hosts MMS media may be fetched from (exact names, or `*.example.com` for its
    /// subdomains), always over https; the gateway's credentials go to these only, and a
    /// redirect elsewhere is refused. Empty: the host of `api_base`. Twilio serves media from
    /// `api.twilio.com`, which redirects to its media CDN: list that host too.
    pub media_hosts: Vec<String>,
    /// An extra CA certificate (PEM) trusted for the gateway's API and media, for a gateway
    /// behind a private CA; the system's roots are trusted as well.
    pub ca_file: Option<PathBuf>,
    /// MMS limits: all parts together, number of parts.
    pub mms_max_bytes: usize,
    pub mms_max_parts: usize,
    /// UCS base URL (MMS parts are stored there); unset: this process's own HTTP address.
    pub ucs_url: Option<String>,
    /// Longest text accepted to send (characters; the gateway splits it into segments).
    pub max_text_chars: usize,
    /// The send queue replies and paging wait in (shared with e-mail; each sender takes its
    /// own media), and where it goes after `max_attempts`.
    pub send_queue: String,
    pub failed_queue: String,
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A message due for sending that another sender instance locked and left unchanged this
    /// long is taken over (that instance is taken for gone). A live sender sends within a
    /// second of a message being due; make this longer than the slowest send.
    pub takeover_after_s: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            gateway: "twilio".into(),
            account_sid: String::new(),
            auth_token: String::new(),
            auth_token_file: None,
            api_base: "https://api.twilio.com".into(),
            from_number: String::new(),
            public_url: None,
            default_region: None,
            inbound_queue: "sms-inbound".into(),
            session_mode: false,
            session_queue: "chat-inbound".into(),
            media_hosts: Vec::new(),
            ca_file: None,
            mms_max_bytes: 5 * 1024 * 1024,
            mms_max_parts: 20,
            ucs_url: None,
            max_text_chars: 1600,
            send_queue: "outbound-send".into(),
            failed_queue: "send-failed".into(),
            max_attempts: 5,
            retry_initial_ms: 30_000,
            retry_max_ms: 15 * 60_000,
            takeover_after_s: 120,
        }
    }
}

impl runtime::config::Section for SmsSettings {
    const NAME: &'static str = "sms";

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        string_secret_from_file(&mut self.auth_token, self.auth_token_file.take(), "sms.auth_token")
    }

    fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if !copy.auth_token.is_empty() {
            copy.auth_token = REDACTED.into();
        }
        copy
    }
}
