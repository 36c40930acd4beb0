//! Extractors that turn bad input into problems: JSON bodies and ids in the path.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::{Problem, MAX_BODY_BYTES};

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
