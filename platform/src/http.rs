//! HTTP plumbing shared by every component: RFC 9457 problem responses, extractors
//! that turn bad input into problems, command headers, health endpoints, and serving
//! with graceful shutdown.
//!
//! Every error a client can cause is answered here, in one place, as
//! `application/problem+json` with a message a person can act on.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::aggregate::{CommandContext, CommandError, DomainError, Rejection};
use crate::store::{Appended, EventStore, IdempotencyKey, Metadata, StoreError, StreamVersion};

/// Largest request body a component accepts (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(status = self.status, detail = %self.detail, "request failed");
        }
        let mut response = (status, axum::Json(self)).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        response
    }
}

/// The content type of every [`Problem`] answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Completes a component's OpenAPI document with what this module answers for it
/// (`#[openapi(modifiers(&ProblemResponses))]`), so no handler can leave it out:
///
/// - every answer whose body is a [`Problem`] is declared as
///   `application/problem+json`, as [`Problem`] answers it;
/// - an operation with parameters declares 400, as [`PathId`], [`CommandHeaders`] and
///   the query extractors answer a malformed one;
/// - an operation with a request body declares what [`Json`] answers: 400 (malformed
///   JSON), 413 (over [`MAX_BODY_BYTES`]), 415 (not `application/json`) and 422
///   (well-formed JSON of the wrong shape, or values outside the declared bounds).
///
/// The statuses only a handler knows (404, 409, 503, …) stay in its `#[utoipa::path]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::{PartialSchema, ToSchema};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .entry(Problem::name().into_owned())
            .or_insert_with(Problem::schema);
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                declare_problems(operation);
            }
        }
    }
}

fn declare_problems(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
    let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = operation.request_body.is_some();
    let mut platform = Vec::new();
    if has_parameters || has_body {
        platform.push((
            StatusCode::BAD_REQUEST,
            "A malformed parameter, header or JSON body",
        ));
    }
    if has_body {
        platform.extend([
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The body is larger than 64 KiB",
            ),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The body was not sent as `application/json`",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Well-formed JSON of the wrong shape, or a value outside its declared bounds",
            ),
        ]);
    }
    let problem = Ref::from_schema_name("Problem");
    for (status, description) in platform {
        operation
            .responses
            .responses
            .entry(status.as_u16().to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            PROBLEM_CONTENT_TYPE,
                            utoipa::openapi::Content::new(Some(problem.clone())),
                        )
                        .build(),
                )
            });
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if response
            .content
            .get("application/json")
            .is_some_and(is_problem)
        {
            if let Some(content) = response.content.shift_remove("application/json") {
                response
                    .content
                    .insert(PROBLEM_CONTENT_TYPE.to_owned(), content);
            }
        }
        if response.description.is_empty() {
            response.description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or_default()
                .to_owned();
        }
    }
}

impl<E: DomainError> From<CommandError<E>> for Problem {
    fn from(err: CommandError<E>) -> Self {
        let detail = err.to_string();
        match err {
            CommandError::Domain(e) => match e.rejection() {
                Rejection::NotFound => Problem::not_found(detail),
                Rejection::InvalidState => Problem::new(StatusCode::CONFLICT, detail),
                Rejection::Invalid => Problem::unprocessable(detail),
            },
            CommandError::Conflict(_) => Problem::new(
                StatusCode::CONFLICT,
                format!("{detail}; reload the stream and retry"),
            ),
            CommandError::Contended { .. } => Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail),
            CommandError::IdempotencyKeyReused(_) | CommandError::InvalidPayload { .. } => {
                Problem::unprocessable(detail)
            }
            CommandError::Undecodable { .. } => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
            }
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { .. } => Problem::new(StatusCode::CONFLICT, err.to_string()),
            StoreError::StreamTypeMismatch { .. } => {
                Problem::new(StatusCode::CONFLICT, err.to_string())
            }
            StoreError::IdempotencyKeyReused { .. }
            | StoreError::EmptyAppend
            | StoreError::TooLarge { .. } => Problem::unprocessable(err.to_string()),
            StoreError::Corrupt(_) | StoreError::Database(_) => {
                tracing::error!(error = %err, "event store failure");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the event store failed; the command may be retried with the same Idempotency-Key",
                )
            }
        }
    }
}

