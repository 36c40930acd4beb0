//! The order_view query API: one order by id, and pages of orders by customer
//! and/or order status.
//!
//! Lists show placed orders only (a row some other service's event created before
//! its `OrderPlaced` arrived has no customer, status or placing time to list it by;
//! it is readable by id). They are ordered newest first by `(placed_at, order_id)`,
//! a total order, and paged by keyset: `next` encodes the last row's key and the next
//! page starts strictly after it. Paging never repeats a row and never skips one that
//! was there when paging began, however the view changes meanwhile.
//!
//! Bad query parameters are answered 400 naming the parameter; values are bound,
//! never spliced into SQL.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_platform::http::{Json, PathId, Problem, ProblemResponses};
use sluice_platform::projection::{page_limit, query_api};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{Line, OrderStatus, PaymentStatus, ShipmentStatus};

/// Orders per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most orders per page.
pub const MAX_LIMIT: i64 = 200;

/// One order as the view knows it. A field no event has told the view about yet is
/// `null`; amounts are in minor units (cents).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: Option<String>,
    /// ISO 4217 code of the order's amounts.
    pub currency: Option<String>,
    #[schema(value_type = Option<Vec<Line>>)]
    pub lines: Option<sqlx::types::Json<Vec<Line>>>,
    pub total_minor: Option<i64>,
    /// `null` until the order's `OrderPlaced` has been projected.
    pub order_status: Option<OrderStatus>,
    pub cancel_reason: Option<String>,
    pub payment_id: Option<Uuid>,
    pub payment_status: Option<PaymentStatus>,
    /// ISO 4217 code of the payment's amounts.
    pub payment_currency: Option<String>,
    pub authorized_minor: Option<i64>,
    pub captured_minor: Option<i64>,
    /// Sum of the payment's refunds.
    pub refunded_minor: Option<i64>,
    pub decline_reason: Option<String>,
    pub shipment_id: Option<Uuid>,
    pub shipment_status: Option<ShipmentStatus>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub authorized_at: Option<DateTime<Utc>>,
    pub declined_at: Option<DateTime<Utc>>,
    pub captured_at: Option<DateTime<Utc>>,
    /// When the latest refund was recorded.
    pub refunded_at: Option<DateTime<Utc>>,
    pub shipment_created_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the payment's authorization was voided (the order was cancelled).
    pub voided_at: Option<DateTime<Utc>>,
    /// When the shipment was called off (the order was cancelled before dispatch).
    pub shipment_cancelled_at: Option<DateTime<Utc>>,
    /// When the latest event applied to the row was recorded.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "order_id, customer_id, currency, lines, total_minor, order_status, \
    cancel_reason, payment_id, payment_status, payment_currency, authorized_minor, \
    captured_minor, refunded_minor, decline_reason, shipment_id, shipment_status, carrier, \
    tracking_number, placed_at, confirmed_at, cancelled_at, authorized_at, declined_at, \
    captured_at, refunded_at, shipment_created_at, dispatched_at, delivered_at, voided_at, \
    shipment_cancelled_at, updated_at";

/// A page of orders, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
}

/// `GET /orders` query parameters. Every one is optional; unknown ones are refused.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOrders {
    /// Only this customer's orders: 1 to 100 characters, without NUL.
    #[param(min_length = 1, max_length = 100, pattern = r"^[^\u0000]*$")]
    pub customer_id: Option<String>,
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Orders per page, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// The `next` value of the previous page: 48 hex digits, naming an instant
    /// between about 2597 BC and 257,000 AD.
    #[param(
        min_length = 48,
        max_length = 48,
        pattern = "^([0-6][0-9a-fA-F]|[fF][eEfF])[0-9a-fA-F]{46}$"
    )]
    pub after: Option<String>,
}

/// A validated [`ListOrders`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    customer_id: Option<String>,
    status: Option<OrderStatus>,
    limit: i64,
    after: Option<Cursor>,
}

impl TryFrom<ListOrders> for Filter {
    type Error = Problem;

    fn try_from(params: ListOrders) -> Result<Self, Problem> {
        let customer_id = params
            .customer_id
            .map(|c| match c.chars().count() {
                _ if c.contains('\0') => Err(Problem::bad_request(
                    "customer_id: must not contain the NUL character (%00)",
                )),
                1..=100 => Ok(c),
                _ => Err(Problem::bad_request(
                    "customer_id: must be 1 to 100 characters",
                )),
            })
            .transpose()?;
        let status = params
            .status
            .map(|s| {
                s.parse::<OrderStatus>()
                    .map_err(|e| Problem::bad_request(format!("status: {e}")))
            })
            .transpose()?;
        let limit = page_limit(params.limit, DEFAULT_LIMIT, MAX_LIMIT)
            .map_err(|e| Problem::bad_request(format!("limit: {e}")))?;
        let after = params
            .after
            .map(|raw| {
                raw.parse::<Cursor>().map_err(|_| {
                    Problem::bad_request(format!(
                        "after: `{raw}` is not a cursor of this API; pass the `next` value of the previous page"
                    ))
                })
            })
            .transpose()?;
        Ok(Filter {
            customer_id,
            status,
            limit,
            after,
        })
    }
}

