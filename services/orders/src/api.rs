//! The orders HTTP API: wire DTOs, their conversion into commands, and handlers.
//!
//! Bad input never reaches the aggregate: DTOs reject unknown fields, and their
//! conversion into domain types names the field at fault (422).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::fingerprint;
use sluice_platform::http::{
    CommandAccepted, CommandHeaderParams, CommandHeaders, Json, PathId, Problem, ProblemResponses,
    StreamEvents,
};
use sluice_platform::service::{CommandApi, ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use sluice_platform::values::{Amount, Currency};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{LineItem, Order, OrderCommand, OrderLine, OrderStatus, Sku};

type Handler = CommandApi<Order>;

// The bounds below are declared in the OpenAPI document exactly as the conversions
// and `crate::domain` enforce them. Lengths count characters (JSON Schema's
// `maxLength`), whitespace surrounding a text is trimmed, and "whitespace" is
// Rust's (Unicode `White_Space`), spelled out in the patterns because Python's,
// ECMAScript's and Rust's `\s` differ. No string may hold NUL (platform `Json`).

/// `POST /orders`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Client-chosen order id; generated when absent.
    pub order_id: Option<Uuid>,
    /// Who orders: 1 to 100 characters, not all whitespace; surrounding whitespace
    /// is trimmed.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub customer_id: String,
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(pattern = r"^[A-Z]{3}$")]
    pub currency: String,
    /// 1 to 100 lines. The order's total (the sum of quantity times unit price)
    /// must fit a signed 64-bit integer (422 otherwise).
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<PlaceOrderLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderLine {
    /// 1 to 64 characters; surrounding whitespace is trimmed, and what remains has
    /// no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub sku: String,
    /// 1 to 10 000.
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
    /// Price of one unit in minor units (cents); not negative.
    #[schema(minimum = 0)]
    pub unit_price_minor: i64,
}

/// `POST /orders/{id}/cancel`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why the order is cancelled: 1 to 500 characters, not all whitespace;
    /// surrounding whitespace is trimmed.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub reason: String,
}

/// `POST /orders/{id}/confirm` (an empty object).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOrder {}

