//! Web callbacks: a customer asks to be called back, as soon as possible or at a time.
//!
//! A callback is an interaction of media `callback`, submitted to `[callback] queue` with its
//! time as the property `callback_at` (Unix ms). Nothing else keeps the schedule: the router's
//! route step with `not_before_property = "callback_at"` leaves it waiting until then, so the
//! schedule is in the log and replays. The agent's outcome (reached, no answer, retry later)
//! is a desk action that stops it or puts it back with a new `callback_at`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use runtime::config::CallbackSettings;
use serde::Deserialize;

/// Longest name or reason kept.
const MAX_TEXT: usize = 500;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// The number to call: international (`+44 20 7946 0000`), or national when the server
    /// has a default region.
    pub phone: String,
    pub name: Option<String>,
    /// When to call (RFC 3339, e.g. `2026-11-25T15:30:00+01:00`); absent: as soon as possible.
    pub at: Option<String>,
    /// What it is about, shown to the agent.
    pub reason: Option<String>,
}

/// A checked request: what the interaction carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// E.164.
    pub phone: String,
    pub callback_at: i64,
    pub properties: BTreeMap<String, String>,
}

/// Checks a request at `now` (Unix ms); `Err` is the reason, for a person.
pub fn check(request: &CallbackRequest, settings: &CallbackSettings, now: i64) -> Result<Callback, String> {
    let region = match settings.default_region.as_deref() {
        Some(r) => Some(r.parse::<runtime::phone::Region>().map_err(|_| format!("the configured default_region {r:?} is not a region code"))?),
        None => None,
    };
    let raw = request.phone.trim();
    if raw.is_empty() || raw.len() > 40 {
        return Err("phone must be 1 to 40 characters".into());
    }
    let phone = runtime::phone::e164(raw, region)?;
    let callback_at = match request.at.as_deref() {
        None => now,
        Some(at) => {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(at).map_err(|e| format!("at {at:?} is not an RFC 3339 time: {e}"))?.with_timezone(&Utc);
            let at = at.timestamp_millis();
            // A minute's grace for clocks and slow forms; earlier is a mistake, not "now".
            if at < now - 60_000 {
                return Err("at is in the past".into());
            }
            let horizon = now + i64::from(settings.max_days_ahead) * 86_400_000;
            if at > horizon {
                return Err(format!("at is more than {} days ahead", settings.max_days_ahead));
            }
            at.max(now)
        }
    };
    let mut properties = BTreeMap::from([
        ("phone".to_owned(), phone.clone()),
        ("callback_at".to_owned(), callback_at.to_string()),
        ("callback_requested_at".to_owned(), now.to_string()),
        ("callback_attempts".to_owned(), "0".to_owned()),
        ("channel".to_owned(), "web-callback".to_owned()),
    ]);
    for (key, value) in [("customer_name", &request.name), ("callback_reason", &request.reason)] {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            if value.chars().count() > MAX_TEXT {
                return Err(format!("{} is longer than {MAX_TEXT} characters", key.trim_start_matches("callback_").replace("customer_", "")));
            }
            properties.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(Callback { phone, callback_at, properties })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn request(phone: &str, at: Option<&str>) -> CallbackRequest {
        CallbackRequest { phone: phone.into(), name: Some("Ada".into()), at: at.map(str::to_owned), reason: None }
    }

    #[test]
    fn numbers_are_normalised_to_e164_and_bad_ones_refused() {
        let settings = CallbackSettings::default();
        assert_eq!(check(&request("+44 20 7946 0018", None), &settings, NOW).unwrap().phone, "+442079460018");
        assert!(check(&request("020 7946 0018", None), &settings, NOW).unwrap_err().contains("not a phone number"), "national form needs a region");
        let uk = CallbackSettings { default_region: Some("GB".into()), ..CallbackSettings::default() };
        assert_eq!(check(&request("020 7946 0018", None), &uk, NOW).unwrap().phone, "+442079460018");
        for bad in ["12", "+1 555", "call me", "", "+999 1234567"] {
            assert!(check(&request(bad, None), &settings, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_now_or_ahead_within_the_horizon() {
        let settings = CallbackSettings::default();
        let asap = check(&request("+442079460018", None), &settings, NOW).unwrap();
        assert_eq!(asap.callback_at, NOW);
        let at = DateTime::from_timestamp_millis(NOW + 3_600_000).unwrap().to_rfc3339();
        assert_eq!(check(&request("+442079460018", Some(&at)), &settings, NOW).unwrap().callback_at, NOW + 3_600_000);
        let past = DateTime::from_timestamp_millis(NOW - 3_600_000).unwrap().to_rfc3339();
        assert_eq!(check(&request("+442079460018", Some(&past)), &settings, NOW).unwrap_err(), "at is in the past");
        let far = DateTime::from_timestamp_millis(NOW + 40 * 86_400_000).unwrap().to_rfc3339();
        assert!(check(&request("+442079460018", Some(&far)), &settings, NOW).unwrap_err().contains("30 days"));
        assert!(check(&request("+442079460018", Some("tomorrow")), &settings, NOW).unwrap_err().contains("RFC 3339"));
    }
}
