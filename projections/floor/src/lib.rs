//! The floor: what the router, the desk and the statistics need to know, folded from the log.
//!
//! - [`floor`]: interactions (the queue [`queues::board::Board`]) and agents, with each agent's
//!   load derived from the board, never counted separately, so the two cannot disagree.
//! - [`library`]: standard responses and categories from `ucs.events`, for the desk.
//! - [`stats`]: the Stat Server role: queue and agent statistics over time.
//! - [`trend`]: per queue, depth and service level minute by minute (the dashboard's charts).
//! - [`projector`]: replays `interaction.events`, `agent.events` (and `ucs.events` where a desk
//!   needs the library) from offset 0, then follows.
//! - [`http`]: the statistics API, with a pushed stream and the trend.
//!
//! Everything here is rebuilt at start; nothing is stored.

pub mod settings;
pub use settings::{StatsSettings};

pub mod floor;
pub mod http;
pub mod library;
mod openapi;
pub mod projector;
pub mod service;
pub mod stats;
pub mod trend;

pub use floor::{Agent, Floor, Touched};
pub use projector::SharedFloor;
