//! Who is calling: the process's [`runtime::routes::Gatekeeper`], from the desk's session
//! keys (a desk session's token, in the header or the login's cookie) and the service keys
//! (`[http] service_keys_file`, and under `up` the process's own key).

use runtime::routes::{Caller, StaffRole};
use staff_auth::auth::SessionKeys;
use staff_auth::service_keys::ServiceKeys;
use staff_auth::users::Role;

pub struct Gatekeeper {
    sessions: SessionKeys,
    services: ServiceKeys,
}

impl Gatekeeper {
    pub fn new(sessions: SessionKeys, services: ServiceKeys) -> Self {
        Self { sessions, services }
    }
}

impl runtime::routes::Gatekeeper for Gatekeeper {
    fn caller(&self, request: &axum::http::request::Parts) -> Caller {
        let Some(token) = runtime::routes::presented_token(request) else { return Caller::Anonymous };
        if let Some(holder) = self.services.holder(&token) {
            return Caller::Service { name: holder.name.clone(), scopes: holder.scopes.clone() };
        }
        match self.sessions.verify(&token, contract::now_millis()) {
            Ok(session) => Caller::Staff {
                user: session.user,
                role: match session.role {
                    Role::Agent => StaffRole::Agent,
                    Role::Supervisor => StaffRole::Supervisor,
                    Role::Admin => StaffRole::Admin,
                },
            },
            Err(_) => Caller::Anonymous,
        }
    }
}
