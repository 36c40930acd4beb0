//! The shipping reactor against its own fresh database: events fed as the consumer
//! runtime feeds them (inside its transaction), the reactions read back from the
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use serde_json::{json, Value};
use sluice_platform::aggregate::{CommandContext, CommandHandler};
use sluice_platform::consumer::ConsumedEvent;
use sluice_platform::store::{Metadata, StreamId};
use sluice_platform::testing::{
    assert_skip_counted, order_event, reaction_metadata, traced_metadata, TestReactor as Reactor,
};
use sluice_shipping::domain::{Shipment, ShipmentCommand};
use sluice_shipping::reactor::{shipment_id_for_order, ACTOR};
use sluice_shipping::SERVICE;
use uuid::Uuid;

/// An orders event as the consumer runtime hands it over.
fn consumed(event_type: &str, order_id: Uuid, payload: Value, metadata: Metadata) -> ConsumedEvent {
    order_event(event_type, order_id, 2, payload, metadata)
}

fn confirmed(order_id: Uuid) -> ConsumedEvent {
    consumed(
        "OrderConfirmed",
        order_id,
        json!({ "order_id": order_id }),
        from_the_saga(),
    )
}

fn from_the_saga() -> Metadata {
    traced_metadata("orders-reactor")
}

#[tokio::test]
async fn order_confirmed_creates_the_orders_shipment() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let event = confirmed(order_id);

    reactor.accept(&event).await;

    let shipment_id = shipment_id_for_order(order_id);
    let events = reactor.stream(shipment_id).await;
    assert_eq!(events.len(), 1);
    let created = &events[0];
    assert_eq!(created.event_type, "ShipmentCreated");
    assert_eq!(
        created.payload,
        json!({ "shipment_id": shipment_id, "order_id": order_id })
    );
    assert_eq!(created.metadata, reaction_metadata(&event, ACTOR));
}

#[tokio::test]
async fn a_redelivered_order_confirmed_appends_nothing() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let event = confirmed(order_id);

    reactor
        .assert_redelivery_appends_nothing(&event, shipment_id_for_order(order_id))
        .await;
    assert_eq!(reactor.event_count().await, 1);
}

#[tokio::test]
async fn an_event_without_correlation_starts_one_with_its_own_id() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let event = consumed(
        "OrderConfirmed",
        order_id,
        json!({ "order_id": order_id }),
        Metadata::default(),
    );

    reactor.accept(&event).await;

    let events = reactor.stream(shipment_id_for_order(order_id)).await;
    assert_eq!(events[0].metadata.correlation_id, Some(event.event_id));
    assert_eq!(events[0].metadata.causation_id, Some(event.event_id));
}

#[tokio::test]
async fn a_shipment_that_already_exists_is_skipped() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let shipment_id = shipment_id_for_order(order_id);
    // A manual command took the id first.
    CommandHandler::<Shipment>::with_schemas(reactor.store.clone(), SERVICE.catalog().unwrap())
        .execute(
            &StreamId::from(shipment_id),
            &ShipmentCommand::Create {
                shipment_id,
                order_id,
            },
            &CommandContext::default(),
        )
        .await
        .unwrap();

    reactor.accept(&confirmed(order_id)).await;

    let events = reactor.stream(shipment_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata.actor, None);
    assert_skip_counted(SERVICE.name, "OrderConfirmed", "shipment_exists");
}

#[tokio::test]
async fn other_orders_events_are_ignored() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let ignored = [
        consumed(
            "OrderPlaced",
            order_id,
            json!({
                "order_id": order_id,
                "customer_id": "cust-1",
                "currency": "EUR",
                "lines": [],
                "total_minor": 0
            }),
            from_the_saga(),
        ),
        consumed(
            "OrderCancelled",
            order_id,
            json!({ "order_id": order_id, "reason": "changed mind" }),
            from_the_saga(),
        ),
    ];

    reactor.assert_ignored(&ignored).await;
    assert_eq!(reactor.event_count().await, 0);
}

#[tokio::test]
async fn an_unreadable_order_confirmed_is_poison() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let no_order = consumed("OrderConfirmed", order_id, json!({}), from_the_saga());
    let not_a_uuid = consumed(
        "OrderConfirmed",
        order_id,
        json!({ "order_id": "order-1" }),
        from_the_saga(),
    );
    let nil_order = confirmed(Uuid::nil());

    reactor
        .assert_poison([no_order, not_a_uuid, nil_order])
        .await;
    assert_eq!(reactor.event_count().await, 0);
}

fn order_cancelled(order_id: Uuid) -> ConsumedEvent {
    consumed(
        "OrderCancelled",
        order_id,
        json!({ "order_id": order_id, "reason": "changed my mind" }),
        from_the_saga(),
    )
}

#[tokio::test]
async fn a_cancelled_order_cancels_its_saga_shipment_until_it_is_dispatched() {
    let reactor = Reactor::start(&SERVICE).await;
    let waiting = Uuid::now_v7();
    reactor.accept(&confirmed(waiting)).await;
    let cancelled = order_cancelled(waiting);
    reactor.accept(&cancelled).await;
    reactor.accept(&cancelled).await;
    let events = reactor.stream(shipment_id_for_order(waiting)).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ShipmentCreated", "ShipmentCancelled"]);
    assert_eq!(
        events[1].payload["reason"],
        "order cancelled: changed my mind"
    );

    // Already on its way: it stays as it is.
    let on_its_way = Uuid::now_v7();
    reactor.accept(&confirmed(on_its_way)).await;
    let shipment = shipment_id_for_order(on_its_way);
    CommandHandler::<Shipment>::new(sluice_platform::store::EventStore::new(
        reactor.pool.clone(),
    ))
    .execute(
        &StreamId::from(shipment),
        &ShipmentCommand::Dispatch {
            carrier: sluice_shipping::domain::Carrier::new("DHL").unwrap(),
            tracking_number: sluice_shipping::domain::TrackingNumber::new("JD1").unwrap(),
        },
        &CommandContext::default(),
    )
    .await
    .unwrap();
    reactor.accept(&order_cancelled(on_its_way)).await;
    assert_skip_counted(SERVICE.name, "OrderCancelled", "shipment_dispatched");
    assert_eq!(
        reactor.event_types(shipment).await,
        ["ShipmentCreated", "ShipmentDispatched"]
    );

    // Never shipped.
    reactor.accept(&order_cancelled(Uuid::now_v7())).await;
    assert_skip_counted(SERVICE.name, "OrderCancelled", "no_shipment");
}
