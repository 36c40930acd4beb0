//! The orders reactor against its own fresh database: events fed as the consumer
//! runtime feeds them (inside its transaction), the reactions read back from the
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use serde_json::{json, Value};
use sluice_orders::domain::{Order, OrderCommand, OrderLine, Sku};
use sluice_orders::reactor::ACTOR;
use sluice_orders::SERVICE;
use sluice_platform::aggregate::{CommandContext, CommandHandler};
use sluice_platform::consumer::ConsumedEvent;
use sluice_platform::saga::payment_id_for_order;
use sluice_platform::store::{Metadata, StreamId};
use sluice_platform::testing::{
    assert_skip_counted, consumed_event, reaction_metadata, traced_metadata, TestReactor,
};
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

/// The orders reactor over its own database (the platform's shared harness), with
/// the orders commands the tests set the scene with.
struct Reactor {
    inner: TestReactor,
    orders: CommandHandler<Order>,
}

impl Reactor {
    async fn start() -> Self {
        let inner = TestReactor::start(&SERVICE).await;
        let orders = CommandHandler::with_schemas(inner.store.clone(), SERVICE.catalog().unwrap());
        Reactor { inner, orders }
    }

    /// Runs a command as the HTTP API would, without the reactor.
    async fn command(&self, order_id: Uuid, command: OrderCommand) {
        self.orders
            .execute(
                &StreamId::from(order_id),
                &command,
                &CommandContext::default(),
            )
            .await
            .unwrap();
    }

    async fn place(&self) -> Uuid {
        let order_id = Uuid::now_v7();
        let line = OrderLine::new(Sku::new("BOOK-1").unwrap(), 2, Amount::new(1_250).unwrap());
        self.command(
            order_id,
            OrderCommand::Place {
                order_id,
                customer_id: "cust-1".into(),
                currency: Currency::new("EUR").unwrap(),
                lines: vec![line.unwrap()],
            },
        )
        .await;
        order_id
    }
}

/// The shared harness's own checks and feeding, as they are.
impl std::ops::Deref for Reactor {
    type Target = TestReactor;

    fn deref(&self) -> &TestReactor {
        &self.inner
    }
}

/// A payments event as the consumer runtime hands it over.
fn consumed(event_type: &str, payload: Value, metadata: Metadata) -> ConsumedEvent {
    let stream = payload["payment_id"].as_str().unwrap_or("p").to_owned();
    consumed_event(
        "payments.events",
        "payment",
        stream,
        1,
        event_type,
        payload,
        metadata,
    )
}

/// The saga's authorization of a placed order's total (2 × 12.50 EUR).
fn authorized(order_id: Uuid) -> ConsumedEvent {
    authorized_as(payment_id_for_order(order_id), order_id, 2_500, "EUR")
}

fn authorized_as(
    payment_id: Uuid,
    order_id: Uuid,
    amount_minor: i64,
    currency: &str,
) -> ConsumedEvent {
    consumed(
        "PaymentAuthorized",
        json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "amount_minor": amount_minor,
            "currency": currency
        }),
        from_the_saga(),
    )
}

/// The saga's decline of an order's payment.
fn declined(order_id: Uuid) -> ConsumedEvent {
    declined_as(payment_id_for_order(order_id), order_id)
}

fn declined_as(payment_id: Uuid, order_id: Uuid) -> ConsumedEvent {
    consumed(
        "PaymentDeclined",
        json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "amount_minor": 100_001,
            "currency": "EUR",
            "reason": "amount 100001 exceeds the authorization limit of 100000"
        }),
        from_the_saga(),
    )
}

fn from_the_saga() -> Metadata {
    traced_metadata("payments-reactor")
}

#[tokio::test]
async fn payment_authorized_confirms_the_order() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    let event = authorized(order_id);

    reactor.accept(&event).await;

    let events = reactor.stream(order_id).await;
    assert_eq!(events.len(), 2);
    let confirmed = &events[1];
    assert_eq!(confirmed.event_type, "OrderConfirmed");
    assert_eq!(confirmed.payload, json!({ "order_id": order_id }));
    assert_eq!(confirmed.metadata, reaction_metadata(&event, ACTOR));
}

#[tokio::test]
async fn a_redelivered_payment_authorized_appends_nothing() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    let event = authorized(order_id);

    reactor
        .assert_redelivery_appends_nothing(&event, order_id)
        .await;
}

