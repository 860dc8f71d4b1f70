//! The runtime of every Switchboard service, and the only crate that talks to rdkafka.
//!
//! - [`config`]: layered settings (defaults, `switchboard.toml`, `SWITCHBOARD_*` env, flags).
//! - [`telemetry`]: structured logs and traces; OTLP export when configured.
//! - [`kafka`]: the idempotent producer, consumers that store offsets only after processing,
//!   and admin calls.
//! - [`headers`]: W3C `traceparent`, causation id and correlation id on every record.
//! - [`dead_letter`]: parks what cannot be processed, with the reason in headers.
//! - [`topics`]: the declarative topic list in `infra/topics.toml`, created at start.
//! - [`acls`]: the Kafka ACLs each service needs (`infra/kafka/acls.toml`).
//! - [`broker`]: installs and runs the embedded broker (Apache Kafka, or Tansu without Java).

pub mod acls;
pub mod broker;
pub mod commands;
pub mod config;
pub mod dead_letter;
pub mod follow;
pub mod headers;
pub mod health;
pub mod http;
pub mod kafka;
pub mod partitioned;
pub mod phone;
pub mod record;
pub mod routes;
pub mod telemetry;
pub mod service;
pub mod snapshots;
pub mod topics;
pub mod writer;

pub use rdkafka::consumer::Consumer;
pub use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedMessage};
pub use rdkafka::producer::{FutureProducer, Producer};
pub use rdkafka::error::KafkaError;
pub use rdkafka::{Offset, TopicPartitionList};
pub use tokio_util::sync::CancellationToken;
