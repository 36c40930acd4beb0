//! What every reactor's tests check of its reactions: the metadata a reaction
//! carries, that a redelivered event appends nothing, that the events a reactor does
//! not react to are ignored, and that unreadable ones are poison.

use serde_json::Value;
use uuid::Uuid;

use super::{consumed_event, TestReactor};
use crate::consumer::{ConsumedEvent, HandlerError};
use crate::store::{Metadata, RecordedEvent};

/// An event of the order `order_id` at `version` (topic `orders.events`, stream type
/// `order`), as the consumer runtime hands it over.
pub fn order_event(
    event_type: &str,
    order_id: Uuid,
    version: i64,
    payload: Value,
    metadata: Metadata,
) -> ConsumedEvent {
    consumed_event(
        "orders.events",
        "order",
        order_id.to_string(),
        version,
        event_type,
        payload,
        metadata,
    )
}

/// The metadata of `actor`'s reaction to `event`: the event's correlation and trace
/// carried on, the event itself as the cause.
pub fn reaction_metadata(event: &ConsumedEvent, actor: &str) -> Metadata {
    Metadata {
        correlation_id: event.metadata.correlation_id,
        causation_id: Some(event.event_id),
        traceparent: event.metadata.traceparent.clone(),
        actor: Some(actor.into()),
    }
}

impl TestReactor {
    /// Applies `event`, which the reactor must accept (react to it or skip it).
    pub async fn accept(&self, event: &ConsumedEvent) {
        self.apply(event)
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e:?}", event.event_type, event.payload));
    }

    /// The event types of a stream of the service's store, in version order.
    pub async fn event_types(&self, id: Uuid) -> Vec<String> {
        self.stream(id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Applies `event`, then twice again as a redelivery: the stream `id` it reacts
    /// on is after the redeliveries what it was after the first, and the store holds
    /// no more events. Returns that stream.
    pub async fn assert_redelivery_appends_nothing(
        &self,
        event: &ConsumedEvent,
        id: Uuid,
    ) -> Vec<RecordedEvent> {
        self.accept(event).await;
        let first = self.stream(id).await;
        let count = self.event_count().await;
        for _ in 0..2 {
            self.accept(event).await;
        }
        assert_eq!(self.stream(id).await, first, "a redelivery reacted again");
        assert_eq!(self.event_count().await, count, "a redelivery appended");
        first
    }

    /// Applies each of `events`, which the reactor must accept and not react to: the
    /// store holds as many events afterwards as before.
    pub async fn assert_ignored(&self, events: &[ConsumedEvent]) {
        let before = self.event_count().await;
        for event in events {
            self.accept(event).await;
        }
        assert_eq!(
            self.event_count().await,
            before,
            "an ignored event appended"
        );
    }

    /// Each of `events` is poison to the reactor, and the store holds as many events
    /// afterwards as before.
    pub async fn assert_poison(&self, events: impl IntoIterator<Item = ConsumedEvent>) {
        let before = self.event_count().await;
        for event in events {
            let result = self.apply(&event).await;
            assert!(
                matches!(result, Err(HandlerError::Poison(_))),
                "{} {}: {result:?}",
                event.event_type,
                event.payload
            );
        }
        assert_eq!(self.event_count().await, before, "a poison event appended");
    }
}
