//! Analytics: the CDC sink that loads every `*.events` topic into a DuckDB
//! warehouse, the saved cross-service views, and the read-only analyst SQL
//! endpoint that speaks the PostgreSQL wire protocol.
//!
//! - [`warehouse`]: the one DuckDB instance per process, sandboxed;
//! - [`sink`]: topics → `raw_events`, typed tables per event type, watermarks;
//! - [`analyst`]: the PostgreSQL-protocol endpoint over the warehouse;
//! - [`shell`]: `sluice sql`, a terminal client of that endpoint;
//! - [`component`]: all of it as one component (`sluice run analytics`).

pub mod analyst;
pub mod component;
pub mod shell;
pub mod sink;
pub mod utc;
pub mod warehouse;
