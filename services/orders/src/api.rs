//! The orders HTTP API: wire DTOs, their conversion into commands, and handlers.
//!
//! Bad input never reaches the aggregate: DTOs reject unknown fields, and their
//! conversion into domain types names the field at fault (422).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::{fingerprint, CommandHandler};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::http::{CommandAccepted, CommandHeaders, Json, PathId, Problem, StreamEvents};
use sluice_platform::store::{EventStore, StreamId};
use sluice_platform::values::{Amount, Currency};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{LineItem, Order, OrderCommand, OrderLine, OrderStatus, Sku};

type Handler = CommandHandler<Order>;

/// `POST /orders`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Client-chosen order id; generated when absent.
    pub order_id: Option<Uuid>,
    pub customer_id: String,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub lines: Vec<PlaceOrderLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderLine {
    pub sku: String,
    /// 1 to 10 000.
    pub quantity: i64,
    /// Price of one unit in minor units (cents); not negative.
    pub unit_price_minor: i64,
}

/// `POST /orders/{id}/cancel`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why the order is cancelled (1 to 500 characters).
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

/// The orders API over its event store; new events are validated against `schemas`.
pub fn router(store: EventStore, schemas: SchemaCatalog) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/confirm", post(confirm_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/events", get(order_events))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(Handler::with_schemas(store, schemas))
}

#[utoipa::path(post, path = "/orders", request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the command safe to retry")),
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "Replayed"),
               (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
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
    let appended = handler.execute(&stream, &command, &ctx).await?;
    Ok(CommandAccepted::respond(appended, crate::TOPIC))
}

#[utoipa::path(post, path = "/orders/{id}/confirm", request_body = ConfirmOrder,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "Expected stream version")),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn confirm_order(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<ConfirmOrder>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("confirm_order", id.0, &dto)));
    let appended = handler
        .execute(&stream, &OrderCommand::Confirm, &ctx)
        .await?;
    Ok(CommandAccepted::respond(appended, crate::TOPIC))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", request_body = CancelOrder,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "Expected stream version")),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(order_id = %id.0))]
async fn cancel_order(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<CancelOrder>,
) -> Result<Response, Problem> {
    let reason = dto.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Problem::unprocessable(
            "reason: must be 1 to 500 characters",
        ));
    }
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("cancel_order", id.0, &dto)));
    let command = OrderCommand::Cancel {
        reason: reason.to_owned(),
    };
    let appended = handler.execute(&stream, &command, &ctx).await?;
    Ok(CommandAccepted::respond(appended, crate::TOPIC))
}

#[utoipa::path(get, path = "/orders/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderState), (status = 404, body = Problem)))]
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

#[utoipa::path(get, path = "/orders/{id}/events", params(("id" = Uuid, Path)),
    responses((status = 200, body = StreamEvents), (status = 404, body = Problem)))]
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
    paths(place_order, confirm_order, cancel_order, get_order, order_events)
)]
struct ApiDoc;
