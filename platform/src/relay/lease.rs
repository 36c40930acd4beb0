//! The relay's lease: one active relay per service, by a session advisory lock on a
//! connection of its own; a relay taking over first waits until the store holds
//! what the topic's tail says was published.

use super::*;

impl Relay {
    /// Holds a session advisory lock on a dedicated connection (outside the pool) for
    /// as long as the relay is active: when the relay stops or its process dies, the
    /// connection closes and a standby takes over. `None` when shut down while
    /// standing by.
    pub(super) async fn acquire_lock(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<PgConnection>, RelayError> {
        let mut conn = self.pool.connect_options().connect().await?;
        // The server probes the session while it is quiet and ends it (releasing the
        // lock) within about 25 s of the relay's host going away; neither idle
        // timeout ends it while it holds the lock.
        sqlx::query(
            "SELECT set_config('tcp_keepalives_idle', '10', false), \
                    set_config('tcp_keepalives_interval', '5', false), \
                    set_config('tcp_keepalives_count', '3', false), \
                    set_config('idle_session_timeout', '0', false), \
                    set_config('idle_in_transaction_session_timeout', '0', false)",
        )
        .execute(&mut conn)
        .await?;
        let mut announced = false;
        loop {
            let locked: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('sluice.relay'))")
                    .fetch_one(&mut conn)
                    .await?;
            if locked {
                return Ok(Some(conn));
            }
            if !announced {
                tracing::info!("another relay is active for this service; standing by");
                announced = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// A store restored from an older backup (or dropped while its topic was kept)
    /// is behind its topic: events the topic holds are gone from it. Publishing from
    /// it would reuse their stream versions for new events, which every consumer
    /// would then drop as duplicates. So before publishing, the relay checks that the
    /// store holds the last event of every partition of its topic; while it does not,
    /// the relay says so and what to do, publishes nothing, and looks again every
    /// 10 s. `false` when shut down while waiting.
    pub(super) async fn wait_until_store_holds_topic_tail(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<bool, RelayError> {
        let mut warned = false;
        loop {
            let tail = {
                let (bootstrap, topic) = (self.bootstrap.clone(), self.topic.clone());
                tokio::task::spawn_blocking(move || topic_tail(&bootstrap, &topic))
                    .await
                    .unwrap_or_else(|e| Err(TailError::Blocking(e)))
            };
            let tail = match tail {
                Ok(tail) => tail,
                Err(e) => {
                    // The broker is checked again by publishing; an unreadable tail
                    // must not stop a relay that may be needed to drain the outbox
                    // of a healthy store.
                    tracing::warn!(error = %e, "cannot read the topic's last records; not checking the store against them");
                    return Ok(true);
                }
            };
            let ids: Vec<uuid::Uuid> = tail.iter().map(|(_, _, id)| *id).collect();
            let held: Vec<uuid::Uuid> =
                sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&self.pool)
                    .await?;
            let missing: Vec<String> = tail
                .iter()
                .filter(|(_, _, id)| !held.contains(id))
                .map(|(partition, offset, id)| {
                    format!("{id} (partition {partition} offset {offset})")
                })
                .collect();
            if missing.is_empty() {
                if warned {
                    tracing::info!("the store holds its topic's last events again; publishing");
                }
                crate::telemetry::relay_store_behind(&self.service, 0);
                return Ok(true);
            }
            tracing::error!(
                topic = %self.topic,
                missing = %missing.join(", "),
                "the store is behind its topic (restored from an older backup, or dropped while the topic was kept): \
                 the topic's last events are not in it, and publishing now would reuse their stream versions. \
                 Nothing is published. Run `sluice reappend {service}` to copy the topic's missing events back into the store \
                 (`sluice verify` lists them), or delete and recreate the topic if its events are to be dropped; \
                 the relay resumes by itself",
                service = self.service,
            );
            crate::telemetry::relay_store_behind(&self.service, missing.len());
            warned = true;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }
}

/// A database error on the lock session: the fence. Any other error stays as it is.
pub(super) fn fenced(e: RelayError) -> RelayError {
    match e {
        RelayError::Database(e) if lock_session_gone(&e) => RelayError::LockLost(e),
        other => other,
    }
}

/// Whether `e` means the session itself is gone (terminated by the server, its
/// connection closed or broken), as opposed to a statement failing on a live one.
pub(super) fn lock_session_gone(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // 57P01 admin_shutdown (pg_terminate_backend), 57P05 idle_session_timeout,
        // 08xxx connection exceptions.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

/// Why the last records of a topic could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum TailError {
    /// The broker refused a metadata, watermark, assignment or fetch request.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The last records of these partitions did not arrive within the timeout.
    #[error("the last records of partitions {0:?} did not arrive")]
    Missing(Vec<i32>),
    /// The blocking task that reads them panicked or was cancelled.
    #[error("the tail reader did not finish: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

/// The last record of every non-empty partition of `topic` that carries an event
/// id: `(partition, offset, event_id)`.
pub(super) fn topic_tail(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<(i32, i64, uuid::Uuid)>, TailError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-relay-tail-check")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()?;
    let partitions = crate::broker::topic_partitions(&consumer, topic, timeout)?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut wanted = std::collections::BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, p, rdkafka::Offset::Offset(high - 1))?;
            wanted.insert(p, high - 1);
        }
    }
    let mut tail = Vec::new();
    if wanted.is_empty() {
        return Ok(tail);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    while !wanted.is_empty() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        if wanted.get(&message.partition()) != Some(&message.offset()) {
            continue;
        }
        wanted.remove(&message.partition());
        let event_id = message.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "event_id")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
        });
        if let Some(id) = event_id {
            tail.push((message.partition(), message.offset(), id));
        }
    }
    if !wanted.is_empty() {
        return Err(TailError::Missing(wanted.into_keys().collect()));
    }
    Ok(tail)
}