/// A JSON body whose rejections are problems: 415 without `application/json`, 400
/// for malformed JSON, 422 for well-formed JSON of the wrong shape (unknown or
/// missing fields, wrong types) or with a NUL character in a string, 413 over
/// [`MAX_BODY_BYTES`].
///
/// A whole number written with a fraction or an exponent (`2.0`, `2e3`) is read as
/// the integer it is, as JSON Schema's `integer` counts it, within the integers a
/// double holds exactly (±2^53); see `whole_numbers_as_integers`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_problem(rejection)),
        };
        if let Some(path) = nul_in(&value, &mut String::new()) {
            return Err(Problem::unprocessable(format!(
                "{path}: must not contain the NUL character (\\u0000)"
            )));
        }
        let mut value = value;
        whole_numbers_as_integers(&mut value);
        // Through the path-tracking deserializer, as axum's own extractor does: the
        // message names the field at fault (`lines[0].quantity: invalid type …`).
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(|e| {
                Problem::unprocessable(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                ))
            })
    }
}

/// Where `value` holds a string (or an object key) with a NUL character, as a path
/// like `lines[0].sku`; `None` when it holds none. No text column of PostgreSQL can
/// store NUL, so such a string is refused at the edge, before it reaches a command.
fn nul_in(value: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value;
    let here = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_in(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&key.replace('\0', "\\u0000"));
            let found = if key.contains('\0') {
                Some(here(path))
            } else {
                nul_in(field, path)
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// 2^53: up to it in magnitude, every integer is a double, and a whole double is
/// the integer that was written (JavaScript's `Number.MAX_SAFE_INTEGER` + 1).
const SAFE_INTEGER_BOUND: f64 = 9_007_199_254_740_992.0;

/// Rewrites every number parsed as a double whose value is a whole number of at most
/// 2^53 in magnitude as that integer. JSON has one number type and JSON Schema's
/// `integer` counts `2.0` as one; clients write whole numbers so (Python's `json`
/// writes a float `2.0`), and an integer field must read them. Past 2^53 a double no
/// longer tells which integer was written, so such a number stays what it is and an
/// integer field refuses it (422), as it refuses `2.5`.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() <= SAFE_INTEGER_BOUND {
                    // Exact: whole and within ±2^53.
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Whether `content` is a [`Problem`] body.
fn is_problem(content: &utoipa::openapi::Content) -> bool {
    use utoipa::openapi::RefOr;
    matches!(
        &content.schema,
        Some(RefOr::Ref(r)) if r.ref_location == "#/components/schemas/Problem"
    )
}

fn json_problem(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let detail = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the request body must be JSON, sent with `Content-Type: application/json`".to_owned()
        }
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        }
        _ => rejection.body_text(),
    };
    Problem::new(status, detail)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A UUID path parameter whose rejection names the parameter: 400, not a bare text.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => Uuid::parse_str(&raw).map(PathId).map_err(|_| {
                Problem::bad_request(format!("`{raw}` is not a valid id: expected a UUID"))
            }),
            Err(rejection) => Err(path_problem(rejection)),
        }
    }
}

fn path_problem(rejection: PathRejection) -> Problem {
    Problem::new(rejection.status(), rejection.body_text())
}

/// The headers of a command as an OpenAPI document declares them
/// (`params(CommandHeaderParams)` on every command's `#[utoipa::path]`): exactly what
/// [`CommandHeaders`] accepts; any other value is answered 400. Header values arrive
/// with surrounding whitespace stripped, and only visible ASCII (and tab) is text.
/// A header is present or absent, never `null`: the schemas are not nullable.
#[derive(Debug, Clone, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaderParams {
    /// Makes the command safe to retry: a retry with the same key answers the first
    /// result and appends nothing; the key with another command is refused (422).
    /// 1 to 200 visible ASCII characters (inner spaces allowed).
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[!-~]([ -~]{0,198}[!-~])?$"
    )]
    pub idempotency_key: Option<String>,
    /// The stream version the client saw (the `ETag` or `stream_version` of an
    /// earlier answer), `"3"` or `3`: the command is refused (409) when the stream
    /// has moved on.
    #[param(
        rename = "If-Match",
        value_type = String,
        required = false,
        pattern = r#"^("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17})$"#
    )]
    pub if_match: Option<String>,
    /// Correlates the events of one business transaction; a new one when absent.
    #[param(
        rename = "X-Correlation-Id",
        value_type = String,
        required = false,
        format = Uuid
    )]
    pub correlation_id: Option<Uuid>,
    /// W3C trace context recorded with the events; ignored unless well-formed.
    #[param(
        rename = "traceparent",
        value_type = String,
        required = false,
        pattern = r"^[\t -~]*$"
    )]
    pub traceparent: Option<String>,
    /// Who sent the command, recorded with the events (its first 200 characters).
    #[param(
        rename = "X-Actor",
        value_type = String,
        required = false,
        pattern = r"^[\t -~]*$"
    )]
    pub actor: Option<String>,
}

