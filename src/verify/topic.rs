//! Reading an event topic from each partition's first offset up to the high
//! watermarks read now.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One record of an event topic.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub event_id: Option<Uuid>,
    pub stream_version: Option<i64>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// A topic read from the beginning up to its high watermarks.
pub(crate) struct TopicRead {
    /// In offset order per partition.
    pub records: Vec<Record>,
    pub high: BTreeMap<i32, i64>,
    /// The first offset still on the broker, per partition (0 unless retention or
    /// deletion removed records).
    pub low: BTreeMap<i32, i64>,
}

/// Reads `topic` from each partition's first offset up to the high watermark read
/// now, on a blocking thread.
pub(crate) async fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<TopicRead> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&bootstrap, &topic)).await?
}

fn read_topic_blocking(bootstrap: &str, topic: &str) -> anyhow::Result<TopicRead> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-verify-{}", Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(anyhow!("the topic {topic} does not exist on {bootstrap}"));
    }
    let mut high = BTreeMap::new();
    let mut low = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (l, h) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        high.insert(p, h);
        low.insert(p, l);
        if h > l {
            assignment.add_partition_offset(topic, p, Offset::Offset(l))?;
        }
    }
    let mut records = Vec::new();
    let mut next: BTreeMap<i32, i64> = low.clone();
    let done = |next: &BTreeMap<i32, i64>| next.iter().all(|(p, n)| *n >= high[p]);
    if !done(&next) {
        consumer.assign(&assignment)?;
    }
    let (started, mut last_progress) = (Instant::now(), Instant::now());
    let mut idle_since = Instant::now();
    while !done(&next) {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let p = m.partition();
                if m.offset() < high[&p] {
                    let headers: BTreeMap<String, String> = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .filter_map(|h| {
                                    let value = std::str::from_utf8(h.value?).ok()?;
                                    Some((h.key.to_owned(), value.to_owned()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    records.push(Record {
                        partition: p,
                        offset: m.offset(),
                        key: m
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        event_id: headers.get("event_id").and_then(|v| v.parse().ok()),
                        stream_version: headers.get("stream_version").and_then(|v| v.parse().ok()),
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers,
                    });
                }
                next.insert(p, m.offset() + 1);
            }
            Some(Err(e)) => return Err(anyhow!("reading {topic}: {e}")),
            None => {
                // Transaction markers or compacted offsets leave holes below the
                // watermark: the position says how far the partition got.
                if let Ok(position) = consumer.position() {
                    for e in position.elements_for_topic(topic) {
                        if let Offset::Offset(o) = e.offset() {
                            let n = next.entry(e.partition()).or_insert(0);
                            *n = (*n).max(o);
                        }
                    }
                }
                if idle_since.elapsed() > TIMEOUT {
                    return Err(anyhow!(
                        "reading {topic}: no records for {} s before the high watermarks {high:?} (at {next:?})",
                        TIMEOUT.as_secs()
                    ));
                }
            }
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "verify: {topic}: {} records read in {:.0} s",
                records.len(),
                started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
    }
    Ok(TopicRead { records, high, low })
}
