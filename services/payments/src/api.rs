//! The payments HTTP API: wire DTOs, their conversion into commands, and handlers.
//!
//! Bad input never reaches the aggregate: DTOs reject unknown fields, and their
//! conversion into domain types names the field at fault (422).
//!
//! The authorization limit is read at the edge, once per router
//! ([`AUTHORIZATION_LIMIT_VAR`], set in `sluice.toml`; see [`crate::config`]), and
//! handed to the aggregate inside each authorize command.

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
use sluice_platform::saga::{known_order, payment_id_for_order, KnownOrder, OrderStage};
use sluice_platform::service::{CommandApi, ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use sluice_platform::values::{Amount, Currency};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

pub use crate::config::AUTHORIZATION_LIMIT_VAR;
use crate::domain::{Payment, PaymentCommand, PaymentStatus};

type Handler = CommandApi<Payment>;

/// Longest refund reason, in characters (as sent, before trimming).
pub const MAX_REASON_CHARS: usize = 500;

/// What every handler shares: the command handler and the configured limit.
#[derive(Debug, Clone)]
struct Payments {
    handler: Handler,
    authorization_limit: Amount,
}

// The bounds below are declared in the OpenAPI document exactly as the conversions
// enforce them. Lengths count characters (JSON Schema's `maxLength`), whitespace
// surrounding a text is trimmed, and "whitespace" is Rust's (Unicode `White_Space`),
// spelled out in the patterns because Python's, ECMAScript's and Rust's `\s` differ.
// No string may hold NUL (platform `Json`).

/// `POST /payments`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePayment {
    /// Client-chosen payment id; generated when absent.
    pub payment_id: Option<Uuid>,
    /// The order this payment pays for.
    pub order_id: Uuid,
    /// Amount to authorize in minor units (cents); greater than zero and at most
    /// the order's total. Above the service's authorization limit the payment is
    /// declined.
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`; the order's currency.
    #[schema(pattern = r"^[A-Z]{3}$")]
    pub currency: String,
}

/// `POST /payments/{id}/capture`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapturePayment {
    /// Amount to capture in minor units; greater than zero and at most the
    /// authorized amount. The whole authorized amount when absent.
    #[schema(minimum = 1)]
    pub amount_minor: Option<i64>,
}

/// `POST /payments/{id}/refund`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// Amount to refund in minor units; greater than zero and, with earlier refunds,
    /// at most the captured amount.
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// Why the money is given back: 1 to 500 characters, not all whitespace;
    /// surrounding whitespace is trimmed.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub reason: Option<String>,
}

/// A payment's current state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentState {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub status: PaymentStatus,
    pub currency: String,
    /// The amount the authorization asked for (authorized or declined).
    pub amount_minor: i64,
    /// Zero when declined.
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// What may still be refunded: captured minus refunded.
    pub refundable_minor: i64,
    pub decline_reason: Option<String>,
    /// Send as `If-Match` to make the next command conditional on this state.
    pub stream_version: i64,
}

/// An amount in minor units that must be greater than zero (422 otherwise).
fn positive_amount(minor: i64) -> Result<Amount, Problem> {
    Amount::new(minor)
        .ok()
        .filter(|a| *a > Amount::ZERO)
        .ok_or_else(|| {
            Problem::unprocessable(format!(
                "amount_minor: must be greater than zero (in minor units, e.g. cents), got {minor}"
            ))
        })
}

impl TryFrom<(Uuid, AuthorizePayment, Amount)> for PaymentCommand {
    type Error = Problem;

    fn try_from(
        (payment_id, dto, limit): (Uuid, AuthorizePayment, Amount),
    ) -> Result<Self, Problem> {
        let amount = positive_amount(dto.amount_minor)?;
        let currency = Currency::new(&dto.currency)
            .map_err(|e| Problem::unprocessable(format!("currency: {e}")))?;
        Ok(PaymentCommand::Authorize {
            payment_id,
            order_id: dto.order_id,
            amount,
            currency,
            limit,
        })
    }
}

impl TryFrom<CapturePayment> for PaymentCommand {
    type Error = Problem;

    fn try_from(dto: CapturePayment) -> Result<Self, Problem> {
        Ok(PaymentCommand::Capture {
            amount: dto.amount_minor.map(positive_amount).transpose()?,
        })
    }
}

impl TryFrom<RefundPayment> for PaymentCommand {
    type Error = Problem;

    fn try_from(dto: RefundPayment) -> Result<Self, Problem> {
        let amount = positive_amount(dto.amount_minor)?;
        let reason = dto
            .reason
            .map(|raw| {
                // Characters as sent, as the API's `maxLength` counts them.
                let r = raw.trim();
                if r.is_empty() || raw.chars().count() > MAX_REASON_CHARS {
                    return Err(Problem::unprocessable(format!(
                        "reason: must be 1 to {MAX_REASON_CHARS} characters, not all whitespace, when given"
                    )));
                }
                Ok(r.to_owned())
            })
            .transpose()?;
        Ok(PaymentCommand::Refund { amount, reason })
    }
}

/// Checks an authorization that names an order against what the service learned of
/// the order from the orders topic: the order exists and is not cancelled, the
/// currency is the order's, the amount at most its total, and the payment id is not
/// the one the saga reserves for the order.
fn check_against_order(
    command: &PaymentCommand,
    known: Option<&KnownOrder>,
) -> Result<(), Problem> {
    let PaymentCommand::Authorize {
        payment_id,
        order_id,
        amount,
        currency,
        ..
    } = command
    else {
        return Ok(());
    };
    if *payment_id == payment_id_for_order(*order_id) {
        return Err(Problem::unprocessable(format!(
            "payment_id: {payment_id} is reserved for the saga's own payment of order {order_id}; \
             omit payment_id or choose another"
        )));
    }
    let Some(order) = known else {
        return Err(Problem::unprocessable(format!(
            "order_id: order {order_id} is not known to payments; an order can be paid once \
             its OrderPlaced has reached the payments service"
        )));
    };
    if order.stage == OrderStage::Cancelled {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            format!("order {order_id} is cancelled; it cannot be paid"),
        ));
    }
    if currency.as_str() != order.currency {
        return Err(Problem::unprocessable(format!(
            "currency: order {order_id} is in {}, not {currency}",
            order.currency
        )));
    }
    if amount.minor() > order.total_minor {
        return Err(Problem::unprocessable(format!(
            "amount_minor: {} exceeds the total of order {order_id}, {} {}",
            amount.minor(),
            order.total_minor,
            order.currency
        )));
    }
    Ok(())
}

/// The payments API over its event store, new events validated against its schemas;
/// an error when the authorization limit is misconfigured (see
/// [`crate::config::authorization_limit`]).
pub fn router(context: &ServiceContext) -> Result<Router, ServiceError> {
    let authorization_limit = crate::config::authorization_limit(&context.component)?;
    tracing::info!(
        authorization_limit = %authorization_limit,
        "payments authorization limit (minor units)"
    );
    Ok(Router::new()
        .route("/payments", post(authorize_payment))
        .route("/payments/{id}", get(get_payment))
        .route("/payments/{id}/capture", post(capture_payment))
        .route("/payments/{id}/refund", post(refund_payment))
        .route("/payments/{id}/events", get(payment_events))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(Payments {
            handler: Handler::new(context)?,
            authorization_limit,
        }))
}

#[utoipa::path(post, path = "/payments", request_body = AuthorizePayment, params(CommandHeaderParams),
    responses((status = 201, body = CommandAccepted, description = "Authorized, or declined (see the appended event)"),
              (status = 200, body = CommandAccepted, description = "Replayed"),
              (status = 409, body = Problem, description = "The payment id is taken, the order is cancelled, or `If-Match` names a version the payment does not have"),
              (status = 422, body = Problem, description = "A value outside its bounds; an order payments has not heard of, in another currency or of a smaller total; the saga's own payment id; or an `Idempotency-Key` used for another command"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(payment_id))]
async fn authorize_payment(
    State(payments): State<Payments>,
    headers: CommandHeaders,
    Json(dto): Json<AuthorizePayment>,
) -> Result<Response, Problem> {
    let ctx = headers.context(fingerprint(&("authorize_payment", &dto)));
    let payment_id = dto.payment_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("payment_id", tracing::field::display(payment_id));
    let stream = StreamId::from(payment_id);
    let order_id = dto.order_id;
    let command = PaymentCommand::try_from((payment_id, dto, payments.authorization_limit))?;
    if !payments.handler.replays(&ctx).await? {
        let known = known_order(payments.handler.store().pool(), order_id)
            .await
            .map_err(|e| Problem::from(sluice_platform::store::StoreError::from(e)))?;
        check_against_order(&command, known.as_ref())?;
    }
    payments.handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(post, path = "/payments/{id}/capture", request_body = CapturePayment,
    params(("id" = Uuid, Path, description = "The payment"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Captured, or replayed"),
              (status = 404, body = Problem, description = "No such payment"),
              (status = 409, body = Problem, description = "Not authorized (declined, voided or captured already), more than the authorized amount, or moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(payment_id = %id.0))]
async fn capture_payment(
    State(payments): State<Payments>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<CapturePayment>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("capture_payment", id.0, &dto)));
    let command = PaymentCommand::try_from(dto)?;
    payments.handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(post, path = "/payments/{id}/refund", request_body = RefundPayment,
    params(("id" = Uuid, Path, description = "The payment"), CommandHeaderParams),
    responses((status = 200, body = CommandAccepted, description = "Refunded, or replayed"),
              (status = 404, body = Problem, description = "No such payment"),
              (status = 409, body = Problem, description = "Not captured, more than what remains refundable, or moved past `If-Match`"),
              (status = 503, body = Problem, description = "Too many concurrent writers; retry")))]
#[tracing::instrument(skip_all, fields(payment_id = %id.0))]
async fn refund_payment(
    State(payments): State<Payments>,
    id: PathId,
    headers: CommandHeaders,
    Json(dto): Json<RefundPayment>,
) -> Result<Response, Problem> {
    let stream = StreamId::from(id.0);
    let ctx = headers.context(fingerprint(&("refund_payment", id.0, &dto)));
    let command = PaymentCommand::try_from(dto)?;
    payments.handler.answer(&stream, &command, &ctx).await
}

#[utoipa::path(get, path = "/payments/{id}", params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, body = PaymentState), (status = 404, body = Problem, description = "No such payment")))]
#[tracing::instrument(skip_all, fields(payment_id = %id.0))]
async fn get_payment(
    State(payments): State<Payments>,
    id: PathId,
) -> Result<Json<PaymentState>, Problem> {
    let (payment, version) = payments
        .handler
        .load(&StreamId::from(id.0))
        .await?
        .ok_or_else(|| Problem::not_found(format!("payment {} not found", id.0)))?;
    Ok(Json(PaymentState {
        payment_id: id.0,
        order_id: payment.order_id.unwrap_or_default(),
        status: payment.status,
        currency: payment.currency.map(String::from).unwrap_or_default(),
        amount_minor: payment.requested.minor(),
        authorized_minor: payment.authorized.minor(),
        captured_minor: payment.captured.minor(),
        refunded_minor: payment.refunded.minor(),
        refundable_minor: payment.refundable().minor(),
        decline_reason: payment.decline_reason,
        stream_version: version.get(),
    }))
}

#[utoipa::path(get, path = "/payments/{id}/events", params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, body = StreamEvents), (status = 404, body = Problem, description = "No such payment")))]
async fn payment_events(
    State(payments): State<Payments>,
    id: PathId,
) -> Result<Json<StreamEvents>, Problem> {
    StreamEvents::read(payments.handler.store(), id.0, "payment")
        .await
        .map(Json)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice payments service",
        description = "Authorize, capture and refund payments."
    ),
    paths(
        authorize_payment,
        capture_payment,
        refund_payment,
        get_payment,
        payment_events
    ),
    modifiers(&ProblemResponses)
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive() {
        assert_eq!(positive_amount(1).unwrap(), Amount::new(1).unwrap());
        for bad in [0, -1, i64::MIN] {
            let problem = positive_amount(bad).unwrap_err();
            assert_eq!(problem.status, 422);
            assert!(
                problem.detail.starts_with("amount_minor"),
                "{}",
                problem.detail
            );
        }
    }

    #[test]
    fn refund_reasons_are_trimmed_and_bounded() {
        let dto = |reason: &str| RefundPayment {
            amount_minor: 1,
            reason: Some(reason.to_owned()),
        };
        assert_eq!(
            PaymentCommand::try_from(dto(" returned ")).unwrap(),
            PaymentCommand::Refund {
                amount: Amount::new(1).unwrap(),
                reason: Some("returned".into())
            }
        );
        assert!(PaymentCommand::try_from(dto(" ")).is_err());
        assert!(PaymentCommand::try_from(dto(&"x".repeat(MAX_REASON_CHARS + 1))).is_err());
        // Characters as sent, not bytes, and not what remains after trimming.
        let long = "é".repeat(MAX_REASON_CHARS);
        assert!(PaymentCommand::try_from(dto(&long)).is_ok());
        assert!(PaymentCommand::try_from(dto(&format!("{long} "))).is_err());
    }

    /// The document's bounds are literals in attributes; they must be the code's.
    #[test]
    fn the_document_declares_the_bounds_the_code_enforces() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let refund = &doc["components"]["schemas"]["RefundPayment"]["properties"];
        assert_eq!(refund["reason"]["maxLength"], MAX_REASON_CHARS);
        assert_eq!(refund["amount_minor"]["minimum"], 1);
        assert!(positive_amount(0).is_err() && positive_amount(1).is_ok());
    }
}
