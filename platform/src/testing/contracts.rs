//! Event contracts in tests: every domain event of a service through its Avro
//! schemas and back.

use std::collections::BTreeSet;
use std::fmt::Debug;

use crate::aggregate::{decode_payload, to_new_event, DomainEvent};
use crate::avro::{SchemaCatalog, SchemaSource};

/// Each of `events` round-trips through `schemas` as the platform moves it: domain
/// event → stored shape, valid against its latest schema → single-object encoding
/// → decoded JSON → the same domain event.
///
/// # Panics
///
/// On the first event that does not, naming its type.
pub fn assert_events_round_trip<E: DomainEvent + PartialEq + Debug>(
    schemas: Vec<SchemaSource>,
    events: &[E],
) {
    let catalog = SchemaCatalog::new(schemas).expect("the service's schemas");
    for event in events {
        let new = to_new_event(event).expect("the event serializes");
        let version = catalog
            .validate_latest(&new.event_type, &new.payload)
            .unwrap_or_else(|e| panic!("{} is not valid against its schema: {e}", new.event_type));
        let bytes = catalog
            .encode_single_object(&new.event_type, version, &new.payload)
            .unwrap_or_else(|e| panic!("{} does not encode: {e}", new.event_type));
        let decoded = catalog
            .decode_single_object(&bytes)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", new.event_type));
        assert_eq!(decoded.event_type, new.event_type);
        assert_eq!(decoded.schema_version, version, "{}", new.event_type);
        assert_eq!(decoded.payload, new.payload, "{}", new.event_type);
        let back: E = decode_payload(&decoded.event_type, &decoded.payload)
            .unwrap_or_else(|e| panic!("{} does not read back: {e}", new.event_type));
        assert_eq!(&back, event);
    }
}

/// The event types of `events` (one of each type) are exactly the event types
/// `schemas` has contracts for: no event without a schema, no schema without an
/// event.
pub fn assert_one_schema_per_event_type<E: DomainEvent>(schemas: Vec<SchemaSource>, events: &[E]) {
    let catalog = SchemaCatalog::new(schemas).expect("the service's schemas");
    let event_types: BTreeSet<String> = events
        .iter()
        .map(|e| to_new_event(e).expect("the event serializes").event_type)
        .collect();
    let with_schemas: BTreeSet<String> = catalog.event_types().map(str::to_owned).collect();
    assert_eq!(event_types, with_schemas);
}