/// Headers that shape a command: `Idempotency-Key`, `If-Match` (the stream version
/// the client saw), `X-Correlation-Id`, `traceparent`, `X-Actor`; declared by
/// [`CommandHeaderParams`].
#[derive(Debug, Clone)]
pub struct CommandHeaders {
    pub idempotency_key: Option<IdempotencyKey>,
    pub expected_version: Option<StreamVersion>,
    pub metadata: Metadata,
}

impl CommandHeaders {
    /// A command context for this request; `fingerprint` identifies the command.
    pub fn context(&self, fingerprint: String) -> CommandContext {
        CommandContext {
            expected_version: self.expected_version,
            idempotency_key: self.idempotency_key.clone(),
            fingerprint,
            metadata: self.metadata.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_command_headers(&parts.headers)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Problem> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Problem::bad_request(format!("header `{name}` must be ASCII")))
        })
        .transpose()
}

fn parse_command_headers(headers: &HeaderMap) -> Result<CommandHeaders, Problem> {
    let idempotency_key = header_str(headers, "idempotency-key")?
        .map(|k| IdempotencyKey::new(k).map_err(|e| Problem::bad_request(e.to_string())))
        .transpose()?;
    let expected_version = header_str(headers, "if-match")?
        .map(|v| {
            parse_if_match(v).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`If-Match: {v}` must be the stream version you saw, e.g. `If-Match: \"3\"`"
                ))
            })
        })
        .transpose()?;
    let correlation_id = header_str(headers, "x-correlation-id")?
        .map(|v| {
            Uuid::parse_str(v).map_err(|_| {
                Problem::bad_request(format!("`X-Correlation-Id: {v}` must be a UUID"))
            })
        })
        .transpose()?
        // A command without one starts a new correlation.
        .or_else(|| Some(Uuid::now_v7()));
    let traceparent = header_str(headers, "traceparent")?
        .filter(|v| is_traceparent(v))
        .map(str::to_owned);
    let actor = header_str(headers, "x-actor")?.map(|a| a.chars().take(200).collect::<String>());
    Ok(CommandHeaders {
        idempotency_key,
        expected_version,
        metadata: Metadata {
            correlation_id,
            causation_id: None,
            traceparent,
            actor,
        },
    })
}

/// The stream version an `If-Match` names, exactly as [`CommandHeaderParams`]
/// declares it: the `ETag` a command answered with (`"3"`) or the bare number (`3`),
/// a positive whole number of at most 18 digits without leading zeros (so it always
/// fits an `i64`).
fn parse_if_match(v: &str) -> Option<StreamVersion> {
    let digits = v
        .strip_prefix('"')
        .and_then(|d| d.strip_suffix('"'))
        .unwrap_or(v);
    let well_formed = (1..=18).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| StreamVersion::new(n).ok())
}

/// W3C trace context: `00-<32 hex>-<16 hex>-<2 hex>`.
fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// The answer to a command: the new stream version and the appended event ids.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommandAccepted {
    /// The stream (aggregate) the command changed.
    pub stream_id: String,
    /// The stream's version after the command; send it as `If-Match` next time.
    pub stream_version: i64,
    /// Ids of the events the command appended.
    #[schema(value_type = Vec<String>)]
    pub event_ids: Vec<Uuid>,
    /// Position of the last event in the service's store.
    pub global_position: i64,
    /// True when this is the stored answer of an earlier command with the same
    /// `Idempotency-Key`: nothing new was appended.
    pub replayed: bool,
    /// Send as `X-Consistency-Token` to a projection's query to read this write.
    pub consistency_token: String,
}

