//! What the projections' query APIs share: their `/openapi.json` route, and how
//! they read a page size from a query string.

use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use utoipa::openapi::OpenApi;

/// A projection's query API over its read model's `pool`: `routes`, and
/// `/openapi.json` answering `doc`.
pub fn query_api(routes: Router<PgPool>, doc: OpenApi, pool: PgPool) -> Router {
    routes
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .with_state(pool)
}

/// A page size given as a query parameter that is no whole number from 1 to `max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number from 1 to {max}, got `{raw}`")]
pub struct PageLimitError {
    /// The parameter's text as given.
    pub raw: String,
    /// The largest page the API serves.
    pub max: i64,
}

/// A page size given as a query parameter: `default` when the parameter is absent,
/// the number when it is a whole number from 1 to `max`. Otherwise an error to
/// prefix with the parameter's name in the caller's problem.
pub fn page_limit(raw: Option<String>, default: i64, max: i64) -> Result<i64, PageLimitError> {
    match raw {
        None => Ok(default),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(PageLimitError { raw, max }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{page_limit, PageLimitError};

    #[test]
    fn a_page_limit_is_a_whole_number_from_one_to_the_maximum_or_the_default() {
        assert_eq!(page_limit(None, 10, 100), Ok(10));
        assert_eq!(page_limit(Some("1".into()), 10, 100), Ok(1));
        assert_eq!(page_limit(Some("100".into()), 10, 100), Ok(100));
        for bad in ["0", "101", "-1", "ten", "", "1.5"] {
            let error = page_limit(Some(bad.into()), 10, 100).unwrap_err();
            assert_eq!(
                error,
                PageLimitError {
                    raw: bad.to_owned(),
                    max: 100
                }
            );
            assert_eq!(
                error.to_string(),
                format!("must be a whole number from 1 to 100, got `{bad}`")
            );
        }
    }
}
