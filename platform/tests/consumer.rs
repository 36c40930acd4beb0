//! The consumer runtime end to end: an event store, its relay, a real broker, and a
//! consumer applying events into its own database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use sluice_platform::avro::{SchemaCatalog, SchemaSource};
use sluice_platform::consumer::{
    dead_letters, replay_dead_letters, ConsumedEvent, ConsumerConfig, ConsumerRuntime,
    EventHandler, HandlerError, Replayed,
};
use sluice_platform::registry::ComponentKind;
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sluice_platform::testing::{TestBroker, TestDatabase};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

const COUNTED: &str = r#"{"type": "record", "name": "Counted", "namespace": "io.sluice.test",
  "doc": "A number was counted.", "fields": [{"name": "n", "type": "long", "doc": "The number."}]}"#;

fn catalog() -> Arc<SchemaCatalog> {
    Arc::new(SchemaCatalog::new([SchemaSource::owned("Counted", 1, COUNTED)]).unwrap())
}

/// Sums `n` per stream; refuses 13 while `broken`.
struct Totals {
    broken: Arc<AtomicBool>,
}

impl EventHandler for Totals {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let n = event.payload["n"].as_i64().unwrap_or_default();
            if n == 13 && self.broken.load(Ordering::SeqCst) {
                return Err(HandlerError::Retry("13 is unlucky".into()));
            }
            sqlx::query(
                "INSERT INTO totals (stream_id, total, events) VALUES ($1, $2, 1) \
                 ON CONFLICT (stream_id) DO UPDATE \
                 SET total = totals.total + EXCLUDED.total, events = totals.events + 1",
            )
            .bind(&event.stream_id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }
}

struct Setup {
    broker: TestBroker,
    _source: TestDatabase,
    store: EventStore,
    _sink: TestDatabase,
    pool: PgPool,
}

async fn setup(topic: &str) -> Setup {
    let broker = TestBroker::start().await;
    broker.topic(topic, 2).await;
    let source = TestDatabase::provision("cons_src", ComponentKind::Service).await;
    source
        .migrate(vec![sluice_platform::store::migrator()])
        .await;
    let store = EventStore::new(source.app_pool().await);
    let sink = TestDatabase::provision("cons_dst", ComponentKind::Projection).await;
    sink.migrate(vec![sluice_platform::consumer::migrator()])
        .await;
    let owner = sluice_platform::db::pool_with(sink.owner_options(), 1)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE totals (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL)")
        .execute(&owner)
        .await
        .unwrap();
    owner.close().await;
    let pool = sink.app_pool().await;
    Setup {
        broker,
        _source: source,
        store,
        _sink: sink,
        pool,
    }
}

