//! The event contract of Switchboard.
//!
//! The `.avsc` files in `schemas/avro/` are the contract; the types here follow them, and the
//! tests in `tests/contract.rs` prove that every type round-trips through its schema and that
//! every schema still reads every released version. No other crate defines what goes on a topic.
//!
//! Records are written in the Avro *single-object encoding*: `C3 01`, the 8-byte CRC-64-AVRO
//! (Rabin) fingerprint of the writer's schema, then the Avro binary body. A consumer needs
//! nothing but the `.avsc` files to decode them.

pub mod agent;
pub mod chat;
mod codec;
pub mod command;
pub mod event;
pub mod staff;
pub mod ucs;

pub use codec::{AvroMessage, ContractError, SchemaSet, WriterSchema, canonical_form, fingerprint};

/// Current time in milliseconds since the Unix epoch, as used by every `timestamp-millis` field.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
