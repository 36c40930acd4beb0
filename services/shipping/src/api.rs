//! The shipping HTTP API: wire DTOs, their conversion into commands, and handlers.
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
use sluice_platform::saga::{known_order, shipment_id_for_order, KnownOrder, OrderStage};
use sluice_platform::service::{CommandApi, ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{Carrier, Shipment, ShipmentCommand, ShipmentStatus, TrackingNumber};

type Handler = CommandApi<Shipment>;

// The bounds below are declared in the OpenAPI document exactly as
// `crate::domain` enforces them. Lengths count characters (JSON Schema's
// `maxLength`), whitespace surrounding a text is trimmed, and "whitespace" is
// Rust's (Unicode `White_Space`), spelled out in the patterns because Python's,
// ECMAScript's and Rust's `\s` differ. No string may hold NUL (platform `Json`).

/// `POST /shipments`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShipment {
    /// Client-chosen shipment id; generated when absent.
    pub shipment_id: Option<Uuid>,
    /// The order this shipment delivers: a confirmed order shipping has heard of,
    /// not the nil UUID.
    pub order_id: Uuid,
}

/// `POST /shipments/{id}/dispatch`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchShipment {
    /// Who carries the shipment: 1 to 100 characters; surrounding whitespace is
    /// trimmed, and what remains has no control characters (inner spaces are fine).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub carrier: String,
    /// The carrier's tracking number: 1 to 100 characters; surrounding whitespace
    /// is trimmed, and what remains has neither whitespace nor control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub tracking_number: String,
}

/// `POST /shipments/{id}/deliver` (an empty object).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverShipment {}

/// A shipment's current state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipmentState {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub status: ShipmentStatus,
    /// Set once the shipment is dispatched.
    pub carrier: Option<String>,
    /// Set once the shipment is dispatched.
    pub tracking_number: Option<String>,
    /// Send as `If-Match` to make the next command conditional on this state.
    pub stream_version: i64,
}

impl TryFrom<DispatchShipment> for ShipmentCommand {
    type Error = Problem;

    fn try_from(dto: DispatchShipment) -> Result<Self, Problem> {
        let invalid = |e: crate::domain::ShipmentError| Problem::unprocessable(e.to_string());
        Ok(ShipmentCommand::Dispatch {
            carrier: Carrier::new(&dto.carrier).map_err(invalid)?,
            tracking_number: TrackingNumber::new(&dto.tracking_number).map_err(invalid)?,
        })
    }
}

/// Checks a shipment that names an order against what the service learned of the
/// order from the orders topic: the order exists and is confirmed (not cancelled),
/// and the shipment id is not the one the saga reserves for the order.
fn check_against_order(
    shipment_id: Uuid,
    order_id: Uuid,
    known: Option<&KnownOrder>,
) -> Result<(), Problem> {
    if shipment_id == shipment_id_for_order(order_id) {
        return Err(Problem::unprocessable(format!(
            "shipment_id: {shipment_id} is reserved for the saga's own shipment of order \
             {order_id}; omit shipment_id or choose another"
        )));
    }
    let Some(order) = known else {
        return Err(Problem::unprocessable(format!(
            "order_id: order {order_id} is not known to shipping; an order can be shipped once \
             its OrderPlaced and OrderConfirmed have reached the shipping service"
        )));
    };
    if order.stage != OrderStage::Confirmed {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "order {order_id} is {}; only a confirmed order can be shipped",
                order.stage
            ),
        ));
    }
    Ok(())
}

/// The shipping API over its event store; new events are validated against `schemas`.
pub fn router(context: &ServiceContext) -> Result<Router, ServiceError> {
    Ok(Router::new()
        .route("/shipments", post(create_shipment))
        .route("/shipments/{id}", get(get_shipment))
        .route("/shipments/{id}/dispatch", post(dispatch_shipment))
        .route("/shipments/{id}/deliver", post(deliver_shipment))
        .route("/shipments/{id}/events", get(shipment_events))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(Handler::new(context)?))
}

#[utoipa::path(post, path = "/shipments", request_body = CreateShipment, params(CommandHeaderParams),
    responses((status = 201, body = CommandAccepted, description = "Created"),
              (status = 200, body = CommandAccepted, description = "Replayed"),
              (status = 409, body = Problem, description = "The shipment id is taken, the order is not confirmed, or `If-Match` names a version the shipment does not have"),
              (status = 422, body = Problem, description = "A value outside its bounds, the nil UUID, an order shipping has not heard of, the saga's own shipment id, or an `Idempotency-Key` used for another command"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(shipment_id))]
