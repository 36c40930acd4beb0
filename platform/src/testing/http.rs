//! HTTP assertions every service's API tests share: tables of bad input, the
//! request-level problems (a malformed id or `If-Match`, a wrong method), a stale
//! `If-Match`, unknown resources, the OpenAPI document with the health probes, and
//! the requests the tests send to get there.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::TestApp;

/// One bad input: a body, how it is declared, and the problem it must get.
struct BadInput {
    body: String,
    content_type: &'static str,
    status: StatusCode,
    needle: String,
}

/// Bad inputs to one command endpoint (`POST path`), around a body it accepts; each
/// is refused with its problem and nothing is appended ([`BadInputs::assert_refused`]).
///
/// Every table starts with what every JSON endpoint refuses alike: JSON cut short
/// (400), a body not declared as JSON (415), an unknown field (422) and a body over
/// the size limit (413).
pub struct BadInputs<'a> {
    app: &'a TestApp,
    path: String,
    valid: Value,
    cases: Vec<BadInput>,
}

impl<'a> BadInputs<'a> {
    /// The table for `POST path` of `app`; `valid` is a body the endpoint accepts (a
    /// JSON object).
    pub fn around(app: &'a TestApp, path: impl Into<String>, valid: Value) -> Self {
        let text = valid.to_string();
        let cut: String = text.chars().take(text.chars().count() / 2).collect();
        let table = BadInputs {
            app,
            path: path.into(),
            valid,
            cases: Vec::new(),
        };
        table
            .raw(cut, "application/json", StatusCode::BAD_REQUEST, "json")
            .raw(
                text,
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
            )
            .invalid(|b| b["colour"] = json!("red"), "unknown field `colour`")
            .case(
                |b| b["padding"] = json!("x".repeat(100 * 1024)),
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than the limit",
            )
    }

    /// The valid body changed by `change`: `status`, its detail mentioning `needle`.
    pub fn case(
        mut self,
        change: impl FnOnce(&mut Value),
        status: StatusCode,
        needle: &str,
    ) -> Self {
        let mut body = self.valid.clone();
        change(&mut body);
        self.cases.push(BadInput {
            body: body.to_string(),
            content_type: "application/json",
            status,
            needle: needle.to_owned(),
        });
        self
    }

    /// The valid body changed by `change`: 422, its detail mentioning `needle`.
    pub fn invalid(self, change: impl FnOnce(&mut Value), needle: &str) -> Self {
        self.case(change, StatusCode::UNPROCESSABLE_ENTITY, needle)
    }

    /// The valid body without its field `field`: 422, ``missing field `field` ``.
    pub fn without(self, field: &str) -> Self {
        let needle = format!("missing field `{field}`");
        self.invalid(
            |b| {
                b.as_object_mut().map(|o| o.remove(field));
            },
            &needle,
        )
    }

    /// `body` sent as it is, declared as `content_type`: `status` mentioning `needle`.
    pub fn raw(
        mut self,
        body: impl Into<String>,
        content_type: &'static str,
        status: StatusCode,
        needle: &str,
    ) -> Self {
        self.cases.push(BadInput {
            body: body.into(),
            content_type,
            status,
            needle: needle.to_owned(),
        });
        self
    }

