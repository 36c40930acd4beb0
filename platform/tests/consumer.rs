//! The consumer runtime end to end: an event store, its relay, a real broker, and a
//! consumer applying events into its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sluice_platform::avro::{SchemaCatalog, SchemaSource};
use sluice_platform::consumer::{
    dead_letters, replay_dead_letters, Applied, ConsumedEvent, ConsumerConfig, ConsumerRuntime,
    EventHandler, HandlerError, Replayed,
};
use sluice_platform::registry::ComponentKind;
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, StreamId};
use sluice_platform::testing::{counted, event_store, until, TestBroker, TestDatabase};
use sqlx::{Connection, PgConnection, PgPool};
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
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
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
            .bind(event.stream_id.as_str())
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
    let (source, store) = event_store("cons_src").await;
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
            events: numbers.iter().copied().map(counted).collect(),
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

/// The `totals` consumer of `topic` with `handler`, running in the background.
fn run_consumer<H: EventHandler>(
    s: &Setup,
    topic: &str,
    handler: H,
    max_attempts: u32,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let runtime = ConsumerRuntime::new(
        "totals",
        vec![topic.to_owned()],
        s.pool.clone(),
        &s.broker.bootstrap(),
        catalog(),
        handler,
        ConsumerConfig {
            max_attempts,
            retry_backoff: Duration::from_millis(5),
            topic_names: s.broker.topic_names(),
            ..ConsumerConfig::default()
        },
    );
    spawn(|t| Box::pin(async move { runtime.run(t).await.unwrap() }))
}

fn consumer(
    s: &Setup,
    topic: &str,
    broken: Arc<AtomicBool>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    run_consumer(s, topic, Totals { broken }, 3)
}

/// Waits until `totals` holds `events` applied events in all.
async fn wait_for_events(pool: &PgPool, events: i64) -> Vec<(String, i64, i64)> {
    until(
        "the totals holding the applied events",
        Duration::from_secs(300),
        Duration::from_millis(50),
        async || {
            let rows = totals(pool).await;
            if rows.iter().map(|r| r.2).sum::<i64>() >= events {
                Ok(rows)
            } else {
                Err(format!("only {rows:?} applied"))
            }
        },
    )
    .await
}

/// Waits until the consumer's stored positions cover `records` records of its topic:
/// every one of them applied, dropped as a duplicate or dead-lettered, in the same
/// transactions as the positions. The deadline only guards against a hang.
async fn wait_consumed(pool: &PgPool, records: i64) {
    until(
        "every record consumed",
        Duration::from_secs(300),
        Duration::from_millis(50),
        async || {
            let consumed: Option<i64> =
                sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM consumer_positions")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            if consumed.unwrap_or(0) >= records {
                Ok(())
            } else {
                Err(format!(
                    "the consumer got through {consumed:?} of {records} records"
                ))
            }
        },
    )
    .await;
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

/// Totals whose first batch after `arm` stops in the fast path until released and
/// then fails it, and whose first careful (event-by-event) apply after that waits
/// until `swapped` (at most a few seconds, so that a consumer that holds its
/// generation against the swap is not deadlocked by the test).
struct Gated {
    totals: Totals,
    armed: AtomicBool,
    hold_careful: AtomicBool,
    in_fast: tokio::sync::Notify,
    fail_fast: tokio::sync::Notify,
    swapped: tokio::sync::Notify,
}

struct GatedHandler(Arc<Gated>);

impl EventHandler for GatedHandler {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        Box::pin(async move {
            let gated = &self.0;
            if gated.hold_careful.swap(false, Ordering::SeqCst) {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), gated.swapped.notified()).await;
            }
            gated.totals.apply(tx, event).await
        })
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a ConsumedEvent],
    ) -> Applied<'a> {
        Box::pin(async move {
            let gated = &self.0;
            if gated.armed.swap(false, Ordering::SeqCst) {
                gated.hold_careful.store(true, Ordering::SeqCst);
                gated.in_fast.notify_one();
                gated.fail_fast.notified().await;
                return Err(HandlerError::Retry("the fast path fails once".into()));
            }
            for event in events {
                gated.totals.apply(tx, event).await?;
            }
            Ok(())
        })
    }
}

