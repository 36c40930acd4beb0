//! The payments reactor against its own fresh database: events fed as the consumer
//! runtime feeds them (inside its transaction), the reactions read back from the
//! store.
//!
//! The authorization limit is the default (100 000 minor units): these tests set no
//! environment variable, as the environment is shared by every test in the process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use serde_json::{json, Value};
use sluice_payments::domain::{Payment, PaymentCommand};
use sluice_payments::reactor::{payment_id_for_order, ACTOR};
use sluice_payments::SERVICE;
use sluice_platform::aggregate::{CommandContext, CommandHandler};
use sluice_platform::consumer::ConsumedEvent;
use sluice_platform::store::{Metadata, StreamId};
use sluice_platform::testing::{
    assert_skip_counted, order_event, reaction_metadata, traced_metadata, TestReactor as Reactor,
};
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

/// An orders event as the consumer runtime hands it over.
fn consumed(event_type: &str, order_id: Uuid, payload: Value, metadata: Metadata) -> ConsumedEvent {
    order_event(event_type, order_id, 1, payload, metadata)
}

fn order_placed(order_id: Uuid, total_minor: i64, metadata: Metadata) -> ConsumedEvent {
    consumed(
        "OrderPlaced",
        order_id,
        json!({
            "order_id": order_id,
            "customer_id": "cust-1",
            "currency": "EUR",
            "lines": [{ "sku": "BOOK-1", "quantity": 1, "unit_price_minor": total_minor }],
            "total_minor": total_minor
        }),
        metadata,
    )
}

fn from_a_request() -> Metadata {
    traced_metadata("customer")
}

#[tokio::test]
async fn order_placed_authorizes_its_total_under_the_orders_payment_id() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let placed = order_placed(order_id, 2_800, from_a_request());

    reactor.accept(&placed).await;

    let payment_id = payment_id_for_order(order_id);
    let events = reactor.stream(payment_id).await;
    assert_eq!(events.len(), 1);
    let authorized = &events[0];
    assert_eq!(authorized.event_type, "PaymentAuthorized");
    assert_eq!(
        authorized.payload,
        json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "amount_minor": 2_800,
            "currency": "EUR"
        })
    );
    assert_eq!(authorized.metadata, reaction_metadata(&placed, ACTOR));
}

#[tokio::test]
async fn a_redelivered_order_placed_appends_nothing() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let placed = order_placed(order_id, 2_800, from_a_request());

    reactor
        .assert_redelivery_appends_nothing(&placed, payment_id_for_order(order_id))
        .await;
    assert_eq!(reactor.event_count().await, 1);
}

#[tokio::test]
async fn an_order_above_the_default_limit_is_declined() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();

    reactor
        .accept(&order_placed(order_id, 100_001, from_a_request()))
        .await;

    let events = reactor.stream(payment_id_for_order(order_id)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "PaymentDeclined");
    assert_eq!(events[0].payload["amount_minor"], 100_001);
    assert_eq!(events[0].payload["order_id"], order_id.to_string());
    assert!(
        events[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("100000"),
        "{}",
        events[0].payload
    );
}

#[tokio::test]
async fn an_order_at_the_limit_is_authorized() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();

    reactor
        .accept(&order_placed(order_id, 100_000, from_a_request()))
        .await;

    let events = reactor.stream(payment_id_for_order(order_id)).await;
    assert_eq!(events[0].event_type, "PaymentAuthorized");
}

#[tokio::test]
async fn an_event_without_correlation_starts_one_with_its_own_id() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let placed = order_placed(order_id, 500, Metadata::default());

    reactor.accept(&placed).await;

    let events = reactor.stream(payment_id_for_order(order_id)).await;
    assert_eq!(events[0].metadata.correlation_id, Some(placed.event_id));
    assert_eq!(events[0].metadata.causation_id, Some(placed.event_id));
    assert_eq!(events[0].metadata.traceparent, None);
}