    /// Sends every case: each answer is its problem, and the store holds as many
    /// events afterwards as before.
    ///
    /// # Panics
    ///
    /// On the first case answered otherwise, naming its body.
    pub async fn assert_refused(self) {
        let before = self.app.event_count().await;
        let client = Client::new();
        for case in self.cases {
            let response = client
                .post(self.app.url(&self.path))
                .header("content-type", case.content_type)
                .body(case.body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(
                response.status(),
                case.status,
                "POST {} with {}",
                self.path,
                case.body.chars().take(200).collect::<String>()
            );
            assert_problem(response, case.status, &case.needle).await;
        }
        assert_eq!(
            self.app.event_count().await,
            before,
            "a refused command appended events"
        );
    }
}

/// The request-level problems of a resource collection (`/orders`) whose commands
/// are `POST <collection>/{id}/<command>`: an id that is not a UUID (400, on the
/// state, the events and each command), an `If-Match` that is not a version (400)
/// and a method the collection does not take (405). Nothing is appended.
pub async fn assert_malformed_requests_refused(app: &TestApp, collection: &str, commands: &[&str]) {
    let before = app.event_count().await;
    let client = Client::new();
    let bad_request = StatusCode::BAD_REQUEST;
    for path in [
        format!("{collection}/12345"),
        format!("{collection}/12345/events"),
    ] {
        let response = client.get(app.url(&path)).send().await.expect("send");
        assert_problem(response, bad_request, "not a valid id").await;
    }
    for command in commands {
        let path = format!("{collection}/12345/{command}");
        let response = post_json(app, &path, &json!({})).await;
        assert_problem(response, bad_request, "not a valid id").await;
        let response = client
            .post(app.url(&format!("{collection}/{}/{command}", uuid::Uuid::now_v7())))
            .header("If-Match", "latest")
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        assert_problem(response, bad_request, "If-Match").await;
    }
    let wrong_method = client
        .delete(app.url(collection))
        .send()
        .await
        .expect("send");
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method").await;
    assert_eq!(app.event_count().await, before);
}

/// `POST path` of `app` with `body` as JSON.
pub async fn post_json(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    Client::new()
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .expect("send")
}

/// `POST path` of `app` with `body` as JSON, conditional on the stream being at
/// `version` (`If-Match: "<version>"`).
pub async fn post_json_if_match(
    app: &TestApp,
    path: &str,
    version: i64,
    body: &Value,
) -> reqwest::Response {
    Client::new()
        .post(app.url(path))
        .header("If-Match", format!("\"{version}\""))
        .json(body)
        .send()
        .await
        .expect("send")
}

/// `POST path` of `app` with `body`, which must create its stream (201). Returns
/// the answer.
pub async fn post_created(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = post_json(app, path, body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
    response.json().await.expect("a command answer")
}

/// `GET path` of `app`, which must answer 200.
async fn get_ok(app: &TestApp, path: &str) -> reqwest::Response {
    let response = Client::new().get(app.url(path)).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response
}

/// `GET path` of `app`, which must answer 200 with JSON. Returns the body.
pub async fn get_json(app: &TestApp, path: &str) -> Value {
    get_ok(app, path).await.json().await.expect("a JSON body")
}

/// `GET path` of `app`, which must answer 200. Returns the body as text.
pub async fn get_text(app: &TestApp, path: &str) -> String {
    get_ok(app, path).await.text().await.expect("a text body")
}

/// The events of the audit stream at `path` (`GET <collection>/{id}/events`).
pub async fn audit_events(app: &TestApp, path: &str) -> Vec<Value> {
    let audit = get_json(app, path).await;
    audit["events"].as_array().expect("an events array").clone()
}

/// The `event_type` of each of `events` (as [`audit_events`] returns them), in order.
pub fn event_types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().expect("an event type"))
        .collect()
}

/// Asserts a command answer that appended up to `version`: 200, that version as
/// its `ETag` and its `stream_version`. Returns the answer.
pub async fn assert_accepted_at(response: reqwest::Response, version: i64) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["etag"],
        format!("\"{version}\"").as_str()
    );
    let answer: Value = response.json().await.expect("a command answer");
    assert_eq!(answer["stream_version"], version);
    answer
}

/// Sends `POST path` with `body` under `If-Match: "1"` to a stream that has moved
/// past version 1: refused with 409 naming the version, and the store still holds
/// `events` events.
pub async fn assert_stale_if_match_refused(app: &TestApp, path: &str, body: &Value, events: i64) {
    let stale = post_json_if_match(app, path, 1, body).await;
    assert_problem(stale, StatusCode::CONFLICT, "version 1").await;
    assert_eq!(
        app.event_count().await,
        events,
        "{path}: a stale command appended"
    );
}

