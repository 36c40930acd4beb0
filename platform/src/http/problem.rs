//! RFC 9457 problems: the answer to every error a client can cause, and their
//! declaration in the OpenAPI documents.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::aggregate::{CommandError, DomainError, Rejection};
use crate::store::StoreError;

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
/// - an operation with parameters declares 400, as [`PathId`](super::PathId), [`CommandHeaders`](super::CommandHeaders) and
///   the query extractors answer a malformed one;
/// - an operation with a request body declares what [`Json`](super::Json) answers: 400 (malformed
///   JSON), 413 (over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)), 415 (not `application/json`) and 422
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

/// Whether `content` is a [`Problem`] body.
fn is_problem(content: &utoipa::openapi::Content) -> bool {
    use utoipa::openapi::RefOr;
    matches!(
        &content.schema,
        Some(RefOr::Ref(r)) if r.ref_location == "#/components/schemas/Problem"
    )
}