/// A rebuild's swap that commits while the live consumer falls back from a failed
/// batch to the careful path must not let the live consumer write its positions into
/// the rebuilt generation: the consumer resumes from the rebuilt generation's own
/// positions, and every event reaches the new read model.
#[tokio::test]
async fn a_swap_between_the_fast_and_the_careful_path_loses_no_event() {
    let s = setup("swap.events").await;
    let relay = relay(&s, "swap");
    let gated = Arc::new(Gated {
        totals: Totals {
            broken: Arc::new(AtomicBool::new(false)),
        },
        armed: AtomicBool::new(false),
        hold_careful: AtomicBool::new(false),
        in_fast: tokio::sync::Notify::new(),
        fail_fast: tokio::sync::Notify::new(),
        swapped: tokio::sync::Notify::new(),
    });
    let live = run_consumer(&s, "swap.events", GatedHandler(gated.clone()), 2);
    append_numbers(&s.store, "a", &[1; 20]).await;
    wait_for_events(&s.pool, 20).await;

    // A rebuilt generation that is behind the live one: migrated, nothing applied.
    let owner_options = s._sink.owner_options();
    let mut owner = sqlx::PgConnection::connect_with(&owner_options)
        .await
        .unwrap();
    let app_role = &s._sink.spec.app_role;
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA sluice_rebuild_t; GRANT USAGE ON SCHEMA sluice_rebuild_t TO {app_role}"
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    sluice_platform::db::migrate_with(
        owner_options
            .clone()
            .options([("search_path", "sluice_rebuild_t")]),
        vec![sluice_platform::consumer::migrator()],
    )
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE sluice_rebuild_t.totals (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL);\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sluice_rebuild_t TO {app_role};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA sluice_rebuild_t TO {app_role};"
    ))
    .execute(&mut owner)
    .await
    .unwrap();

    // The next batch stops in the fast path, holding the live generation; the swap
    // queues behind it; the batch fails, and the swap commits in the gap before the
    // careful path.
    gated.armed.store(true, Ordering::SeqCst);
    append_numbers(&s.store, "a", &[1; 10]).await;
    gated.in_fast.notified().await;
    let watcher = sluice_platform::db::pool_with(owner_options, 1)
        .await
        .unwrap();
    let release = async {
        until(
            "the swap queued behind the batch",
            Duration::from_secs(60),
            Duration::from_millis(20),
            async || {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                   AND query LIKE '%RENAME TO sluice_retired_t%'",
                )
                .fetch_one(&watcher)
                .await
                .unwrap();
                if waiting > 0 {
                    Ok(())
                } else {
                    Err("the swap never queued behind the batch".to_owned())
                }
            },
        )
        .await;
        gated.fail_fast.notify_one();
    };
    let swap = sluice_platform::projection::swap_generation(
        &mut owner,
        "sluice_rebuild_t",
        "sluice_retired_t",
    );
    let (swapped, ()) = tokio::join!(swap, release);
    swapped.unwrap();
    gated.swapped.notify_one();

    // The live consumer is now on the rebuilt generation: once its positions there
    // cover all 30 records, all 30 events must be in its read model.
    wait_consumed(&s.pool, 30).await;
    let rows = totals(&s.pool).await;
    assert_eq!(
        rows,
        [("a".into(), 30, 30)],
        "the rebuilt generation's positions were overwritten by the retired one's consumer"
    );
    stop(live).await;
    stop(relay).await;
    watcher.close().await;
}

/// Totals whose batches wait for each other: the first batch of each of two
/// consumers waits (a few seconds at most) until the other's has read the same
/// stream positions, so both decide on the same versions.
struct Paired {
    totals: Totals,
    barrier: tokio::sync::Barrier,
    waits: std::sync::atomic::AtomicUsize,
}

struct PairedHandler(Arc<Paired>);

impl EventHandler for PairedHandler {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        self.0.totals.apply(tx, event)
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a ConsumedEvent],
    ) -> Applied<'a> {
        Box::pin(async move {
            if self.0.waits.fetch_add(1, Ordering::SeqCst) < 2 {
                let _ = tokio::time::timeout(Duration::from_secs(10), self.0.barrier.wait()).await;
            }
            for event in events {
                self.0.totals.apply(tx, event).await?;
            }
            Ok(())
        })
    }
}

