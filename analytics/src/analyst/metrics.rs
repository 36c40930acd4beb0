//! The endpoint's metrics, named once here (Prometheus conventions).

use std::time::Duration;

/// Sessions accepted (counter) and currently open (gauge).
const SESSIONS: &str = "sluice_analyst_sessions_total";
const SESSIONS_OPEN: &str = "sluice_analyst_sessions_open";
/// Sessions turned away at `max_sessions`.
const SESSIONS_REJECTED: &str = "sluice_analyst_sessions_rejected_total";
/// Queries by outcome: ok, error, refused, timeout, cancelled, row_limit.
const QUERIES: &str = "sluice_analyst_queries_total";
const QUERY_DURATION: &str = "sluice_analyst_query_duration_seconds";
/// Statements refused by inspection.
const REFUSED: &str = "sluice_analyst_statements_refused_total";
const ROWS: &str = "sluice_analyst_rows_sent_total";

pub(crate) fn session_opened() {
    metrics::counter!(SESSIONS).increment(1);
    metrics::gauge!(SESSIONS_OPEN).increment(1.0);
}

pub(crate) fn session_closed() {
    metrics::gauge!(SESSIONS_OPEN).decrement(1.0);
}

pub(crate) fn session_rejected() {
    metrics::counter!(SESSIONS_REJECTED).increment(1);
}

pub(crate) fn query_finished(outcome: &'static str, elapsed: Duration) {
    metrics::counter!(QUERIES, "outcome" => outcome).increment(1);
    metrics::histogram!(QUERY_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

pub(crate) fn statement_refused() {
    metrics::counter!(REFUSED).increment(1);
    metrics::counter!(QUERIES, "outcome" => "refused").increment(1);
}

pub(crate) fn rows_sent(rows: usize) {
    metrics::counter!(ROWS).increment(rows as u64);
}
