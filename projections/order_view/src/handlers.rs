//! Applies events to `order_view`: one upsert per event type (the SQL files beside
//! this module; the four shipment events share one), inside the consumer runtime's
//! transaction.
//!
//! Invariants the statements rely on, and the rules they implement:
//! - The runtime applies each event once and a stream's events in version order
//!   (an order's, a payment's, a shipment's), so refunds may simply add up. Events of
//!   different streams (and topics) arrive in any order relative to each other, so
//!   each statement touches only its own service's columns and the rest commute.
//! - **An event for an order the view has not seen** creates the row: fields it does
//!   not know stay NULL (`order_status` until `OrderPlaced` arrives). Nothing waits,
//!   nothing is lost; such events are logged at debug level and counted
//!   (`sluice_projection_events_before_order_placed_total`).
//! - A row follows one payment and one shipment (see the crate docs); events of
//!   another payment or shipment of the same order are ignored, logged and counted
//!   (`sluice_projection_events_ignored_total`, `reason="other_payment"` /
//!   `"other_shipment"`).
//! - An event type the view does not use is ignored and counted
//!   (`reason="unknown_event_type"`). A payload that breaks its contract is poison:
//!   the runtime dead-letters it at once, naming the field.
//!
//! **Set-wise batches** ([`EventHandler::apply_batch`]): the batch is cut into
//! rounds, round *k* holding the *k*-th event of every stream in the batch, so each
//! stream's events still apply in order while events of different streams (which
//! commute) share statements. Each round runs one statement per event type: the
//! same SQL as a single event, its `VALUES` row turned into `SELECT … FROM
//! UNNEST($1::type[], …)`. Two events of one round and type touching the same order
//! (two payments of one order) make PostgreSQL refuse the statement; the runtime
//! then redoes the batch event by event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sluice_platform::consumer::{Applied, ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::telemetry;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::domain::{OrderViewEvent, ShipmentStatus, Source};

/// The projection's name, as metrics label it.
const PROJECTION: &str = "order_view";

/// The order_view event handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderViewHandler;

impl EventHandler for OrderViewHandler {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        Box::pin(apply(tx, event))
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a ConsumedEvent],
    ) -> Applied<'a> {
        Box::pin(apply_batch(tx, events))
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy)]
enum Ignored {
    UnknownEventType,
    OtherPayment,
    OtherShipment,
}

impl Ignored {
    fn label(self) -> &'static str {
        match self {
            Ignored::UnknownEventType => "unknown_event_type",
            Ignored::OtherPayment => "other_payment",
            Ignored::OtherShipment => "other_shipment",
        }
    }
}

