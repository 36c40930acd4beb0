//! topic → projection: every record below a projection's positions is accounted
//! for, and its rows equal a fresh fold of its topics up to those positions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use anyhow::{anyhow, Context};
use sluice_platform::registry::{Component, Registry};
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use super::{connect, Finding, TopicRead};

/// What a projection recorded, in one snapshot.
#[derive(Default)]
pub(super) struct ProjectionCut {
    /// (topic, partition) → next offset.
    positions: BTreeMap<(String, i32), i64>,
    /// (topic, stream) → last applied version.
    versions: HashMap<(String, String), i64>,
    /// (topic, partition, offset) of dead letters.
    dead: HashSet<(String, i32, i64)>,
    /// (topic, stream, version) held behind a gap.
    held: HashSet<(String, String, i64)>,
}

/// A read-only transaction on `conn` at repeatable read: one snapshot of a
/// projection's tables.
async fn snapshot(conn: &mut PgConnection) -> anyhow::Result<Transaction<'_, Postgres>> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The projection's `consumer_positions`: (topic, partition) → next offset.
async fn consumer_positions(
    conn: &mut PgConnection,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut positions = BTreeMap::new();
    for r in sqlx::query("SELECT topic, partition, next_offset FROM public.consumer_positions")
        .fetch_all(&mut *conn)
        .await?
    {
        positions.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    Ok(positions)
}

pub(super) async fn projection_cut(conn: &mut PgConnection) -> anyhow::Result<ProjectionCut> {
    let mut tx = snapshot(conn).await?;
    let mut cut = ProjectionCut {
        positions: consumer_positions(&mut tx).await?,
        ..ProjectionCut::default()
    };
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

pub(super) fn compare_projection(
    finding: &mut Finding,
    topic: &str,
    cut: &ProjectionCut,
    read: &TopicRead,
) {
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
pub(super) async fn compare_with_fold(
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
    let mut snapshot = snapshot(&mut live).await?;
    let until = consumer_positions(&mut snapshot).await?;
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
