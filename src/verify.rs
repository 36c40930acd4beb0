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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_platform::registry::{Component, ComponentKind, Registry};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

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
    let mut checkpoints = BTreeMap::new();
    for service in &services {
        let mut conn = connect(registry, service).await?;
        let done = checkpoint(&mut conn)
            .await
            .with_context(|| not_migrated(&service.name))?;
        checkpoints.insert(service.name.clone(), done);
    }
    let mut applied = BTreeMap::new();
    for projection in &projections {
        let mut conn = connect(registry, projection).await?;
        let cut = projection_cut(&mut conn)
            .await
            .with_context(|| not_migrated(&projection.name))?;
        applied.insert(projection.name.clone(), cut);
    }
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

async fn connect(registry: &Registry, component: &Component) -> anyhow::Result<PgConnection> {
    let url = registry
        .app_database_url(component)
        .ok_or_else(|| anyhow!("{} has no database", component.name))?;
    PgConnection::connect(&url)
        .await
        .with_context(|| format!("connecting to the database of {}", component.name))
}

/// The relay's highest checkpoint, `(txid, global_position)`; `(0, 0)` before the
/// first.
async fn checkpoint(conn: &mut PgConnection) -> anyhow::Result<(String, i64)> {
    let row = sqlx::query(
        "SELECT txid::text, global_position FROM relay_checkpoints \
          ORDER BY txid DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => ("0".to_owned(), 0),
    })
}

/// One event of a store: its stream, version, and whether the relay's checkpoint
/// covers it (published).
struct StoredEvent {
    stream_id: String,
    stream_version: i64,
    published: bool,
}

async fn store_events(
    conn: &mut PgConnection,
    (txid, position): (String, i64),
) -> anyhow::Result<HashMap<Uuid, StoredEvent>> {
    // An event without its outbox row was published and its row pruned (the relay
    // prunes only at or below its checkpoint).
    let rows = sqlx::query(
        "SELECT e.event_id, e.stream_id, e.stream_version, \
                (o.global_position IS NULL OR (o.txid, o.global_position) <= ($1::text::xid8, $2)) \
           FROM events e LEFT JOIN outbox o ON o.global_position = e.global_position",
    )
    .bind(txid)
    .bind(position)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                StoredEvent {
                    stream_id: r.try_get(1)?,
                    stream_version: r.try_get(2)?,
                    published: r.try_get(3)?,
                },
            ))
        })
        .collect()
}

fn compare_store(
    finding: &mut Finding,
    topic: &str,
    store: &HashMap<Uuid, StoredEvent>,
    read: &TopicRead,
) {
    let mut on_topic: HashSet<Uuid> = HashSet::with_capacity(read.records.len());
    let mut duplicates = 0usize;
    let mut foreign = Vec::new();
    let mut mismatched = Vec::new();
    let mut unreadable = Vec::new();
    // Per key: the partition it is on, and the highest version seen so far.
    let mut streams: HashMap<&str, (i32, i64)> = HashMap::new();
    let mut out_of_order = Vec::new();
    let mut split = Vec::new();
    for r in &read.records {
        let (Some(event_id), Some(version)) = (r.event_id, r.stream_version) else {
            unreadable.push(format!(
                "partition {} offset {}: no event_id or stream_version header",
                r.partition, r.offset
            ));
            continue;
        };
        if !on_topic.insert(event_id) {
            duplicates += 1;
            continue;
        }
        match store.get(&event_id) {
            None => foreign.push(format!(
                "{event_id} (stream {} version {version}, partition {} offset {})",
                r.key, r.partition, r.offset
            )),
            Some(e) if e.stream_id != r.key || e.stream_version != version => {
                mismatched.push(format!(
                    "{event_id}: topic says stream {} version {version}, the store {} version {}",
                    r.key, e.stream_id, e.stream_version
                ))
            }
            Some(_) => {}
        }
        let seen = streams.entry(&r.key).or_insert((r.partition, 0));
        if seen.0 != r.partition {
            split.push(format!(
                "stream {} on partitions {} and {}",
                r.key, seen.0, r.partition
            ));
        }
        if version <= seen.1 {
            out_of_order.push(format!(
                "stream {}: version {version} (offset {}) after version {}",
                r.key, r.offset, seen.1
            ));
        }
        seen.1 = seen.1.max(version);
    }
    let mut missing: Vec<String> = store
        .iter()
        .filter(|(id, e)| e.published && !on_topic.contains(id))
        .map(|(id, e)| format!("{id} (stream {} version {})", e.stream_id, e.stream_version))
        .collect();
    missing.sort();
    let published = store.values().filter(|e| e.published).count();
    finding.summary.push(format!(
        "{topic}: {} events in the store, {published} published by the relay's checkpoint, {} behind it; {} records on the topic ({} distinct, {duplicates} duplicates){}",
        store.len(),
        store.len() - published,
        read.records.len(),
        on_topic.len(),
        trimmed(read),
    ));
    finding.differ(&format!("published events missing from {topic}"), missing);
    finding.differ(
        &format!("events on {topic} that are not in the store"),
        foreign,
    );
    finding.differ(
        &format!("events on {topic} whose stream or version differs from the store"),
        mismatched,
    );
    finding.differ(
        &format!("records of {topic} out of stream order"),
        out_of_order,
    );
    finding.differ(&format!("streams split over partitions of {topic}"), split);
    finding.differ(&format!("unreadable records on {topic}"), unreadable);
}

