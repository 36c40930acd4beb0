//! The outbox as the relay reads and writes it: the checkpoint, pruning, the
//! backlog gauges and what holds the horizon back, and each row's record (headers
//! and encoded payload).

use super::lease::fenced;
use super::*;

impl Relay {
    pub(super) async fn load_checkpoint(&self) -> Result<Checkpoint, RelayError> {
        let row = sqlx::query(
            "SELECT txid::text, global_position FROM relay_checkpoints \
              ORDER BY txid DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Checkpoint::default(),
            Some(row) => Checkpoint {
                txid: parse_xid(&row.try_get::<String, _>(0)?)?,
                global_position: row.try_get(1)?,
            },
        })
    }

    /// Deletes published outbox rows older than the retention and old checkpoints.
    pub(super) async fn prune(&self, checkpoint: Checkpoint) -> Result<(), RelayError> {
        let retention = self.config.retention.as_secs_f64();
        let pruned = sqlx::query(
            "DELETE FROM outbox WHERE (txid, global_position) <= ($1::text::xid8, $2) \
               AND created_at < clock_timestamp() - make_interval(secs => $3)",
        )
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.global_position)
        .bind(retention)
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM relay_checkpoints WHERE id <> (SELECT id FROM relay_checkpoints \
              ORDER BY txid DESC, global_position DESC LIMIT 1)",
        )
        .execute(&self.pool)
        .await?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned published outbox rows");
        }
        Ok(())
    }

    /// `report_backlog`, at most every `BACKLOG_INTERVAL`: the count scans the
    /// unpublished rows, and a few times a second is plenty for the gauges and the
    /// horizon check, and keeps it off the publishing path when the backlog is large.
    pub(super) async fn maybe_report_backlog(
        &self,
        checkpoint: Checkpoint,
        idle: bool,
        blocked_since: &mut Option<Instant>,
        last_backlog: &mut Option<Instant>,
    ) -> Result<(), RelayError> {
        if last_backlog.is_some_and(|at| at.elapsed() < BACKLOG_INTERVAL) {
            return Ok(());
        }
        let started = Instant::now();
        self.report_backlog(checkpoint, idle, blocked_since).await?;
        RelayTimings::add(&self.timings.backlog, started);
        *last_backlog = Some(Instant::now());
        Ok(())
    }

    /// Updates the backlog gauges; when unpublished rows are held back by the
    /// horizon for longer than the warning threshold, names the blocking transaction.
    pub(super) async fn report_backlog(
        &self,
        checkpoint: Checkpoint,
        idle: bool,
        blocked_since: &mut Option<Instant>,
    ) -> Result<(), RelayError> {
        let row = sqlx::query(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8 \
               FROM outbox WHERE (txid, global_position) > ($1::text::xid8, $2)",
        )
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.global_position)
        .fetch_one(&self.pool)
        .await?;
        let unpublished: i64 = row.try_get(0)?;
        let oldest: Option<f64> = row.try_get(1)?;
        crate::telemetry::relay_backlog(&self.service, unpublished, oldest.unwrap_or(0.0));
        if !(idle && unpublished > 0) {
            *blocked_since = None;
            return Ok(());
        }
        let since = *blocked_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.config.horizon_warning {
            return Ok(());
        }
        if let Some(b) = horizon_blocker(&self.pool).await? {
            tracing::warn!(
                pid = b.pid,
                transaction_age_seconds = b.transaction_age_seconds,
                state = b.state,
                query = b.query,
                unpublished,
                "an open transaction holds the relay horizon back; its events and every later one wait for it"
            );
            crate::telemetry::relay_horizon_blocked(
                &self.service,
                b.pid,
                b.transaction_age_seconds,
            );
        }
        *blocked_since = Some(Instant::now());
        Ok(())
    }
}

/// Records `checkpoint` on the lock session, unless a checkpoint at or beyond it is
/// there already: the newest row is never the lower of two writers'.
pub(super) async fn save_checkpoint(
    lock: &mut PgConnection,
    checkpoint: Checkpoint,
) -> Result<(), RelayError> {
    sqlx::query(
        "INSERT INTO relay_checkpoints (txid, global_position) \
         SELECT $1::text::xid8, $2 WHERE NOT EXISTS ( \
           SELECT 1 FROM relay_checkpoints WHERE (txid, global_position) >= ($1::text::xid8, $2))",
    )
    .bind(checkpoint.txid.to_string())
    .bind(checkpoint.global_position)
    .execute(&mut *lock)
    .await?;
    Ok(())
}