/// Two instances of one consumer (a rolling deploy, a replay beside the live one)
/// that read the same stream positions apply each event once between them: the
/// positions advance by compare-and-set, and the loser's batch rolls back.
#[tokio::test]
async fn two_instances_of_one_consumer_apply_each_event_once() {
    let s = setup("pair.events").await;
    append_numbers(&s.store, "a", &[1, 2, 3, 4, 5]).await;
    let relay = relay(&s, "pair");
    let paired = Arc::new(Paired {
        totals: Totals {
            broken: Arc::new(AtomicBool::new(false)),
        },
        barrier: tokio::sync::Barrier::new(2),
        waits: std::sync::atomic::AtomicUsize::new(0),
    });
    let (one, two) = (
        run_consumer(&s, "pair.events", PairedHandler(paired.clone()), 3),
        run_consumer(&s, "pair.events", PairedHandler(paired.clone()), 3),
    );
    wait_consumed(&s.pool, 5).await;
    // Both got past their first batch (or gave up waiting for the other).
    until(
        "both consumers past their first batch",
        Duration::from_secs(60),
        Duration::from_millis(20),
        async || {
            if paired.waits.load(Ordering::SeqCst) < 2 {
                Err("the second instance never applied a batch".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    stop(one).await;
    stop(two).await;
    assert_eq!(
        totals(&s.pool).await,
        [("a".into(), 15, 5)],
        "an event was applied by both instances"
    );
    stop(relay).await;
}

/// A stream whose first version the consumer never saw (its position starts past
/// it) is held, not dead-lettered: its later events wait in `held_events`, the other
/// streams move on, and once the missing version arrives (the relay publishes it
/// again) the held events are applied in version order.
#[tokio::test]
async fn a_stream_gap_is_held_while_other_streams_move_and_released_when_filled() {
    let s = setup("hold.events").await;
    append_numbers(&s.store, "s", &[1, 2, 3]).await;
    let first = relay(&s, "hold");
    let records = s
        .broker
        .consume("hold.events", 3, Duration::from_secs(300))
        .await;
    stop(first).await;
    // The consumer starts past "s" version 1.
    let v1 = records
        .iter()
        .find(|r| r.header("stream_version") == "1")
        .unwrap();
    sqlx::query(
        "INSERT INTO consumer_positions (topic, partition, next_offset) VALUES ('hold.events', $1, $2)",
    )
    .bind(v1.partition)
    .bind(v1.offset + 1)
    .execute(&s.pool)
    .await
    .unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let consumer = consumer(&s, "hold.events", broken);
    wait_consumed(&s.pool, v1.offset + 1 + 2).await;
    // Another stream keeps moving meanwhile.
    let second = relay(&s, "hold");
    append_numbers(&s.store, "t", &[10]).await;
    let rows = wait_for_events(&s.pool, 1).await;
    assert_eq!(
        rows,
        [("t".into(), 10, 1)],
        "only the other stream is applied"
    );
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT stream_version FROM held_events WHERE stream_id = 's' ORDER BY stream_version",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(held, [2, 3], "the gap's stream is held");
    assert!(
        dead_letters(&s.pool, false).await.unwrap().is_empty(),
        "a gap is no dead letter"
    );

    // The relay publishes everything again: version 1 arrives, and the held
    // versions follow it in order.
    stop(second).await;
    sqlx::query("DELETE FROM relay_checkpoints")
        .execute(s.store.pool())
        .await
        .unwrap();
    let third = relay(&s, "hold");
    let rows = wait_for_events(&s.pool, 4).await;
    assert_eq!(rows, [("s".into(), 6, 3), ("t".into(), 10, 1)]);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM held_events")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(still, 0);
    stop(consumer).await;
    stop(third).await;
}

/// The consumer's broker requests (metadata and watermarks, up to 10 s each) run on
/// blocking threads: on a runtime with a single thread, other tasks keep running
/// while the consumer waits on a broker that accepts connections and never answers.
#[test]
fn broker_requests_do_not_stall_the_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = TestDatabase::provision("stall", ComponentKind::Projection).await;
        db.migrate(vec![sluice_platform::consumer::migrator()]).await;
        // A "broker" that takes every connection and never says a word.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = silent.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming().flatten() {
                held.push(stream);
            }
        });
        let consumer = ConsumerRuntime::new(
            "stall",
            vec!["stall.events".to_owned()],
            db.app_pool().await,
            &address,
            catalog(),
            Totals {
                broken: Arc::new(AtomicBool::new(false)),
            },
            ConsumerConfig {
                announce_dead_letters: false,
                ..ConsumerConfig::default()
            },
        );
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let waited = tokio::time::timeout(
            Duration::from_secs(3),
            consumer.catch_up(CancellationToken::new(), |_| {}),
        )
        .await;
        ticker.abort();
        let ticked = ticks.load(Ordering::SeqCst);
        assert!(
            ticked >= 15,
            "the runtime stalled while the consumer asked the broker: {ticked} ticks of 100 ms in 3 s ({})",
            if waited.is_err() { "still asking" } else { "it gave up" }
        );
        assert!(waited.is_err(), "the silent broker answered: {waited:?}");
    });
}
