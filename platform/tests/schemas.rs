//! A command handler with a schema catalog validates every decided event before it
//! appends: a payload that breaks its schema (or has none) is refused with 422 and
//! nothing is stored. Against a real PostgreSQL, in a fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::{
    Aggregate, CommandContext, CommandError, CommandHandler, DomainError, DomainEvent, Rejection,
};
use sluice_platform::avro::{SchemaCatalog, SchemaSource};
use sluice_platform::http::Problem;
use sluice_platform::store::{StreamId, StreamVersion};
use sluice_platform::testing::{event_store, TestDatabase};

/// A counter whose `Counted` schema holds `n` as an Avro `int`, while the domain
/// allows any `i64`: counting past `i32::MAX` decides an event its schema refuses.
#[derive(Debug, Default)]
struct Counter {
    total: i64,
}

enum CounterCommand {
    Count(i64),
    /// Decides an event type that has no schema.
    Forget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
enum CounterEvent {
    Counted { n: i64 },
    Forgotten {},
}

impl DomainEvent for CounterEvent {}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl DomainError for Never {
    fn rejection(&self) -> Rejection {
        Rejection::Invalid
    }
}

impl Aggregate for Counter {
    const STREAM_TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = Never;

    fn decide(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, Never> {
        Ok(vec![match command {
            CounterCommand::Count(n) => CounterEvent::Counted { n: *n },
            CounterCommand::Forget => CounterEvent::Forgotten {},
        }])
    }

    fn evolve(mut self, event: &CounterEvent) -> Self {
        if let CounterEvent::Counted { n } = event {
            self.total += n;
        }
        self
    }
}

const COUNTED_V1: &str = r#"{"type": "record", "name": "Counted", "namespace": "io.sluice.test",
    "doc": "Counted n.", "fields": [{"name": "n", "type": "int", "doc": "How many."}]}"#;
const COUNTED_V2: &str = r#"{"type": "record", "name": "Counted", "namespace": "io.sluice.test",
    "doc": "Counted n.", "fields": [{"name": "n", "type": "int", "doc": "How many."},
    {"name": "unit", "type": ["null", "string"], "default": null, "doc": "Of what."}]}"#;

async fn handler() -> (TestDatabase, CommandHandler<Counter>) {
    let (db, store) = event_store("schemas").await;
    let catalog = SchemaCatalog::new([
        SchemaSource::embedded("Counted", 1, COUNTED_V1),
        SchemaSource::embedded("Counted", 2, COUNTED_V2),
    ])
    .unwrap();
    (db, CommandHandler::with_schemas(store, catalog))
}

async fn stored(handler: &CommandHandler<Counter>, stream: &StreamId) -> Vec<(String, i32)> {
    handler
        .store()
        .read_stream(stream, StreamVersion::FIRST)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_type, e.schema_version))
        .collect()
}

#[tokio::test]
async fn valid_events_are_stored_with_the_latest_schema_version() {
    let (_db, handler) = handler().await;
    let stream = StreamId::new("counter-1").unwrap();
    let ctx = CommandContext::default();
    handler
        .execute(&stream, &CounterCommand::Count(3), &ctx)
        .await
        .unwrap();
    assert_eq!(stored(&handler, &stream).await, [("Counted".into(), 2)]);
}

#[tokio::test]
async fn a_payload_that_breaks_its_schema_is_refused_with_422_and_nothing_is_appended() {
    let (_db, handler) = handler().await;
    let stream = StreamId::new("counter-1").unwrap();
    let ctx = CommandContext::default();
    handler
        .execute(&stream, &CounterCommand::Count(1), &ctx)
        .await
        .unwrap();
    let too_big = CounterCommand::Count(i64::from(i32::MAX) + 1);
    let err = handler.execute(&stream, &too_big, &ctx).await.unwrap_err();
    let CommandError::InvalidPayload {
        event_type,
        message,
    } = &err
    else {
        panic!("expected InvalidPayload, got {err:?}");
    };
    assert_eq!(event_type, "Counted");
    assert!(
        message.contains("Counted v2") && message.contains("`n`"),
        "{message}"
    );
    let problem = Problem::from(err);
    assert_eq!(problem.status, 422);
    assert!(
        problem.detail.contains("was not appended"),
        "{}",
        problem.detail
    );
    assert_eq!(stored(&handler, &stream).await.len(), 1);
}

#[tokio::test]
async fn an_event_type_without_a_schema_is_refused_and_nothing_is_appended() {
    let (_db, handler) = handler().await;
    let stream = StreamId::new("counter-2").unwrap();
    let err = handler
        .execute(&stream, &CounterCommand::Forget, &CommandContext::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::InvalidPayload { event_type, message }
            if event_type == "Forgotten" && message.contains("no schema for event type Forgotten")),
        "{err:?}"
    );
    assert_eq!(Problem::from(err).status, 422);
    assert!(stored(&handler, &stream).await.is_empty());
}
