//! `sluice status`: one table of the running platform, one row per component.
//!
//! Everything comes from what the components already publish, plus two reads of
//! their databases: each component's `/health/ready` and `/metrics` (under
//! `sluice up` the metrics are process-wide, so any component's carry the parts the
//! supervisor runs), the dead letters of each consumer, and the transaction that
//! holds a stalled relay back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sluice_platform::registry::{Component, ComponentKind, Registry};

/// The platform at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub components: Vec<ComponentStatus>,
    /// The sink's progress per topic.
    pub sink: Vec<TopicWatermark>,
}

/// One component's row.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub kind: String,
    /// `ready`, or why not.
    pub health: String,
    pub ready: bool,
    /// Events on its topics it has not applied yet (consumers).
    pub events_behind: Option<i64>,
    /// Age of the last event it applied when it applied it, while it is behind.
    pub seconds_behind: Option<f64>,
    /// Write services: events committed and not yet published.
    pub relay_unpublished: Option<i64>,
    /// Write services: the open transaction holding the relay back, when one does.
    pub relay_stall: Option<String>,
    /// Streams held back behind a gap.
    pub held_streams: Option<i64>,
    /// Dead letters not yet replayed.
    pub dead_letters: Option<i64>,
    /// Restarts by the supervisor since `sluice up` started.
    pub restarts: u64,
}

/// How far the sink has loaded one topic.
#[derive(Debug, Clone, Serialize)]
pub struct TopicWatermark {
    pub topic: String,
    /// The newest event time loaded from any of its partitions (RFC 3339).
    pub loaded_through: Option<String>,
    /// Records on the broker not yet read.
    pub records_behind: i64,
    /// Seconds between the newest event loaded and its load.
    pub lag_seconds: Option<f64>,
}

/// One Prometheus sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (what `/metrics` serves): comments skipped,
/// label values unescaped.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rfind(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.find('{') {
            Some(i) => (&head[..i], parse_labels(&head[i + 1..head.len() - 1])),
            None => (head, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

struct Metrics(Vec<Sample>);

impl Metrics {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        label: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name && s.labels.get(label).map(String::as_str) == Some(value)
        })
    }

    fn sum(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .matching(name, label, value)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    fn max(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.matching(name, label, value)
            .map(|s| s.value)
            .reduce(f64::max)
    }
}

/// Reads the running platform of `registry`.
pub async fn snapshot(registry: &Registry) -> anyhow::Result<Status> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut components: Vec<&Component> = registry
        .components()
        .iter()
        .filter(|c| crate::components::runnable(c).is_some())
        .collect();
    // Upstream first: write services, then what reads their topics.
    components.sort_by_key(|c| (kind_order(c.kind), c.name.clone()));
    // Health and metrics of every component at once; series seen twice (one process
    // under `sluice up`) are the same series.
    let probes = futures::future::join_all(components.iter().map(|c| probe(&client, c))).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for (_, metrics) in &probes {
        for s in parse_metrics(metrics.as_deref().unwrap_or_default()) {
            if seen.insert((s.name.clone(), s.labels.clone())) {
                samples.push(s);
            }
        }
    }
    let metrics = Metrics(samples);
    let mut rows = Vec::new();
    for (c, (health, _)) in components.iter().zip(probes) {
        rows.push(component_status(registry, c, health, &metrics).await);
    }
    Ok(Status {
        components: rows,
        sink: sink_watermarks(&metrics),
    })
}

/// Upstream first: write services, reactors, projections, the sink.
pub fn kind_order(kind: ComponentKind) -> u8 {
    match kind {
        ComponentKind::Service => 0,
        ComponentKind::Reactor => 1,
        ComponentKind::Projection => 2,
        ComponentKind::Sink => 3,
    }
}

/// `/health/ready` (Ok: ready; Err: why not) and `/metrics` of one component.
async fn probe(client: &reqwest::Client, c: &Component) -> (Result<(), String>, Option<String>) {
    let base = format!("http://127.0.0.1:{}", c.port);
    let health = match client.get(format!("{base}/health/ready")).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            Err(body["detail"].as_str().unwrap_or("not ready").to_owned())
        }
        Err(_) => Err(format!("down: nothing answers on port {}", c.port)),
    };
    let metrics = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.ok(),
        _ => None,
    };
    (health, metrics)
}

