//! Events as the relay publishes them decode with an Avro implementation that is not
//! ours: Python's fastavro, given nothing but the committed `.avsc`. It checks the
//! single-object header (marker, and the fingerprint it computes itself from the
//! schema's canonical form) and that the datum reads back as the stored payload.
//!
//! Needs `python3` with `fastavro` (`pip install fastavro`; `.ci/run` installs it).
//! Without them the test fails, saying so: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

#[path = "../services/orders/tests/support/examples.rs"]
mod orders_examples;
#[path = "../services/payments/tests/support/examples.rs"]
mod payments_examples;
#[path = "../services/shipping/tests/support/examples.rs"]
mod shipping_examples;

use std::path::Path;

use serde_json::{json, Value};
use sluice::components::WRITE_SERVICES;
use sluice_platform::aggregate::{to_new_event, DomainEvent};
use sluice_platform::avro::SchemaCatalog;

/// (service, event type, stored payload) for one event of every type: the
/// services' own contract-test examples.
fn one_of_each() -> Vec<(&'static str, sluice_platform::store::NewEvent)> {
    fn stored<E: DomainEvent>(
        service: &'static str,
        events: Vec<E>,
    ) -> Vec<(&'static str, sluice_platform::store::NewEvent)> {
        events
            .iter()
            .map(|e| (service, to_new_event(e).unwrap()))
            .collect()
    }
    let mut all = stored("orders", orders_examples::one_of_each());
    all.extend(stored("payments", payments_examples::one_of_each()));
    all.extend(stored("shipping", shipping_examples::one_of_each()));
    all
}

#[test]
fn fastavro_decodes_every_event_type_from_its_avsc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = SchemaCatalog::new(WRITE_SERVICES.iter().flat_map(|s| (s.schemas)())).unwrap();
    let events = one_of_each();
    let covered: std::collections::BTreeSet<_> =
        events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    assert_eq!(
        covered,
        catalog.event_types().collect(),
        "every event type needs an example here"
    );
    let cases: Vec<Value> = events
        .iter()
        .map(|(service, event)| {
            let (version, _) = catalog.latest(&event.event_type).unwrap();
            let bytes = catalog
                .encode_single_object(&event.event_type, version, &event.payload)
                .unwrap();
            let avsc = root
                .join("schemas")
                .join(service)
                .join(&event.event_type)
                .join(format!("v{version}.avsc"));
            json!({
                "event_type": event.event_type,
                "avsc": avsc,
                "bytes": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "expected": event.payload,
            })
        })
        .collect();
    support::fastavro::assert_fastavro_decodes(&cases);
}
