//! The latency phase of `sluice bench relay`: single-event appends at a steady
//! rate with a relay running, timed from `recorded_at` to a consumer's receipt.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use sluice_platform::store::{EventStore, ExpectedVersion, StreamId};
use sqlx::types::chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{metadata, partitions, start_relay, stop_relay, Shape, ACTOR, WARMUP_ACTOR};
use crate::bench::append_v1;
use crate::bench::broker::Broker;

/// What the latency phase measured.
pub(super) struct Latency {
    appended: u64,
    achieved_rate: f64,
    /// Milliseconds from `recorded_at` to receipt, sorted.
    samples: Vec<f64>,
}

impl Latency {
    pub(super) fn percentile(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let rank = (p * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }

    pub(super) fn print(&self, rate: u64, duration: Duration) {
        println!(
            "latency: {} single-event appends over {} s ({:.0}/s achieved, {rate}/s asked), relay running; {} records received",
            self.appended,
            duration.as_secs(),
            self.achieved_rate,
            self.samples.len()
        );
        println!(
            "         append (recorded_at, at insert, just before commit) to consumer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.percentile(0.50),
            self.percentile(0.99),
            self.samples.last().copied().unwrap_or(f64::NAN)
        );
    }
}

/// Consumes `topic` from its beginning until stopped; for each record the
/// milliseconds from its `recorded_at` header to receipt. Sets `warm` when the
/// warm-up record arrives (not measured).
fn consume_latencies(
    bootstrap: &str,
    topic: &str,
    warm: &AtomicBool,
    appended: &AtomicU64,
    appender_done: &AtomicBool,
) -> anyhow::Result<Vec<f64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .set("log_level", "3")
        .create()?;
    let parts = partitions(&consumer, topic)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..parts {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut samples = Vec::new();
    let mut drain_deadline = None;
    loop {
        if appender_done.load(Ordering::Acquire) {
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if samples.len() as u64 >= appended.load(Ordering::Acquire) || Instant::now() > deadline
            {
                return Ok(samples);
            }
        }
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let received = Utc::now();
        let message = message?;
        let Some(headers) = message.headers() else {
            continue;
        };
        let header = |key: &str| {
            headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        if header("event_type") != Some("OrderConfirmed") {
            continue;
        }
        match header("actor") {
            Some(WARMUP_ACTOR) => warm.store(true, Ordering::Release),
            Some(ACTOR) => {
                let recorded = header("recorded_at")
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .context("a record without a parsable recorded_at header")?;
                let micros = (received - recorded.with_timezone(&Utc))
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                samples.push(micros as f64 / 1000.0);
            }
            _ => {}
        }
    }
}

async fn confirm(store: &EventStore, actor: &str) -> anyhow::Result<()> {
    let order_id = Uuid::now_v7();
    let confirmed = (
        "OrderConfirmed",
        json!({ "order_id": order_id.to_string() }),
    );
    append_v1(
        store,
        &StreamId::from(order_id),
        "order",
        ExpectedVersion::Any,
        [confirmed],
        &metadata(actor),
    )
    .await
}

/// Single-event appends at `rate` for `duration` with a relay running and a
/// consumer on its topic.
pub(super) async fn run(
    store: &EventStore,
    broker: &Broker,
    service: &str,
    shape: &Shape,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let topic = &broker.topics.physical(&format!("{service}.events"));
    let warm = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appender_done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (bootstrap, topic) = (broker.bootstrap.clone(), topic.to_owned());
        let (warm, appended, appender_done) =
            (warm.clone(), appended.clone(), appender_done.clone());
        tokio::task::spawn_blocking(move || {
            consume_latencies(&bootstrap, &topic, &warm, &appended, &appender_done)
        })
    };
    let shutdown = CancellationToken::new();
    let (relay, _) = start_relay(
        store.pool(),
        broker,
        service,
        shape.catalog.clone(),
        &shutdown,
    )?;
    let appending = async {
        // One unmeasured event through relay, broker and consumer first.
        confirm(store, WARMUP_ACTOR).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !warm.load(Ordering::Acquire) {
            if Instant::now() > deadline || consumer.is_finished() || relay.is_finished() {
                bail!("the warm-up event did not reach the consumer");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = Instant::now();
        while start.elapsed() < duration {
            ticks.tick().await;
            confirm(store, ACTOR).await?;
            appended.fetch_add(1, Ordering::Release);
        }
        Ok(start.elapsed())
    };
    let appending = appending.await;
    appender_done.store(true, Ordering::Release);
    let consumed = consumer.await;
    let stopped = stop_relay(shutdown, relay).await;
    let elapsed = appending?;
    let mut samples = consumed??;
    stopped?;
    samples.sort_by(f64::total_cmp);
    let appended = appended.load(Ordering::Acquire);
    if (samples.len() as u64) < appended {
        eprintln!(
            "warning: {} of {appended} appended events did not reach the consumer within 30 s",
            appended - samples.len() as u64
        );
    }
    Ok(Latency {
        appended,
        achieved_rate: appended as f64 / elapsed.as_secs_f64(),
        samples,
    })
}
