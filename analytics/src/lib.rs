//! Analytics: the CDC sink that loads every `*.events` topic into a DuckDB
//! warehouse, the saved cross-service views, and the read-only analyst SQL
//! endpoint that speaks the PostgreSQL wire protocol.
//!
//! - [`warehouse`]: the one DuckDB instance per process, sandboxed;
//! - [`sink`]: topics → `raw_events`, typed tables per event type, watermarks;
//! - [`analyst`]: the PostgreSQL-protocol endpoint over the warehouse;
//! - [`shell`]: `sluice sql`, a terminal client of that endpoint;
//! - [`component`]: all of it as one component (`sluice run analytics`).
//!
//! No unsafe code, but in [`utc`]: DuckDB's scalar-function API hands vectors over
//! as raw memory, and only that module writes the UTC functions against it.
#![deny(unsafe_code)]

pub mod analyst;
pub mod component;
pub mod shell;
pub mod sink;
#[allow(unsafe_code)]
pub mod utc;
pub mod warehouse;