async fn component_status(
    registry: &Registry,
    c: &Component,
    health: Result<(), String>,
    metrics: &Metrics,
) -> ComponentStatus {
    let name = c.name.as_str();
    let restarts = metrics
        .sum("sluice_component_restarts_total", "component", name)
        .unwrap_or(0.0) as u64;
    // A part the supervisor is restarting says more than "nothing answers".
    let down_parts: Vec<&str> = metrics
        .matching("sluice_component_up", "component", name)
        .filter(|s| s.value == 0.0)
        .filter_map(|s| s.labels.get("part").map(String::as_str))
        .collect();
    let ready = health.is_ok() && down_parts.is_empty();
    let health = if down_parts.is_empty() {
        health.err().unwrap_or_else(|| "ready".to_owned())
    } else {
        format!("{} restarting ({restarts} restarts)", down_parts.join(", "))
    };
    // The consumer of a component: a projection by its name, a service's reactor as
    // `<service>_reactor`; the sink reports its own lag.
    let consumer = match c.kind {
        ComponentKind::Service => format!("{name}_reactor"),
        _ => name.to_owned(),
    };
    let (events_behind, lag_seconds) = if c.kind == ComponentKind::Sink {
        let named = |name: &'static str| metrics.0.iter().filter(move |s| s.name == name);
        (
            named("sluice_sink_lag_records")
                .map(|s| s.value as i64)
                .reduce(|a, b| a + b),
            named("sluice_sink_lag_seconds")
                .map(|s| s.value)
                .reduce(f64::max),
        )
    } else {
        (
            metrics
                .sum("sluice_consumer_lag_events", "component", &consumer)
                .map(|v| v as i64),
            metrics.max("sluice_consumer_lag_seconds", "component", &consumer),
        )
    };
    let seconds_behind = match events_behind {
        Some(0) => Some(0.0),
        Some(_) => lag_seconds,
        None => None,
    };
    let held_streams = metrics
        .sum("sluice_consumer_held_streams", "component", &consumer)
        .map(|v| v as i64);
    let relay_unpublished = (c.kind == ComponentKind::Service)
        .then(|| metrics.sum("sluice_relay_unpublished_events", "service", name))
        .flatten()
        .map(|v| v as i64);
    let oldest = metrics
        .max(
            "sluice_relay_oldest_unpublished_age_seconds",
            "service",
            name,
        )
        .unwrap_or(0.0);
    let consumes = c.kind != ComponentKind::Sink && !c.consumes.is_empty();
    let (dead_letters, relay_stall) = database_facts(
        registry,
        c,
        consumes,
        relay_unpublished.unwrap_or(0) > 0 && oldest > 5.0,
    )
    .await;
    ComponentStatus {
        name: name.to_owned(),
        kind: format!("{:?}", c.kind).to_lowercase(),
        health,
        ready,
        events_behind,
        seconds_behind,
        relay_unpublished,
        relay_stall,
        held_streams,
        dead_letters,
        restarts,
    }
}

/// Dead letters not yet replayed, and (when `stalled`) the transaction holding the
/// relay back, read as the component's app role; `None` when its database does not
/// answer within a few seconds.
async fn database_facts(
    registry: &Registry,
    c: &Component,
    consumes: bool,
    stalled: bool,
) -> (Option<i64>, Option<String>) {
    if c.database.is_none() || !(consumes || stalled) {
        return (None, None);
    }
    let Some(url) = registry.app_database_url(c) else {
        return (None, None);
    };
    let connect = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&url);
    let Ok(Ok(pool)) = tokio::time::timeout(Duration::from_secs(3), connect).await else {
        return (None, None);
    };
    let dead = if consumes {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .fetch_one(&pool)
            .await
            .ok()
    } else {
        None
    };
    let stall = if stalled {
        match sluice_platform::relay::horizon_blocker(&pool).await {
            Ok(Some(b)) => Some(format!(
                "held back by pid {} ({}, open {:.0} s): {}",
                b.pid, b.state, b.transaction_age_seconds, b.query
            )),
            _ => None,
        }
    } else {
        None
    };
    pool.close().await;
    (dead, stall)
}

