//! Failed logins, counted per user name and per client address: after too many within a
//! window, that name or address is locked out for a while, whether the name exists or not
//! (the answer must not tell). Checked before the password is, so a locked-out guesser costs
//! no Argon2 time. Pure: the caller gives the time and keeps it behind a lock.

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_failures_per_user: u32,
    pub max_failures_per_address: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_failures_per_user: 5, max_failures_per_address: 20, window_ms: 15 * 60_000, lockout_ms: 5 * 60_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(u64),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the window of this count began.
    since: i64,
    locked_until: i64,
}

/// At most this many names and addresses are remembered; past it the stalest are forgotten,
/// so a flood of made-up names cannot grow memory without bound.
const REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    limits: Limits,
    failures: HashMap<Key, Failures>,
}

impl LoginThrottle {
    pub fn new(limits: Limits) -> Self {
        Self { limits, failures: HashMap::new() }
    }

    /// `Err(ms)`: locked out for this long yet.
    pub fn check(&self, user: &str, address: IpAddr, now: i64) -> Result<(), i64> {
        let wait = [user_key(user), Key::Address(address)]
            .iter()
            .filter_map(|key| self.failures.get(key))
            .map(|f| f.locked_until - now)
            .max()
            .unwrap_or(0);
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn failed(&mut self, user: &str, address: IpAddr, now: i64) {
        let limits = self.limits;
        for (key, max) in [(user_key(user), limits.max_failures_per_user), (Key::Address(address), limits.max_failures_per_address)] {
            let f = self.failures.entry(key).or_insert(Failures { count: 0, since: now, locked_until: 0 });
            if now - f.since > limits.window_ms {
                *f = Failures { count: 0, since: now, locked_until: 0 };
            }
            f.count += 1;
            if f.count >= max {
                f.locked_until = now + limits.lockout_ms;
                f.count = 0;
                f.since = now;
            }
        }
        if self.failures.len() > REMEMBERED {
            let horizon = limits.window_ms.max(limits.lockout_ms);
            self.failures.retain(|_, f| now - f.since <= horizon || f.locked_until > now);
            while self.failures.len() > REMEMBERED {
                let Some(stalest) = self.failures.iter().min_by_key(|(_, f)| f.since.max(f.locked_until)).map(|(k, _)| *k) else { break };
                self.failures.remove(&stalest);
            }
        }
    }

    /// A correct password clears the user's count (not the address's: one right password
    /// must not open another thousand guesses from there).
    pub fn succeeded(&mut self, user: &str) {
        self.failures.remove(&user_key(user));
    }
}

/// Names are kept hashed: the table never holds what people typed as a user name (often a
/// password typed in the wrong field).
fn user_key(user: &str) -> Key {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(user.trim().to_lowercase().as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    Key::User(u64::from_le_bytes(first))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn a_user_is_locked_after_five_failures_known_or_not_and_unlocked_after_the_lockout() {
        let mut t = LoginThrottle::new(Limits::default());
        for n in 0..4 {
            t.failed("ann", HOME, n);
            t.failed("nobody", HOME, n);
        }
        assert!(t.check("ann", HOME, 10).is_ok());
        t.failed("ann", AWAY, 10);
        t.failed("nobody", AWAY, 10);
        assert_eq!(t.check("ann", HOME, 11), Err(5 * 60_000 - 1));
        assert_eq!(t.check("ANN ", AWAY, 11), Err(5 * 60_000 - 1), "from anywhere, however the name is typed");
        assert_eq!(t.check("nobody", HOME, 11), t.check("ann", HOME, 11), "an unknown name is answered the same");
        assert!(t.check("bob", AWAY, 11).is_ok());
        assert!(t.check("ann", HOME, 10 + 5 * 60_000).is_ok());
    }

    #[test]
    fn failures_outside_the_window_and_before_a_success_are_forgotten() {
        let mut t = LoginThrottle::new(Limits::default());
        for n in 0..4 {
            t.failed("ann", HOME, n);
        }
        t.failed("ann", HOME, 15 * 60_000 + 10);
        assert!(t.check("ann", HOME, 15 * 60_000 + 11).is_ok(), "a new window");
        for n in 0..4 {
            t.failed("bob", AWAY, n);
        }
        t.succeeded("bob");
        t.failed("bob", AWAY, 5);
        assert!(t.check("bob", AWAY, 6).is_ok());
    }

    #[test]
    fn an_address_trying_many_names_is_locked_out() {
        let mut t = LoginThrottle::new(Limits::default());
        for n in 0..20 {
            t.failed(&format!("user{n}"), AWAY, i64::from(n));
        }
        assert!(t.check("someone-else", AWAY, 30).is_err());
        assert!(t.check("someone-else", HOME, 30).is_ok());
    }
}
