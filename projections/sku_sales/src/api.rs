//! The SKU sales query API.
//!
//! - `GET /skus/{sku}`: the orders that named the SKU, the units ordered, the units
//!   in orders cancelled later, and when it was last ordered; 404 for a SKU no order
//!   has named (yet), 400 for one the orders service would refuse.
//!
//! The answers reflect the events applied so far; a client sending the
//! `X-Consistency-Token` a command answered with waits until they include it.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_platform::http::{Json, Problem, ProblemResponses};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::domain;

/// One SKU's sales.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct SkuSales {
    pub sku: String,
    /// Orders that named the SKU (on one line or more).
    pub orders_placed: i64,
    /// Units of it in those orders.
    pub units_ordered: i64,
    /// Of those, units in orders cancelled later.
    pub units_cancelled: i64,
    /// When the latest order naming it was placed.
    pub last_ordered_at: DateTime<Utc>,
}

/// The query API over the read model's pool.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/skus/{sku}", get(get_sku))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(pool)
}

#[utoipa::path(get, path = "/skus/{sku}",
    params(("sku" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001f\u007f]*$",
            description = "A SKU as orders name it: 1 to 64 printable characters")),
    responses((status = 200, body = SkuSales),
              (status = 400, body = Problem, description = "Not a SKU"),
              (status = 404, body = Problem, description = "No order has named the SKU (yet)")))]
#[tracing::instrument(skip_all, fields(sku))]
async fn get_sku(
    State(pool): State<PgPool>,
    sku: Result<Path<String>, PathRejection>,
) -> Result<Json<SkuSales>, Problem> {
    let Path(raw) = sku.map_err(|r| Problem::new(r.status(), r.body_text()))?;
    tracing::Span::current().record("sku", raw.as_str());
    let sku = domain::check_sku(&raw).map_err(|e| Problem::bad_request(format!("sku: {e}")))?;
    read_sku(&pool, sku)
        .await
        .map_err(database_failed)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no order has named SKU `{sku}`")))
}

async fn read_sku(pool: &PgPool, sku: &str) -> Result<Option<SkuSales>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sku, orders_placed, units_ordered, units_cancelled, last_ordered_at \
           FROM skus WHERE sku = $1",
    )
    .bind(sku)
    .fetch_optional(pool)
    .await
}

/// A failing read-model query: 500 (logged by [`Problem`]), without internals.
fn database_failed(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "sku sales query failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the SKU sales database failed; retry later",
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice SKU sales",
        description = "Per SKU: orders placed, units ordered, units in cancelled orders."
    ),
    paths(get_sku),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;
