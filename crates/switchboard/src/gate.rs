//! Who is calling: the process's [`runtime::routes::Gatekeeper`], from the desk's session
//! keys (a desk session's token, in the header or the login's cookie), checked against the
//! staff directory (`staff.events`: the session not logged out, the user not removed or
//! disabled, the role as it is now) once the directory has read everything written before
//! the request, and the service keys (`[http] service_keys_file`, and under `up` the
//! process's own key). The keys file is read
//! again when it changes (looked at no more than once a second), so `switchboard service-key
//! add|remove` takes effect on every process that reads it without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use runtime::routes::Caller;
use futures::future::BoxFuture;
use staff_auth::auth::SessionKeys;
use staff_auth::shared::SharedDirectory;
use staff_auth::service_keys::ServiceKeys;

/// How often the keys file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

pub struct Gatekeeper {
    sessions: SessionKeys,
    /// `None` only in unit tests: a valid signature is then enough.
    directory: Option<Arc<SharedDirectory>>,
    keys: Mutex<LoadedKeys>,
    own_key: Option<String>,
    recheck: Duration,
}

struct LoadedKeys {
    file: Option<PathBuf>,
    keys: ServiceKeys,
    modified: Option<SystemTime>,
    checked: Instant,
}

fn modified(file: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

impl Gatekeeper {
    /// A gatekeeper of desk sessions and of `services` only (no file behind them).
    pub fn new(sessions: SessionKeys, services: ServiceKeys) -> Self {
        Self { sessions, directory: None, keys: Mutex::new(LoadedKeys { file: None, keys: services, modified: None, checked: Instant::now() }), own_key: None, recheck: RECHECK }
    }

    /// A gatekeeper of desk sessions, the keys in `file` (read again when it changes) and
    /// this process's `own_key`.
    pub fn with_keys_file(sessions: SessionKeys, file: PathBuf, own_key: Option<String>) -> Result<Self, staff_auth::service_keys::ServiceKeyError> {
        let stamp = modified(&file);
        let mut keys = ServiceKeys::load(&file)?;
        if let Some(key) = &own_key {
            keys.accept(key, "this process", &staff_auth::service_keys::SCOPES);
        }
        Ok(Self { sessions, directory: None, keys: Mutex::new(LoadedKeys { file: Some(file), keys, modified: stamp, checked: Instant::now() }), own_key, recheck: RECHECK })
    }

    /// Desk sessions are checked against `directory`.
    #[must_use]
    pub fn with_directory(mut self, directory: Arc<SharedDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }

    fn service_key_holder(&self, key: &str) -> Option<staff_auth::service_keys::Holder> {
        let mut loaded = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(file) = loaded.file.clone().filter(|_| loaded.checked.elapsed() >= self.recheck) {
            loaded.checked = Instant::now();
            let stamp = modified(&file);
            if stamp != loaded.modified {
                match ServiceKeys::load(&file) {
                    Ok(mut keys) => {
                        if let Some(own) = &self.own_key {
                            keys.accept(own, "this process", &staff_auth::service_keys::SCOPES);
                        }
                        loaded.keys = keys;
                        loaded.modified = stamp;
                        tracing::info!(file = %file.display(), "service keys read again");
                    }
                    // A half-edited file: keep the keys we have, say why (once per change).
                    Err(e) => {
                        loaded.modified = stamp;
                        tracing::warn!(error = %e, "service keys file unreadable; keeping the keys loaded before");
                    }
                }
            }
        }
        loaded.keys.holder(key).cloned()
    }
}

impl Gatekeeper {
    async fn of_token(&self, token: &str) -> Caller {
        if let Some(holder) = self.service_key_holder(token) {
            return Caller::Service { name: holder.name, scopes: holder.scopes };
        }
        let Ok(session) = self.sessions.verify(token, contract::now_millis()) else { return Caller::Anonymous };
        let role = match &self.directory {
            None => session.role,
            Some(directory) => {
                directory.current().await;
                match directory.read().check(&session) {
                    Ok(member) => member.role,
                    Err(why) => {
                        tracing::info!(user = %session.user, %why, "desk session refused");
                        return Caller::Anonymous;
                    }
                }
            }
        };
        Caller::Staff { user: session.user, role: role.into() }
    }
}

impl runtime::routes::Gatekeeper for Gatekeeper {
    fn caller<'a>(&'a self, request: &'a axum::http::request::Parts) -> BoxFuture<'a, Caller> {
        Box::pin(async move {
            match runtime::routes::presented_token(request) {
                Some(token) => self.of_token(&token).await,
                None => Caller::Anonymous,
            }
        })
    }

    fn token_caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Caller> {
        Box::pin(self.of_token(token))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use runtime::routes::{Gatekeeper as _, StaffRole};
    use staff_auth::users::Role;

    use super::*;

    fn with_bearer(token: &str) -> axum::http::request::Parts {
        axum::http::Request::get("/x").header("authorization", format!("Bearer {token}")).body(()).unwrap().into_parts().0
    }

    #[test]
    fn keys_added_and_removed_in_the_file_count_without_a_restart_and_the_own_key_stays() {
        futures::executor::block_on(keys_added_and_removed());
    }

    async fn keys_added_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("service-keys.toml");
        let sessions = SessionKeys::new(vec![7; 32]);
        let first = staff_auth::service_keys::add(&file, "email", &["read".into(), "write".into()]).unwrap();
        let own = staff_auth::service_keys::generate();
        let mut gate = Gatekeeper::with_keys_file(sessions.clone(), file.clone(), Some(own.clone())).unwrap();
        gate.recheck = Duration::ZERO;
        assert!(matches!(gate.caller(&with_bearer(&first)).await, Caller::Service { name, .. } if name == "email"));
        // Another key added, the first removed: the file's times differ by the rewrite.
        std::thread::sleep(Duration::from_millis(20));
        let second = staff_auth::service_keys::add(&file, "sms", &["write".into()]).unwrap();
        assert!(staff_auth::service_keys::remove(&file, "email").unwrap());
        assert_eq!(gate.caller(&with_bearer(&first)).await, Caller::Anonymous, "a removed key still let in");
        assert!(matches!(gate.caller(&with_bearer(&second)).await, Caller::Service { name, .. } if name == "sms"));
        assert!(matches!(gate.caller(&with_bearer(&own)).await, Caller::Service { .. }), "the process's own key was lost on reload");
        // A broken file keeps what was loaded.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "not toml [").unwrap();
        assert!(matches!(gate.caller(&with_bearer(&second)).await, Caller::Service { .. }));
        // Desk sessions as before.
        let (token, _) = sessions.issue("sue", Role::Supervisor, contract::now_millis(), contract::now_millis() + 60_000);
        assert_eq!(gate.caller(&with_bearer(&token)).await, Caller::Staff { user: "sue".into(), role: StaffRole::Supervisor });
    }
}
