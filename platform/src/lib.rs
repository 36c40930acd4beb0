//! The library every Sluice component is built on.
//!
//! - [`registry`]: `sluice.toml`, the single source of truth for components;
//! - [`provision`]: one database and two roles per component, nothing shared;
//! - [`db`]: a component's own pool and migrations;
//! - [`store`]: the append-only event store with its transactional outbox;
//! - [`broker`]: the local brokers (tansu, Apache Kafka) and topic administration;
//! - [`local_kafka`]: Apache Kafka fetched once per machine and run as child processes;
//! - [`consistency`]: consistency tokens, read-your-writes across the async boundary;
//! - [`consumer`]: the consumer runtime (positions in the consumer's database, dead letters);
//! - [`aggregate`]: pure aggregates and the command handler around them;
//! - [`avro`]: the events' Avro contracts: schema catalog, single-object encoding,
//!   validation and the compatibility rule;
//! - [`relay`]: the outbox relay to Kafka, in commit-safe order, at least once;
//! - [`projection`]: running a read model (consumer + query API);
//! - [`reactor`]: what every saga reactor shares (context, outcome);
//! - [`health`]: the parts of a component a supervisor runs, for readiness;
//! - [`http`]: problem responses, extractors, health endpoints, serving;
//! - [`service`]: running a write service (pool, migrations, HTTP);
//! - [`telemetry`]: metrics with their names and labels decided in one place, `/metrics`;
//! - [`trace`]: spans across the async boundary, W3C trace context in every event;
//! - [`values`]: money and currency value types of the reference domain;
//! - [`generate`]: files derived from the registry (provisioning SQL, compose file).
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod avro;
pub mod broker;
pub mod consistency;
pub mod consumer;
pub mod db;
pub mod generate;
pub mod health;
pub mod http;
pub mod local_kafka;
pub mod projection;
pub mod provision;
pub mod reactor;
pub mod registry;
pub mod relay;
pub mod saga;
pub mod service;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
pub mod values;
pub mod write_service;
