//! `sluice verify`: checks a running platform against its own promises, at a
//! consistent cut, while traffic runs.
//!
//! The cut. First every component's own record of how far it got is read: each
//! relay's checkpoint, each projection's positions (one snapshot per projection),
//! the warehouse's positions. Then each topic's high watermarks, and the topics are
//! read up to them. Then the stores. Whatever a component recorded as done before
//! the watermarks were read lies below them, and whatever a relay published was
//! appended before it, so every check below compares things that must agree:
//!
//! - **store ↔ topic** (each write service): every event the relay's checkpoint
//!   covers (every outbox row below the relay's horizon) is on the topic; every
//!   event on the topic is in the store, with the same stream and version; per key,
//!   versions first appear in ascending order and on one partition. Duplicates are
//!   counted (delivery is at least once), not differences.
//! - **topic → projection** (each projection): every record below the
//!   projection's positions is applied (its stream version at or below the
//!   projection's version of that stream), dead-lettered or held behind a gap; no
//!   position points past the end of its partition. And its rows equal a fresh
//!   fold: in one snapshot of the read model its positions are read, the topics
//!   are folded from offset zero up to exactly those positions into a scratch
//!   schema of its database (no dead letters announced), and every table is
//!   compared row by row with the snapshot's, then the scratch schema is dropped.
//! - **topic ↔ warehouse**: the events below the sink's positions are in
//!   `raw_events` exactly once, and nothing else is; every decoded row of
//!   `raw_events` has its typed-table row and every typed row its `raw_events` row.
//!
//! Each difference is named; the exit status is non-zero when there is any, or
//! when a component could not be checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_platform::registry::{Component, ComponentKind, Registry};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

mod projection;
mod store;
mod warehouse;

use projection::{compare_projection, compare_with_fold, projection_cut};
use store::{checkpoint, compare_store, store_events};
use warehouse::Warehouse;

/// Differences of one kind printed in full; the rest are counted.
const SHOWN: usize = 10;
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

/// What was found for one component.
#[derive(Debug, Default)]
pub struct Finding {
    pub component: String,
    /// What was checked, one line each.
    pub summary: Vec<String>,
    /// Each difference, named.
    pub differences: Vec<String>,
}

impl Finding {
    fn new(component: &str) -> Self {
        Finding {
            component: component.to_owned(),
            ..Finding::default()
        }
    }

    /// Records `items` as differences of one kind, the first [`SHOWN`] in full.
    fn differ(&mut self, what: &str, items: Vec<String>) {
        if items.is_empty() {
            return;
        }
        let mut line = format!("{} {what}:", items.len());
        for item in items.iter().take(SHOWN) {
            let _ = write!(line, "\n      {item}");
        }
        if items.len() > SHOWN {
            let _ = write!(line, "\n      … and {} more", items.len() - SHOWN);
        }
        self.differences.push(line);
    }
}

/// Checks the platform of `registry` and prints a summary per component. `Ok(true)`
/// when everything agrees.
pub async fn run(registry: &Registry) -> anyhow::Result<bool> {
    let findings = verify(registry).await?;
    let mut clean = true;
    for f in &findings {
        let verdict = if f.differences.is_empty() {
            "ok"
        } else {
            clean = false;
            "DIFFERS"
        };
        println!("{:<18} {verdict}", f.component);
        for line in &f.summary {
            println!("    {line}");
        }
        for line in &f.differences {
            println!("  ✗ {line}");
        }
    }
    println!(
        "{}",
        if clean {
            "verify: every check agrees"
        } else {
            "verify: differences found (see ✗ above)"
        }
    );
    Ok(clean)
}

/// What to say when a component's own tables cannot be read: most often it has never
/// run, so its database was provisioned but never migrated.
fn not_migrated(component: &str) -> String {
    format!(
        "{component}: its tables cannot be read; has it ever run? (`sluice up` or \
         `sluice run {component}` migrates its database)"
    )
}