/// An id that `collection` (`/orders`) has no stream for: each of `commands` (a
/// command name and a body it accepts) is 404 "`<noun> not found`", its state and its
/// events are 404 "`<noun> <id> not found`", and a path the API does not serve is 404
/// "no such resource". The store holds no events afterwards.
pub async fn assert_unknown_not_found(
    app: &TestApp,
    collection: &str,
    noun: &str,
    commands: &[(&str, Value)],
) {
    let client = Client::new();
    let id = uuid::Uuid::now_v7();
    for (command, body) in commands {
        let response = post_json(app, &format!("{collection}/{id}/{command}"), body).await;
        assert_problem(
            response,
            StatusCode::NOT_FOUND,
            &format!("{noun} not found"),
        )
        .await;
    }
    for path in [
        format!("{collection}/{id}"),
        format!("{collection}/{id}/events"),
    ] {
        let response = client.get(app.url(&path)).send().await.expect("send");
        assert_problem(
            response,
            StatusCode::NOT_FOUND,
            &format!("{noun} {id} not found"),
        )
        .await;
    }
    let nowhere = client.get(app.url("/nowhere")).send().await.expect("send");
    assert_problem(nowhere, StatusCode::NOT_FOUND, "no such resource").await;
    assert_eq!(app.event_count().await, 0);
}

/// `app` serves an OpenAPI 3 document with the paths of a resource collection
/// (`/orders`) whose commands are `POST <collection>/{id}/<command>`: the collection,
/// each of `commands`, the state (`<collection>/{id}`) and the events
/// (`<collection>/{id}/events`); it has each of `schemas`, and `app` answers both
/// health probes. Returns the document for further checks.
pub async fn assert_serves_openapi_and_health(
    app: &TestApp,
    collection: &str,
    commands: &[&str],
    schemas: &[&str],
) -> Value {
    let resource = format!("{collection}/{{id}}");
    let mut paths = vec![collection.to_owned(), resource.clone()];
    paths.extend(commands.iter().map(|c| format!("{resource}/{c}")));
    paths.push(format!("{resource}/events"));
    let client = Client::new();
    let doc: Value = client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("an OpenAPI document");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        doc["openapi"]
    );
    for path in &paths {
        assert!(doc["paths"][path].is_object(), "missing path {path}");
    }
    for schema in schemas {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "missing schema {schema}"
        );
    }
    for probe in ["/health/live", "/health/ready"] {
        let response = client.get(app.url(probe)).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
    doc
}

/// Asserts a problem answer (`application/problem+json`) with `status` whose detail
/// mentions `needle` (case-insensitively).
pub async fn assert_problem(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    needle: &str,
) {
    assert_eq!(
        response.status(),
        status,
        "expected {status} mentioning `{needle}`"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    let detail = body["detail"].as_str().expect("problem detail");
    assert!(
        detail.to_lowercase().contains(&needle.to_lowercase()),
        "detail `{detail}` should mention `{needle}`"
    );
}

/// Sends the same command twice with one `Idempotency-Key`: the first answer is
/// `first_status`, the second is 200 with `"replayed": true` and the same stream and
/// event ids, and the store holds `events_after` events. Returns the first answer.
pub async fn assert_idempotent_retry(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &serde_json::Value,
    first_status: reqwest::StatusCode,
    events_after: i64,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(app.url(path))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
    };
    let first = send().await.expect("first attempt");
    assert_eq!(first.status(), first_status, "{path}");
    let first: serde_json::Value = first.json().await.expect("first answer");
    assert_eq!(first["replayed"], false);
    let second = send().await.expect("retry");
    assert_eq!(second.status(), reqwest::StatusCode::OK, "{path} retry");
    let second: serde_json::Value = second.json().await.expect("retry answer");
    assert_eq!(second["replayed"], true);
    assert_eq!(first["stream_id"], second["stream_id"]);
    assert_eq!(first["event_ids"], second["event_ids"]);
    assert_eq!(
        app.event_count().await,
        events_after,
        "{path}: the retry appended"
    );
    first
}

/// Sends another command under an `Idempotency-Key` already used: refused with 422,
/// and the store still holds `events` events.
pub async fn assert_key_reuse_refused(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &serde_json::Value,
    events: i64,
) {
    let response = reqwest::Client::new()
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    assert_problem(
        response,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency key",
    )
    .await;
    assert_eq!(
        app.event_count().await,
        events,
        "{path}: a reused key appended"
    );
}
