//! Where a consumer is: the next offset of each partition (`consumer_positions`),
//! the last applied version of each stream (`stream_positions`) with the one
//! continuity check, events held behind a gap (`held_events`), and the generation
//! of the read model (`consumer_generation`). Every write happens in the
//! transaction that applies the events it accounts for.

use std::collections::BTreeMap;
use std::future::Future;

use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::ConsumedEvent;
use crate::broker::{PositionStore, Record};

pub(super) use crate::broker::Offsets;

/// The consumer's own database as the store of its positions (`consumer_positions`).
pub(super) struct ConsumerPositions<'a>(pub &'a PgPool);

impl PositionStore for ConsumerPositions<'_> {
    type Error = sqlx::Error;

    fn stored_offsets(&self) -> impl Future<Output = Result<Offsets, sqlx::Error>> + Send {
        stored_offsets(self.0)
    }
}

/// Where an event stands against the last applied version of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continuity {
    /// At or below it: delivered again (the relay delivers at least once); dropped.
    Duplicate,
    /// The version after it: applied now.
    Next,
    /// Beyond the next: an earlier version has not arrived; the event waits.
    Gap,
}

impl Continuity {
    /// The continuity of version `version` of a stream whose last applied version is
    /// `last` (0: none yet).
    pub(super) fn of(version: i64, last: i64) -> Self {
        if version <= last {
            Continuity::Duplicate
        } else if version == last + 1 {
            Continuity::Next
        } else {
            Continuity::Gap
        }
    }
}

/// The stored next offset of every partition this consumer has applied from.
async fn stored_offsets(pool: &PgPool) -> Result<Offsets, sqlx::Error> {
    Ok(
        sqlx::query("SELECT topic, partition, next_offset FROM consumer_positions")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect(),
    )
}

/// `offsets` moved past every record of `batch`.
pub(super) fn advance_offsets(offsets: &mut Offsets, batch: &[Record]) {
    for record in batch {
        offsets.insert((record.topic.clone(), record.partition), record.offset + 1);
    }
}

/// Stores each partition's next offset after `batch`, in the batch's transaction.
pub(super) async fn store_offsets(
    tx: &mut PgConnection,
    batch: &[Record],
) -> Result<(), sqlx::Error> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for record in batch {
        next.insert((&record.topic, record.partition), record.offset + 1);
    }
    for ((topic, partition), offset) in &next {
        sqlx::query(include_str!("sql/store_offset.sql"))
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The last applied version of a stream (0: none yet).
pub(super) async fn stream_version(
    tx: &mut PgConnection,
    topic: &str,
    stream_id: &str,
) -> Result<i64, sqlx::Error> {
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM stream_positions WHERE topic = $1 AND stream_id = $2",
    )
    .bind(topic)
    .bind(stream_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(last.unwrap_or(0))
}

/// Whether `event`'s stream has events held behind a gap (they go first).
pub(super) async fn is_parked(
    tx: &mut PgConnection,
    event: &ConsumedEvent,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM held_events WHERE topic = $1 AND stream_id = $2)",
    )
    .bind(&event.topic)
    .bind(event.stream_id.as_str())
    .fetch_one(&mut *tx)
    .await
}

/// Parks `record` (of `event`) in `held_events` until its stream catches up.
pub(super) async fn hold(
    tx: &mut PgConnection,
    record: &Record,
    event: &ConsumedEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(include_str!("sql/hold.sql"))
        .bind(&event.topic)
        .bind(event.stream_id.as_str())
        .bind(event.stream_version.get())
        .bind(record.partition)
        .bind(record.offset)
        .bind(serde_json::to_value(&record.headers).unwrap_or_default())
        .bind(&record.payload)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A stream's position moving from the version it was read at to a later one.
pub(super) struct StreamMove<'a> {
    pub topic: &'a str,
    pub stream_id: &'a str,
    /// The version read before applying (0: the stream had no position).
    pub from: i64,
    pub to: i64,
}

impl<'a> StreamMove<'a> {
    /// `event`'s stream moving to it from `last`.
    pub(super) fn to_event(event: &'a ConsumedEvent, last: i64) -> Self {
        StreamMove {
            topic: &event.topic,
            stream_id: event.stream_id.as_str(),
            from: last,
            to: event.stream_version.get(),
        }
    }
}

/// Moves stream positions by compare-and-set, inside the transaction that applied
/// the events: each from the version it was read at, or not at all. False when any
/// stream was moved on by another transaction since it was read (a second instance
/// of this consumer, a dead-letter replay): the caller rolls its changes back, as
/// they are in already. Concurrent movers of one stream serialize on its row (or,
/// for a new stream, on the key), so at most one of them applies each version.
pub(super) async fn advance_streams(
    tx: &mut PgConnection,
    moves: &[StreamMove<'_>],
) -> Result<bool, sqlx::Error> {
    if moves.is_empty() {
        return Ok(true);
    }
    let topics: Vec<&str> = moves.iter().map(|m| m.topic).collect();
    let streams: Vec<&str> = moves.iter().map(|m| m.stream_id).collect();
    let from: Vec<i64> = moves.iter().map(|m| m.from).collect();
    let to: Vec<i64> = moves.iter().map(|m| m.to).collect();
    let moved: i64 = sqlx::query_scalar(include_str!("sql/advance_streams.sql"))
        .bind(&topics)
        .bind(&streams)
        .bind(&from)
        .bind(&to)
        .fetch_one(&mut *tx)
        .await?;
    Ok(moved == moves.len() as i64)
}

/// The generation of the read model the database holds.
pub(super) async fn generation(pool: &PgPool) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT generation FROM consumer_generation")
        .fetch_one(pool)
        .await
}

/// Takes this consumer's generation row FOR SHARE, held until `tx` ends: a rebuild's
/// swap waits for the transaction, and a transaction that waited for a swap sees the
/// row retired. False when the database holds another generation than `generation`.
pub(super) async fn holds_generation(
    tx: &mut PgConnection,
    generation: Uuid,
) -> Result<bool, sqlx::Error> {
    let (current, retired): (Uuid, bool) =
        sqlx::query_as("SELECT generation, retired FROM consumer_generation FOR SHARE")
            .fetch_one(&mut *tx)
            .await?;
    Ok(current == generation && !retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_a_duplicate_the_next_or_beyond_a_gap() {
        assert_eq!(Continuity::of(1, 0), Continuity::Next);
        assert_eq!(Continuity::of(3, 3), Continuity::Duplicate);
        assert_eq!(Continuity::of(2, 3), Continuity::Duplicate);
        assert_eq!(Continuity::of(5, 3), Continuity::Gap);
    }
}
