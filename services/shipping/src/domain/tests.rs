//! Unit tests of `domain`.

use super::*;

fn create_cmd(shipment_id: Uuid, order_id: Uuid) -> ShipmentCommand {
    ShipmentCommand::Create {
        shipment_id,
        order_id,
    }
}

fn dispatch_cmd() -> ShipmentCommand {
    ShipmentCommand::Dispatch {
        carrier: Carrier::new("DHL Express").unwrap(),
        tracking_number: TrackingNumber::new("JD014600006281").unwrap(),
    }
}

/// Given events, when a command, then the events it produces (or its error).
#[test]
fn creating_a_shipment_records_it_for_its_order() {
    let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
    let events = Shipment::given(&[]).decide(&create_cmd(id, order)).unwrap();
    assert_eq!(
        events,
        [ShipmentEvent::ShipmentCreated {
            shipment_id: id,
            order_id: order
        }]
    );
    let shipment = Shipment::given(&events);
    assert_eq!(shipment.status, Some(ShipmentStatus::Created));
    assert_eq!(shipment.shipment_id, Some(id));
    assert_eq!(shipment.order_id, Some(order));
    assert_eq!(shipment.carrier, None);
}

#[test]
fn creating_twice_is_refused() {
    let id = Uuid::now_v7();
    let created = Shipment::history(&[create_cmd(id, Uuid::now_v7())]).unwrap();
    let again = Shipment::given(&created).decide(&create_cmd(id, Uuid::now_v7()));
    assert_eq!(again, Err(ShipmentError::AlreadyCreated(id)));
    assert_eq!(again.unwrap_err().rejection(), Rejection::InvalidState);
}

#[test]
fn nil_ids_are_invalid() {
    let nil_order = Shipment::given(&[]).decide(&create_cmd(Uuid::now_v7(), Uuid::nil()));
    assert_eq!(nil_order, Err(ShipmentError::NilId("order_id")));
    let nil_shipment = Shipment::given(&[]).decide(&create_cmd(Uuid::nil(), Uuid::now_v7()));
    assert_eq!(nil_shipment, Err(ShipmentError::NilId("shipment_id")));
    assert_eq!(nil_order.unwrap_err().rejection(), Rejection::Invalid);
}

#[test]
fn a_created_shipment_is_dispatched_with_its_carrier_and_tracking_number() {
    let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = Shipment::history(&[create_cmd(id, order)]).unwrap();
    let dispatched = Shipment::given(&events).decide(&dispatch_cmd()).unwrap();
    assert_eq!(
        dispatched,
        [ShipmentEvent::ShipmentDispatched {
            shipment_id: id,
            order_id: order,
            carrier: "DHL Express".into(),
            tracking_number: "JD014600006281".into(),
        }]
    );
    events.extend(dispatched);
    let shipment = Shipment::given(&events);
    assert_eq!(shipment.status, Some(ShipmentStatus::Dispatched));
    assert_eq!(shipment.carrier.as_deref(), Some("DHL Express"));
    assert_eq!(shipment.tracking_number.as_deref(), Some("JD014600006281"));
}

#[test]
fn a_dispatched_shipment_is_delivered_once() {
    let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = Shipment::history(&[create_cmd(id, order), dispatch_cmd()]).unwrap();
    let delivered = Shipment::given(&events)
        .decide(&ShipmentCommand::Deliver)
        .unwrap();
    assert_eq!(
        delivered,
        [ShipmentEvent::ShipmentDelivered {
            shipment_id: id,
            order_id: order
        }]
    );
    events.extend(delivered);
    let shipment = Shipment::given(&events);
    assert_eq!(shipment.status, Some(ShipmentStatus::Delivered));
    // Delivery keeps what dispatch recorded.
    assert_eq!(shipment.carrier.as_deref(), Some("DHL Express"));
    assert_eq!(
        shipment.decide(&ShipmentCommand::Deliver),
        Err(ShipmentError::InvalidTransition {
            action: "deliver",
            status: ShipmentStatus::Delivered,
            required: ShipmentStatus::Dispatched,
        })
    );
}

#[test]
fn dispatching_twice_is_refused() {
    let events =
        Shipment::history(&[create_cmd(Uuid::now_v7(), Uuid::now_v7()), dispatch_cmd()]).unwrap();
    let again = Shipment::given(&events).decide(&dispatch_cmd());
    assert_eq!(
        again,
        Err(ShipmentError::InvalidTransition {
            action: "dispatch",
            status: ShipmentStatus::Dispatched,
            required: ShipmentStatus::Created,
        })
    );
    assert_eq!(again.unwrap_err().rejection(), Rejection::InvalidState);
}

#[test]
fn a_delivered_shipment_cannot_be_dispatched() {
    let events = Shipment::history(&[
        create_cmd(Uuid::now_v7(), Uuid::now_v7()),
        dispatch_cmd(),
        ShipmentCommand::Deliver,
    ])
    .unwrap();
    assert_eq!(
        Shipment::given(&events).decide(&dispatch_cmd()),
        Err(ShipmentError::InvalidTransition {
            action: "dispatch",
            status: ShipmentStatus::Delivered,
            required: ShipmentStatus::Created,
        })
    );
}

