//! The customer summary's query API.
//!
//! - `GET /customers/{customer_id}`: one customer's counts, last order time and spend
//!   per currency; 404 when the customer has placed no order (yet).
//! - `GET /customers/top?currency=EUR&limit=10`: the customers who spent most in one
//!   currency, by spend descending then customer id ascending (stable across calls).
//!   `currency` is required (three capital letters); `limit` is 1 to 100, default 10.
//!
//! `/customers/top` is a fixed route and wins over `/customers/{customer_id}`: a
//! customer whose id is literally `top` is read as `/customers/%74op`.
//! Bad parameters are 400 problems; the answers reflect the events applied so far.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_platform::http::{Json, Problem, ProblemResponses};
use sluice_platform::projection::{page_limit, query_api};
use sluice_platform::values::Currency;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::domain::CustomerId;

/// Customers `GET /customers/top` answers when no `limit` is given.
pub const DEFAULT_TOP_LIMIT: i64 = 10;
/// Most customers `GET /customers/top` answers.
pub const MAX_TOP_LIMIT: i64 = 100;

/// One customer's summary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct CustomerSummary {
    pub customer_id: String,
    /// Orders the customer placed.
    pub orders_placed: i64,
    /// Of those, orders confirmed (a confirmed order cancelled later counts here too).
    pub orders_confirmed: i64,
    /// Of those, orders cancelled.
    pub orders_cancelled: i64,
    /// When the customer's latest order was placed.
    pub last_order_at: DateTime<Utc>,
    /// What the customer spent, one entry per currency they paid in, by currency.
    #[sqlx(skip)]
    pub spend: Vec<Spend>,
}

/// Money in one currency, in its minor units (cents for EUR).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Spend {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of the captured payments.
    pub captured_minor: i64,
    /// Sum of the refunds.
    pub refunded_minor: i64,
    /// Captured minus refunded.
    pub spent_minor: i64,
}

/// `GET /customers/top`: the best spenders in one currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopCustomers {
    pub currency: String,
    /// By `spent_minor` descending, then `customer_id` ascending.
    pub customers: Vec<TopCustomer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct TopCustomer {
    pub customer_id: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub spent_minor: i64,
    pub orders_placed: i64,
}

/// The raw query string of `GET /customers/top`; [`TopRequest`] validates it, so
/// every complaint is a problem naming the parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopQuery {
    currency: Option<String>,
    limit: Option<String>,
}

/// A valid `GET /customers/top`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopRequest {
    currency: Currency,
    limit: i64,
}

impl TryFrom<TopQuery> for TopRequest {
    type Error = Problem;

    fn try_from(q: TopQuery) -> Result<Self, Problem> {
        let currency = q.currency.ok_or_else(|| {
            Problem::bad_request("query parameter `currency` is required, e.g. `?currency=EUR`")
        })?;
        let currency = Currency::new(&currency)
            .map_err(|e| Problem::bad_request(format!("query parameter `currency`: {e}")))?;
        let limit = page_limit(q.limit, DEFAULT_TOP_LIMIT, MAX_TOP_LIMIT)
            .map_err(|e| Problem::bad_request(format!("query parameter `limit` {e}")))?;
        Ok(TopRequest { currency, limit })
    }
}

/// The query API over the read model's pool.
pub fn router(pool: PgPool) -> Router {
    let routes = Router::new()
        // A fixed segment outranks a parameter: `top` never reaches `get_customer`.
        .route("/customers/top", get(top_customers))
        .route("/customers/{customer_id}", get(get_customer));
    query_api(routes, ApiDoc::openapi(), pool)
}

#[utoipa::path(get, path = "/customers/{customer_id}",
    params(("customer_id" = String, Path, min_length = 1, max_length = 100, pattern = r"^[^\u0000]*$",
            description = "The customer id orders were placed with: 1 to 100 characters, without NUL")),
    responses((status = 200, body = CustomerSummary),
              (status = 400, body = Problem, description = "Not a customer id"),
              (status = 404, body = Problem, description = "The customer has placed no order (yet)")))]
