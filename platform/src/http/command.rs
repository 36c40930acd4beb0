//! Commands over HTTP: the headers a command takes and the answer it gets.

use axum::extract::FromRequestParts;
use axum::http::header::ETAG;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::Problem;
use crate::aggregate::CommandContext;
use crate::store::{Appended, IdempotencyKey, Metadata, StreamVersion};

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

pub(super) fn parse_command_headers(headers: &HeaderMap) -> Result<CommandHeaders, Problem> {
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
pub(super) fn parse_if_match(v: &str) -> Option<StreamVersion> {
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
pub(super) fn is_traceparent(v: &str) -> bool {
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