/// Every check, in the order of the cut (see the module docs).
pub async fn verify(registry: &Registry) -> anyhow::Result<Vec<Finding>> {
    let bootstrap = registry.platform.kafka_brokers.clone();
    let services: Vec<&Component> = registry
        .components()
        .iter()
        .filter(|c| c.kind == ComponentKind::Service && c.database.is_some())
        .collect();
    let projections: Vec<&Component> = registry
        .components()
        .iter()
        .filter(|c| c.kind == ComponentKind::Projection && c.database.is_some())
        .collect();

    // 1. What each component recorded as done.
    let checkpoints = read_each(registry, &services, checkpoint).await?;
    let applied = read_each(registry, &projections, projection_cut).await?;
    let mut warehouse = match registry.analytics.as_ref() {
        Some(_) => Some(Warehouse::connect(registry).await),
        None => None,
    };
    let sink_positions = match warehouse.as_mut() {
        Some(Ok(w)) => Some(w.positions().await),
        _ => None,
    };

    // 2. The topics, up to their high watermarks read now.
    let mut topics: BTreeMap<String, TopicRead> = BTreeMap::new();
    let logical: Vec<String> = services
        .iter()
        .flat_map(|s| s.produces.iter().cloned())
        .chain(projections.iter().flat_map(|p| p.consumes.iter().cloned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for topic in logical {
        let physical = registry.topic_names().physical(&topic);
        let read = read_topic(&bootstrap, &physical)
            .await
            .with_context(|| format!("reading {physical}"))?;
        eprintln!("verify: read {} records of {physical}", read.records.len());
        topics.insert(topic, read);
    }

    // 3. The stores, and the comparisons.
    let mut findings = Vec::new();
    for service in &services {
        let mut conn = connect(registry, service).await?;
        let store = store_events(&mut conn, checkpoints[&service.name].clone()).await?;
        let mut finding = Finding::new(&service.name);
        for topic in &service.produces {
            compare_store(&mut finding, topic, &store, &topics[topic]);
        }
        findings.push(finding);
    }
    for projection in &projections {
        let mut finding = Finding::new(&projection.name);
        let cut = &applied[&projection.name];
        for topic in &projection.consumes {
            compare_projection(&mut finding, topic, cut, &topics[topic]);
        }
        if let Err(e) = compare_with_fold(registry, projection, &mut finding).await {
            finding
                .differences
                .push(format!("could not be compared with a fresh fold: {e:#}"));
        }
        findings.push(finding);
    }
    if let Some(analytics) = registry
        .components()
        .iter()
        .find(|c| c.kind == ComponentKind::Sink)
    {
        let mut finding = Finding::new(&analytics.name);
        match (warehouse, sink_positions) {
            (Some(Ok(mut w)), Some(Ok(positions))) => {
                if let Err(e) = w.compare(&mut finding, &positions, &topics).await {
                    finding
                        .differences
                        .push(format!("could not be checked: {e:#}"));
                }
                w.close().await;
            }
            (Some(Err(e)), _) | (_, Some(Err(e))) => finding
                .differences
                .push(format!("could not be checked: {e:#}")),
            _ => finding
                .summary
                .push("no [analytics] in the registry: nothing to check".to_owned()),
        }
        findings.push(finding);
    }
    Ok(findings)
}

/// `read` over the database of each of `components`, one after another, by
/// component name; a component whose tables cannot be read is named as one that
/// was never migrated.
async fn read_each<T>(
    registry: &Registry,
    components: &[&Component],
    read: impl AsyncFn(&mut PgConnection) -> anyhow::Result<T>,
) -> anyhow::Result<BTreeMap<String, T>> {
    let mut done = BTreeMap::new();
    for component in components {
        let mut conn = connect(registry, component).await?;
        let value = read(&mut conn)
            .await
            .with_context(|| not_migrated(&component.name))?;
        done.insert(component.name.clone(), value);
    }
    Ok(done)
}

async fn connect(registry: &Registry, component: &Component) -> anyhow::Result<PgConnection> {
    let url = registry
        .app_database_url(component)
        .ok_or_else(|| anyhow!("{} has no database", component.name))?;
    PgConnection::connect(&url)
        .await
        .with_context(|| format!("connecting to the database of {}", component.name))
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
    let partitions = sluice_platform::broker::topic_partitions(&consumer, topic, TIMEOUT)?;
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