/// A note when records before the first offset are gone from the broker.
fn trimmed(read: &TopicRead) -> String {
    let gone: i64 = read.low.values().sum();
    if gone > 0 {
        format!("; {gone} records before the partitions' first offsets are gone from the broker")
    } else {
        String::new()
    }
}

/// What a projection recorded, in one snapshot.
#[derive(Default)]
struct ProjectionCut {
    /// (topic, partition) → next offset.
    positions: BTreeMap<(String, i32), i64>,
    /// (topic, stream) → last applied version.
    versions: HashMap<(String, String), i64>,
    /// (topic, partition, offset) of dead letters.
    dead: HashSet<(String, i32, i64)>,
    /// (topic, stream, version) held behind a gap.
    held: HashSet<(String, String, i64)>,
}

async fn projection_cut(conn: &mut PgConnection) -> anyhow::Result<ProjectionCut> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut cut = ProjectionCut::default();
    for r in sqlx::query("SELECT topic, partition, next_offset FROM consumer_positions")
        .fetch_all(&mut *tx)
        .await?
    {
        cut.positions
            .insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    for r in sqlx::query("SELECT topic, stream_id, version FROM stream_positions")
        .fetch_all(&mut *tx)
        .await?
    {
        cut.versions
            .insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    for r in sqlx::query("SELECT topic, partition, kafka_offset FROM dead_letters")
        .fetch_all(&mut *tx)
        .await?
    {
        cut.dead
            .insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    for r in sqlx::query("SELECT topic, stream_id, stream_version FROM held_events")
        .fetch_all(&mut *tx)
        .await?
    {
        cut.held
            .insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    tx.rollback().await?;
    Ok(cut)
}

fn compare_projection(finding: &mut Finding, topic: &str, cut: &ProjectionCut, read: &TopicRead) {
    let mut covered = 0usize;
    let (mut dead, mut held) = (0usize, 0usize);
    let mut skipped = Vec::new();
    for r in &read.records {
        let next = cut
            .positions
            .get(&(topic.to_owned(), r.partition))
            .copied()
            .unwrap_or(0);
        if r.offset >= next {
            continue;
        }
        covered += 1;
        let Some(version) = r.stream_version else {
            // Unreadable records are dead letters or skipped by design.
            continue;
        };
        let applied = cut
            .versions
            .get(&(topic.to_owned(), r.key.clone()))
            .copied()
            .unwrap_or(0);
        if version <= applied {
            continue;
        }
        if cut
            .dead
            .contains(&(topic.to_owned(), r.partition, r.offset))
        {
            dead += 1;
        } else if cut
            .held
            .contains(&(topic.to_owned(), r.key.clone(), version))
        {
            held += 1;
        } else {
            skipped.push(format!(
                "stream {} version {version} (partition {} offset {}): applied only up to version {applied}",
                r.key, r.partition, r.offset
            ));
        }
    }
    let past_end: Vec<String> = cut
        .positions
        .iter()
        .filter(|((t, _), _)| t == topic)
        .filter_map(|((_, partition), next)| {
            let high = read.high.get(partition).copied().unwrap_or(0);
            (*next > high).then(|| {
                format!("partition {partition}: position {next}, but the partition ends at {high}")
            })
        })
        .collect();
    let behind: i64 = read
        .high
        .iter()
        .map(|(p, high)| {
            high - cut
                .positions
                .get(&(topic.to_owned(), *p))
                .copied()
                .unwrap_or(0)
        })
        .map(|n| n.max(0))
        .sum();
    finding.summary.push(format!(
        "{topic}: {covered} records below its positions, {dead} dead-lettered, {held} held behind a gap, {behind} not read yet"
    ));
    finding.differ(
        &format!("records of {topic} below the positions but never applied"),
        skipped,
    );
    finding.differ(&format!("positions past the end of {topic}"), past_end);
}

/// Tables of the consumer runtime: positions and bookkeeping, not the read model.
const CONSUMER_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "consumer_positions",
    "stream_positions",
    "dead_letters",
    "held_events",
    "consumer_generation",
];

/// The read model's rows against a fresh fold of its topics up to the same
/// positions (see the module docs).
async fn compare_with_fold(
    registry: &Registry,
    component: &Component,
    finding: &mut Finding,
) -> anyhow::Result<()> {
    let Some(service) = crate::components::projection(&component.name) else {
        finding
            .summary
            .push("not in this build: its rows were not folded".to_owned());
        return Ok(());
    };
    let mut live = connect(registry, component).await?;
    let mut snapshot = live.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let mut until = BTreeMap::new();
    for r in sqlx::query("SELECT topic, partition, next_offset FROM public.consumer_positions")
        .fetch_all(&mut *snapshot)
        .await?
    {
        until.insert(
            (r.try_get::<String, _>(0)?, r.try_get::<i32, _>(1)?),
            r.try_get::<i64, _>(2)?,
        );
    }
    let started = Instant::now();
    let schema = service
        .fold(
            registry,
            &registry.platform.kafka_brokers,
            crate::components::all_schemas()?,
            &until,
            tokio_util::sync::CancellationToken::new(),
        )
        .await?;
    let owner_url = registry
        .owner_database_url(component)
        .ok_or_else(|| anyhow!("{} has no database", component.name))?;
    let mut owner = PgConnection::connect(&owner_url).await?;
    let compared = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
              WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .bind(&schema)
        .fetch_all(&mut owner)
        .await?;
        let mut rows_checked = 0;
        let mut differ = Vec::new();
        for table in tables.iter().filter(|t| !CONSUMER_TABLES.contains(&t.as_str())) {
            let rows = |schema: &str| {
                format!("SELECT to_jsonb(t)::text FROM \"{schema}\".\"{table}\" t ORDER BY 1")
            };
            let live_rows: Vec<String> = sqlx::query_scalar(&rows("public"))
                .fetch_all(&mut *snapshot)
                .await?;
            let fold_rows: Vec<String> = sqlx::query_scalar(&rows(&schema))
                .fetch_all(&mut owner)
                .await?;
            rows_checked += live_rows.len();
            let (only_live, only_fold) = multiset_difference(&live_rows, &fold_rows);
            differ.extend(only_live.into_iter().map(|r| {
                format!("{table}: in the read model, not in a fresh fold: {}", shorten(r))
            }));
            differ.extend(only_fold.into_iter().map(|r| {
                format!("{table}: in a fresh fold, not in the read model: {}", shorten(r))
            }));
        }
        finding.summary.push(format!(
            "{rows_checked} rows of {} tables compared with a fresh fold up to its positions ({:.1} s)",
            tables.len() - tables.iter().filter(|t| CONSUMER_TABLES.contains(&t.as_str())).count(),
            started.elapsed().as_secs_f64()
        ));
        finding.differ("rows that differ from a fresh fold of the topics", differ);
        anyhow::Ok(())
    }
    .await;
    let dropped = sluice_platform::projection::drop_fold(&mut owner, &schema).await;
    snapshot.rollback().await?;
    compared?;
    dropped.with_context(|| format!("dropping the fold {schema}"))?;
    Ok(())
}

/// Rows of `a` missing from `b` and of `b` missing from `a`, counting repeats
/// (both sorted).
fn multiset_difference<'a>(a: &'a [String], b: &'a [String]) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.as_str());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(y.as_str());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.as_str());
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(y.as_str());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

fn shorten(row: &str) -> String {
    if row.chars().count() > 240 {
        format!("{}…", row.chars().take(240).collect::<String>())
    } else {
        row.to_owned()
    }
}

/// The warehouse, through the analyst endpoint (the analytics component holds
/// the DuckDB file).
struct Warehouse {
    session: sluice_analytics::shell::Session,
}

impl Warehouse {
    async fn connect(registry: &Registry) -> anyhow::Result<Warehouse> {
        let analytics = registry
            .analytics
            .as_ref()
            .ok_or_else(|| anyhow!("no [analytics] in the registry"))?;
        // The registry keeps only verifiers: the password comes from the
        // environment, as libpq's clients take it.
        let user =
            match std::env::var("PGUSER") {
                Ok(user) => user,
                Err(_) => analytics.analysts.keys().next().cloned().ok_or_else(|| {
                    anyhow!("no analyst under [analytics.analysts] to connect as")
                })?,
            };
        let password = std::env::var("PGPASSWORD").map_err(|_| {
            anyhow!("set PGPASSWORD to the password of analyst `{user}` (or PGUSER to another analyst): verify reads the warehouse through the analyst endpoint")
        })?;
        let options = sluice_analytics::shell::ConnectOptions {
            host: sluice_platform::service::listen_host(),
            port: analytics.sql_port,
            user,
            password,
            database: "warehouse".to_owned(),
        };
        let session = sluice_analytics::shell::Session::connect(&options, "sluice verify")
            .await
            .context("the analyst endpoint of the analytics component")?;
        Ok(Warehouse { session })
    }

    async fn rows(&self, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        Ok(self
            .session
            .query(sql)
            .await
            .with_context(|| format!("warehouse: {sql}"))?
            .rows)
    }

    /// `sluice_positions`: (topic, partition) → next offset.
    async fn positions(&mut self) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        self.rows("SELECT topic, partition, next_offset FROM sluice_positions")
            .await?
            .into_iter()
            .map(|r| Ok(((text(&r, 0)?, text(&r, 1)?.parse()?), text(&r, 2)?.parse()?)))
            .collect()
    }

    async fn compare(
        &mut self,
        finding: &mut Finding,
        positions: &BTreeMap<(String, i32), i64>,
        topics: &BTreeMap<String, TopicRead>,
    ) -> anyhow::Result<()> {
        let below = |topic: &str, partition: i32, offset: i64| {
            offset
                < positions
                    .get(&(topic.to_owned(), partition))
                    .copied()
                    .unwrap_or(0)
        };
        // Rows loaded after the positions were read lie past them: left out.
        let mut loaded: HashMap<Uuid, (String, i64)> = HashMap::new();
        let mut twice = Vec::new();
        for r in self
            .rows("SELECT topic, partition, kafka_offset, event_id::VARCHAR FROM raw_events")
            .await?
        {
            let (topic, partition, offset) =
                (text(&r, 0)?, text(&r, 1)?.parse()?, text(&r, 2)?.parse()?);
            if !below(&topic, partition, offset) {
                continue;
            }
            let event_id: Uuid = text(&r, 3)?.parse()?;
            if loaded.insert(event_id, (topic, offset)).is_some() {
                twice.push(event_id.to_string());
            }
        }
        let mut expected: HashSet<Uuid> = HashSet::new();
        let mut missing = Vec::new();
        for (topic, read) in topics {
            for r in &read.records {
                let Some(event_id) = r.event_id else { continue };
                if below(topic, r.partition, r.offset)
                    && expected.insert(event_id)
                    && !loaded.contains_key(&event_id)
                {
                    missing.push(format!(
                        "{event_id} ({topic} partition {} offset {})",
                        r.partition, r.offset
                    ));
                }
            }
        }
        let mut extra: Vec<String> = loaded
            .iter()
            .filter(|(id, (topic, _))| topics.contains_key(topic) && !expected.contains(id))
            .map(|(id, (topic, offset))| format!("{id} ({topic} offset {offset})"))
            .collect();
        extra.sort();
        finding.summary.push(format!(
            "raw_events: {} events below the sink's positions, {} expected from the topics",
            loaded.len(),
            expected.len()
        ));
        finding.differ(
            "events below the sink's positions missing from raw_events",
            missing,
        );
        finding.differ("events in raw_events that are not on their topic", extra);
        finding.differ("events loaded twice into raw_events", twice);

        // Typed tables against raw_events, each in one statement (one snapshot).
        let mut typed = Vec::new();
        let mut checked = 0;
        for service in crate::components::WRITE_SERVICES {
            let catalog = service.catalog()?;
            for event_type in catalog.event_types() {
                let table = sluice_analytics::sink::typed_table_name(event_type);
                let literal = event_type.replace('\'', "''");
                let counts = self
                    .rows(&format!(
                        "SELECT (SELECT count(*) FROM raw_events r WHERE r.event_type = '{literal}' \
                                   AND r.payload IS NOT NULL \
                                   AND NOT EXISTS (SELECT 1 FROM \"{table}\" t WHERE t.event_id = r.event_id)), \
                                (SELECT count(*) FROM \"{table}\" t \
                                  WHERE NOT EXISTS (SELECT 1 FROM raw_events r WHERE r.event_id = t.event_id)), \
                                (SELECT count(*) FROM \"{table}\")"
                    ))
                    .await?;
                let row = counts
                    .first()
                    .ok_or_else(|| anyhow!("no counts for {table}"))?;
                let (no_typed, no_raw, rows): (i64, i64, i64) = (
                    text(row, 0)?.parse()?,
                    text(row, 1)?.parse()?,
                    text(row, 2)?.parse()?,
                );
                checked += rows;
                if no_typed > 0 {
                    typed.push(format!(
                        "{no_typed} decoded {event_type} rows of raw_events missing from {table}"
                    ));
                }
                if no_raw > 0 {
                    typed.push(format!("{no_raw} rows of {table} missing from raw_events"));
                }
            }
        }
        finding.summary.push(format!(
            "typed tables: {checked} rows checked against raw_events"
        ));
        finding.differ("typed tables that disagree with raw_events", typed);
        Ok(())
    }

    async fn close(self) {
        self.session.close().await;
    }
}

fn text(row: &[Option<String>], i: usize) -> anyhow::Result<String> {
    row.get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| anyhow!("warehouse: column {i} is NULL"))
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

#[cfg(test)]
mod tests {
    use super::multiset_difference;

    #[test]
    fn the_difference_of_two_sorted_multisets_counts_repeats() {
        let a: Vec<String> = ["a", "b", "b", "d"].map(String::from).to_vec();
        let b: Vec<String> = ["b", "c", "d", "d"].map(String::from).to_vec();
        assert_eq!(
            multiset_difference(&a, &b),
            (vec!["a", "b"], vec!["c", "d"])
        );
        assert_eq!(multiset_difference(&a, &a), (vec![], vec![]));
    }
}
