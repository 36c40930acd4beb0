//! Event store behaviour against a real PostgreSQL, each test in a fresh database
//! provisioned like a real service (owner runs migrations, app role appends).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::sync::Arc;

use serde_json::json;
use sluice_platform::store::{
    Append, Appended, EventStore, ExpectedVersion, Idempotency, IdempotencyKey, Metadata, NewEvent,
    StoreError, StreamId, StreamVersion,
};
use sluice_platform::testing::{
    counted, event_store, write_concurrently, ConcurrentWrites, TestDatabase,
};
use sqlx::Row;
use uuid::Uuid;

fn append<'a>(
    stream: &'a StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: &'a Metadata,
) -> Append<'a> {
    Append {
        stream_id: stream,
        stream_type: "counter",
        expected,
        events,
        metadata,
        idempotency: None,
    }
}

/// A fresh store whose new stream `stream` holds one event, `{"n": 1}`.
async fn store_with_one_event(stream: &str) -> (TestDatabase, EventStore, StreamId) {
    let (db, store) = event_store("store").await;
    let stream = StreamId::new(stream).unwrap();
    try_append(&store, &stream, ExpectedVersion::NoStream, vec![counted(1)])
        .await
        .unwrap();
    (db, store, stream)
}

/// Appends `events` to the `counter` stream `stream` if it is at `expected`,
/// without metadata.
async fn try_append(
    store: &EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Appended, StoreError> {
    store
        .append(append(stream, expected, events, &Metadata::default()))
        .await
}

/// The error [`try_append`] is refused with.
async fn refused(
    store: &EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> StoreError {
    try_append(store, stream, expected, events)
        .await
        .unwrap_err()
}

/// The error appending one event to `stream` at `expected` is refused with.
async fn refused_at(
    store: &EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> StoreError {
    refused(store, stream, expected, vec![counted(2)]).await
}

/// How many events `stream` holds.
async fn stream_len(store: &EventStore, stream: &StreamId) -> usize {
    store
        .read_stream(stream, StreamVersion::FIRST)
        .await
        .unwrap()
        .len()
}

/// Makes the open transaction `tx` take a transaction id.
async fn take_xact_id(tx: &mut sqlx::PgConnection) {
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(tx)
        .await
        .unwrap();
}

fn v(n: i64) -> StreamVersion {
    StreamVersion::new(n).unwrap()
}

#[tokio::test]
async fn appends_are_versioned_from_one_and_read_back_in_order() {
    let (_db, store) = event_store("store").await;
    let stream = StreamId::new("c-1").unwrap();
    let meta = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        actor: Some("tester".into()),
        ..Metadata::default()
    };
    let first = store
        .append(append(
            &stream,
            ExpectedVersion::NoStream,
            vec![counted(1), counted(2)],
            &meta,
        ))
        .await
        .unwrap();
    assert_eq!(first.result().stream_version, v(2));
    let second = store
        .append(append(
            &stream,
            ExpectedVersion::Exact(v(2)),
            vec![counted(3)],
            &meta,
        ))
        .await
        .unwrap();
    assert_eq!(second.result().stream_version, v(3));

    let events = store
        .read_stream(&stream, StreamVersion::FIRST)
        .await
        .unwrap();
    let versions: Vec<i64> = events.iter().map(|e| e.stream_version.get()).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(events[2].payload, json!({ "n": 3 }));
    assert_eq!(events[0].metadata, meta);
    assert_eq!(events[0].stream_type, "counter");
    // UUIDv7 event ids.
    assert!(events
        .iter()
        .all(|e| e.event_id.uuid().get_version_num() == 7));
    assert!(events
        .windows(2)
        .all(|w| w[0].global_position < w[1].global_position));
    let tail = store.read_stream(&stream, v(3)).await.unwrap();
    assert_eq!(tail.len(), 1);
}

#[tokio::test]
async fn append_with_stale_version_is_rejected_and_writes_nothing() {
    let (_db, store, stream) = store_with_one_event("c-2").await;
    let err = refused_at(&store, &stream, ExpectedVersion::NoStream).await;
    assert!(
        matches!(err, StoreError::Conflict { actual: Some(a), .. } if a == v(1)),
        "{err:?}"
    );
    let err = refused_at(&store, &stream, ExpectedVersion::Exact(v(5))).await;
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let missing = StreamId::new("nope").unwrap();
    let err = refused_at(&store, &missing, ExpectedVersion::Exact(v(1))).await;
    assert!(
        matches!(err, StoreError::Conflict { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(stream_len(&store, &stream).await, 1);
    let err = refused(&store, &stream, ExpectedVersion::Any, vec![]).await;
    assert!(matches!(err, StoreError::EmptyAppend));
}

#[tokio::test]
async fn fifty_concurrent_appends_with_the_same_expected_version_admit_exactly_one() {
    let (_db, store) = event_store("store").await;
    let store = Arc::new(store);
    let stream = StreamId::new("hot").unwrap();
    try_append(&store, &stream, ExpectedVersion::NoStream, vec![counted(0)])
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, stream, barrier) = (store.clone(), stream.clone(), barrier.clone());
            tokio::spawn(async move {
                let meta = Metadata::default();
                barrier.wait().await;
                store
                    .append(append(
                        &stream,
                        ExpectedVersion::Exact(v(1)),
                        vec![counted(i)],
                        &meta,
                    ))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict { .. }) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 49));
    assert_eq!(stream_len(&store, &stream).await, 2);
}

#[tokio::test]
async fn idempotent_retry_returns_the_first_result_and_appends_nothing() {
    let (_db, store) = event_store("store").await;
    let stream = StreamId::new("c-3").unwrap();
    let meta = Metadata::default();
    let key = IdempotencyKey::new("cmd-42").unwrap();
    let idem = Idempotency {
        key: &key,
        fingerprint: "place:c-3:abc",
    };
    let mut request = append(&stream, ExpectedVersion::Any, vec![counted(1)], &meta);
    request.idempotency = Some(idem);
    let first = store.append(request.clone()).await.unwrap();
    assert!(matches!(first, Appended::New(_)));
    let again = store.append(request.clone()).await.unwrap();
    assert_eq!(again, Appended::Replayed(first.result().clone()));
    assert_eq!(stream_len(&store, &stream).await, 1);

    // The same key for a different command is refused, and writes nothing.
    request.idempotency = Some(Idempotency {
        key: &key,
        fingerprint: "other",
    });
    let err = store.append(request).await.unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyKeyReused { .. }),
        "{err:?}"
    );
    assert_eq!(stream_len(&store, &stream).await, 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_append_once() {
    let (_db, store) = event_store("store").await;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::new("c-4").unwrap();
                let meta = Metadata::default();
                let key = IdempotencyKey::new("same").unwrap();
                let mut request = append(&stream, ExpectedVersion::Any, vec![counted(1)], &meta);
                request.idempotency = Some(Idempotency {
                    key: &key,
                    fingerprint: "f",
                });
                store.append(request).await.map(|a| a.result().clone())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    let stream = StreamId::new("c-4").unwrap();
    assert_eq!(stream_len(&store, &stream).await, 1);
}

#[tokio::test]
async fn the_app_role_cannot_update_delete_or_truncate_events() {
    let (db, store, stream) = store_with_one_event("c-5").await;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events CASCADE",
        "UPDATE outbox SET created_at = now()",
        "DELETE FROM idempotency_keys",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    // Even the owner (who has every privilege) is stopped by the trigger.
    let owner = sluice_platform::db::pool_with(db.owner_options(), 1)
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events CASCADE",
    ] {
        let err = sqlx::query(sql).execute(&owner).await.unwrap_err();
        assert!(
            err.to_string().contains("events are immutable"),
            "{sql}: {err}"
        );
    }
    assert_eq!(stream_len(&store, &stream).await, 1);
}

#[tokio::test]
async fn outbox_rows_match_events_one_to_one_with_the_writer_transaction() {
    let (_db, store) = event_store("store").await;
    for i in 0..20 {
        let stream = StreamId::new(format!("s-{}", i % 4)).unwrap();
        let events = (0..(i % 3 + 1)).map(counted).collect();
        try_append(&store, &stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outbox), \
                (SELECT count(*) FROM events e JOIN outbox o USING (global_position)), \
                (SELECT count(DISTINCT txid) FROM outbox), \
                (SELECT count(DISTINCT global_position) FROM outbox)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let counts: Vec<i64> = (0..5).map(|i| row.get(i)).collect();
    // 20 appends of 1, 2 or 3 events: 7*1 + 7*2 + 6*3 = 39 events in 20 transactions.
    assert_eq!(counts, [39, 39, 39, 20, 39]);
}

/// Appends announce themselves to the relay before their transaction has an id
/// (`outbox_writer`): a transaction that already has one when it first appends is
/// refused, and nothing of it is written. Appending first, then anything else, and
/// appending again, all in one transaction, is fine.
#[tokio::test]
async fn an_append_after_the_transaction_took_its_id_is_refused() {
    let (_db, store) = event_store("store").await;
    let meta = Metadata::default();
    let s = StreamId::new("late").unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    take_xact_id(&mut tx).await;
    let refused = store
        .append_in(
            &mut tx,
            append(&s, ExpectedVersion::Any, vec![counted(1)], &meta),
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("events must be the first write of their transaction"),
        "{refused}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), None);

    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut tx,
            append(&s, ExpectedVersion::Any, vec![counted(1)], &meta),
        )
        .await
        .unwrap();
    take_xact_id(&mut tx).await;
    store
        .append_in(
            &mut tx,
            append(&s, ExpectedVersion::Any, vec![counted(2)], &meta),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(v(2)));
}

/// An event that could never be published (larger than a Kafka record may be) is
/// refused with its size, and nothing of its append is written.
#[tokio::test]
async fn an_event_too_large_to_publish_is_refused() {
    let (_db, store) = event_store("store").await;
    let s = StreamId::new("big").unwrap();
    let big = NewEvent {
        event_type: "Counted".to_owned(),
        schema_version: 1,
        payload: json!({ "blob": "x".repeat(sluice_platform::store::MAX_EVENT_BYTES) }),
    };
    let err = refused(&store, &s, ExpectedVersion::Any, vec![counted(1), big]).await;
    assert!(
        matches!(err, StoreError::TooLarge { index: 1, .. }),
        "{err}"
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), None);
}

#[tokio::test]
async fn a_rolled_back_append_leaves_no_event_and_no_outbox_row() {
    let (_db, store) = event_store("store").await;
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload) \
         VALUES ($1, 'rb', 'counter', 1, 'Counted', 1, '{}')",
    )
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn concurrent_appends_at_any_version_leave_gap_free_streams() {
    let (_db, store) = event_store("store").await;
    let store = Arc::new(store);
    // 8 writers x 25 appends of 1..=3 events to 4 streams, retrying conflicts in a
    // new transaction as the command handler does.
    let plan = ConcurrentWrites {
        writers: 8,
        appends: 25,
        prefix: "any-",
        streams: 4,
        max_events: 3,
    };
    let total = write_concurrently(store.clone(), plan).await;
    let mut stored = 0;
    for s in 0..4 {
        let stream = StreamId::new(format!("any-{s}")).unwrap();
        let events = store
            .read_stream(&stream, StreamVersion::FIRST)
            .await
            .unwrap();
        let versions: Vec<i64> = events.iter().map(|e| e.stream_version.get()).collect();
        let expected: Vec<i64> = (1..=events.len() as i64).collect();
        assert_eq!(versions, expected, "stream any-{s} has a gap");
        stored += events.len();
    }
    assert_eq!(stored, total);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(outbox as usize, total);
}

#[tokio::test]
async fn a_stream_keeps_its_stream_type() {
    let (_db, store, stream) = store_with_one_event("typed").await;
    let meta = Metadata::default();
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(v(1))] {
        let mut other = append(&stream, expected, vec![counted(2)], &meta);
        other.stream_type = "gauge";
        let err = store.append(other).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::StreamTypeMismatch { actual, requested, .. }
                if actual == "counter" && requested == "gauge"),
            "{err:?}"
        );
    }
    assert_eq!(stream_len(&store, &stream).await, 1);
}