#[tracing::instrument(name = "order_view.apply", skip_all, fields(
    event_type = %event.event_type,
    stream_id = %event.stream_id,
    stream_version = event.stream_version.get(),
    order_id,
))]
async fn apply(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<(), HandlerError> {
    let decoded = OrderViewEvent::decode(&event.event_type, &event.payload)
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let Some(decoded) = decoded else {
        ignored(&event.event_type, Ignored::UnknownEventType, 1);
        return Ok(());
    };
    tracing::Span::current().record("order_id", tracing::field::display(decoded.order_id()));
    match upsert(tx, &decoded, event.recorded_at).await? {
        None => ignored(&event.event_type, unchanged_reason(&decoded), 1),
        Some(false) => {
            tracing::debug!("event for an order not placed yet: row kept until it is");
            telemetry::projection_events_before_order_placed(PROJECTION, &event.event_type, 1);
        }
        Some(true) => {}
    }
    Ok(())
}

/// Why an upsert left the row as it was: only payment and shipment upserts can, for
/// a row that follows another payment or shipment.
fn unchanged_reason(event: &OrderViewEvent) -> Ignored {
    match event.source() {
        Source::Shipping => Ignored::OtherShipment,
        Source::Orders | Source::Payments => Ignored::OtherPayment,
    }
}

fn ignored(event_type: &str, reason: Ignored, events: u64) {
    tracing::debug!(reason = reason.label(), events, "events ignored");
    telemetry::projection_events_ignored(PROJECTION, event_type, reason.label(), events);
}

/// Runs the event's upsert. `None` when the row follows another payment or
/// shipment (nothing changed); otherwise whether the order has been placed.
async fn upsert(
    tx: &mut PgConnection,
    event: &OrderViewEvent,
    at: DateTime<Utc>,
) -> Result<Option<bool>, HandlerError> {
    let (sql, params) = statement(event, at);
    let query = params
        .into_iter()
        .fold(sqlx::query_scalar(sql), |q, p| p.bind(q));
    Ok(query.fetch_optional(&mut *tx).await?)
}

/// Applies a batch set-wise: in rounds (the k-th event of every stream), one
/// statement per event type and round.
async fn apply_batch(tx: &mut PgConnection, events: &[&ConsumedEvent]) -> Result<(), HandlerError> {
    // A round's events share a statement by event type (some types share one SQL
    // file, and each type's ignored events are counted under its own name).
    let mut rounds: Vec<HashMap<(&'static str, &str), Group<'_>>> = Vec::new();
    let mut per_stream: HashMap<(&str, &str), usize> = HashMap::new();
    for event in events {
        let decoded = OrderViewEvent::decode(&event.event_type, &event.payload)
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let Some(decoded) = decoded else {
            ignored(&event.event_type, Ignored::UnknownEventType, 1);
            continue;
        };
        let round = per_stream
            .entry((&event.topic, event.stream_id.as_str()))
            .and_modify(|k| *k += 1)
            .or_insert(0);
        if rounds.len() <= *round {
            rounds.push(HashMap::new());
        }
        let (sql, params) = statement(&decoded, event.recorded_at);
        rounds[*round]
            .entry((sql, event.event_type.as_str()))
            .or_insert_with(|| Group {
                event_type: &event.event_type,
                unchanged: unchanged_reason(&decoded),
                rows: Vec::new(),
            })
            .rows
            .push(params);
    }
    for round in rounds {
        for ((sql, _), group) in round {
            let rows = &group.rows;
            let batch = batch_sql(sql, &rows[0]);
            let mut query = sqlx::query_scalar::<_, bool>(&batch);
            for column in 0..rows[0].len() {
                query = Param::bind_column(query, rows.iter().map(|r| &r[column]));
            }
            let changed = query.fetch_all(&mut *tx).await?;
            let skipped = rows.len() - changed.len();
            if skipped > 0 {
                // Rows of another payment or shipment stay as they were.
                ignored(group.event_type, group.unchanged, skipped as u64);
            }
            let early = changed.iter().filter(|placed| !**placed).count();
            if early > 0 {
                telemetry::projection_events_before_order_placed(
                    PROJECTION,
                    group.event_type,
                    early as u64,
                );
            }
        }
    }
    Ok(())
}

/// The events of one type in one round of a batch: one statement.
struct Group<'e> {
    event_type: &'e str,
    /// Why a row the statement leaves unchanged was ignored.
    unchanged: Ignored,
    rows: Vec<Vec<Param>>,
}

/// One statement parameter.
#[derive(Debug, Clone)]
enum Param {
    Uuid(Uuid),
    Text(String),
    /// Text or NULL.
    OptionalText(Option<String>),
    Int8(i64),
    Json(serde_json::Value),
    Time(DateTime<Utc>),
}

type Scalar<'q> = QueryScalar<'q, Postgres, bool, PgArguments>;

impl Param {
    fn bind(self, query: Scalar<'_>) -> Scalar<'_> {
        match self {
            Param::Uuid(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::OptionalText(v) => query.bind(v),
            Param::Int8(v) => query.bind(v),
            Param::Json(v) => query.bind(v),
            Param::Time(v) => query.bind(v),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Param::Uuid(_) => "uuid",
            Param::Text(_) | Param::OptionalText(_) => "text",
            Param::Int8(_) => "int8",
            Param::Json(_) => "jsonb",
            Param::Time(_) => "timestamptz",
        }
    }

    /// Binds one column of a batch as an array. Every row of a statement has the
    /// same parameter kinds, so the first row's kind is every row's.
    fn bind_column<'q, 'p>(
        query: Scalar<'q>,
        mut column: impl Iterator<Item = &'p Param> + Clone,
    ) -> Scalar<'q> {
        macro_rules! array {
            ($variant:ident) => {
                query.bind(
                    column
                        .map(|p| match p {
                            Param::$variant(v) => v.clone(),
                            other => unreachable!("mixed parameter kinds in a column: {other:?}"),
                        })
                        .collect::<Vec<_>>(),
                )
            };
        }
        match column.clone().next() {
            Some(Param::Uuid(_)) => array!(Uuid),
            Some(Param::Text(_)) => array!(Text),
            Some(Param::OptionalText(_)) => array!(OptionalText),
            Some(Param::Int8(_)) => array!(Int8),
            Some(Param::Json(_)) => array!(Json),
            Some(Param::Time(_)) => array!(Time),
            None => {
                let _ = column.next();
                query
            }
        }
    }
}

/// The set-wise form of a single-event statement: its `VALUES ($1, …)` row becomes
/// `SELECT u.p1, … FROM UNNEST($1::type[], …) AS u(p1, …)`.
#[expect(
    clippy::expect_used,
    reason = "the statements are this crate's own files, each with one VALUES row on one line; the batch tests apply every one"
)]
fn batch_sql(single: &str, params: &[Param]) -> String {
    let start = single
        .find("VALUES (")
        .expect("every order_view statement inserts one VALUES row");
    let end = start + single[start..].find(")\n").expect("VALUES row on one line");
    let row = &single[start + "VALUES (".len()..end];
    let mut select = String::with_capacity(row.len() + 16);
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            select.push_str("u.p");
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                select.push(*d);
                chars.next();
            }
        } else {
            select.push(c);
        }
    }
    let arrays: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(i, p)| format!("${}::{}[]", i + 1, p.sql_type()))
        .collect();
    let names: Vec<String> = (1..=params.len()).map(|i| format!("p{i}")).collect();
    format!(
        "{}SELECT {select} FROM UNNEST({}) AS u({}){}",
        &single[..start],
        arrays.join(", "),
        names.join(", "),
        &single[end + 1..]
    )
}

