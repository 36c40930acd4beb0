//! The raw baseline of `sluice bench relay`: a plain producer sending records
//! shaped like the relay's (the same value, headers of the same sizes).

use std::time::Instant;

use anyhow::bail;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_platform::relay::producer_config;
use sluice_platform::store::Metadata;
use sqlx::types::chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{metadata, Shape, ACTOR, PREFILL_APPEND};
use crate::bench::broker::{enqueue, text_headers};

/// `recorded_at` as the relay writes it (`to_rfc3339` of a microsecond
/// PostgreSQL timestamp).
fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The relay's 12 headers with values of the same lengths.
fn raw_headers(shape: &Shape, i: u64, meta: &Metadata) -> OwnedHeaders {
    let text = [
        ("event_id", Uuid::now_v7().to_string()),
        ("event_type", "OrderPlaced".to_owned()),
        ("stream_type", "order".to_owned()),
        ("stream_version", (i % PREFILL_APPEND + 1).to_string()),
        ("global_position", (i + 1).to_string()),
        ("schema_version", "1".to_owned()),
        ("schema_fingerprint", shape.fingerprint.clone()),
        ("recorded_at", rfc3339_micros(Utc::now())),
        (
            "correlation_id",
            meta.correlation_id.unwrap_or_default().to_string(),
        ),
        (
            "causation_id",
            meta.causation_id.unwrap_or_default().to_string(),
        ),
        ("traceparent", meta.traceparent.clone().unwrap_or_default()),
        ("actor", meta.actor.clone().unwrap_or_default()),
    ];
    text_headers(text.iter().map(|(key, value)| (*key, value.as_str())))
}

fn header_bytes(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

/// Produces `events` records shaped like the relay's; returns records/s (first
/// enqueue to last acknowledgement) and the headers' size.
pub(super) async fn raw_producer(
    bootstrap: &str,
    topic: &str,
    shape: &Shape,
    events: u64,
) -> anyhow::Result<(f64, usize)> {
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    let mut header_size = 0;
    let mut key = String::new();
    let mut meta = Metadata::default();
    let mut deliveries = Vec::with_capacity(events as usize);
    let start = Instant::now();
    for i in 0..events {
        if i % PREFILL_APPEND == 0 {
            key = Uuid::now_v7().to_string();
            meta = metadata(ACTOR);
        }
        let headers = raw_headers(shape, i, &meta);
        header_size = header_bytes(&headers);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&shape.value)
            .timestamp(Utc::now().timestamp_millis())
            .headers(headers);
        deliveries.push(enqueue(&producer, record).await?);
    }
    let mut failed = 0u64;
    let mut first_error = None;
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert("delivery canceled".to_owned());
            }
        }
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        bail!(
            "{failed} of {events} records were not acknowledged (first: {})",
            first_error.unwrap_or_default()
        );
    }
    Ok((events as f64 / elapsed.as_secs_f64(), header_size))
}
