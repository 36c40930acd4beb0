//! HTTP plumbing shared by every component: RFC 9457 problem responses, extractors
//! that turn bad input into problems, command headers, health endpoints, and serving
//! with graceful shutdown.
//!
//! Every error a client can cause is answered here, in one place, as
//! `application/problem+json` with a message a person can act on.
//!
//! By job: `problem` (the problems and their OpenAPI declaration), `extract` (JSON
//! bodies and path ids) and `command` (command headers and answers).

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{EventStore, StreamVersion};

mod command;
mod extract;
mod problem;
#[cfg(test)]
mod tests;

pub use command::{CommandAccepted, CommandHeaderParams, CommandHeaders};
pub use extract::{Json, PathId};
pub use problem::{Problem, ProblemResponses, PROBLEM_CONTENT_TYPE};

/// Largest request body a component accepts (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
