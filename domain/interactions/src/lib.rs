//! The interactions domain, with no I/O: what the Interaction Server decides and what every
//! view of `interaction.events` folds.
//!
//! - [`board`]: the fold of events into interactions and queue order (the queue projection's
//!   state and the Interaction Server's).
//! - [`decide`]: the state machine, `decide(board, command) -> events | reason`.
//! - [`partition`]: one `interaction.commands` partition's state: recovery from its events and
//!   effectively-once handling of commands.

pub mod board;
pub mod decide;
pub mod partition;