impl CommandAccepted {
    /// Answers 201 for a command that created its stream, 200 otherwise.
    /// Answers a command of the service publishing to `topic`: 201 for a command that
    /// created its stream, 200 otherwise, with the consistency token of the write.
    pub fn respond(appended: Appended, topic: &str) -> Response {
        let replayed = appended.is_replay();
        let r = appended.result();
        let token = crate::consistency::ConsistencyToken {
            topic: topic.to_owned(),
            stream_id: r.stream_id.to_string(),
            version: r.stream_version.get(),
        }
        .encode();
        let status = if r.stream_version == StreamVersion::FIRST && !replayed {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = CommandAccepted {
            stream_id: r.stream_id.to_string(),
            stream_version: r.stream_version.get(),
            event_ids: r.event_ids.iter().map(|e| e.uuid()).collect(),
            global_position: r.global_position.get(),
            replayed,
            consistency_token: token.clone(),
        };
        let etag = HeaderValue::from_str(&format!("\"{}\"", r.stream_version))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(ETAG, etag);
        if let Ok(value) = HeaderValue::from_str(&token) {
            response
                .headers_mut()
                .insert(crate::consistency::HEADER, value);
        }
        response
    }
}

/// `/health/live` (the process answers), `/health/ready` (its database answers and,
/// under a supervisor, every part of `component` runs: see [`crate::health`]) and
/// `/metrics` (Prometheus), request metrics, and problem answers for unknown paths
/// and methods.
pub fn with_platform_routes(router: Router, component: &str, pool: Option<PgPool>) -> Router {
    crate::telemetry::init();
    let component = component.to_owned();
    let traced = component.clone();
    router
        .route("/metrics", get(crate::telemetry::render))
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/health/ready",
            get(move || {
                let (pool, component) = (pool.clone(), component.clone());
                async move {
                    let parts = crate::health::unhealthy_parts(&component);
                    if !parts.is_empty() {
                        return Err(Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            parts.join("; "),
                        ));
                    }
                    match pool {
                        None => Ok("ready"),
                        Some(pool) => match sqlx::query("SELECT 1").execute(&pool).await {
                            Ok(_) => Ok("ready"),
                            Err(e) => Err(Problem::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("database unavailable: {e}"),
                            )),
                        },
                    }
                }
            }),
        )
        .fallback(|| async { Problem::not_found("no such resource; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this resource; see /openapi.json",
            )
        })
        .layer(axum::middleware::from_fn(move |request, next| {
            trace_http(traced.clone(), request, next)
        }))
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Middleware: when spans are exported, each request runs in an `http` span, child
/// of the caller's `traceparent`, and the request's `traceparent` header is replaced
/// by the span's own, so the events a command appends carry it downstream.
async fn trace_http(
    component: String,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    if !crate::trace::enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        target: "sluice::trace",
        "http",
        otel.name = format!("{component} {} {route}", request.method()),
        otel.kind = "server",
        sluice.component = component.as_str(),
        sluice.hop = "http",
    );
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    crate::trace::follow(&span, incoming.as_deref());
    if let Some(own) = crate::trace::traceparent_of(&span) {
        if let Ok(value) = HeaderValue::from_str(&own) {
            request.headers_mut().insert("traceparent", value);
        }
    }
    next.run(request).instrument(span).await
}