fn sink_watermarks(metrics: &Metrics) -> Vec<TopicWatermark> {
    let mut topics: BTreeMap<String, TopicWatermark> = BTreeMap::new();
    for s in &metrics.0 {
        let Some(topic) = s.labels.get("topic") else {
            continue;
        };
        let entry = || TopicWatermark {
            topic: topic.clone(),
            loaded_through: None,
            records_behind: 0,
            lag_seconds: None,
        };
        match s.name.as_str() {
            "sluice_sink_lag_records" => {
                topics
                    .entry(topic.clone())
                    .or_insert_with(entry)
                    .records_behind += s.value as i64;
            }
            "sluice_sink_watermark_seconds" => {
                let t = topics.entry(topic.clone()).or_insert_with(entry);
                let at = chrono::DateTime::from_timestamp_micros((s.value * 1e6) as i64)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                if at > t.loaded_through {
                    t.loaded_through = at;
                }
            }
            "sluice_sink_lag_seconds" => {
                let t = topics.entry(topic.clone()).or_insert_with(entry);
                t.lag_seconds = Some(t.lag_seconds.map_or(s.value, |l: f64| l.max(s.value)));
            }
            _ => {}
        }
    }
    topics.into_values().collect()
}

/// The table `sluice status` prints.
pub fn render(status: &Status) -> String {
    use std::fmt::Write;
    let dash = || "-".to_owned();
    let mut out = format!(
        "{:<18} {:<11} {:<32} {:>8} {:>9} {:>11} {:>5} {:>5}\n",
        "COMPONENT", "KIND", "HEALTH", "BEHIND", "BEHIND_S", "UNPUBLISHED", "HELD", "DEAD"
    );
    let mut notes = Vec::new();
    for c in &status.components {
        let mut health = c.health.clone();
        if health.chars().count() > 32 {
            notes.push(format!("{}: {}", c.name, c.health));
            health = health.chars().take(31).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{:<18} {:<11} {:<32} {:>8} {:>9} {:>11} {:>5} {:>5}",
            c.name,
            c.kind,
            health,
            c.events_behind.map_or_else(dash, |v| v.to_string()),
            c.seconds_behind.map_or_else(dash, |v| format!("{v:.1}")),
            c.relay_unpublished.map_or_else(dash, |v| v.to_string()),
            c.held_streams.map_or_else(dash, |v| v.to_string()),
            c.dead_letters.map_or_else(dash, |v| v.to_string()),
        );
        if let Some(stall) = &c.relay_stall {
            notes.push(format!("{} relay: {stall}", c.name));
        }
        if c.restarts > 0 && c.ready {
            notes.push(format!("{}: restarted {} times", c.name, c.restarts));
        }
    }
    if !status.sink.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<22} {:<26} {:>14} {:>9}",
            "SINK TOPIC", "LOADED THROUGH", "RECORDS_BEHIND", "LAG_S"
        );
        for t in &status.sink {
            let _ = writeln!(
                out,
                "{:<22} {:<26} {:>14} {:>9}",
                t.topic,
                t.loaded_through.clone().unwrap_or_else(dash),
                t.records_behind,
                t.lag_seconds.map_or_else(dash, |v| format!("{v:.1}")),
            );
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    out
}

/// `sluice status [--watch] [--json]`.
pub async fn run(registry: &Registry, watch: bool, json: bool) -> anyhow::Result<()> {
    loop {
        let status = snapshot(registry).await?;
        let text = if json {
            serde_json::to_string(&status)? + "\n"
        } else {
            render(&status)
        };
        if watch && !json {
            // Home and clear, then the table: refreshed in place.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
        }
        if !watch {
            if status.components.iter().all(|c| c.ready) {
                return Ok(());
            }
            anyhow::bail!("not every component is ready");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
