use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;

use super::command::{is_traceparent, parse_command_headers, parse_if_match};
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
