//! topic ↔ warehouse: the sink's `raw_events` and typed tables against the topics,
//! read through the analyst endpoint.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{anyhow, Context};
use sluice_platform::registry::Registry;
use uuid::Uuid;

use super::{Finding, TopicRead};

/// The warehouse, through the analyst endpoint (the analytics component holds
/// the DuckDB file).
pub(super) struct Warehouse {
    session: sluice_analytics::shell::Session,
}

impl Warehouse {
    pub(super) async fn connect(registry: &Registry) -> anyhow::Result<Warehouse> {
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
    pub(super) async fn positions(&mut self) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        self.rows("SELECT topic, partition, next_offset FROM sluice_positions")
            .await?
            .into_iter()
            .map(|r| Ok(((text(&r, 0)?, text(&r, 1)?.parse()?), text(&r, 2)?.parse()?)))
            .collect()
    }

    pub(super) async fn compare(
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

    pub(super) async fn close(self) {
        self.session.close().await;
    }
}

fn text(row: &[Option<String>], i: usize) -> anyhow::Result<String> {
    row.get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| anyhow!("warehouse: column {i} is NULL"))
}
