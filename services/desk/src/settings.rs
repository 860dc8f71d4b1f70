//! The desk's settings, `[desk]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;


#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskSettings {
    /// Agents and supervisors who may log in to the desk (TOML, `[[user]]` with an argon2
    /// `password_hash`); unset: `<data_dir>/desk-users.toml`.
    pub users_file: Option<PathBuf>,
    /// Key that signs session tokens; unset: a random key kept in `<data_dir>/desk-secret`.
    pub session_secret_file: Option<PathBuf>,
    pub session_hours: u64,
    /// Queue where released replies go (the workflow's QA step usually watches it).
    pub outbound_queue: String,
    /// Queue a supervisor's QA return sends a reply to (routed back to its author).
    pub qa_returned_queue: String,
    /// Queue an approved reply goes to, for the channel to send.
    pub send_queue: String,
    /// An agent whose every event stream has been closed this long is logged out.
    pub disconnect_grace_s: u64,
    /// Largest reply text accepted, in bytes.
    pub max_reply_bytes: usize,
    /// Failed logins before a user name is locked out (whether it exists or not), and before
    /// a client address is, within `login_failure_window_s`; the lockout lasts
    /// `login_lockout_s`.
    pub login_max_failures_per_user: u32,
    pub login_max_failures_per_address: u32,
    pub login_failure_window_s: u64,
    pub login_lockout_s: u64,
}

impl DeskSettings {
    pub fn login_limits(&self) -> staff_auth::throttle::Limits {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        staff_auth::throttle::Limits {
            max_failures_per_user: self.login_max_failures_per_user.max(1),
            max_failures_per_address: self.login_max_failures_per_address.max(1),
            window_ms: ms(self.login_failure_window_s),
            lockout_ms: ms(self.login_lockout_s),
        }
    }
}

impl Default for DeskSettings {
    fn default() -> Self {
        Self {
            users_file: None,
            session_secret_file: None,
            session_hours: 12,
            outbound_queue: "outbound".into(),
            qa_returned_queue: "qa-returned".into(),
            send_queue: "outbound-send".into(),
            disconnect_grace_s: 30,
            max_reply_bytes: 64 * 1024,
            login_max_failures_per_user: 5,
            login_max_failures_per_address: 20,
            login_failure_window_s: 15 * 60,
            login_lockout_s: 5 * 60,
        }
    }
}

impl runtime::config::Section for DeskSettings {
    const NAME: &'static str = "desk";
}