#[tokio::test]
async fn a_payment_that_already_exists_is_skipped() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let payment_id = payment_id_for_order(order_id);
    // A manual command took the id first.
    CommandHandler::<Payment>::with_schemas(reactor.store.clone(), SERVICE.catalog().unwrap())
        .execute(
            &StreamId::from(payment_id),
            &PaymentCommand::Authorize {
                payment_id,
                order_id,
                amount: Amount::new(10).unwrap(),
                currency: Currency::new("EUR").unwrap(),
                limit: Amount::new(100_000).unwrap(),
            },
            &CommandContext::default(),
        )
        .await
        .unwrap();

    reactor
        .accept(&order_placed(order_id, 2_800, from_a_request()))
        .await;

    let events = reactor.stream(payment_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["amount_minor"], 10);
    assert_eq!(events[0].metadata.actor, None);
    assert_skip_counted(SERVICE.name, "OrderPlaced", "payment_exists");
}

#[tokio::test]
async fn a_free_order_has_nothing_to_authorize_and_is_skipped() {
    let reactor = Reactor::start(&SERVICE).await;

    reactor
        .accept(&order_placed(Uuid::now_v7(), 0, from_a_request()))
        .await;

    assert_eq!(reactor.event_count().await, 0);
    assert_skip_counted(SERVICE.name, "OrderPlaced", "nothing_to_authorize");
}

#[tokio::test]
async fn other_orders_events_are_ignored() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let ignored = [
        consumed(
            "OrderConfirmed",
            order_id,
            json!({ "order_id": order_id }),
            from_a_request(),
        ),
        consumed(
            "OrderCancelled",
            order_id,
            json!({ "order_id": order_id, "reason": "changed mind" }),
            from_a_request(),
        ),
        consumed("SomethingNew", order_id, json!({}), from_a_request()),
    ];

    reactor.assert_ignored(&ignored).await;
    assert_eq!(reactor.event_count().await, 0);
}

#[tokio::test]
async fn an_unreadable_order_placed_is_poison() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    let mut missing_total = order_placed(order_id, 2_800, from_a_request());
    missing_total
        .payload
        .as_object_mut()
        .unwrap()
        .remove("total_minor");
    let mut bad_currency = order_placed(order_id, 2_800, from_a_request());
    bad_currency.payload["currency"] = json!("euro");
    let negative = order_placed(order_id, -1, from_a_request());

    reactor
        .assert_poison([missing_total, bad_currency, negative])
        .await;
    assert_eq!(reactor.event_count().await, 0);
}

fn order_cancelled(order_id: Uuid) -> ConsumedEvent {
    consumed(
        "OrderCancelled",
        order_id,
        json!({ "order_id": order_id, "reason": "changed my mind" }),
        from_a_request(),
    )
}

#[tokio::test]
async fn a_cancelled_order_voids_its_saga_payment_once() {
    let reactor = Reactor::start(&SERVICE).await;
    let order_id = Uuid::now_v7();
    reactor
        .accept(&order_placed(order_id, 2_800, from_a_request()))
        .await;
    let cancelled = order_cancelled(order_id);

    reactor.accept(&cancelled).await;
    reactor.accept(&cancelled).await;

    let events = reactor.stream(payment_id_for_order(order_id)).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["PaymentAuthorized", "PaymentVoided"]);
    assert_eq!(events[1].payload["amount_minor"], 2_800);
    assert_eq!(
        events[1].payload["reason"],
        "order cancelled: changed my mind"
    );
    assert_eq!(events[1].metadata.causation_id, Some(cancelled.event_id));
}

#[tokio::test]
async fn a_cancelled_order_whose_payment_was_declined_or_never_made_is_skipped() {
    let reactor = Reactor::start(&SERVICE).await;
    let declined = Uuid::now_v7();
    reactor
        .accept(&order_placed(declined, 100_001, from_a_request()))
        .await;
    reactor.accept(&order_cancelled(declined)).await;
    assert_skip_counted(SERVICE.name, "OrderCancelled", "nothing_to_compensate");
    assert_eq!(
        reactor.event_types(payment_id_for_order(declined)).await,
        ["PaymentDeclined"]
    );

    let never_paid = Uuid::now_v7();
    reactor.accept(&order_cancelled(never_paid)).await;
    assert_skip_counted(SERVICE.name, "OrderCancelled", "no_payment");
    assert!(reactor
        .stream(payment_id_for_order(never_paid))
        .await
        .is_empty());
}
