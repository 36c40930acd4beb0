//! Unit tests of `domain`.

use super::*;

fn line(sku: &str, quantity: u32, price: i64) -> OrderLine {
    OrderLine::new(
        Sku::new(sku).unwrap(),
        quantity,
        Amount::new(price).unwrap(),
    )
    .unwrap()
}

/// `Place` of the order `order_id` for `customer_id`, in EUR.
fn place_as(order_id: Uuid, customer_id: &str, lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::Place {
        order_id,
        customer_id: customer_id.into(),
        currency: Currency::new("EUR").unwrap(),
        lines,
    }
}

fn place_cmd(id: Uuid) -> OrderCommand {
    place_as(id, "c-1", vec![line("A", 2, 250), line("B", 1, 1000)])
}

/// Placing `cmd` as a new order is refused as an invalid order.
fn assert_invalid_order(cmd: &OrderCommand) {
    assert!(
        matches!(
            Order::given(&[]).decide(cmd),
            Err(OrderError::InvalidOrder(_))
        ),
        "{cmd:?}"
    );
}

/// Given events, when a command, then the events it produces (or its error).
#[test]
fn placing_an_order_records_lines_and_total() {
    let id = Uuid::now_v7();
    let events = Order::given(&[]).decide(&place_cmd(id)).unwrap();
    let [OrderEvent::OrderPlaced {
        total_minor, lines, ..
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(*total_minor, 1500);
    assert_eq!(lines.len(), 2);
}

#[test]
fn placing_twice_is_refused() {
    let id = Uuid::now_v7();
    let placed = Order::given(&[]).decide(&place_cmd(id)).unwrap();
    assert_eq!(
        Order::given(&placed).decide(&place_cmd(id)),
        Err(OrderError::AlreadyPlaced(id))
    );
}

#[test]
fn an_order_without_lines_is_invalid() {
    assert_invalid_order(&place_as(Uuid::now_v7(), "c", vec![]));
}

#[test]
fn skus_are_counted_in_characters_not_bytes() {
    // 64 two-byte characters: 128 bytes, within the 64 characters the API declares.
    assert_eq!(
        Sku::new(&"é".repeat(MAX_SKU_CHARS)).unwrap().as_str(),
        "é".repeat(MAX_SKU_CHARS)
    );
    assert_eq!(Sku::new(" A-1\t").unwrap().as_str(), "A-1");
    for bad in [
        "".to_owned(),
        " \t ".to_owned(),
        "A\u{7}1".to_owned(),
        "é".repeat(MAX_SKU_CHARS + 1),
        format!(" {}", "x".repeat(MAX_SKU_CHARS)),
    ] {
        assert!(Sku::new(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn customer_ids_are_counted_in_characters_not_bytes() {
    let place_for =
        |customer_id: &str| place_as(Uuid::now_v7(), customer_id, vec![line("A", 1, 1)]);
    let long = "ü".repeat(MAX_CUSTOMER_ID_CHARS);
    let [OrderEvent::OrderPlaced { customer_id, .. }] =
        &Order::given(&[]).decide(&place_for(&long)).unwrap()[..]
    else {
        panic!("placed")
    };
    assert_eq!(customer_id, &long);
    for bad in [
        "   ".to_owned(),
        "ü".repeat(MAX_CUSTOMER_ID_CHARS + 1),
        format!("{long} "),
    ] {
        assert_invalid_order(&place_for(&bad));
    }
}

#[test]
fn zero_quantity_lines_are_invalid() {
    assert!(OrderLine::new(Sku::new("A").unwrap(), 0, Amount::ZERO).is_err());
    assert!(Sku::new(" ").is_err());
}

#[test]
fn overflowing_totals_are_invalid() {
    let lines = vec![line("A", MAX_QUANTITY, i64::MAX / 2)];
    assert_invalid_order(&place_as(Uuid::now_v7(), "c", lines));
}

#[test]
fn a_placed_order_can_be_confirmed_once() {
    let id = Uuid::now_v7();
    let mut history = Order::given(&[]).decide(&place_cmd(id)).unwrap();
    let confirmed = Order::given(&history)
        .decide(&OrderCommand::Confirm)
        .unwrap();
    assert_eq!(confirmed, [OrderEvent::OrderConfirmed { order_id: id }]);
    history.extend(confirmed);
    assert_eq!(Order::given(&history).status, OrderStatus::Confirmed);
    assert!(matches!(
        Order::given(&history).decide(&OrderCommand::Confirm),
        Err(OrderError::InvalidTransition {
            action: "confirm",
            ..
        })
    ));
}

#[test]
fn a_cancelled_order_cannot_be_confirmed_or_cancelled_again() {
    let id = Uuid::now_v7();
    let cancel = OrderCommand::Cancel {
        reason: "changed mind".into(),
    };
    let order = Order::given(&Order::history(&[place_cmd(id), cancel]).unwrap());
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.cancel_reason.as_deref(), Some("changed mind"));
    assert_eq!(
        order.decide(&OrderCommand::Confirm),
        Err(OrderError::InvalidTransition {
            action: "confirm",
            status: OrderStatus::Cancelled
        })
    );
    assert!(order
        .decide(&OrderCommand::Cancel { reason: "x".into() })
        .is_err());
}

#[test]
fn a_confirmed_order_can_still_be_cancelled() {
    let id = Uuid::now_v7();
    let history = Order::history(&[place_cmd(id), OrderCommand::Confirm]).unwrap();
    let events = Order::given(&history)
        .decide(&OrderCommand::Cancel {
            reason: "out of stock".into(),
        })
        .unwrap();
    assert!(matches!(events[0], OrderEvent::OrderCancelled { .. }));
}

fn paid(payment_id: Uuid, amount_minor: i64, currency: &str) -> OrderCommand {
    OrderCommand::ConfirmPaid {
        payment_id,
        amount_minor,
        currency: currency.into(),
    }
}

fn declined(payment_id: Uuid) -> OrderCommand {
    OrderCommand::CancelDeclined {
        payment_id,
        reason: "over the limit".into(),
    }
}

#[test]
fn only_the_orders_own_saga_payment_covering_its_total_confirms_it() {
    let id = Uuid::now_v7();
    let history = Order::given(&[]).decide(&place_cmd(id)).unwrap();
    let order = Order::given(&history);
    let total = order.total_minor;
    let saga = payment_id_for_order(id);
    let stray = Uuid::now_v7();
    assert_eq!(
        order.decide(&paid(stray, total, "EUR")),
        Err(OrderError::NotSagaPayment {
            payment_id: stray,
            expected: saga
        })
    );
    assert!(matches!(
        order.decide(&paid(saga, total - 1, "EUR")),
        Err(OrderError::PaymentShort { .. })
    ));
    assert!(matches!(
        order.decide(&paid(saga, total, "USD")),
        Err(OrderError::PaymentShort { .. })
    ));
    assert_eq!(
        order.decide(&paid(saga, total, "EUR")),
        Ok(vec![OrderEvent::OrderConfirmed { order_id: id }])
    );
}

#[test]
fn only_the_orders_own_saga_decline_cancels_it_and_only_before_it_is_confirmed() {
    let id = Uuid::now_v7();
    let mut history = Order::given(&[]).decide(&place_cmd(id)).unwrap();
    let saga = payment_id_for_order(id);
    assert!(matches!(
        Order::given(&history).decide(&declined(Uuid::now_v7())),
        Err(OrderError::NotSagaPayment { .. })
    ));
    assert!(matches!(
        Order::given(&history).decide(&declined(saga)).unwrap()[..],
        [OrderEvent::OrderCancelled { .. }]
    ));
    history.extend(
        Order::given(&history)
            .decide(&OrderCommand::Confirm)
            .unwrap(),
    );
    assert_eq!(
        Order::given(&history).decide(&declined(saga)),
        Err(OrderError::InvalidTransition {
            action: "cancel",
            status: OrderStatus::Confirmed
        })
    );
}

#[test]
fn commands_on_an_unknown_order_are_not_found() {
    assert_eq!(
        Order::given(&[]).decide(&OrderCommand::Confirm),
        Err(OrderError::NotFound)
    );
}
