//! Read-your-writes across the asynchronous boundary.
//!
//! A write command answers with a **consistency token** naming what it wrote: the
//! service's topic, the stream and the stream version after the command
//! (`orders.events:<stream id>:<version>`, also in the `X-Consistency-Token`
//! header). A query to a projection that sends the token back in
//! `X-Consistency-Token` waits (bounded, `SLUICE_CONSISTENCY_WAIT_MS`, default 2000)
//! until the projection has applied that stream up to that version — the consumer
//! runtime's `stream_positions` says so — and then answers. Past the bound it answers
//! 503 with `Retry-After` rather than stale data.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::http::Problem;

/// The header carrying a consistency token, both ways.
pub const HEADER: &str = "x-consistency-token";

/// What a write made: its stream at a version, on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub topic: String,
    pub stream_id: String,
    pub version: i64,
}

/// A header value that is not a consistency token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The value is not `topic:stream id:version` with a version from 1.
    #[error("`{0}` is not a consistency token (topic:stream:version)")]
    Malformed(String),
    /// The header value is not ASCII.
    #[error("X-Consistency-Token must be ASCII")]
    NotAscii,
}

impl ConsistencyToken {
    /// `topic:stream id:version`, as the write APIs answer it.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.topic, self.stream_id, self.version)
    }

    /// Parses `topic:stream id:version` (the stream id may itself contain `:`).
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let invalid = || TokenError::Malformed(token.to_owned());
        let (topic, rest) = token.split_once(':').ok_or_else(invalid)?;
        let (stream_id, version) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let version: i64 = version.parse().map_err(|_| invalid())?;
        if topic.is_empty() || stream_id.is_empty() || version < 1 {
            return Err(invalid());
        }
        Ok(ConsistencyToken {
            topic: topic.to_owned(),
            stream_id: stream_id.to_owned(),
            version,
        })
    }
}

fn wait_bound() -> Duration {
    std::env::var("SLUICE_CONSISTENCY_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(2000), Duration::from_millis)
}

/// Middleware for a projection's query API: holds a request that carries
/// `X-Consistency-Token` until the projection has applied the tokens' writes.
pub async fn wait_for_token(State(pool): State<PgPool>, request: Request, next: Next) -> Response {
    let tokens: Result<Vec<ConsistencyToken>, TokenError> = request
        .headers()
        .get_all(HEADER)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| TokenError::NotAscii)
                .and_then(ConsistencyToken::parse)
        })
        .collect();
    let tokens = match tokens {
        Ok(t) => t,
        Err(e) => return Problem::bad_request(e.to_string()).into_response(),
    };
    let deadline = Instant::now() + wait_bound();
    for token in &tokens {
        loop {
            let applied: Option<i64> = match sqlx::query_scalar(
                "SELECT version FROM stream_positions WHERE topic = $1 AND stream_id = $2",
            )
            .bind(&token.topic)
            .bind(&token.stream_id)
            .fetch_optional(&pool)
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    return Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("database unavailable: {e}"),
                    )
                    .into_response()
                }
            };
            if applied.unwrap_or(0) >= token.version {
                break;
            }
            if Instant::now() >= deadline {
                let mut response = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the read model has not caught up with {} version {} of {} yet; retry shortly",
                        token.stream_id, token.version, token.topic
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                crate::telemetry::consistency_wait(false);
                return response;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if !tokens.is_empty() {
        crate::telemetry::consistency_wait(true);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_even_with_colons_in_the_stream_id() {
        let t = ConsistencyToken {
            topic: "orders.events".into(),
            stream_id: "a:b".into(),
            version: 3,
        };
        assert_eq!(ConsistencyToken::parse(&t.encode()), Ok(t));
        for bad in [
            "",
            "orders.events",
            "orders.events:x",
            "orders.events:x:0",
            ":x:1",
            "t::1",
        ] {
            assert!(ConsistencyToken::parse(bad).is_err(), "{bad}");
        }
    }
}
