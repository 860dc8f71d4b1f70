//! The whole configuration: the settings every process shares (`runtime::config::Settings`)
//! and each service's own section, defined by the service's crate. Only the binary knows them
//! all: it loads, checks and prints the whole, and hands each service its section through the
//! `Context`.
//!
//! Layered lowest to highest: built-in defaults, the TOML file (`switchboard.toml` or
//! `--config`), `SWITCHBOARD_*` environment variables (`__` separates tables, e.g.
//! `SWITCHBOARD_UCS__BATCH_SIZE`), then command-line flags. A key no table knows is refused.

use std::path::Path;

use figment::Provider as _;
use runtime::config::{ConfigError, Figment, Section};
use serde::Serialize;

/// Every table of `switchboard.toml`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub shared: runtime::config::Settings,
    pub interaction_server: interaction_server::InteractionServerSettings,
    pub ucs: ucs::UcsSettings,
    pub router: router::RouterSettings,
    pub stats: floor::StatsSettings,
    pub desk: desk::DeskSettings,
    pub email: email::EmailSettings,
    pub chat: chat_server::ChatSettings,
    pub sms: sms_server::SmsSettings,
}

impl std::ops::Deref for Settings {
    type Target = runtime::config::Settings;
    fn deref(&self) -> &Self::Target {
        &self.shared
    }
}

impl std::ops::DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.shared
    }
}

/// Adds `T`'s table to `known` and reads it from `figment`, secrets resolved.
fn section<T: Section>(figment: &Figment, known: &mut Vec<&'static str>) -> Result<T, ConfigError> {
    known.push(T::NAME);
    let mut section: T = figment.extract_inner(T::NAME).map_err(|e| ConfigError::Invalid(Box::new(e)))?;
    section.resolve_secrets()?;
    Ok(section)
}

impl Settings {
    pub fn load(file: Option<&Path>, overrides: impl FnOnce(Figment) -> Figment) -> Result<Self, ConfigError> {
        let figment = overrides(runtime::config::Settings::layers(Settings::default(), file));
        Self::from_figment(&figment)
    }

    fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut known: Vec<&'static str> = Vec::new();
        let mut settings = Self {
            shared: runtime::config::Settings::extract(figment)?,
            interaction_server: section(figment, &mut known)?,
            ucs: section(figment, &mut known)?,
            router: section(figment, &mut known)?,
            stats: section(figment, &mut known)?,
            desk: section(figment, &mut known)?,
            email: section(figment, &mut known)?,
            chat: section(figment, &mut known)?,
            sms: section(figment, &mut known)?,
        };
        // The shared settings' own tables and keys.
        let shared = serde_json::to_value(&settings.shared).map_err(|e| ConfigError::Secret(e.to_string()))?;
        let shared_keys: Vec<String> = shared.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let given = figment.data().map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        for dict in given.values() {
            if let Some(unknown) = dict.keys().find(|k| !known.contains(&k.as_str()) && !shared_keys.contains(k)) {
                return Err(ConfigError::Invalid(Box::new(figment::Error::from(format!(
                    "unknown setting `{unknown}`: the tables are {}",
                    shared_keys.iter().map(String::as_str).chain(known.iter().copied()).collect::<Vec<_>>().join(", ")
                )))));
            }
        }
        settings.shared.desk_secret_file = settings.desk.session_secret_file.clone();
        settings.shared.workflow_file = settings.router.workflow.clone();
        Ok(settings)
    }

    /// A copy fit to print or log: every password, token, key and header value is `***`.
    pub fn redacted(&self) -> Self {
        Self {
            shared: self.shared.redacted(),
            interaction_server: self.interaction_server.redacted(),
            ucs: self.ucs.redacted(),
            router: self.router.redacted(),
            stats: self.stats.redacted(),
            desk: self.desk.redacted(),
            email: self.email.redacted(),
            chat: self.chat.redacted(),
            sms: self.sms.redacted(),
        }
    }

    /// The context a process's services are made with: the shared settings and every section.
    pub fn context(&self, topics: runtime::topics::Topics, shutdown: runtime::CancellationToken) -> runtime::service::Context {
        runtime::service::Context::new(self.shared.clone(), topics, shutdown)
            .with_section(self.interaction_server.clone())
            .with_section(self.ucs.clone())
            .with_section(self.router.clone())
            .with_section(self.stats.clone())
            .with_section(self.desk.clone())
            .with_section(self.email.clone())
            .with_section(self.chat.clone())
            .with_section(self.sms.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // figment's `Jail` closure returns its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("switchboard.toml");
        std::fs::write(&config, toml).unwrap();
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            for (k, v) in env {
                jail.set_env(k, v);
            }
            loaded = Some(Settings::load(Some(&config), |f| f).map_err(|e| e.to_string()));
            Ok(())
        });
        loaded.unwrap()
    }

    #[test]
    fn every_section_is_read_from_file_and_environment_and_secrets_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db-url");
        std::fs::write(&db, "postgres://ucs:db-s3cret@db/ucs\n").unwrap();
        let settings = load(
            &format!("[ucs]\ndatabase_url_file = \"{}\"\nbatch_size = 7\n[desk]\nsession_secret_file = \"/keys/desk\"\n", db.display()),
            &[("SWITCHBOARD_SMS__AUTH_TOKEN", "token-s3cret"), ("SWITCHBOARD_EMAIL__IMAP__PASSWORD", "imap-s3cret"), ("SWITCHBOARD_ROUTER__TICK_MS", "55"), ("SWITCHBOARD_HTTP__SERVICE_KEY", "sbk_key-s3cret")],
        )
        .unwrap();
        assert_eq!(settings.ucs.database_url.as_deref(), Some("postgres://ucs:db-s3cret@db/ucs"));
        assert_eq!(settings.ucs.batch_size, 7);
        assert_eq!(settings.router.tick_ms, 55);
        assert_eq!(settings.sms.auth_token, "token-s3cret");
        // The chat server checks the desk's tokens with the key the desk's section names.
        assert_eq!(settings.desk_secret_file(), Path::new("/keys/desk"));
        let ctx = settings.context(runtime::topics::Topics::load(None, "").unwrap(), runtime::CancellationToken::new());
        assert_eq!(ctx.section::<router::RouterSettings>().tick_ms, 55);
        assert_eq!(ctx.section::<ucs::UcsSettings>().batch_size, 7);
        let printed = toml::to_string_pretty(&settings.redacted()).unwrap();
        assert_eq!(settings.http.service_key.as_deref(), Some("sbk_key-s3cret"));
        for secret in ["db-s3cret", "token-s3cret", "imap-s3cret", "key-s3cret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("postgres://ucs:***@db/ucs"), "{printed}");
        // What is printed loads again as it was (all tables at their places).
        let again = load(&printed, &[]).unwrap();
        assert_eq!(again.ucs.batch_size, 7);
    }

    #[test]
    fn unknown_tables_and_keys_are_refused_with_their_name() {
        let refused = load("[ucs]\nbatch_sise = 7\n", &[]).unwrap_err();
        assert!(refused.contains("batch_sise"), "{refused}");
        let refused = load("[uc]\nbatch_size = 7\n", &[]).unwrap_err();
        assert!(refused.contains("unknown setting `uc`"), "{refused}");
        let refused = load("", &[("SWITCHBOARD_BENCH_BROKER", "tansu")]).unwrap_err();
        assert!(refused.contains("bench_broker"), "{refused}");
        let refused = load("[kafka]\nbootstrap = \"x\"\n", &[]).unwrap_err();
        assert!(refused.contains("bootstrap"), "{refused}");
    }
}
