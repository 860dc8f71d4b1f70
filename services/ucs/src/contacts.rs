//! Contact identification for the media adapters: find-or-create by e-mail address, phone
//! number or web visitor id.
//!
//! The contact id of a new identity is UUIDv5 of the normalised identity. So two adapters that
//! see the same new address at once compute the same id and emit the same
//! `ContactIdentified` event (same event id), and the projector applies it once: safe under
//! concurrent calls without a lock, and still a pure projection of the log.

use contract::ucs::IdentityKind;

const CONTACT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x8e1f_32c4_5d0a_4b9e_a7c2_61f0_d94e_3b58);

/// The contact id a new identity gets.
pub fn contact_id_for(kind: IdentityKind, normalised: &str) -> String {
    uuid::Uuid::new_v5(
        &CONTACT_NAMESPACE,
        format!("{}:{normalised}", kind.as_str()).as_bytes(),
    )
    .to_string()
}

/// The id of the `ContactIdentified` event for that contact: the same for every caller.
pub fn identified_event_id(contact_id: &str) -> String {
    uuid::Uuid::new_v5(&CONTACT_NAMESPACE, format!("identified/{contact_id}").as_bytes())
        .to_string()
}

/// The canonical form of an identity, or why it is not one.
pub fn normalise(kind: IdentityKind, raw: &str) -> Result<String, String> {
    let value = raw.trim();
    match kind {
        IdentityKind::Email => {
            let value = value
                .strip_prefix("mailto:")
                .unwrap_or(value)
                .to_lowercase();
            let (local, domain) = value
                .rsplit_once('@')
                .ok_or_else(|| format!("'{raw}' is not an e-mail address: no '@'"))?;
            if local.is_empty() || domain.is_empty() || !domain.contains('.') && domain != "localhost"
            {
                return Err(format!("'{raw}' is not an e-mail address"));
            }
            if value.chars().any(|c| c.is_whitespace() || c.is_control()) || value.len() > 254 {
                return Err(format!(
                    "'{raw}' is not an e-mail address: spaces or too long"
                ));
            }
            Ok(value)
        }
        IdentityKind::Phone => {
            let international = value.starts_with('+') || value.starts_with("00");
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            let rest_ok = value
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            let digits = match value.starts_with("00") {
                true => digits[2..].to_owned(),
                false => digits,
            };
            if !rest_ok || !(7..=15).contains(&digits.len()) {
                return Err(format!(
                    "'{raw}' is not a phone number: expected 7 to 15 digits, optionally with +, spaces, dashes, dots or parentheses"
                ));
            }
            // Without a country prefix the number is kept as given; adapters should send E.164.
            Ok(if international {
                format!("+{digits}")
            } else {
                digits
            })
        }
        IdentityKind::WebVisitor => {
            if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
                return Err("a web visitor id is 1 to 200 printable characters".into());
            }
            Ok(value.to_owned())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identities_normalise() {
        assert_eq!(
            normalise(IdentityKind::Email, " Ann.Lee@Example.COM ").unwrap(),
            "ann.lee@example.com"
        );
        assert_eq!(
            normalise(IdentityKind::Phone, "+44 (20) 7946-0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(
            normalise(IdentityKind::Phone, "0044 20 7946 0958").unwrap(),
            "+442079460958"
        );
        assert!(normalise(IdentityKind::Email, "ann").is_err());
        assert!(normalise(IdentityKind::Phone, "call me").is_err());
        assert!(normalise(IdentityKind::WebVisitor, "").is_err());
    }

    #[test]
    fn the_same_identity_always_gets_the_same_contact() {
        let a = contact_id_for(IdentityKind::Email, "ann@example.com");
        assert_eq!(a, contact_id_for(IdentityKind::Email, "ann@example.com"));
        assert_ne!(a, contact_id_for(IdentityKind::Phone, "ann@example.com"));
    }
}
