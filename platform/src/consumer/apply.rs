//! Applying batches: one transaction per batch with its positions; a fast path
//! with no savepoints, and a careful path event by event (savepoints, retries,
//! dead letters, events held behind gaps) when the fast one cannot take the batch.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::producer::FutureProducer;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::dead_letter::dead_letter;
use super::decode::{decode, stored_record};
use super::positions::{
    advance_streams, hold, holds_generation, is_parked, store_offsets, stream_version, Continuity,
    StreamMove,
};
use super::runtime::{BatchOutcome, Outcome};
use super::{ConsumedEvent, ConsumerError, ConsumerRuntime, EventHandler, HandlerError};
use crate::broker::Record;

impl<H: EventHandler> ConsumerRuntime<H> {
    /// Applies a batch in one transaction with the new positions, unless the
    /// database now holds another generation of the read model than `generation`.
    pub(super) async fn apply_batch(
        &self,
        batch: &[Record],
        dlq: &FutureProducer,
        generation: Uuid,
    ) -> Result<BatchOutcome, ConsumerError> {
        let started = Instant::now();
        // A `consume` span per event, until the batch has committed (when exported).
        let _spans = crate::trace::HopSpans::open(
            "consume",
            &self.component,
            batch
                .iter()
                .map(|r| r.headers.get("traceparent").map(String::as_str)),
        );
        let mut tx = self.pool.begin().await?;
        if !holds_generation(&mut tx, generation).await? {
            tx.rollback().await?;
            return Ok(BatchOutcome::GenerationChanged);
        }
        // Fast path: the whole batch without savepoints. Any failure (a poison event,
        // a gap, an undecodable record) rolls it back and the careful path below
        // isolates the culprit event by event.
        let (applied, duplicates, dead) = match self.apply_fast(&mut tx, batch).await? {
            Some((applied, duplicates)) => (applied, duplicates, Vec::new()),
            None => {
                // The rollback released the generation: a swap may have committed
                // since, and this batch's positions must not land in the new one.
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                if !holds_generation(&mut tx, generation).await? {
                    tx.rollback().await?;
                    return Ok(BatchOutcome::GenerationChanged);
                }
                let (mut applied, mut duplicates, mut dead) = (0u64, 0u64, Vec::new());
                for record in batch {
                    match self.apply_one(&mut tx, record).await? {
                        Outcome::Applied => applied += 1,
                        Outcome::Duplicate => duplicates += 1,
                        Outcome::DeadLettered => dead.push(record),
                        Outcome::Held => {}
                    }
                }
                (applied, duplicates, dead)
            }
        };
        store_offsets(&mut tx, batch).await?;
        tx.commit().await?;
        crate::telemetry::consumer_batch(
            &self.component,
            applied,
            duplicates,
            dead.len() as u64,
            started,
        );
        for record in dead {
            self.publish_dead_letter(dlq, record);
        }
        Ok(BatchOutcome::Committed)
    }

    /// Applies a batch with one read and one write of stream positions and no
    /// savepoints; `None` when any record cannot be applied as it is (the caller rolls
    /// back and takes the careful path).
    async fn apply_fast(
        &self,
        tx: &mut PgConnection,
        batch: &[Record],
    ) -> Result<Option<(u64, u64)>, ConsumerError> {
        let Ok(events) = batch
            .iter()
            .map(|r| decode(&self.catalog, r))
            .collect::<Result<Vec<_>, _>>()
        else {
            return Ok(None);
        };
        let (topics, streams): (Vec<&str>, Vec<&str>) = events
            .iter()
            .map(|e| (e.topic.as_str(), e.stream_id.as_str()))
            .unzip();
        let mut versions: BTreeMap<(String, String), i64> =
            sqlx::query(include_str!("sql/batch_stream_versions.sql"))
                .bind(&topics)
                .bind(&streams)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
        // An event of a parked stream waits behind its held ones: the careful path.
        let parked: i64 = sqlx::query_scalar(include_str!("sql/batch_held_count.sql"))
            .bind(&topics)
            .bind(&streams)
            .fetch_one(&mut *tx)
            .await?;
        if parked > 0 {
            return Ok(None);
        }
        let read_versions = versions.clone();
        let mut duplicates = 0u64;
        let mut advanced: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut to_apply = Vec::with_capacity(events.len());
        for event in &events {
            let key = (event.topic.clone(), event.stream_id.to_string());
            let last = versions.get(&key).copied().unwrap_or(0);
            match Continuity::of(event.stream_version.get(), last) {
                Continuity::Duplicate => {
                    duplicates += 1;
                    continue;
                }
                Continuity::Gap => return Ok(None),
                Continuity::Next => {}
            }
            let version = event.stream_version.get();
            versions.insert(key, version);
            advanced.insert((&event.topic, event.stream_id.as_str()), version);
            to_apply.push(event);
        }
        if self.handler.apply_batch(tx, &to_apply).await.is_err() {
            return Ok(None);
        }
        let applied = to_apply.len() as u64;
        let moves: Vec<StreamMove<'_>> = advanced
            .into_iter()
            .map(|((topic, stream_id), to)| StreamMove {
                topic,
                stream_id,
                from: read_versions
                    .get(&(topic.to_owned(), stream_id.to_owned()))
                    .copied()
                    .unwrap_or(0),
                to,
            })
            .collect();
        // Another consumer of this database moved a stream on since it was read: its
        // events are in; the careful path sorts out which of ours still are not.
        if !advance_streams(tx, &moves).await? {
            return Ok(None);
        }
        Ok(Some((applied, duplicates)))
    }

