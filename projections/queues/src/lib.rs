//! The Interaction Server's queues and views, as a projection of `interaction.events`.
//!
//! - [`board`]: the pure fold of events into interactions and queue order (`domain/interactions`).
//! - [`projector`]: keeps a board current from the topic, rebuilt from offset 0 at start.
//! - [`http`]: the JSON API over a board.

pub use interactions::board;
pub mod http;
mod openapi;
pub mod projector;
