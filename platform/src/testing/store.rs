//! An event store in a fresh database, the `Counted` events the store, relay and
//! consumer tests append, and writers that append to shared streams at once.

use std::sync::Arc;

use serde_json::json;

use super::TestDatabase;
use crate::registry::ComponentKind;
use crate::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};

/// A fresh service database (named after `label`) migrated with the event store's
/// tables, and an [`EventStore`] over its app role.
pub async fn event_store(label: &str) -> (TestDatabase, EventStore) {
    let db = TestDatabase::provision(label, ComponentKind::Service).await;
    db.migrate(vec![crate::store::migrator()]).await;
    let store = EventStore::new(db.app_pool().await);
    (db, store)
}

/// A `Counted` event (schema version 1) of the number `n`: `{"n": n}`.
pub fn counted(n: i64) -> NewEvent {
    NewEvent {
        event_type: "Counted".to_owned(),
        schema_version: 1,
        payload: json!({ "n": n }),
    }
}

/// How [`write_concurrently`] writes: `writers` tasks, each making `appends`
/// appends of 1 to `max_events` events in turn to the streams `<prefix><0..streams>`.
#[derive(Debug, Clone, Copy)]
pub struct ConcurrentWrites {
    pub writers: i64,
    pub appends: i64,
    pub prefix: &'static str,
    pub streams: i64,
    pub max_events: i64,
}

/// Runs the writers of `plan` at once against `store`, appending `counter` streams
/// at any version and retrying a conflict in a new transaction (as the command
/// handler does). Writer `w`'s append `i` goes to stream `(w + i) % streams` with
/// `i % max_events + 1` events. Returns how many events were appended in all.
pub async fn write_concurrently(store: Arc<EventStore>, plan: ConcurrentWrites) -> usize {
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let meta = Metadata::default();
                let mut written = 0;
                for i in 0..plan.appends {
                    let stream =
                        StreamId::new(format!("{}{}", plan.prefix, (w + i) % plan.streams))
                            .unwrap();
                    let n = i % plan.max_events + 1;
                    loop {
                        let append = Append {
                            stream_id: &stream,
                            stream_type: "counter",
                            expected: ExpectedVersion::Any,
                            events: (0..n).map(counted).collect(),
                            metadata: &meta,
                            idempotency: None,
                        };
                        match store.append(append).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    written += n as usize;
                }
                written
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    total
}
