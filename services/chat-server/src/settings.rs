//! The chat server's settings, `[chat]`.

use serde::{Deserialize, Serialize};


/// The chat server (`switchboard run chat-server`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Queue new chats are submitted to.
    pub inbound_queue: String,
    /// Largest message text accepted, in bytes.
    pub max_message_bytes: usize,
    /// Frames a connection may send per `rate_window_ms` before they are refused.
    pub max_frames_per_window: u32,
    pub rate_window_ms: u64,
    /// Browser origins allowed to open a WebSocket (exact `scheme://host[:port]`); empty:
    /// only clients that send no Origin (not browsers).
    pub allowed_origins: Vec<String>,
    /// System message to the customer when a chat starts (`{{customer_name}}`,
    /// `{{subject}}` filled); empty: none.
    pub greeting: String,
    /// Tell a waiting customer their place in the queue whenever it changes.
    pub queue_position_notices: bool,
    /// While an agent is in the chat and nobody has written for this long, a warning is
    /// posted; `idle_timeout_s` after the last message the chat ends. 0: no idle timeout.
    pub idle_warning_s: u64,
    pub idle_timeout_s: u64,
    /// Queue a transcript mail is submitted to (the e-mail sender's `send_queue`).
    pub transcript_queue: String,
    /// UCS base URL (a customer who gives an e-mail address is found or created as a
    /// contact there); unset: this process's own HTTP address (UCS runs in it under `up`).
    pub ucs_url: Option<String>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            inbound_queue: "chat-inbound".into(),
            max_message_bytes: 4096,
            max_frames_per_window: 20,
            rate_window_ms: 10_000,
            allowed_origins: Vec::new(),
            greeting: "Hello {{customer_name}}, thank you for contacting us. An agent will be with you shortly.".into(),
            queue_position_notices: true,
            idle_warning_s: 240,
            idle_timeout_s: 300,
            transcript_queue: "outbound-send".into(),
            ucs_url: None,
        }
    }
}

impl runtime::config::Section for ChatSettings {
    const NAME: &'static str = "chat";
}
