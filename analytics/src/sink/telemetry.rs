//! The sink's metrics, one function per thing that happens (names follow the
//! Prometheus conventions of `sluice_platform::telemetry`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::loader::{LoadReport, TopicCounts};

/// A batch committed: `sluice_sink_batches_total`, `sluice_sink_load_seconds`,
/// `sluice_sink_events_loaded_total{topic}` (new rows), `sluice_sink_duplicates_total`
/// and `sluice_sink_undecodable_total{topic}` (new rows kept without a payload).
pub(crate) fn batch_loaded(
    per_topic: &BTreeMap<String, TopicCounts>,
    report: &LoadReport,
    took: Duration,
) {
    metrics::counter!("sluice_sink_batches_total").increment(1);
    metrics::histogram!("sluice_sink_load_seconds").record(took.as_secs_f64());
    metrics::counter!("sluice_sink_duplicates_total").increment(report.duplicates as u64);
    for (topic, counts) in per_topic {
        metrics::counter!("sluice_sink_events_loaded_total", "topic" => topic.clone())
            .increment(counts.loaded);
        if counts.undecodable > 0 {
            metrics::counter!("sluice_sink_undecodable_total", "topic" => topic.clone())
                .increment(counts.undecodable);
        }
    }
}

/// How far behind its event time a partition was loaded: `sluice_sink_lag_seconds`.
pub(crate) fn lag_seconds(topic: &str, partition: i32, seconds: f64) {
    metrics::gauge!(
        "sluice_sink_lag_seconds",
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(seconds);
}

/// The newest event time loaded from a partition, in Unix seconds:
/// `sluice_sink_watermark_seconds` (`sluice status` shows it per topic).
pub(crate) fn watermark(topic: &str, partition: i32, unix_seconds: f64) {
    metrics::gauge!(
        "sluice_sink_watermark_seconds",
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(unix_seconds);
}

/// Records on a partition not yet read: `sluice_sink_lag_records`.
pub(crate) fn lag_records(topic: &str, partition: i32, records: i64) {
    metrics::gauge!(
        "sluice_sink_lag_records",
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(records as f64);
}

/// Partitions the sink reads: `sluice_sink_partitions`.
pub(crate) fn partitions(count: usize) {
    metrics::gauge!("sluice_sink_partitions").set(count as f64);
}

/// A batch was rolled back on a failed warehouse statement and is loaded again:
/// `sluice_sink_load_retries_total`.
pub(crate) fn load_retry() {
    metrics::counter!("sluice_sink_load_retries_total").increment(1);
}
