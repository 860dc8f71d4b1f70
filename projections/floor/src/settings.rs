//! The statistics' settings, `[stats]`.

use serde::{Deserialize, Serialize};


#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsSettings {
    /// An interaction answered within this many seconds of entering its queue counts towards
    /// the service level.
    pub service_level_threshold_s: u64,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self { service_level_threshold_s: 20 }
    }
}

impl runtime::config::Section for StatsSettings {
    const NAME: &'static str = "stats";
}