#[tokio::test]
async fn payment_declined_cancels_the_order() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    let event = declined(order_id);

    reactor.accept(&event).await;
    reactor.accept(&event).await;

    let events = reactor.stream(order_id).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["OrderPlaced", "OrderCancelled"]
    );
    let reason = events[1].payload["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "payment {} declined: amount 100001 exceeds the authorization limit of 100000",
            event.payload["payment_id"].as_str().unwrap()
        )
    );
    assert_eq!(events[1].metadata.causation_id, Some(event.event_id));
    assert_eq!(
        events[1].metadata.correlation_id,
        event.metadata.correlation_id
    );
}

#[tokio::test]
async fn payment_authorized_for_an_order_cancelled_meanwhile_is_skipped() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    reactor
        .command(
            order_id,
            OrderCommand::Cancel {
                reason: "changed mind".into(),
            },
        )
        .await;

    reactor.accept(&authorized(order_id)).await;

    assert_eq!(
        reactor.event_types(order_id).await,
        ["OrderPlaced", "OrderCancelled"]
    );
    assert_skip_counted(SERVICE.name, "PaymentAuthorized", "order_cancelled");
}

#[tokio::test]
async fn a_second_payment_for_a_confirmed_order_is_skipped() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;

    reactor.accept(&authorized(order_id)).await;
    reactor.accept(&authorized(order_id)).await;

    assert_eq!(
        reactor.event_types(order_id).await,
        ["OrderPlaced", "OrderConfirmed"]
    );
}

#[tokio::test]
async fn a_payment_for_an_unknown_order_is_skipped() {
    let reactor = Reactor::start().await;
    let order_id = Uuid::now_v7();

    reactor.accept(&authorized(order_id)).await;
    reactor.accept(&declined(order_id)).await;

    assert!(reactor.stream(order_id).await.is_empty());
}

#[tokio::test]
async fn captures_and_refunds_are_ignored() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    let payment_id = Uuid::now_v7();
    let ignored = [
        consumed(
            "PaymentCaptured",
            json!({ "payment_id": payment_id, "order_id": order_id, "amount_minor": 2_500 }),
            from_the_saga(),
        ),
        consumed(
            "PaymentRefunded",
            json!({ "payment_id": payment_id, "order_id": order_id, "amount_minor": 100, "reason": null }),
            from_the_saga(),
        ),
    ];

    reactor.assert_ignored(&ignored).await;
    assert_eq!(reactor.event_types(order_id).await, ["OrderPlaced"]);
}

#[tokio::test]
async fn a_payment_event_without_its_order_is_poison() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;
    let mut no_order = authorized(order_id);
    no_order.payload.as_object_mut().unwrap().remove("order_id");
    let mut no_reason = declined(order_id);
    no_reason.payload.as_object_mut().unwrap().remove("reason");

    reactor.assert_poison([no_order, no_reason]).await;
    assert_eq!(reactor.event_types(order_id).await, ["OrderPlaced"]);
}

#[tokio::test]
async fn a_payment_that_is_not_the_orders_saga_payment_confirms_nothing() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;

    // Someone's `POST /payments` for this order: authorized, but not the saga's.
    reactor
        .accept(&authorized_as(Uuid::now_v7(), order_id, 2_500, "EUR"))
        .await;
    assert_skip_counted(SERVICE.name, "PaymentAuthorized", "not_saga_payment");
    // The saga's own payment, short of the total or in another currency.
    let saga = payment_id_for_order(order_id);
    reactor
        .accept(&authorized_as(saga, order_id, 1, "EUR"))
        .await;
    reactor
        .accept(&authorized_as(saga, order_id, 2_500, "USD"))
        .await;
    assert_skip_counted(SERVICE.name, "PaymentAuthorized", "payment_short");

    assert_eq!(reactor.event_types(order_id).await, ["OrderPlaced"]);
}

#[tokio::test]
async fn a_decline_cancels_nothing_unless_it_is_the_saga_payment_of_an_order_still_waiting() {
    let reactor = Reactor::start().await;
    let order_id = reactor.place().await;

    reactor.accept(&declined_as(Uuid::now_v7(), order_id)).await;
    assert_eq!(reactor.event_types(order_id).await, ["OrderPlaced"]);

    reactor.accept(&authorized(order_id)).await;
    reactor.accept(&declined(order_id)).await;
    assert_skip_counted(SERVICE.name, "PaymentDeclined", "order_confirmed");
    assert_eq!(
        reactor.event_types(order_id).await,
        ["OrderPlaced", "OrderConfirmed"]
    );
}
