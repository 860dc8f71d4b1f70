//! Who may use the desk: a TOML file of `[[user]]` entries, each with an argon2 password hash
//! (PHC string), a role, and for agents their skills and capacity per media (sent in the
//! `LoggedIn` event, so the router learns them from the log).
//!
//! ```toml
//! [[user]]
//! id = "ann"
//! name = "Ann Lee"
//! role = "agent"
//! password_hash = "$argon2id$v=19$..."   # switchboard desk add-user writes it
//! skills = { english = 5, billing = 3 }
//! capacity = { email = 3, chat = 1 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read desk users file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("desk users file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write desk users file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Supervisor,
    /// Manages users; sees what a supervisor sees; takes no interactions.
    Admin,
}

impl Role {
    /// Its name in tokens and on `staff.events`: `agent`, `supervisor` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// The role of a [`Role::name`].
    pub fn parse(name: &str) -> Option<Self> {
        [Role::Agent, Role::Supervisor, Role::Admin].into_iter().find(|r| r.name() == name)
    }

    /// A supervisor or an admin: may act on others' work and manage the library.
    pub fn is_supervisor(self) -> bool {
        matches!(self, Role::Supervisor | Role::Admin)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    #[serde(default)]
    pub skills: BTreeMap<String, i32>,
    #[serde(default)]
    pub capacity: BTreeMap<String, i32>,
    #[serde(default)]
    pub place: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

impl Users {
    /// A missing file is an empty list (nobody can log in; the desk says how to add users).
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(UsersError::Read { path: path.to_owned(), source }),
        };
        if crate::private_file::restrict(path).map_err(|source| UsersError::Read { path: path.to_owned(), source })? {
            tracing::warn!(file = %path.display(), "the desk users file (password hashes) was readable by others; now 0600");
        }
        let users: Users = toml::from_str(&text).map_err(|e| UsersError::Invalid { path: path.to_owned(), message: e.to_string() })?;
        let mut seen = std::collections::BTreeSet::new();
        for u in &users.users {
            let invalid = |message: String| UsersError::Invalid { path: path.to_owned(), message };
            if u.id.trim().is_empty() || u.id.contains(char::is_whitespace) {
                return Err(invalid(format!("user id {:?} is empty or has spaces", u.id)));
            }
            if !seen.insert(u.id.clone()) {
                return Err(invalid(format!("user {:?} is listed twice", u.id)));
            }
            PasswordHash::new(&u.password_hash).map_err(|e| invalid(format!("user {:?}: password_hash is not a PHC string: {e}", u.id)))?;
            for media in u.capacity.keys() {
                media.parse::<contract::command::MediaType>().map_err(|e| invalid(format!("user {:?}: capacity: {e}", u.id)))?;
            }
        }
        Ok(users)
    }

    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let text = toml::to_string_pretty(self).map_err(|e| UsersError::Invalid { path: path.to_owned(), message: e.to_string() })?;
        crate::private_file::write(path, text.as_bytes()).map_err(|source| UsersError::Write { path: path.to_owned(), source })
    }

    /// The user `id` if `password` is theirs. Unknown users cost one Argon2 verification too
    /// (against a hash of nobody's password), so the time taken does not tell which user
    /// names exist. Slow by design: call it off the async workers.
    pub fn authenticate(&self, id: &str, password: &str) -> Option<&User> {
        match self.get(id) {
            Some(user) => verify_password(user, password).then_some(user),
            None => {
                let _ = verify_hash(unknown_user_hash(), password);
                None
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Adds or replaces a user.
    pub fn upsert(&mut self, user: User) {
        self.users.retain(|u| u.id != user.id);
        self.users.push(user);
    }
}

/// `candidate` if `password` is theirs. With no candidate (an unknown or disabled user) the
/// same Argon2 work is done against nobody's hash, so the time taken does not tell which user
/// names exist. Slow by design: call it off the async workers.
pub fn check_password(candidate: Option<User>, password: &str) -> Option<User> {
    match candidate {
        Some(user) => verify_password(&user, password).then_some(user),
        None => {
            let _ = verify_hash(unknown_user_hash(), password);
            None
        }
    }
}

/// The gate's view of a role (`runtime::routes::StaffRole`), and back.
impl From<Role> for runtime::routes::StaffRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Agent => Self::Agent,
            Role::Supervisor => Self::Supervisor,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<runtime::routes::StaffRole> for Role {
    fn from(role: runtime::routes::StaffRole) -> Self {
        match role {
            runtime::routes::StaffRole::Agent => Self::Agent,
            runtime::routes::StaffRole::Supervisor => Self::Supervisor,
            runtime::routes::StaffRole::Admin => Self::Admin,
        }
    }
}

pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

pub fn verify_password(user: &User, password: &str) -> bool {
    verify_hash(&user.password_hash, password)
}

fn verify_hash(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A hash with the same parameters as real ones, of a random password nobody knows.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn only_the_right_password_of_a_known_user_authenticates_and_the_file_is_private() {
        let user = User {
            id: "ann".into(),
            name: "Ann".into(),
            role: Role::Agent,
            password_hash: hash_password("correct horse").unwrap(),
            skills: BTreeMap::new(),
            capacity: BTreeMap::new(),
            place: None,
        };
        let users = Users { users: vec![user] };
        assert_eq!(users.authenticate("ann", "correct horse").map(|u| u.id.as_str()), Some("ann"));
        assert!(users.authenticate("ann", "wrong").is_none());
        assert!(users.authenticate("bob", "correct horse").is_none());
        assert!(unknown_user_hash().starts_with("$argon2id$"), "unknown users are checked against a real hash");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk-users.toml");
        users.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Users::load(&path).unwrap().users.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "loading restricts an old file");
    }
}
