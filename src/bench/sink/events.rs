//! The events of the sink benches: whole orders over three topics, encoded as
//! the relay publishes them, produced to the broker or handed to the loader as
//! its reader would.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_analytics::sink::SinkRecord;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::relay::producer_config;
use uuid::Uuid;

use crate::bench::broker::{enqueue, text_headers};

use super::PARTITIONS;

pub(super) fn repository_catalog() -> anyhow::Result<SchemaCatalog> {
    let services = [
        sluice_orders::schemas(),
        sluice_payments::schemas(),
        sluice_shipping::schemas(),
    ];
    SchemaCatalog::new(services.into_iter().flatten()).context("the services' schemas")
}

/// One record as the relay would publish it.
pub(super) struct Event {
    /// Index into the three topics.
    pub(super) topic: usize,
    pub(super) key: String,
    pub(super) value: Vec<u8>,
    /// The relay's 12 headers, in its order.
    pub(super) headers: Vec<(&'static str, String)>,
    /// The payload in the event store's JSON shape (for the raw appender rows).
    pub(super) payload: String,
    pub(super) recorded_at: DateTime<Utc>,
}

impl Event {
    pub(super) fn size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    pub(super) fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `events` events of whole orders (the last order cut short), encoded.
pub(super) fn generate(catalog: &SchemaCatalog, events: u64) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::with_capacity(events as usize);
    let mut position = 0i64;
    let start = Utc::now() - TimeDelta::hours(1);
    'orders: for i in 0.. {
        let (order, payment, shipment) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = json!([
            { "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 },
        ]);
        let stream = |id: Uuid, stream_type: &'static str| (id, stream_type);
        let saga = [
            (
                0,
                stream(order, "order"),
                1,
                "OrderPlaced",
                json!({ "order_id": order, "customer_id": format!("customer-{:05}", i % 20_000),
                     "currency": "EUR", "lines": lines, "total_minor": 2800 }),
            ),
            (
                1,
                stream(payment, "payment"),
                1,
                "PaymentAuthorized",
                json!({ "payment_id": payment, "order_id": order, "amount_minor": 2800, "currency": "EUR" }),
            ),
            (
                0,
                stream(order, "order"),
                2,
                "OrderConfirmed",
                json!({ "order_id": order }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                1,
                "ShipmentCreated",
                json!({ "shipment_id": shipment, "order_id": order }),
            ),
            (
                1,
                stream(payment, "payment"),
                2,
                "PaymentCaptured",
                json!({ "payment_id": payment, "order_id": order, "amount_minor": 2800 }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                2,
                "ShipmentDispatched",
                json!({ "shipment_id": shipment, "order_id": order, "carrier": "DHL Express",
                     "tracking_number": format!("JD{:018}", i) }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                3,
                "ShipmentDelivered",
                json!({ "shipment_id": shipment, "order_id": order }),
            ),
        ];
        let mut causation = None;
        for (step, (topic, (stream_id, stream_type), version, event_type, payload)) in
            saga.into_iter().enumerate()
        {
            if out.len() as u64 == events {
                break 'orders;
            }
            position += 1;
            let event_id = Uuid::now_v7();
            let recorded_at = start + TimeDelta::milliseconds(i * 20 + step as i64 * 7);
            let fingerprint = catalog
                .fingerprint(event_type, 1)
                .with_context(|| format!("no schema for {event_type} v1"))?;
            let headers = vec![
                ("event_id", event_id.to_string()),
                ("event_type", event_type.to_owned()),
                ("stream_type", stream_type.to_owned()),
                ("stream_version", version.to_string()),
                ("global_position", position.to_string()),
                ("schema_version", "1".to_owned()),
                (
                    "schema_fingerprint",
                    fingerprint.0.iter().map(|b| format!("{b:02x}")).collect(),
                ),
                ("recorded_at", recorded_at.to_rfc3339()),
                ("correlation_id", order.to_string()),
                ("causation_id", causation.unwrap_or(event_id).to_string()),
                (
                    "traceparent",
                    format!(
                        "00-{}-{}-01",
                        order.simple(),
                        &event_id.simple().to_string()[16..]
                    ),
                ),
                ("actor", "bench".to_owned()),
            ];
            causation = Some(event_id);
            out.push(Event {
                topic,
                key: stream_id.to_string(),
                value: catalog.encode_single_object(event_type, 1, &payload)?,
                headers,
                payload: payload.to_string(),
                recorded_at,
            });
        }
    }
    Ok(out)
}

/// Produces every event to its topic, keyed by stream id (untimed).
pub(super) async fn produce(
    bootstrap: &str,
    topics: &[String; 3],
    events: &[Event],
) -> anyhow::Result<()> {
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let headers = text_headers(event.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let record = FutureRecord::to(&topics[event.topic])
            .key(&event.key)
            .payload(&event.value)
            .timestamp(event.recorded_at.timestamp_millis())
            .headers(headers);
        deliveries.push(enqueue(&producer, record).await?);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("a pre-fill record was not acknowledged: {e}"),
            Err(_) => bail!("a pre-fill record's delivery was canceled"),
        }
    }
    Ok(())
}

/// The events as the sink's reader hands them over: round-robin over partitions,
/// offsets counting up per partition from `offsets`.
pub(super) fn sink_records(
    topics: &[String; 3],
    events: &[Event],
    offsets: &mut BTreeMap<(usize, i32), i64>,
) -> Vec<SinkRecord> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let partition = (i as u32 % PARTITIONS) as i32;
            let offset = offsets.entry((e.topic, partition)).or_default();
            *offset += 1;
            SinkRecord {
                topic: topics[e.topic].clone(),
                partition,
                offset: *offset - 1,
                key: e.key.clone(),
                payload: e.value.clone(),
                headers: e
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            }
        })
        .collect()
}
