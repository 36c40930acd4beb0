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
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
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
/// missing fields, wrong types), 413 over [`MAX_BODY_BYTES`].
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

/// Headers that shape a command: `Idempotency-Key`, `If-Match` (the stream version
/// the client saw), `X-Correlation-Id`, `traceparent`, `X-Actor`.
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
            v.trim()
                .trim_matches('"')
                .parse::<i64>()
                .ok()
                .and_then(|n| StreamVersion::new(n).ok())
                .ok_or_else(|| {
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
            event_ids: r.event_ids.iter().map(|e| e.0).collect(),
            global_position: r.global_position.0,
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

/// `/health/live` (the process answers), `/health/ready` (its database answers) and
/// `/metrics` (Prometheus), request metrics, and problem answers for unknown paths
/// and methods.
pub fn with_platform_routes(router: Router, pool: Option<PgPool>) -> Router {
    crate::telemetry::init();
    router
        .route("/metrics", get(crate::telemetry::render))
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/health/ready",
            get(move || {
                let pool = pool.clone();
                async move {
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
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
                    event_id: e.event_id.0,
                    stream_id: e.stream_id.to_string(),
                    stream_type: e.stream_type,
                    stream_version: e.stream_version.get(),
                    global_position: e.global_position.0,
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
