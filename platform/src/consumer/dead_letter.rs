//! Dead letters: events a handler refused (after its retries) and records that
//! did not decode, kept in `dead_letters` and announced on `<component>.dlq`;
//! listing and replaying them (`sluice dlq`).

use chrono::{DateTime, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use super::decode::{decode, stored_record};
use super::positions::{advance_streams, stream_version, Continuity, StreamMove};
use super::{ConsumedEvent, ConsumerError, ConsumerRuntime, EventHandler};
use crate::avro::SchemaCatalog;
use crate::broker::Record;

impl<H: EventHandler> ConsumerRuntime<H> {
    /// Creates `<component>.dlq` if missing (and checks it) and a producer for it.
    pub(super) async fn dlq_producer(&self) -> Result<FutureProducer, ConsumerError> {
        if !self.config.announce_dead_letters {
            return Ok(crate::relay::producer_config(&self.bootstrap).create()?);
        }
        let topic = self
            .config
            .replication
            .dead_letter_topic(self.dead_letter_topic());
        crate::broker::ensure_topics(&self.bootstrap, [topic])
            .await
            .map_err(|e| ConsumerError::DeadLetterTopic(e.to_string()))?;
        Ok(crate::relay::producer_config(&self.bootstrap).create()?)
    }

    /// Announces a dead letter on `<component>.dlq`. Fire and forget: the dead-letter
    /// row is the record of truth, the topic a notification, and the consumer must
    /// not wait on it.
    pub(super) fn publish_dead_letter(&self, dlq: &FutureProducer, record: &Record) {
        if !self.config.announce_dead_letters {
            return;
        }
        let topic = self.dead_letter_topic();
        let enqueued = dlq.send_result(
            FutureRecord::to(&topic)
                .key(&record.key)
                .payload(&record.payload),
        );
        if let Err((e, _)) = enqueued {
            tracing::warn!(%topic, error = %e, "dead letter not published to its topic");
        }
    }

    /// `<component>.dlq` as the broker names it.
    fn dead_letter_topic(&self) -> String {
        self.config
            .topic_names
            .physical(&format!("{}.dlq", self.component))
    }
}

/// Keeps `record` (and `event`, when it decoded) in `dead_letters` with why it
/// failed; a record dead-lettered again counts the new attempts.
pub(super) async fn dead_letter(
    tx: &mut PgConnection,
    record: &Record,
    event: Option<&ConsumedEvent>,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(include_str!("sql/dead_letter.sql"))
        .bind(&record.topic)
        .bind(record.partition)
        .bind(record.offset)
        .bind(&record.key)
        .bind(event.map(|e| e.event_id))
        .bind(event.map(|e| e.event_type.clone()))
        .bind(serde_json::to_value(&record.headers).unwrap_or_default())
        .bind(&record.payload)
        .bind(event.and_then(|e| serde_json::to_value(e).ok()))
        .bind(error)
        .bind(attempts as i32)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A dead letter as `sluice dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub stream_id: String,
    pub event_type: Option<String>,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Dead letters in the order they failed; only those not yet replayed unless `all`.
pub async fn dead_letters(pool: &PgPool, all: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(include_str!("sql/dead_letters.sql"))
        .bind(all)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                topic: r.try_get(1)?,
                partition: r.try_get(2)?,
                offset: r.try_get(3)?,
                stream_id: r.try_get(4)?,
                event_type: r.try_get(5)?,
                error: r.try_get(6)?,
                attempts: r.try_get(7)?,
                first_failed_at: r.try_get(8)?,
                last_failed_at: r.try_get(9)?,
                replayed_at: r.try_get(10)?,
            })
        })
        .collect()
}

/// What a replay did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Applied now; marked replayed.
    Applied(i64),
    /// Its stream had already moved past it; marked replayed.
    AlreadyApplied(i64),
    /// Failed again; stays a dead letter with the new error.
    Failed(i64, String),
}

/// Applies dead letters again (all unreplayed ones in failure order, or `ids`), each
/// in its own transaction with its stream position. Undecodable ones are decoded
/// anew, so a consumer upgraded with a newer schema can take them.
pub async fn replay_dead_letters<H: EventHandler>(
    pool: &PgPool,
    catalog: &SchemaCatalog,
    handler: &H,
    ids: Option<&[i64]>,
) -> Result<Vec<Replayed>, ConsumerError> {
    let rows = sqlx::query(include_str!("sql/replay_candidates.sql"))
        .bind(ids.map(<[i64]>::to_vec))
        .fetch_all(pool)
        .await?;
    let mut report = Vec::new();
    for row in rows {
        let record = stored_record(&row)?;
        let id: i64 = row.try_get(6)?;
        let mut tx = pool.begin().await?;
        let outcome = match decode(catalog, &record) {
            Err(error) => Replayed::Failed(id, error.to_string()),
            Ok(event) => {
                let last = stream_version(&mut tx, &event.topic, event.stream_id.as_str()).await?;
                let continuity = Continuity::of(event.stream_version.get(), last);
                if continuity == Continuity::Duplicate {
                    Replayed::AlreadyApplied(id)
                } else if continuity == Continuity::Gap {
                    Replayed::Failed(
                        id,
                        format!(
                            "stream {} is at version {last}; version {} needs the ones before it first",
                            event.stream_id, event.stream_version
                        ),
                    )
                } else {
                    sqlx::query("SAVEPOINT sluice_replay")
                        .execute(&mut *tx)
                        .await?;
                    let moved = StreamMove::to_event(&event, last);
                    match handler.apply(&mut tx, &event).await {
                        Ok(()) if advance_streams(&mut tx, &[moved]).await? => {
                            Replayed::Applied(id)
                        }
                        // The live consumer applied it meanwhile.
                        Ok(()) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT sluice_replay")
                                .execute(&mut *tx)
                                .await?;
                            Replayed::AlreadyApplied(id)
                        }
                        Err(e) => Replayed::Failed(id, e.to_string()),
                    }
                }
            }
        };
        match &outcome {
            Replayed::Applied(_) | Replayed::AlreadyApplied(_) => {
                sqlx::query(
                    "UPDATE dead_letters SET replayed_at = clock_timestamp() WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Replayed::Failed(_, error) => {
                tx.rollback().await?;
                sqlx::query(
                    "UPDATE dead_letters SET error = $2, attempts = attempts + 1, \
                     last_failed_at = clock_timestamp() WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .execute(pool)
                .await?;
            }
        }
        report.push(outcome);
    }
    Ok(report)
}