#[tracing::instrument(skip_all, fields(customer_id))]
async fn get_customer(
    State(pool): State<PgPool>,
    customer_id: Result<Path<String>, PathRejection>,
) -> Result<Json<CustomerSummary>, Problem> {
    let Path(raw) = customer_id.map_err(|r| Problem::new(r.status(), r.body_text()))?;
    tracing::Span::current().record("customer_id", raw.as_str());
    if raw.contains('\0') {
        return Err(Problem::bad_request(
            "customer id: must not contain the NUL character (%00)",
        ));
    }
    let id = CustomerId::new(&raw).map_err(|e| Problem::bad_request(e.to_string()))?;
    read_customer(&pool, &id)
        .await
        .map_err(database_failed)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("customer `{id}` has placed no order")))
}

async fn read_customer(
    pool: &PgPool,
    id: &CustomerId,
) -> Result<Option<CustomerSummary>, sqlx::Error> {
    let Some(mut summary) = sqlx::query_as::<_, CustomerSummary>(
        "SELECT customer_id, orders_placed, orders_confirmed, orders_cancelled, last_order_at \
           FROM customers WHERE customer_id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    summary.spend = sqlx::query_as(
        "SELECT currency, captured_minor, refunded_minor, spent_minor \
           FROM customer_spend WHERE customer_id = $1 ORDER BY currency",
    )
    .bind(id.as_str())
    .fetch_all(pool)
    .await?;
    Ok(Some(summary))
}

#[utoipa::path(get, path = "/customers/top",
    params(
        ("currency" = String, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code of three capital letters, e.g. EUR"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "How many customers (default 10)"),
    ),
    responses((status = 200, body = TopCustomers),
              (status = 400, body = Problem, description = "A parameter missing or outside its bounds, or an unknown parameter")))]
#[tracing::instrument(skip_all)]
async fn top_customers(
    State(pool): State<PgPool>,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> Result<Json<TopCustomers>, Problem> {
    let Query(query) = query.map_err(|r| Problem::bad_request(r.body_text()))?;
    let request = TopRequest::try_from(query)?;
    let customers = read_top(&pool, &request).await.map_err(database_failed)?;
    Ok(Json(TopCustomers {
        currency: request.currency.to_string(),
        customers,
    }))
}

async fn read_top(pool: &PgPool, request: &TopRequest) -> Result<Vec<TopCustomer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.customer_id, s.captured_minor, s.refunded_minor, s.spent_minor, c.orders_placed \
           FROM customer_spend s JOIN customers c USING (customer_id) \
          WHERE s.currency = $1 \
          ORDER BY s.spent_minor DESC, s.customer_id ASC \
          LIMIT $2",
    )
    .bind(request.currency.as_str())
    .bind(request.limit)
    .fetch_all(pool)
    .await
}

/// A failing read-model query: 500 (logged by [`Problem`]), without internals.
fn database_failed(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "customer summary query failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the customer summary's database failed; retry later",
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice customer summary",
        description = "Per customer: orders placed, confirmed and cancelled, last order time, \
                       and spend (captured minus refunded) per currency."
    ),
    paths(get_customer, top_customers),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn top(currency: Option<&str>, limit: Option<&str>) -> Result<TopRequest, Problem> {
        TopRequest::try_from(TopQuery {
            currency: currency.map(str::to_owned),
            limit: limit.map(str::to_owned),
        })
    }

    #[test]
    fn top_needs_a_currency_and_defaults_the_limit() {
        assert_eq!(
            top(Some("EUR"), None).unwrap(),
            TopRequest {
                currency: Currency::new("EUR").unwrap(),
                limit: DEFAULT_TOP_LIMIT
            }
        );
        assert!(top(None, Some("5"))
            .unwrap_err()
            .detail
            .contains("currency"));
        assert!(top(Some("eur"), None)
            .unwrap_err()
            .detail
            .contains("currency"));
    }

    #[test]
    fn top_limit_is_one_to_a_hundred() {
        assert_eq!(top(Some("USD"), Some("1")).unwrap().limit, 1);
        assert_eq!(top(Some("USD"), Some("100")).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", "", "1.5"] {
            let problem = top(Some("USD"), Some(bad)).unwrap_err();
            assert_eq!(problem.status, 400);
            assert!(
                problem.detail.contains("limit"),
                "{bad}: {}",
                problem.detail
            );
        }
    }
}