    /// Decodes, deduplicates and applies one record under a savepoint, retrying a
    /// failing handler before dead-lettering the event.
    async fn apply_one(
        &self,
        tx: &mut PgConnection,
        record: &Record,
    ) -> Result<Outcome, ConsumerError> {
        let event = match decode(&self.catalog, record) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "undecodable record; dead-lettered");
                dead_letter(tx, record, None, &error.to_string(), 1).await?;
                return Ok(Outcome::DeadLettered);
            }
        };
        let last = stream_version(tx, &event.topic, event.stream_id.as_str()).await?;
        let continuity = Continuity::of(event.stream_version.get(), last);
        if continuity == Continuity::Duplicate {
            return Ok(Outcome::Duplicate);
        }
        if continuity == Continuity::Gap || is_parked(tx, &event).await? {
            tracing::warn!(
                stream_id = %event.stream_id, stream_version = event.stream_version.get(), applied = last,
                "stream gap: the event waits in held_events until the versions before it are applied"
            );
            hold(tx, record, &event).await?;
            return Ok(Outcome::Held);
        }
        self.apply_in_order(tx, record, &event, last).await
    }

    /// Applies `event`, the next version of its stream after `last`, under a
    /// savepoint, retrying a failing handler before dead-lettering the event.
    async fn apply_in_order(
        &self,
        tx: &mut PgConnection,
        record: &Record,
        event: &ConsumedEvent,
        last: i64,
    ) -> Result<Outcome, ConsumerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                sqlx::query("SAVEPOINT sluice_event")
                    .execute(&mut *tx)
                    .await?;
                match self.handler.apply(tx, event).await {
                    Ok(()) => {
                        if !advance_streams(tx, &[StreamMove::to_event(event, last)]).await? {
                            // Another consumer of this database applied it meanwhile.
                            sqlx::query("ROLLBACK TO SAVEPOINT sluice_event")
                                .execute(&mut *tx)
                                .await?;
                            return Ok(Outcome::Duplicate);
                        }
                        sqlx::query("RELEASE SAVEPOINT sluice_event")
                            .execute(&mut *tx)
                            .await?;
                        Ok(())
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT sluice_event")
                            .execute(&mut *tx)
                            .await?;
                        Err(e)
                    }
                }
            };
            match result {
                Ok(()) => return Ok(Outcome::Applied),
                Err(error) => {
                    let poison = matches!(error, HandlerError::Poison(_));
                    if poison || attempt >= self.config.max_attempts {
                        tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, attempts = attempt, %error, "event dead-lettered");
                        dead_letter(tx, record, Some(event), &error.to_string(), attempt).await?;
                        return Ok(Outcome::DeadLettered);
                    }
                    tokio::time::sleep(self.config.retry_backoff * 2u32.pow(attempt - 1)).await;
                }
            }
        }
    }

    /// Applies the held events whose stream has caught up with them, each stream in
    /// version order, in a transaction of their own; a stream still missing a version
    /// backs off (doubling up to a minute). Reports the held streams and events.
    pub(super) async fn release_held(
        &self,
        dlq: &FutureProducer,
        generation: Uuid,
    ) -> Result<(), ConsumerError> {
        let mut tx = self.pool.begin().await?;
        if !holds_generation(&mut tx, generation).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let rows = sqlx::query(include_str!("sql/held_due.sql"))
            .fetch_all(&mut *tx)
            .await?;
        let mut still_missing: std::collections::BTreeSet<(String, String)> = Default::default();
        let mut dead = Vec::new();
        let mut released = 0u64;
        for row in &rows {
            let record = stored_record(row)?;
            let version: i64 = row.try_get(6)?;
            let (topic, stream_id) = (record.topic.clone(), record.key.clone());
            let stream = (topic.clone(), stream_id.clone());
            if still_missing.contains(&stream) {
                continue;
            }
            let last = stream_version(&mut tx, &topic, &stream_id).await?;
            let continuity = Continuity::of(version, last);
            if continuity == Continuity::Gap {
                sqlx::query(include_str!("sql/held_back_off.sql"))
                    .bind(&topic)
                    .bind(&stream_id)
                    .execute(&mut *tx)
                    .await?;
                still_missing.insert(stream);
                continue;
            }
            sqlx::query(
                "DELETE FROM held_events WHERE topic = $1 AND stream_id = $2 AND stream_version = $3",
            )
            .bind(&topic)
            .bind(&stream_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if continuity == Continuity::Duplicate {
                continue; // applied meanwhile
            }
            let outcome = match decode(&self.catalog, &record) {
                Ok(event) => self.apply_in_order(&mut tx, &record, &event, last).await?,
                Err(error) => {
                    dead_letter(&mut tx, &record, None, &error.to_string(), 1).await?;
                    Outcome::DeadLettered
                }
            };
            match outcome {
                Outcome::Applied => released += 1,
                Outcome::DeadLettered => dead.push(record),
                Outcome::Duplicate | Outcome::Held => {}
            }
        }
        let (streams, events): (i64, i64) =
            sqlx::query_as("SELECT count(DISTINCT (topic, stream_id)), count(*) FROM held_events")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        crate::telemetry::consumer_held(&self.component, streams, events);
        if released > 0 {
            tracing::info!(
                released,
                still_held = events,
                "held events applied: their streams caught up"
            );
        }
        for record in &dead {
            self.publish_dead_letter(dlq, record);
        }
        Ok(())
    }
}