/// The statement of an event and its parameters, in `$n` order.
fn statement(event: &OrderViewEvent, at: DateTime<Utc>) -> (&'static str, Vec<Param>) {
    use OrderViewEvent as E;
    use Param::{Int8, Json, Text, Time, Uuid as Id};
    match event {
        E::OrderPlaced(e) => (
            include_str!("handlers/order_placed.sql"),
            vec![
                Id(e.order_id),
                Text(e.customer_id.clone()),
                Text(e.currency.clone()),
                Json(serde_json::to_value(&e.lines).unwrap_or_default()),
                Int8(e.total_minor),
                Time(at),
            ],
        ),
        E::OrderConfirmed(e) => (
            include_str!("handlers/order_confirmed.sql"),
            vec![Id(e.order_id), Time(at)],
        ),
        E::OrderCancelled(e) => (
            include_str!("handlers/order_cancelled.sql"),
            vec![Id(e.order_id), Text(e.reason.clone()), Time(at)],
        ),
        E::PaymentAuthorized(e) => (
            include_str!("handlers/payment_authorized.sql"),
            vec![
                Id(e.order_id),
                Id(e.payment_id),
                Int8(e.amount_minor),
                Text(e.currency.clone()),
                Time(at),
            ],
        ),
        E::PaymentDeclined(e) => (
            include_str!("handlers/payment_declined.sql"),
            vec![
                Id(e.order_id),
                Id(e.payment_id),
                Text(e.currency.clone()),
                Text(e.reason.clone()),
                Time(at),
            ],
        ),
        E::PaymentCaptured(e) => (
            include_str!("handlers/payment_captured.sql"),
            vec![
                Id(e.order_id),
                Id(e.payment_id),
                Int8(e.amount_minor),
                Time(at),
            ],
        ),
        E::PaymentRefunded(e) => (
            include_str!("handlers/payment_refunded.sql"),
            vec![
                Id(e.order_id),
                Id(e.payment_id),
                Int8(e.amount_minor),
                Time(at),
            ],
        ),
        E::ShipmentCreated(e) => {
            shipment(e.order_id, e.shipment_id, ShipmentStatus::Created, at, None)
        }
        E::ShipmentDispatched(e) => shipment(
            e.order_id,
            e.shipment_id,
            ShipmentStatus::Dispatched,
            at,
            Some((&e.carrier, &e.tracking_number)),
        ),
        E::ShipmentDelivered(e) => shipment(
            e.order_id,
            e.shipment_id,
            ShipmentStatus::Delivered,
            at,
            None,
        ),
        E::PaymentVoided(e) => (
            include_str!("handlers/payment_voided.sql"),
            vec![Id(e.order_id), Id(e.payment_id), Time(at)],
        ),
        E::ShipmentCancelled(e) => shipment(
            e.order_id,
            e.shipment_id,
            ShipmentStatus::Cancelled,
            at,
            None,
        ),
    }
}

