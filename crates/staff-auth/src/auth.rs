//! Session tokens: `user.role.session.issued.expiry.signature`, the signature an HMAC-SHA256
//! over the rest with the desk's secret, so any process of the installation can check one
//! without asking the desk. A valid signature is not the whole answer: whether the session
//! still stands (not logged out, the user not removed, disabled or given a new password since
//! it was issued) and the user's role *now* are the staff directory's to say
//! ([`crate::directory`]), which follows `staff.events`.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::users::Role;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct SessionKeys {
    secret: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The role when the session was issued; the directory has the current one.
    pub role: Role,
    /// Random, names the session in a logout (`SessionEnded`).
    pub id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl SessionKeys {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// Reads the secret at `path`, or creates one there (256 random bits from the OS CSPRNG),
    /// readable by its owner only.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => {
                if crate::private_file::restrict(path)? {
                    tracing::warn!(file = %path.display(), "the desk session secret was readable by others; now 0600");
                }
                Ok(Self::new(secret))
            }
            Ok(_) => Err(std::io::Error::other(format!("{} holds fewer than 32 bytes", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: Vec<u8> = (0..2).flat_map(|_| *uuid::Uuid::new_v4().as_bytes()).collect();
                if crate::private_file::create_new(path, &secret)? {
                    Ok(Self::new(secret))
                } else {
                    // Another service of this installation created it first: use theirs.
                    Self::load_or_create(path)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A new session's token and id.
    pub fn issue(&self, user: &str, role: Role, issued_at: i64, expires_at: i64) -> (String, String) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let body = format!("{user}.{}.{id}.{issued_at}.{expires_at}", role.name());
        (format!("{body}.{}", self.sign(&body)), id)
    }

    /// The session a token stands for, or why it is refused.
    pub fn verify(&self, token: &str, now: i64) -> Result<Session, &'static str> {
        let (body, signature) = token.rsplit_once('.').ok_or("malformed session token")?;
        let expected = hex::decode(signature).map_err(|_| "malformed session token")?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).map_err(|_| "session key unusable")?;
        mac.update(body.as_bytes());
        mac.verify_slice(&expected).map_err(|_| "invalid session token")?;
        let mut parts = body.rsplitn(5, '.');
        let expires_at: i64 = parts.next().and_then(|e| e.parse().ok()).ok_or("malformed session token")?;
        let issued_at: i64 = parts.next().and_then(|e| e.parse().ok()).ok_or("malformed session token")?;
        let id = parts.next().filter(|id| !id.is_empty()).ok_or("malformed session token")?.to_owned();
        let role = parts.next().and_then(Role::parse).ok_or("malformed session token")?;
        let user = parts.next().ok_or("malformed session token")?.to_owned();
        if now >= expires_at {
            return Err("session expired; log in again");
        }
        Ok(Session { user, role, id, issued_at, expires_at })
    }

    fn sign(&self, body: &str) -> String {
        // new_from_slice accepts any key length for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_is_refused() {
        let keys = SessionKeys::new(vec![7; 32]);
        let (token, id) = keys.issue("ann.lee", Role::Agent, 5, 1000);
        assert_eq!(keys.verify(&token, 10).unwrap(), Session { user: "ann.lee".into(), role: Role::Agent, id, issued_at: 5, expires_at: 1000 });
        assert_eq!(keys.verify(&token, 1000), Err("session expired; log in again"));
        let forged = token.replacen("agent", "supervisor", 1);
        assert_eq!(keys.verify(&forged, 10), Err("invalid session token"));
        let other = SessionKeys::new(vec![8; 32]);
        assert_eq!(other.verify(&token, 10), Err("invalid session token"));
        assert_eq!(keys.verify("nonsense", 10), Err("malformed session token"));
    }
}
