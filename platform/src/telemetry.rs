//! Metrics: one typed function per thing that happens, so names, labels and units
//! are decided here once (Prometheus conventions: `sluice_` prefix, `_total` for
//! counters, base units in the name), and `/metrics` on every component.
//!
//! The recorder is process-wide: under `sluice up` every component's series carry a
//! `component` or `stream_type` label to tell them apart.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process; `None` when another recorder
/// was installed first (metrics then go there).
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// Makes sure the recorder exists before the first metric is recorded.
pub fn init() {
    let _ = handle();
}

/// Every metric of the process in the Prometheus text format.
pub fn render_text() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render() -> Response {
    let body = render_text();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// How a command ended, as the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum CommandOutcome {
    /// Events were appended.
    Accepted,
    /// The first answer of an idempotent retry was returned.
    Replayed,
    /// The aggregate refused it (not found, invalid state, invalid content).
    Rejected,
    /// The stream was not at the expected version, or stayed contended.
    Conflict,
    /// The store failed.
    Failed,
}

impl CommandOutcome {
    fn label(self) -> &'static str {
        match self {
            CommandOutcome::Accepted => "accepted",
            CommandOutcome::Replayed => "replayed",
            CommandOutcome::Rejected => "rejected",
            CommandOutcome::Conflict => "conflict",
            CommandOutcome::Failed => "failed",
        }
    }
}

