//! store ↔ topic: a write service's events against the records of its topics.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Finding, TopicRead};

/// The relay's highest checkpoint, `(txid, global_position)`; `(0, 0)` before the
/// first.
pub(super) async fn checkpoint(conn: &mut PgConnection) -> anyhow::Result<(String, i64)> {
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
pub(super) struct StoredEvent {
    stream_id: String,
    stream_version: i64,
    published: bool,
}

pub(super) async fn store_events(
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

pub(super) fn compare_store(
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
