//! The router's settings, `[router]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;


#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// The interaction workflow (queues and strategies); unset: the built-in
    /// `infra/workflow/workflow.toml`.
    pub workflow: Option<PathBuf>,
    /// How often the router looks again without a new event (offer and queue timeouts).
    pub tick_ms: u64,
    /// Producer `linger.ms` for the router's commands: low, routing is latency-bound.
    pub linger_ms: u32,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            workflow: None,
            tick_ms: 100,
            linger_ms: 1,
        }
    }
}

impl runtime::config::Section for RouterSettings {
    const NAME: &'static str = "router";
}