/// A command finished: `sluice_commands_total`, `sluice_command_duration_seconds`.
pub fn command_handled(stream_type: &'static str, outcome: CommandOutcome, started: Instant) {
    let labels = [("stream_type", stream_type), ("outcome", outcome.label())];
    metrics::counter!("sluice_commands_total", &labels).increment(1);
    metrics::histogram!("sluice_command_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}

/// An append committed: `sluice_events_appended_total`, `sluice_appends_total`.
pub fn events_appended(stream_type: &str, events: usize) {
    let labels = [("stream_type", stream_type.to_owned())];
    metrics::counter!("sluice_appends_total", &labels).increment(1);
    metrics::counter!("sluice_events_appended_total", &labels).increment(events as u64);
}

/// An append lost the race for its stream version: `sluice_append_conflicts_total`.
pub fn append_conflict(stream_type: &str) {
    metrics::counter!("sluice_append_conflicts_total", "stream_type" => stream_type.to_owned())
        .increment(1);
}

/// Middleware: `sluice_http_requests_total` and `sluice_http_request_duration_seconds`
/// by route template (never the raw path: ids would explode the series count).
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("sluice_http_requests_total", &labels).increment(1);
    metrics::histogram!("sluice_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A relay batch was acknowledged by the broker: `sluice_relay_events_published_total`,
/// `sluice_relay_batches_total`, `sluice_relay_batch_duration_seconds`.
pub fn relay_batch(service: &str, events: usize, started: Instant) {
    let labels = [("service", service.to_owned())];
    metrics::counter!("sluice_relay_events_published_total", &labels).increment(events as u64);
    metrics::counter!("sluice_relay_batches_total", &labels).increment(1);
    metrics::histogram!("sluice_relay_batch_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}

/// The broker did not acknowledge part of a batch: `sluice_relay_retries_total`.
pub fn relay_retry(service: &str) {
    metrics::counter!("sluice_relay_retries_total", "service" => service.to_owned()).increment(1);
}

/// Outbox backlog: `sluice_relay_unpublished_events`,
/// `sluice_relay_oldest_unpublished_age_seconds`.
pub fn relay_backlog(service: &str, unpublished: i64, oldest_age_seconds: f64) {
    let labels = [("service", service.to_owned())];
    metrics::gauge!("sluice_relay_unpublished_events", &labels).set(unpublished as f64);
    metrics::gauge!("sluice_relay_oldest_unpublished_age_seconds", &labels).set(oldest_age_seconds);
}

/// Last events of the topic the store does not hold (0 when it holds them all):
/// `sluice_relay_store_behind_topic_events{service}`; above 0 the relay publishes
/// nothing.
pub fn relay_store_behind(service: &str, missing: usize) {
    metrics::gauge!("sluice_relay_store_behind_topic_events", "service" => service.to_owned())
        .set(missing as f64);
}

/// An open transaction holds the relay horizon back:
/// `sluice_relay_horizon_blocker_age_seconds{service, pid}`.
pub fn relay_horizon_blocked(service: &str, pid: i32, age_seconds: f64) {
    metrics::gauge!(
        "sluice_relay_horizon_blocker_age_seconds",
        "service" => service.to_owned(),
        "pid" => pid.to_string()
    )
    .set(age_seconds);
}

/// A consumer batch committed: `sluice_consumer_events_applied_total`,
/// `sluice_consumer_duplicates_total`, `sluice_consumer_dead_letters_total`,
/// `sluice_consumer_batch_duration_seconds`.
pub fn consumer_batch(component: &str, applied: u64, duplicates: u64, dead: u64, started: Instant) {
    let labels = [("component", component.to_owned())];
    metrics::counter!("sluice_consumer_events_applied_total", &labels).increment(applied);
    metrics::counter!("sluice_consumer_duplicates_total", &labels).increment(duplicates);
    metrics::counter!("sluice_consumer_dead_letters_total", &labels).increment(dead);
    metrics::histogram!("sluice_consumer_batch_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}

/// A consumer resumed from its stored positions after a database error:
/// `sluice_consumer_restarts_total{component}`.
pub fn consumer_restart(component: &str) {
    metrics::counter!("sluice_consumer_restarts_total", "component" => component.to_owned())
        .increment(1);
}

/// Streams a consumer holds back behind a gap: `sluice_consumer_held_streams`, and
/// their events, `sluice_consumer_held_events`.
pub fn consumer_held(component: &str, streams: i64, events: i64) {
    let labels = [("component", component.to_owned())];
    metrics::gauge!("sluice_consumer_held_streams", &labels).set(streams as f64);
    metrics::gauge!("sluice_consumer_held_events", &labels).set(events as f64);
}

/// Events not yet consumed in a partition: `sluice_consumer_lag_events`.
pub fn consumer_lag(component: &str, topic: &str, partition: i32, events: i64) {
    metrics::gauge!(
        "sluice_consumer_lag_events",
        "component" => component.to_owned(),
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(events as f64);
}

/// Age of the last applied event of a partition: `sluice_consumer_lag_seconds`.
pub fn consumer_lag_seconds(component: &str, topic: &str, partition: i32, seconds: f64) {
    metrics::gauge!(
        "sluice_consumer_lag_seconds",
        "component" => component.to_owned(),
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(seconds);
}

/// A query waited for a consistency token: `sluice_consistency_waits_total{outcome}`
/// (`caught_up` or `timed_out`).
pub fn consistency_wait(caught_up: bool) {
    let outcome = if caught_up { "caught_up" } else { "timed_out" };
    metrics::counter!("sluice_consistency_waits_total", "outcome" => outcome).increment(1);
}

/// A reactor skipped a reaction that was already done or no longer applicable:
/// `sluice_reactor_reactions_skipped_total{service, event_type, reason}`.
pub fn reaction_skipped(service: &'static str, event_type: &str, reason: &'static str) {
    metrics::counter!(
        "sluice_reactor_reactions_skipped_total",
        "service" => service,
        "event_type" => event_type.to_owned(),
        "reason" => reason,
    )
    .increment(1);
}

/// A projection applied events to a row the event creating it has not reached yet
/// (the row is kept until it does):
/// `sluice_projection_events_before_order_placed_total{projection, event_type}`.
pub fn projection_events_before_order_placed(
    projection: &'static str,
    event_type: &str,
    events: u64,
) {
    metrics::counter!(
        "sluice_projection_events_before_order_placed_total",
        "projection" => projection,
        "event_type" => event_type.to_owned(),
    )
    .increment(events);
}

/// A projection parked a payment of an order it has not seen placed yet:
/// `sluice_projection_payments_parked_total{projection}`.
pub fn projection_payments_parked(projection: &'static str) {
    metrics::counter!("sluice_projection_payments_parked_total", "projection" => projection)
        .increment(1);
}

/// A projection ignored events it has no use for:
/// `sluice_projection_events_ignored_total{projection, event_type, reason}`.
pub fn projection_events_ignored(
    projection: &'static str,
    event_type: &str,
    reason: &'static str,
    events: u64,
) {
    metrics::counter!(
        "sluice_projection_events_ignored_total",
        "projection" => projection,
        "event_type" => event_type.to_owned(),
        "reason" => reason,
    )
    .increment(events);
}