/// The instants a cursor may name, in microseconds since the epoch: from -2^57
/// (about 2597 BC) up to 0x7000_0000_0000_0000 (about 257,000 AD). Every order was
/// placed in between, and both PostgreSQL's `timestamptz` and chrono hold all of
/// it. In the cursor's text that is a first hex digit of 0 to 6, or `fe`/`ff` (two's
/// complement), which the declared pattern of `after` says exactly; any other
/// instant is no cursor of this API (400), never a query the database refuses.
const CURSOR_MICROS: std::ops::Range<i64> = -(1 << 57)..0x7000_0000_0000_0000;

/// Where a page ends: the last row's sort key. Opaque to clients: 48 hex digits,
/// `placed_at` in microseconds since the epoch (two's complement, within
/// [`CURSOR_MICROS`]) then the order id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    placed_at: DateTime<Utc>,
    order_id: Uuid,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Two's complement keeps instants before 1970 representable.
        let micros = self.placed_at.timestamp_micros() as u64;
        write!(f, "{micros:016x}{}", self.order_id.simple())
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 48 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        let (micros, id) = s.split_at(16);
        let micros = u64::from_str_radix(micros, 16).map_err(|_| ())? as i64;
        if !CURSOR_MICROS.contains(&micros) {
            return Err(());
        }
        Ok(Cursor {
            placed_at: DateTime::from_timestamp_micros(micros).ok_or(())?,
            order_id: Uuid::try_parse(id).map_err(|_| ())?,
        })
    }
}

/// The query API over the view's database.
pub fn router(pool: PgPool) -> Router {
    let routes = Router::new()
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(get_order));
    query_api(routes, ApiDoc::openapi(), pool)
}

#[utoipa::path(get, path = "/orders/{id}", params(("id" = Uuid, Path, description = "The order")),
    responses((status = 200, body = OrderView),
              (status = 404, body = Problem, description = "The view has not projected the order's `OrderPlaced` (yet)"),
              (status = 503, body = Problem, description = "The view's database did not answer; retry")))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn get_order(State(pool): State<PgPool>, id: PathId) -> Result<Json<OrderView>, Problem> {
    // A row whose OrderPlaced has not arrived holds what other services said of the
    // order (events arrive in no order across topics); it is not served as an order.
    let sql =
        format!("SELECT {COLUMNS} FROM order_view WHERE order_id = $1 AND placed_at IS NOT NULL");
    sqlx::query_as::<_, OrderView>(&sql)
        .bind(id.0)
        .fetch_optional(&pool)
        .await
        .map_err(database_problem)?
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "order {} not found: its OrderPlaced has not been projected (yet)",
                id.0
            ))
        })
}

#[utoipa::path(get, path = "/orders", params(ListOrders),
    responses((status = 200, body = OrderPage),
              (status = 400, body = Problem, description = "A parameter outside its bounds, an unknown status or cursor, or an unknown parameter"),
              (status = 503, body = Problem, description = "The view's database did not answer; retry")))]
#[tracing::instrument(skip_all)]
async fn list_orders(
    State(pool): State<PgPool>,
    params: Result<Query<ListOrders>, QueryRejection>,
) -> Result<Json<OrderPage>, Problem> {
    let Query(params) = params.map_err(|r| Problem::bad_request(r.body_text()))?;
    let filter = Filter::try_from(params)?;
    let mut orders = page(&pool, &filter).await.map_err(database_problem)?;
    // One row more than asked tells whether another page follows.
    let next = if orders.len() as i64 > filter.limit {
        orders.truncate(filter.limit as usize);
        orders.last().and_then(|last| {
            Some(
                Cursor {
                    placed_at: last.placed_at?,
                    order_id: last.order_id,
                }
                .to_string(),
            )
        })
    } else {
        None
    };
    Ok(Json(OrderPage { orders, next }))
}

