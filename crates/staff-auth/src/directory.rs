//! The staff directory: who may use the desk now, folded from `staff.events` (and, in the
//! desk, the password hashes from `staff.credentials`). Every process that checks desk
//! sessions follows it, so a logout, a removal, a disablement, a new password or a new role
//! counts on every instance once the event is in the log.
//!
//! Pure: the follower (the binary, the desk) feeds it records; nothing here does I/O. It does
//! not grow with history: one entry per user id ever named (ids stay reserved after a removal,
//! so a users file cannot bring a removed user back), and ended sessions only until they would
//! have expired anyway.

use std::collections::{BTreeMap, BTreeSet};

use contract::staff::{StaffCredential, StaffEvent, StaffPayload};
use serde::{Deserialize, Serialize};

use crate::auth::Session;
use crate::users::{Role, User};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub enabled: bool,
    pub skills: BTreeMap<String, i32>,
    pub capacity: BTreeMap<String, i32>,
    pub place: Option<String>,
    /// Sessions issued before this instant are void (added again, disabled, new password,
    /// every session logged out).
    pub sessions_from: i64,
}

impl Member {
    /// As the desk's login and the routing events want it.
    pub fn as_user(&self, password_hash: String) -> User {
        User {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            password_hash,
            skills: self.skills.clone(),
            capacity: self.capacity.clone(),
            place: self.place.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    members: BTreeMap<String, Member>,
    /// Every id the log ever named, removed ones included.
    known: BTreeSet<String>,
    /// Session id → when it would have expired.
    ended: BTreeMap<String, i64>,
    /// User id → password hash (the desk's directory only).
    credentials: BTreeMap<String, String>,
}

/// Why a session with a valid signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Void {
    #[error("this user no longer exists")]
    Removed,
    #[error("this user is disabled")]
    Disabled,
    #[error("this session was logged out")]
    LoggedOut,
    #[error("this session ended (new password, or the user's sessions were ended); log in again")]
    Superseded,
}

impl Directory {
    /// Applies one `staff.events` record; `Err` with the reason for one that makes no sense
    /// (an unknown role): skipped, the state unchanged.
    pub fn apply(&mut self, event: &StaffEvent) -> Result<(), String> {
        let id = event.user_id.as_str();
        let at = event.occurred_at;
        self.known.insert(id.to_owned());
        match &event.payload {
            StaffPayload::UserAdded(added) => {
                let role = Role::parse(&added.role).ok_or_else(|| format!("user {id}: unknown role {:?}", added.role))?;
                let member = Member {
                    id: id.to_owned(),
                    name: added.name.clone(),
                    role,
                    enabled: true,
                    skills: added.skills.clone(),
                    capacity: added.capacity.clone(),
                    place: added.place.clone(),
                    // Tokens of an earlier user of the same id stay void.
                    sessions_from: at,
                };
                self.members.insert(id.to_owned(), member);
            }
            StaffPayload::RoleChanged(changed) => {
                let role = Role::parse(&changed.role).ok_or_else(|| format!("user {id}: unknown role {:?}", changed.role))?;
                if let Some(member) = self.members.get_mut(id) {
                    member.role = role;
                }
            }
            StaffPayload::UserDisabled(_) => {
                if let Some(member) = self.members.get_mut(id) {
                    member.enabled = false;
                    member.sessions_from = member.sessions_from.max(at);
                }
            }
            StaffPayload::UserEnabled(_) => {
                if let Some(member) = self.members.get_mut(id) {
                    member.enabled = true;
                }
            }
            StaffPayload::UserRemoved(_) => {
                self.members.remove(id);
                self.credentials.remove(id);
            }
            StaffPayload::PasswordChanged(_) => {
                if let Some(member) = self.members.get_mut(id) {
                    member.sessions_from = member.sessions_from.max(at);
                }
            }
            StaffPayload::SessionEnded(ended) => match &ended.session_id {
                Some(session) => {
                    self.ended.insert(session.clone(), ended.expires_at);
                }
                None => {
                    if let Some(member) = self.members.get_mut(id) {
                        member.sessions_from = member.sessions_from.max(at);
                    }
                }
            },
        }
        // Forget logouts of sessions that have expired by now (by the log's clock).
        self.ended.retain(|_, expires| *expires > at);
        Ok(())
    }

    /// Applies one `staff.credentials` record (a removal drops the hash with the user).
    pub fn apply_credential(&mut self, credential: &StaffCredential) {
        self.credentials.insert(credential.user_id.clone(), credential.password_hash.clone());
    }