/// Writes the checkpoint of the acknowledged chunk waiting for one, if any, on the
/// lock session, and counts the time under `spent`.
pub(super) async fn save_pending(
    lock: &mut PgConnection,
    pending: &mut Option<(Checkpoint, usize)>,
    spent: &AtomicU64,
) -> Result<(), RelayError> {
    if let Some((at, _)) = pending.take() {
        let started = Instant::now();
        save_checkpoint(lock, at).await.map_err(fenced)?;
        RelayTimings::add(spent, started);
    }
    Ok(())
}

pub(super) fn parse_xid(text: &str) -> Result<u64, sqlx::Error> {
    text.parse()
        .map_err(|e| sqlx::Error::Decode(format!("xid8 `{text}`: {e}").into()))
}

pub(super) fn outbox_event(row: &PgRow) -> Result<OutboxEvent, RelayError> {
    Ok(OutboxEvent {
        checkpoint: Checkpoint {
            txid: parse_xid(&row.try_get::<String, _>("txid")?)?,
            global_position: row.try_get("global_position")?,
        },
        stream_id: row.try_get("stream_id")?,
        event_id: row.try_get("event_id")?,
        stream_type: row.try_get("stream_type")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// The envelope as Kafka headers (UTF-8 text values).
/// `traceparent` replaces the event's own: the context of its `publish` span.
pub(super) fn headers(
    event: &OutboxEvent,
    fingerprint: &[u8; 8],
    traceparent: Option<String>,
) -> OwnedHeaders {
    let metadata: Metadata = serde_json::from_value(event.metadata.clone()).unwrap_or_default();
    let text = [
        ("event_id", Some(event.event_id.to_string())),
        ("event_type", Some(event.event_type.clone())),
        ("stream_type", Some(event.stream_type.clone())),
        ("stream_version", Some(event.stream_version.to_string())),
        (
            "global_position",
            Some(event.checkpoint.global_position.to_string()),
        ),
        ("schema_version", Some(event.schema_version.to_string())),
        (
            "schema_fingerprint",
            Some(fingerprint.iter().map(|b| format!("{b:02x}")).collect()),
        ),
        ("recorded_at", Some(event.recorded_at.to_rfc3339())),
        (
            "correlation_id",
            metadata.correlation_id.map(|c| c.to_string()),
        ),
        ("causation_id", metadata.causation_id.map(|c| c.to_string())),
        ("traceparent", traceparent.or(metadata.traceparent)),
        ("actor", metadata.actor),
    ];
    text.into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| match value {
            Some(v) => headers.insert(Header {
                key,
                value: Some(v.as_str()),
            }),
            None => headers,
        })
}

impl EventEncoder for crate::avro::SchemaCatalog {
    fn encode(
        &self,
        event_type: &str,
        schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<(Vec<u8>, [u8; 8]), crate::avro::AvroError> {
        let bytes = self.encode_single_object(event_type, schema_version, payload)?;
        // The encoding carries the writer schema's fingerprint after its marker.
        let mut fingerprint = [0; 8];
        fingerprint.copy_from_slice(&bytes[2..crate::avro::SINGLE_OBJECT_HEADER_LEN]);
        Ok((bytes, fingerprint))
    }
}

/// An open transaction of an outbox writer that holds the relay horizon back.
#[derive(Debug, Clone)]
pub struct HorizonBlocker {
    /// Its backend's process id (`pg_terminate_backend` ends it).
    pub pid: i32,
    /// How long its transaction has been open.
    pub transaction_age_seconds: f64,
    /// `idle in transaction`, `active`, …
    pub state: String,
    /// Its last statement, cut to 200 characters.
    pub query: String,
}

/// The oldest open transaction that wrote to the outbox and has not committed: the
/// relay publishes nothing committed after it started until it ends. Only outbox
/// writers hold the horizon (they take the writer advisory lock), so it is the one.
pub async fn horizon_blocker(pool: &PgPool) -> Result<Option<HorizonBlocker>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT a.pid, extract(epoch FROM clock_timestamp() - a.xact_start)::float8, \
                left(a.query, 200), a.state \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND l.classid = 1936484707 AND l.objid = 1 AND l.objsubid = 2 \
            AND a.backend_xid IS NOT NULL \
          ORDER BY age(a.backend_xid) DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|b| {
        let (pid, age, query, state): (i32, Option<f64>, Option<String>, Option<String>) =
            (b.try_get(0)?, b.try_get(1)?, b.try_get(2)?, b.try_get(3)?);
        Ok(HorizonBlocker {
            pid,
            transaction_age_seconds: age.unwrap_or(0.0),
            state: state.unwrap_or_default(),
            query: query.unwrap_or_default(),
        })
    })
    .transpose()
}