/// Up to `limit + 1` placed orders after the cursor, newest first. The statement is
/// assembled from fixed fragments so each filter combination can use its index.
async fn page(pool: &PgPool, filter: &Filter) -> Result<Vec<OrderView>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM order_view WHERE placed_at IS NOT NULL"
    ));
    if let Some(customer_id) = &filter.customer_id {
        query.push(" AND customer_id = ").push_bind(customer_id);
    }
    if let Some(status) = filter.status {
        query
            .push(" AND order_status = ")
            .push_bind(status.as_str());
    }
    if let Some(after) = filter.after {
        query
            .push(" AND (placed_at, order_id) < (")
            .push_bind(after.placed_at)
            .push(", ")
            .push_bind(after.order_id)
            .push(")");
    }
    query
        .push(" ORDER BY placed_at DESC, order_id DESC LIMIT ")
        .push_bind(filter.limit + 1);
    query.build_query_as().fetch_all(pool).await
}

fn database_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "order_view query failed");
    Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the order_view database did not answer; retry shortly",
    )
}

/// The statuses are TEXT columns whose values the database checks; read them by name.
macro_rules! text_column {
    ($($status:ty),+) => {$(
        impl sqlx::Type<Postgres> for $status {
            fn type_info() -> PgTypeInfo {
                <&str as sqlx::Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $status {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as sqlx::Decode<'r, Postgres>>::decode(value)?.parse()?)
            }
        }
    )+};
}

text_column!(OrderStatus, PaymentStatus, ShipmentStatus);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice order_view projection",
        description = "One denormalized row per order across orders, payments and shipping."
    ),
    paths(get_order, list_orders),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn params(customer: Option<&str>, status: Option<&str>, limit: Option<&str>) -> ListOrders {
        ListOrders {
            customer_id: customer.map(str::to_owned),
            status: status.map(str::to_owned),
            limit: limit.map(str::to_owned),
            after: None,
        }
    }

    #[test]
    fn a_cursor_round_trips_through_its_text() {
        for placed_at in [
            DateTime::from_timestamp_micros(1_763_900_000_123_456).unwrap(),
            DateTime::from_timestamp_micros(-5).unwrap(),
        ] {
            let cursor = Cursor {
                placed_at,
                order_id: Uuid::now_v7(),
            };
            let text = cursor.to_string();
            assert_eq!(text.len(), 48);
            assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        }
    }

    #[test]
    fn a_malformed_cursor_is_refused() {
        for bad in ["", "abc", &"g".repeat(48), &format!("+{}", "0".repeat(47))] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    /// Found by schemathesis: a well-formed cursor naming an instant before
    /// PostgreSQL's earliest failed the query (503, "timestamp out of range")
    /// instead of being refused (400).
    #[test]
    fn a_cursor_names_an_instant_in_its_declared_range_or_is_refused() {
        let text = |micros: i64| format!("{:016x}{}", micros as u64, Uuid::now_v7().simple());
        let (first, last) = (CURSOR_MICROS.start, CURSOR_MICROS.end - 1);
        for micros in [first, -5, 0, last] {
            let cursor = text(micros).parse::<Cursor>().unwrap();
            assert_eq!(cursor.placed_at.timestamp_micros(), micros);
        }
        assert!(text(first).starts_with("fe") && text(last).starts_with('6'));
        for micros in [
            first - 1,
            last + 1,
            i64::MIN,
            i64::MAX,
            -6_157_050_135_257_212_145,
        ] {
            let problem = Filter::try_from(ListOrders {
                after: Some(text(micros)),
                ..ListOrders::default()
            })
            .unwrap_err();
            assert_eq!(problem.status, 400, "{micros}");
        }
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let after = &doc["paths"]["/orders"]["get"]["parameters"][3];
        assert_eq!(after["name"], "after");
        assert_eq!(
            after["schema"]["pattern"],
            "^([0-6][0-9a-fA-F]|[fF][eEfF])[0-9a-fA-F]{46}$"
        );
    }

    #[test]
    fn defaults_apply_and_limits_are_checked() {
        let filter = Filter::try_from(ListOrders::default()).unwrap();
        assert_eq!(filter.limit, DEFAULT_LIMIT);
        assert_eq!(filter.status, None);
        for limit in ["0", "201", "-1", "ten", ""] {
            let problem = Filter::try_from(params(None, None, Some(limit))).unwrap_err();
            assert_eq!(problem.status, 400);
            assert!(problem.detail.starts_with("limit"), "{}", problem.detail);
        }
        let filter = Filter::try_from(params(Some("c-1"), Some("cancelled"), Some("200"))).unwrap();
        assert_eq!(filter.status, Some(OrderStatus::Cancelled));
        assert_eq!(filter.limit, 200);
    }

    #[test]
    fn an_unknown_status_names_the_valid_ones() {
        let problem = Filter::try_from(params(None, Some("shipped"), None)).unwrap_err();
        assert!(problem.detail.contains("`confirmed`"), "{}", problem.detail);
    }
}