#[test]
fn a_shipment_never_dispatched_cannot_be_delivered() {
    let events = Shipment::history(&[create_cmd(Uuid::now_v7(), Uuid::now_v7())]).unwrap();
    let refused = Shipment::given(&events)
        .decide(&ShipmentCommand::Deliver)
        .unwrap_err();
    assert_eq!(
        refused,
        ShipmentError::InvalidTransition {
            action: "deliver",
            status: ShipmentStatus::Created,
            required: ShipmentStatus::Dispatched,
        }
    );
    assert_eq!(
        refused.to_string(),
        "cannot deliver a shipment whose status is `created`; deliver needs status `dispatched`"
    );
}

#[test]
fn a_shipment_is_cancelled_only_before_it_is_dispatched() {
    let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
    let cancel = || ShipmentCommand::Cancel {
        reason: "order cancelled".into(),
    };
    let created = Shipment::history(&[create_cmd(id, order)]).unwrap();
    let cancelled = Shipment::given(&created).decide(&cancel()).unwrap();
    assert_eq!(
        cancelled,
        [ShipmentEvent::ShipmentCancelled {
            shipment_id: id,
            order_id: order,
            reason: "order cancelled".into()
        }]
    );
    let mut after = created.clone();
    after.extend(cancelled);
    assert_eq!(
        Shipment::given(&after).status,
        Some(ShipmentStatus::Cancelled)
    );
    assert!(Shipment::given(&after).decide(&dispatch_cmd()).is_err());
    assert!(Shipment::given(&after).decide(&cancel()).is_err());
    let dispatched = Shipment::history(&[create_cmd(id, order), dispatch_cmd()]).unwrap();
    assert_eq!(
        Shipment::given(&dispatched).decide(&cancel()),
        Err(ShipmentError::InvalidTransition {
            action: "cancel",
            status: ShipmentStatus::Dispatched,
            required: ShipmentStatus::Created
        })
    );
}

#[test]
fn commands_on_an_unknown_shipment_are_not_found() {
    for command in [dispatch_cmd(), ShipmentCommand::Deliver] {
        let refused = Shipment::given(&[]).decide(&command);
        assert_eq!(refused, Err(ShipmentError::NotFound));
        assert_eq!(refused.unwrap_err().rejection(), Rejection::NotFound);
    }
}

#[test]
fn carriers_are_1_to_100_printable_characters() {
    assert_eq!(Carrier::new("  UPS ").unwrap().as_str(), "UPS");
    assert_eq!(Carrier::new("La Poste").unwrap().as_str(), "La Poste");
    assert!(Carrier::new(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
    // Characters as sent: surrounding whitespace counts towards the bound.
    let padded = format!(" {}", "x".repeat(MAX_TEXT_CHARS));
    for bad in [
        "",
        "   ",
        "DH\u{7}L",
        &"x".repeat(MAX_TEXT_CHARS + 1),
        &padded,
    ] {
        let err = Carrier::new(bad).unwrap_err();
        assert!(matches!(err, ShipmentError::InvalidCarrier(_)), "{bad:?}");
        assert_eq!(err.rejection(), Rejection::Invalid);
        assert!(err.to_string().starts_with("carrier: "));
    }
}

#[test]
fn tracking_numbers_are_1_to_100_printable_characters_without_whitespace() {
    assert_eq!(
        TrackingNumber::new(" 1Z999AA10123456784\n")
            .unwrap()
            .as_str(),
        "1Z999AA10123456784"
    );
    assert!(TrackingNumber::new("RR-123/456.DE").is_ok());
    assert!(TrackingNumber::new(&"9".repeat(MAX_TEXT_CHARS)).is_ok());
    let too_long = "9".repeat(MAX_TEXT_CHARS + 1);
    for bad in [
        "",
        " \t ",
        "1Z 999",
        "1Z\t999",
        "1Z\u{a0}999",
        "1Z\u{0}999",
        &too_long,
    ] {
        let err = TrackingNumber::new(bad).unwrap_err();
        assert!(
            matches!(err, ShipmentError::InvalidTrackingNumber(_)),
            "{bad:?}"
        );
        assert_eq!(err.rejection(), Rejection::Invalid);
        assert!(err.to_string().starts_with("tracking_number: "));
    }
}

#[test]
fn events_are_stored_with_their_type_and_fields_only() {
    let id = Uuid::now_v7();
    let event = ShipmentEvent::ShipmentDelivered {
        shipment_id: id,
        order_id: id,
    };
    let stored = sluice_platform::aggregate::to_new_event(&event).unwrap();
    assert_eq!(stored.event_type, "ShipmentDelivered");
    assert_eq!(
        stored.payload,
        serde_json::json!({ "shipment_id": id, "order_id": id })
    );
}
