//! The ids of the reference domain's order saga, shared by the services that take
//! part in it.
//!
//! The saga derives the payment and the shipment of an order from the order's id
//! (UUIDv5 in a namespace of each), so every service knows which payment and which
//! shipment belong to an order's own saga without asking another service. A
//! reaction uses them to tell the saga's own events from stray ones: a payment that
//! some client authorized for an order confirms and cancels nothing. The HTTP APIs
//! refuse these ids to clients, so only the saga's reactors create them.

use uuid::Uuid;

/// The namespace of the payment ids derived from order ids. Never change it: the
/// payments already authorized are found by it.
pub const PAYMENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xe3b6_90fd_1f93_47c7_963b_8bcd_1f44_f0f0);

/// The namespace of the shipment ids derived from order ids. Never change it: the
/// shipments already created are found by it.
pub const SHIPMENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xd740_c85b_c59a_47d0_9582_20df_4381_7ae1);

/// The payment the saga authorizes for an order. One order gets one saga payment,
/// however often its `OrderPlaced` is delivered.
pub fn payment_id_for_order(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&PAYMENT_ID_NAMESPACE, order_id.as_bytes())
}

/// The shipment the saga creates for an order. One order gets one saga shipment,
/// however often its `OrderConfirmed` is delivered.
pub fn shipment_id_for_order(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SHIPMENT_ID_NAMESPACE, order_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_saga_ids_are_stable_distinct_per_order_and_per_kind() {
        let order = Uuid::now_v7();
        assert_eq!(payment_id_for_order(order), payment_id_for_order(order));
        assert_ne!(
            payment_id_for_order(order),
            payment_id_for_order(Uuid::now_v7())
        );
        assert_ne!(payment_id_for_order(order), shipment_id_for_order(order));
        assert_eq!(payment_id_for_order(order).get_version_num(), 5);
        assert_eq!(shipment_id_for_order(order).get_version_num(), 5);
    }
}