    /// The member a session stands for now, or why it no longer counts.
    pub fn check(&self, session: &Session) -> Result<&Member, Void> {
        let member = self.members.get(&session.user).ok_or(Void::Removed)?;
        if !member.enabled {
            return Err(Void::Disabled);
        }
        if self.ended.contains_key(&session.id) {
            return Err(Void::LoggedOut);
        }
        if session.issued_at < member.sessions_from {
            return Err(Void::Superseded);
        }
        Ok(member)
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether the log ever named this id (a removed user's id included).
    pub fn knows(&self, id: &str) -> bool {
        self.known.contains(id)
    }

    /// The enabled user `id` with their password hash, for a login.
    pub fn login_candidate(&self, id: &str) -> Option<User> {
        let member = self.members.get(id).filter(|m| m.enabled)?;
        let hash = self.credentials.get(id)?;
        Some(member.as_user(hash.clone()))
    }

    /// Sessions remembered as logged out (bounded by expiry).
    pub fn ended_sessions(&self) -> usize {
        self.ended.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use contract::staff::{Because, RoleChanged, SessionEnded, UserAdded};

    use super::*;

    fn event(user: &str, at: i64, payload: StaffPayload) -> StaffEvent {
        StaffEvent { event_id: format!("{user}-{at}"), user_id: user.into(), occurred_at: at, actor: Some("root".into()), payload }
    }

    fn added(role: &str) -> StaffPayload {
        StaffPayload::UserAdded(UserAdded { name: "Ann".into(), role: role.into(), skills: BTreeMap::new(), capacity: BTreeMap::new(), place: None })
    }

    fn session(user: &str, id: &str, issued_at: i64) -> Session {
        Session { user: user.into(), role: Role::Agent, id: id.into(), issued_at, expires_at: 1_000 }
    }

    #[test]
    fn sessions_end_with_logout_removal_disablement_and_a_new_password_and_roles_count_at_once() {
        let mut d = Directory::default();
        d.apply(&event("ann", 10, added("agent"))).unwrap();
        let s1 = session("ann", "s1", 20);
        let s2 = session("ann", "s2", 21);
        assert_eq!(d.check(&s1).unwrap().role, Role::Agent);
        d.apply(&event("ann", 30, StaffPayload::RoleChanged(RoleChanged { role: "supervisor".into() }))).unwrap();
        assert_eq!(d.check(&s1).unwrap().role, Role::Supervisor, "a role change counts in a session issued before it");
        d.apply(&event("ann", 40, StaffPayload::SessionEnded(SessionEnded { session_id: Some("s1".into()), expires_at: 1_000, reason: None }))).unwrap();
        assert_eq!(d.check(&s1), Err(Void::LoggedOut));
        assert!(d.check(&s2).is_ok(), "one logout ends one session");
        d.apply(&event("ann", 50, StaffPayload::PasswordChanged(Because { reason: None }))).unwrap();
        assert_eq!(d.check(&s2), Err(Void::Superseded));
        let s3 = session("ann", "s3", 60);
        assert!(d.check(&s3).is_ok(), "a session after the new password stands");
        d.apply(&event("ann", 70, StaffPayload::UserDisabled(Because { reason: None }))).unwrap();
        assert_eq!(d.check(&s3), Err(Void::Disabled));
        d.apply(&event("ann", 80, StaffPayload::UserEnabled(Because { reason: None }))).unwrap();
        assert_eq!(d.check(&s3), Err(Void::Superseded), "enabling again does not revive old sessions");
        d.apply(&event("ann", 90, StaffPayload::UserRemoved(Because { reason: None }))).unwrap();
        assert_eq!(d.check(&session("ann", "s4", 95)), Err(Void::Removed));
        assert!(d.knows("ann"), "a removed id stays known");
        d.apply(&event("ann", 100, added("agent"))).unwrap();
        assert_eq!(d.check(&s3), Err(Void::Superseded), "a new user of the same id does not inherit old tokens");
        assert!(d.apply(&event("bob", 110, added("root"))).is_err());
        assert!(d.member("bob").is_none());
    }

    #[test]
    fn ended_sessions_are_forgotten_once_they_would_have_expired() {
        let mut d = Directory::default();
        d.apply(&event("ann", 10, added("agent"))).unwrap();
        for i in 0..100 {
            d.apply(&event("ann", 20 + i, StaffPayload::SessionEnded(SessionEnded { session_id: Some(format!("s{i}")), expires_at: 30 + i, reason: None }))).unwrap();
        }
        assert!(d.ended_sessions() <= 11, "{} ended sessions remembered", d.ended_sessions());
    }

    #[test]
    fn only_an_enabled_member_with_a_hash_is_a_login_candidate() {
        let mut d = Directory::default();
        d.apply(&event("ann", 10, added("agent"))).unwrap();
        assert!(d.login_candidate("ann").is_none(), "no hash yet");
        d.apply_credential(&StaffCredential { user_id: "ann".into(), password_hash: "$argon2id$x".into(), set_at: 11 });
        assert_eq!(d.login_candidate("ann").unwrap().password_hash, "$argon2id$x");
        d.apply(&event("ann", 20, StaffPayload::UserDisabled(Because { reason: None }))).unwrap();
        assert!(d.login_candidate("ann").is_none());
    }
}