/// Serves a router until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_shape_is_checked() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("00-xyz-00f067aa0ba902b7-01"));
    }

    #[test]
    fn if_match_must_be_a_version() {
        let mut h = HeaderMap::new();
        h.insert("if-match", HeaderValue::from_static("\"3\""));
        assert_eq!(
            parse_command_headers(&h).unwrap().expected_version,
            Some(StreamVersion::new(3).unwrap())
        );
        h.insert("if-match", HeaderValue::from_static("\"0\""));
        assert_eq!(parse_command_headers(&h).unwrap_err().status, 400);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Counted {
        n: i64,
    }

    async fn counted(body: &'static str) -> Result<i64, Problem> {
        let request = Request::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        Json::<Counted>::from_request(request, &())
            .await
            .map(|Json(c)| c.n)
    }

    /// Found by schemathesis: JSON Schema's `integer` admits `79.0`, which the
    /// typed fields refused (422) until whole numbers were read as integers.
    #[tokio::test]
    async fn whole_numbers_with_a_fraction_or_exponent_are_integers() {
        for (body, n) in [
            (r#"{"n": 79.0}"#, 79),
            (r#"{"n": 2e3}"#, 2000),
            (r#"{"n": -0.0}"#, 0),
            (r#"{"n": 9007199254740992.0}"#, 9_007_199_254_740_992),
            (r#"{"n": 9223372036854775807}"#, i64::MAX),
        ] {
            assert_eq!(counted(body).await.unwrap(), n, "{body}");
        }
        for body in [
            r#"{"n": 2.5}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 9007199254740994.0}"#,
        ] {
            assert_eq!(counted(body).await.unwrap_err().status, 422, "{body}");
        }
    }

    #[test]
    fn problems_are_declared_as_problem_json_with_the_extractors_statuses() {
        use utoipa::OpenApi;

        #[derive(serde::Deserialize, utoipa::ToSchema)]
        #[allow(dead_code)]
        struct Body {
            n: i64,
        }

        #[utoipa::path(post, path = "/things/{id}", request_body = Body,
            params(("id" = Uuid, Path), CommandHeaderParams),
            responses((status = 200, body = CommandAccepted), (status = 404, body = Problem)))]
        #[allow(dead_code)]
        fn post_thing() {}

        #[utoipa::path(get, path = "/things", responses((status = 200, body = CommandAccepted)))]
        #[allow(dead_code)]
        fn list_things() {}

        #[derive(OpenApi)]
        #[openapi(paths(post_thing, list_things), modifiers(&ProblemResponses))]
        struct Doc;

        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        let post = &doc["paths"]["/things/{id}"]["post"]["responses"];
        for status in ["400", "404", "413", "415", "422"] {
            let content = &post[status]["content"];
            assert_eq!(
                content[PROBLEM_CONTENT_TYPE]["schema"]["$ref"], "#/components/schemas/Problem",
                "{status}: {content}"
            );
            assert!(content.get("application/json").is_none(), "{status}");
            assert_ne!(post[status]["description"], "", "{status}");
        }
        assert!(post["200"]["content"]["application/json"].is_object());
        let get = &doc["paths"]["/things"]["get"]["responses"];
        assert!(
            get.get("400").is_none() && get.get("422").is_none(),
            "{get}"
        );
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        // Headers are absent or present, never null.
        for parameter in doc["paths"]["/things/{id}"]["post"]["parameters"]
            .as_array()
            .unwrap()
        {
            assert!(parameter["schema"]["type"].is_string(), "{parameter}");
        }
    }

    /// Exactly the declared pattern `^("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17})$`.
    #[test]
    fn if_match_is_a_quoted_or_bare_positive_version() {
        for (v, expected) in [
            ("\"3\"", 3),
            ("3", 3),
            ("\"999999999999999999\"", 999_999_999_999_999_999),
        ] {
            assert_eq!(
                parse_if_match(v),
                Some(StreamVersion::new(expected).unwrap())
            );
        }
        for bad in [
            "",
            "\"\"",
            "\"",
            "\"3",
            "3\"",
            "\"\"3\"\"",
            "+3",
            "03",
            "0",
            "-1",
            " 3",
            "3.0",
            "W/\"3\"",
            "*",
            "1000000000000000000",
            "9223372036854775807",
        ] {
            assert_eq!(parse_if_match(bad), None, "{bad:?}");
        }
    }
}

/// One stored event as the audit endpoints show it: the full envelope.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    #[schema(value_type = String)]
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub global_position: i64,
    pub event_type: String,
    pub schema_version: i32,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /<stream>/{id}/events`: a stream's events in version order, for audit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamEvents {
    pub stream_id: String,
    pub events: Vec<EventEnvelope>,
}

impl StreamEvents {
    /// Reads a stream for audit; 404 naming `noun` when it has no events.
    pub async fn read(store: &EventStore, id: Uuid, noun: &str) -> Result<Self, Problem> {
        let stream_id = crate::store::StreamId::from(id);
        let events = store.read_stream(&stream_id, StreamVersion::FIRST).await?;
        if events.is_empty() {
            return Err(Problem::not_found(format!("{noun} {id} not found")));
        }
        Ok(StreamEvents {
            stream_id: stream_id.to_string(),
            events: events
                .into_iter()
                .map(|e| EventEnvelope {
                    event_id: e.event_id.uuid(),
                    stream_id: e.stream_id.to_string(),
                    stream_type: e.stream_type,
                    stream_version: e.stream_version.get(),
                    global_position: e.global_position.get(),
                    event_type: e.event_type,
                    schema_version: e.schema_version,
                    payload: e.payload,
                    metadata: serde_json::to_value(&e.metadata).unwrap_or_default(),
                    recorded_at: e.recorded_at,
                })
                .collect(),
        })
    }
}