/// An order's current state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderState {
    pub order_id: Uuid,
    pub status: OrderStatus,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<OrderLineState>,
    pub total_minor: i64,
    pub cancel_reason: Option<String>,
    /// Send as `If-Match` to make the next command conditional on this state.
    pub stream_version: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineState {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

impl From<LineItem> for OrderLineState {
    fn from(l: LineItem) -> Self {
        OrderLineState {
            sku: l.sku,
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
        }
    }
}

impl TryFrom<(Uuid, PlaceOrder)> for OrderCommand {
    type Error = Problem;

    fn try_from((order_id, dto): (Uuid, PlaceOrder)) -> Result<Self, Problem> {
        let currency = Currency::new(&dto.currency)
            .map_err(|e| Problem::unprocessable(format!("currency: {e}")))?;
        let lines = dto
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let field = |what: &str, e: &dyn std::fmt::Display| {
                    Problem::unprocessable(format!("lines[{i}].{what}: {e}"))
                };
                let quantity = u32::try_from(line.quantity)
                    .ok()
                    .filter(|q| *q >= 1)
                    .ok_or_else(|| {
                        field(
                            "quantity",
                            &format!("must be at least 1, got {}", line.quantity),
                        )
                    })?;
                let unit_price = Amount::new(line.unit_price_minor)
                    .map_err(|e| field("unit_price_minor", &e))?;
                let sku = Sku::new(&line.sku).map_err(|e| field("sku", &e))?;
                OrderLine::new(sku, quantity, unit_price).map_err(|e| field("quantity", &e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrderCommand::Place {
            order_id,
            customer_id: dto.customer_id,
            currency,
            lines,
        })
    }
}

/// Longest cancellation reason, in characters (before trimming).
pub const MAX_REASON_CHARS: usize = 500;

/// The reason of a cancel: at most [`MAX_REASON_CHARS`] characters as sent, not
/// empty once trimmed; trimmed.
fn cancel_reason(dto: &CancelOrder) -> Result<String, Problem> {
    let reason = dto.reason.trim();
    if reason.is_empty() || dto.reason.chars().count() > MAX_REASON_CHARS {
        return Err(Problem::unprocessable(format!(
            "reason: must be 1 to {MAX_REASON_CHARS} characters, not all whitespace"
        )));
    }
    Ok(reason.to_owned())
}

/// The orders API over its event store; new events are validated against `schemas`.
pub fn router(context: &ServiceContext) -> Result<Router, ServiceError> {
    Ok(Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/confirm", post(confirm_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/events", get(order_events))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(Handler::new(context)?))
}

#[utoipa::path(post, path = "/orders", request_body = PlaceOrder, params(CommandHeaderParams),
    responses((status = 201, body = CommandAccepted, description = "Placed"),
              (status = 200, body = CommandAccepted, description = "Replayed"),
              (status = 409, body = Problem, description = "The order id is taken, or `If-Match` names a version the order does not have"),
              (status = 422, body = Problem, description = "A value outside its bounds, an order total too large, or an `Idempotency-Key` used for another command"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(order_id))]
async fn place_order(
    State(handler): State<Handler>,
    headers: CommandHeaders,
    Json(dto): Json<PlaceOrder>,
) -> Result<Response, Problem> {
    let ctx = headers.context(fingerprint(&("place_order", &dto)));
    let order_id = dto.order_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let stream = StreamId::from(order_id);
    let command = OrderCommand::try_from((order_id, dto))?;
    handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(post, path = "/orders/{id}/confirm", request_body = ConfirmOrder,
    params(("id" = Uuid, Path, description = "The order"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Confirmed, or replayed"),
              (status = 404, body = Problem, description = "No such order"),
              (status = 409, body = Problem, description = "The order is not placed (confirmed or cancelled already), or has moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn confirm_order(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<ConfirmOrder>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("confirm_order", id.0, &dto)));
    handler.answer(&stream, &OrderCommand::Confirm, &ctx).await
}

#[utoipa::path(post, path = "/orders/{id}/cancel", request_body = CancelOrder,
    params(("id" = Uuid, Path, description = "The order"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Cancelled, or replayed"),
              (status = 404, body = Problem, description = "No such order"),
              (status = 409, body = Problem, description = "The order is cancelled already, or has moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn cancel_order(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<CancelOrder>,
) -> Result<Response, Problem> {
    let reason = cancel_reason(&dto)?;
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("cancel_order", id.0, &dto)));
    let command = OrderCommand::Cancel { reason };
    handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(get, path = "/orders/{id}", params(("id" = Uuid, Path, description = "The order")),
    responses((status = 200, body = OrderState), (status = 404, body = Problem, description = "No such order")))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn get_order(
    State(handler): State<Handler>,
    id: PathId,
) -> Result<Json<OrderState>, Problem> {
    let (order, version) = handler
        .load(&StreamId::from(id.0))
        .await?
        .ok_or_else(|| Problem::not_found(format!("order {} not found", id.0)))?;
    Ok(Json(OrderState {
        order_id: id.0,
        status: order.status,
        customer_id: order.customer_id,
        currency: order.currency,
        lines: order.lines.into_iter().map(Into::into).collect(),
        total_minor: order.total_minor,
        cancel_reason: order.cancel_reason,
        stream_version: version.get(),
    }))
}

#[utoipa::path(get, path = "/orders/{id}/events", params(("id" = Uuid, Path, description = "The order")),
    responses((status = 200, body = StreamEvents), (status = 404, body = Problem, description = "No such order")))]
async fn order_events(
    State(handler): State<Handler>,
    id: PathId,
) -> Result<Json<StreamEvents>, Problem> {
    StreamEvents::read(handler.store(), id.0, "order")
        .await
        .map(Json)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice orders service",
        description = "Place, confirm and cancel orders."
    ),
    paths(place_order, confirm_order, cancel_order, get_order, order_events),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MAX_CUSTOMER_ID_CHARS, MAX_LINES, MAX_QUANTITY, MAX_SKU_CHARS};

    #[test]
    fn cancel_reasons_are_counted_in_characters_and_trimmed() {
        let reason = |r: &str| {
            cancel_reason(&CancelOrder {
                reason: r.to_owned(),
            })
        };
        assert_eq!(reason(" changed mind\n").unwrap(), "changed mind");
        let long = "é".repeat(MAX_REASON_CHARS);
        assert_eq!(reason(&long).unwrap(), long);
        for bad in ["".to_owned(), " \t".to_owned(), format!("{long}!")] {
            assert_eq!(reason(&bad).unwrap_err().status, 422, "{bad:?}");
        }
    }

    /// The document's bounds are literals in attributes; they must be the code's.
    #[test]
    fn the_document_declares_the_bounds_the_code_enforces() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let place = &schemas["PlaceOrder"]["properties"];
        assert_eq!(place["customer_id"]["maxLength"], MAX_CUSTOMER_ID_CHARS);
        assert_eq!(place["lines"]["maxItems"], MAX_LINES);
        let line = &schemas["PlaceOrderLine"]["properties"];
        assert_eq!(line["sku"]["maxLength"], MAX_SKU_CHARS);
        assert_eq!(line["quantity"]["maximum"], MAX_QUANTITY);
        assert_eq!(
            schemas["CancelOrder"]["properties"]["reason"]["maxLength"],
            MAX_REASON_CHARS
        );
        let problem = &doc["paths"]["/orders"]["post"]["responses"]["422"]["content"];
        assert!(problem["application/problem+json"].is_object(), "{problem}");
    }
}
