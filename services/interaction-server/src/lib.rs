//! The Interaction Server: the only writer of `interaction.events`.
//!
//! It consumes `interaction.commands` in a consumer group, checks each command against the
//! interaction's state ([`decide`]), and writes the resulting events to the *same partition
//! number* of `interaction.events`, so one partition's commands and events stay together.
//! Its state per partition ([`partition::PartitionState`]) is rebuilt from the events log when
//! the partition is assigned; there is no other store.

pub use interactions::{decide, partition};
mod server;

pub use server::run;