async fn append_numbers(store: &EventStore, stream: &str, numbers: &[i64]) {
    let stream = StreamId::new(stream).unwrap();
    store
        .append(Append {
            stream_id: &stream,
            stream_type: "counter",
            expected: ExpectedVersion::Any,
            events: numbers
                .iter()
                .map(|n| NewEvent {
                    event_type: "Counted".into(),
                    schema_version: 1,
                    payload: json!({ "n": n }),
                })
                .collect(),
            metadata: &Metadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
}

fn spawn<F>(future: F) -> (CancellationToken, tokio::task::JoinHandle<()>)
where
    F: FnOnce(CancellationToken) -> BoxFuture<'static, ()>,
{
    let token = CancellationToken::new();
    let handle = tokio::spawn(future(token.clone()));
    (token, handle)
}

fn relay(s: &Setup, service: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let relay = Relay::new(
        service,
        s.store.pool().clone(),
        &s.broker.bootstrap(),
        catalog(),
        RelayConfig {
            topic_names: s.broker.topic_names(),
            ..RelayConfig::default()
        },
    )
    .unwrap();
    spawn(|t| Box::pin(async move { relay.run(t).await.unwrap() }))
}

fn consumer(
    s: &Setup,
    topic: &str,
    broken: Arc<AtomicBool>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let runtime = ConsumerRuntime::new(
        "totals",
        vec![topic.to_owned()],
        s.pool.clone(),
        &s.broker.bootstrap(),
        catalog(),
        Totals { broken },
        ConsumerConfig {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(5),
            topic_names: s.broker.topic_names(),
            ..ConsumerConfig::default()
        },
    );
    spawn(|t| Box::pin(async move { runtime.run(t).await.unwrap() }))
}

/// Waits until `totals` holds `events` applied events in all.
async fn wait_for_events(pool: &PgPool, events: i64) -> Vec<(String, i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT stream_id, total, events FROM totals ORDER BY stream_id")
                .fetch_all(pool)
                .await
                .unwrap();
        if rows.iter().map(|r| r.2).sum::<i64>() >= events {
            return rows;
        }
        assert!(Instant::now() < deadline, "only {rows:?} applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the consumer's stored positions cover `records` records of its topic:
/// every one of them applied, dropped as a duplicate or dead-lettered, in the same
/// transactions as the positions. The deadline only guards against a hang.
async fn wait_consumed(pool: &PgPool, records: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let consumed: Option<i64> =
            sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM consumer_positions")
                .fetch_one(pool)
                .await
                .unwrap();
        if consumed.unwrap_or(0) >= records {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer got through {consumed:?} of {records} records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn totals(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT stream_id, total, events FROM totals ORDER BY stream_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn stop(parts: (CancellationToken, tokio::task::JoinHandle<()>)) {
    parts.0.cancel();
    parts.1.await.unwrap();
}

#[tokio::test]
async fn events_are_applied_once_even_when_redelivered_or_restarted() {
    let s = setup("once.events").await;
    append_numbers(&s.store, "a", &[1, 2, 3]).await;
    append_numbers(&s.store, "b", &[10, 20]).await;
    let relay1 = relay(&s, "once");
    let broken = Arc::new(AtomicBool::new(false));
    let consumer1 = consumer(&s, "once.events", broken.clone());
    let rows = wait_for_events(&s.pool, 5).await;
    assert_eq!(rows, [("a".into(), 6, 3), ("b".into(), 30, 2)]);
    stop(consumer1).await;

    // The relay forgets its checkpoint and publishes everything again, plus one new
    // event; a restarted consumer applies only the new one.
    stop(relay1).await;
    let owner_cleared = sqlx::query("DELETE FROM relay_checkpoints")
        .execute(s.store.pool())
        .await
        .unwrap()
        .rows_affected();
    assert!(owner_cleared >= 1);
    append_numbers(&s.store, "a", &[4]).await;
    let relay2 = relay(&s, "once");
    let consumer2 = consumer(&s, "once.events", broken);
    let rows = wait_for_events(&s.pool, 6).await;
    // Whatever the redelivery was going to change, it has changed once the consumer
    // is past all of it: the first 5 records, then the 6 published again.
    wait_consumed(&s.pool, 5 + 6).await;
    let again = totals(&s.pool).await;
    assert_eq!(rows, again);
    assert_eq!(
        again,
        [("a".into(), 10, 4), ("b".into(), 30, 2)],
        "duplicates dropped"
    );
    stop(consumer2).await;
    stop(relay2).await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_the_consumer_moves_on_and_replay_applies_it() {
    let s = setup("poison.events").await;
    append_numbers(&s.store, "ok", &[1, 2]).await;
    append_numbers(&s.store, "bad", &[13]).await;
    append_numbers(&s.store, "later", &[5]).await;
    let relay = relay(&s, "poison");
    let broken = Arc::new(AtomicBool::new(true));
    let consumer = consumer(&s, "poison.events", broken.clone());
    // The poison event may sit in another partition than the rest: wait until the
    // consumer is past all 4 records, not merely until 3 were applied.
    wait_consumed(&s.pool, 4).await;
    let rows = totals(&s.pool).await;
    assert_eq!(rows, [("later".into(), 5, 1), ("ok".into(), 3, 2)]);
    let letters = dead_letters(&s.pool, false).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].stream_id, "bad");
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].error.contains("unlucky"), "{}", letters[0].error);
    stop(consumer).await;
    stop(relay).await;

    // Fixed: the replay applies it and marks it replayed; a second replay does nothing.
    broken.store(false, Ordering::SeqCst);
    let handler = Totals { broken };
    let report = replay_dead_letters(&s.pool, &catalog(), &handler, None)
        .await
        .unwrap();
    assert_eq!(report, [Replayed::Applied(letters[0].id)]);
    let rows = wait_for_events(&s.pool, 4).await;
    assert!(rows.contains(&("bad".into(), 13, 1)), "{rows:?}");
    assert!(dead_letters(&s.pool, false).await.unwrap().is_empty());
    assert!(replay_dead_letters(&s.pool, &catalog(), &handler, None)
        .await
        .unwrap()
        .is_empty());
}
