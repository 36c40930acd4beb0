//! Test support, by job: `database` (a fresh database per test, [`TestDatabase`]),
//! `registry` (isolated registries), `app` (a service's API, [`TestApp`]), `http`
//! (the assertions every API test shares), `broker` (the suite's Kafka), `topics`
//! (records read back), `contracts` (events through their Avro schemas), `reactor`
//! ([`TestReactor`]), `projection` ([`TestProjection`]), `store` (an event store and
//! its writers), `wait` ([`until`] and its kin) and `fixtures`.
//!
//! The admin connection comes from `SLUICE_ADMIN_DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`, the password `deploy/dev/setup.sh` sets).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a panic is the failing test's report"
)]

use rand::Rng;

mod app;
mod broker;
mod contract_tests;
mod contracts;
mod database;
mod fixtures;
mod http;
mod projection;
mod reactions;
mod reactor;
mod registry;
mod store;
mod topics;
pub mod wait;

pub use app::TestApp;
pub use broker::{
    broker_env, registry_broker_address, shared_kafka, start_registry_broker, test_broker_kind,
    TestBroker,
};
pub use contracts::{assert_events_round_trip, assert_one_schema_per_event_type};
pub use database::{admin_url, TestDatabase};
pub use fixtures::{consumed_event, python_package, traced_metadata};
pub use http::{
    assert_accepted_at, assert_idempotent_retry, assert_key_reuse_refused,
    assert_malformed_requests_refused, assert_problem, assert_serves_openapi_and_health,
    assert_stale_if_match_refused, assert_unknown_not_found, audit_events, event_types, get_json,
    get_text, post_created, post_json, post_json_if_match, BadInputs,
};
pub use projection::{repository_catalog, TestProjection};
pub use reactions::{order_event, reaction_metadata};
pub use reactor::{assert_skip_counted, teach_order, tell_of_order, TestReactor};
pub use registry::{
    drop_registry_databases, free_port, isolated_registry, isolated_registry_on,
    repository_registry, service_context, DEV_ANALYST_PASSWORD,
};
pub use store::{counted, event_store, write_concurrently, ConcurrentWrites};
pub use topics::{consume, topic_size, Consumed};
pub use wait::{millis, secs, until, until_some, until_while_running};

/// A short random suffix that keeps concurrently running tests apart.
pub fn unique_suffix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}
