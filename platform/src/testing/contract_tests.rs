//! The event contract tests every write service runs, declared once: see
//! [`event_contract_tests!`](crate::event_contract_tests).

/// Declares a service's two event contract tests over `examples()` (one event of each
/// type, with realistic values) and `schemas()` (the service's Avro contracts):
///
/// - `every_event_round_trips_through_its_schema`
///   ([`assert_events_round_trip`](crate::testing::assert_events_round_trip));
/// - `every_event_type_has_a_schema_and_every_schema_an_event_type`
///   ([`assert_one_schema_per_event_type`](crate::testing::assert_one_schema_per_event_type)).
///
/// `events` lists every variant of the event enum, with no wildcard: a new event type
/// does not compile until it is listed here, and so given an example.
///
/// ```text
/// sluice_platform::event_contract_tests! {
///     schemas: sluice_orders::schemas,
///     examples: one_of_each,
///     events: OrderEvent { OrderPlaced, OrderConfirmed, OrderCancelled },
/// }
/// ```
#[macro_export]
macro_rules! event_contract_tests {
    (
        schemas: $schemas:path,
        examples: $examples:path,
        events: $event:ident { $($variant:ident),+ $(,)? } $(,)?
    ) => {
        const _: fn(&$event) = |event| match event {
            $($event::$variant { .. } => {})+
        };

        #[test]
        fn every_event_round_trips_through_its_schema() {
            $crate::testing::assert_events_round_trip($schemas(), &$examples());
        }

        #[test]
        fn every_event_type_has_a_schema_and_every_schema_an_event_type() {
            $crate::testing::assert_one_schema_per_event_type($schemas(), &$examples());
        }
    };
}
