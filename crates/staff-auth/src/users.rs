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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| UsersError::Write { path: path.to_owned(), source })?;
        }
        std::fs::write(path, text).map_err(|source| UsersError::Write { path: path.to_owned(), source })
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

pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

pub fn verify_password(user: &User, password: &str) -> bool {
    PasswordHash::new(&user.password_hash)
        .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}