/// The statement of a shipment event: the shipment moves to `status`, whose
/// timestamp is `at`; `ShipmentDispatched` also brings the (carrier, tracking
/// number) of `dispatch`.
fn shipment(
    order_id: Uuid,
    shipment_id: Uuid,
    status: ShipmentStatus,
    at: DateTime<Utc>,
    dispatch: Option<(&String, &String)>,
) -> (&'static str, Vec<Param>) {
    let (carrier, tracking_number) = dispatch.unzip();
    (
        include_str!("handlers/shipment_status.sql"),
        vec![
            Param::Uuid(order_id),
            Param::Uuid(shipment_id),
            Param::Text(status.as_str().to_owned()),
            Param::Time(at),
            Param::OptionalText(carrier.cloned()),
            Param::OptionalText(tracking_number.cloned()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_values_row_becomes_a_select_from_unnest() {
        let params = [
            Param::Uuid(Uuid::nil()),
            Param::Text(String::new()),
            Param::Time(Utc::now()),
        ];
        let sql = batch_sql(
            "-- c\nINSERT INTO t AS v (a, b, c, d)\nVALUES ($1, 'x', $2, $3)\nON CONFLICT (a) DO NOTHING\n",
            &params,
        );
        assert_eq!(
            sql,
            "-- c\nINSERT INTO t AS v (a, b, c, d)\nSELECT u.p1, 'x', u.p2, u.p3 FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS u(p1, p2, p3)\nON CONFLICT (a) DO NOTHING\n"
        );
    }

    #[test]
    fn every_statement_has_one_values_row_with_its_parameters() {
        let (id, at) = (Uuid::nil(), Utc::now());
        let line = crate::domain::Line {
            sku: "S".into(),
            quantity: 1,
            unit_price_minor: 1,
        };
        use crate::domain::*;
        let events = [
            OrderViewEvent::OrderPlaced(OrderPlaced {
                order_id: id,
                customer_id: "c".into(),
                currency: "EUR".into(),
                lines: vec![line],
                total_minor: 1,
            }),
            OrderViewEvent::OrderConfirmed(OrderConfirmed { order_id: id }),
            OrderViewEvent::ShipmentDelivered(ShipmentDelivered {
                order_id: id,
                shipment_id: id,
            }),
        ];
        for event in &events {
            let (sql, params) = statement(event, at);
            let batch = batch_sql(sql, &params);
            assert!(batch.contains("FROM UNNEST("), "{batch}");
            assert!(!batch.contains("VALUES"), "{batch}");
            assert_eq!(batch.matches("::").count(), params.len(), "{batch}");
        }
    }
}