async fn create_shipment(
    State(handler): State<Handler>,
    headers: CommandHeaders,
    Json(dto): Json<CreateShipment>,
) -> Result<Response, Problem> {
    let ctx = headers.context(fingerprint(&("create_shipment", &dto)));
    let shipment_id = dto.shipment_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("shipment_id", tracing::field::display(shipment_id));
    let stream = StreamId::from(shipment_id);
    if dto.order_id.is_nil() {
        return Err(Problem::unprocessable("order_id: must not be the nil UUID"));
    }
    if !handler.replays(&ctx).await? {
        let known = known_order(handler.store().pool(), dto.order_id)
            .await
            .map_err(|e| Problem::from(sluice_platform::store::StoreError::from(e)))?;
        check_against_order(shipment_id, dto.order_id, known.as_ref())?;
    }
    let command = ShipmentCommand::Create {
        shipment_id,
        order_id: dto.order_id,
    };
    handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(post, path = "/shipments/{id}/dispatch", request_body = DispatchShipment,
    params(("id" = Uuid, Path, description = "The shipment"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Dispatched, or replayed"),
              (status = 404, body = Problem, description = "No such shipment"),
              (status = 409, body = Problem, description = "The shipment is not in status `created`, or has moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(shipment_id = %id.0))]
async fn dispatch_shipment(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<DispatchShipment>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("dispatch_shipment", id.0, &dto)));
    let command = ShipmentCommand::try_from(dto)?;
    handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(post, path = "/shipments/{id}/deliver", request_body = DeliverShipment,
    params(("id" = Uuid, Path, description = "The shipment"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Delivered, or replayed"),
              (status = 404, body = Problem, description = "No such shipment"),
              (status = 409, body = Problem, description = "The shipment is not in status `dispatched`, or has moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(shipment_id = %id.0))]
async fn deliver_shipment(
    State(handler): State<Handler>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<DeliverShipment>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("deliver_shipment", id.0, &dto)));
    handler
        .answer(&stream, &ShipmentCommand::Deliver, &ctx)
        .await
}

#[utoipa::path(get, path = "/shipments/{id}", params(("id" = Uuid, Path, description = "The shipment")),
    responses((status = 200, body = ShipmentState), (status = 404, body = Problem, description = "No such shipment")))]
#[tracing::instrument(skip_all, fields(shipment_id = %id.0))]
async fn get_shipment(
    State(handler): State<Handler>,
    id: PathId,
) -> Result<Json<ShipmentState>, Problem> {
    let not_found = || Problem::not_found(format!("shipment {} not found", id.0));
    let (shipment, version) = handler
        .load(&StreamId::from(id.0))
        .await?
        .ok_or_else(not_found)?;
    // A stream always starts with `ShipmentCreated`, which sets both.
    let (Some(status), Some(order_id)) = (shipment.status, shipment.order_id) else {
        return Err(not_found());
    };
    Ok(Json(ShipmentState {
        shipment_id: id.0,
        order_id,
        status,
        carrier: shipment.carrier,
        tracking_number: shipment.tracking_number,
        stream_version: version.get(),
    }))
}

#[utoipa::path(get, path = "/shipments/{id}/events", params(("id" = Uuid, Path, description = "The shipment")),
    responses((status = 200, body = StreamEvents), (status = 404, body = Problem, description = "No such shipment")))]
async fn shipment_events(
    State(handler): State<Handler>,
    id: PathId,
) -> Result<Json<StreamEvents>, Problem> {
    StreamEvents::read(handler.store(), id.0, "shipment")
        .await
        .map(Json)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice shipping service",
        description = "Create, dispatch and deliver shipments."
    ),
    paths(
        create_shipment,
        dispatch_shipment,
        deliver_shipment,
        get_shipment,
        shipment_events
    ),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_TEXT_CHARS;

    /// The document's bounds are literals in attributes; they must be the code's.
    #[test]
    fn the_document_declares_the_bounds_the_code_enforces() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let dispatch = &doc["components"]["schemas"]["DispatchShipment"]["properties"];
        assert_eq!(dispatch["carrier"]["maxLength"], MAX_TEXT_CHARS);
        assert_eq!(dispatch["tracking_number"]["maxLength"], MAX_TEXT_CHARS);
    }
}
