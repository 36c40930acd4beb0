//! One order's trace across the async boundary: `sluice up --otlp` exports its spans
//! to an OTLP/HTTP collector run in this test (protobuf decoded with the
//! OpenTelemetry project's own message types), and every hop is there with its
//! parent: the HTTP command below the caller's `traceparent`, the append below the
//! command, the relay's publish below the command, each consumer and the sink below
//! the publish, and the saga's next service below that.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use reqwest::StatusCode;
use sluice_platform::testing::drop_registry_databases;
use support::platform::Platform;
use uuid::Uuid;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    start: u64,
    end: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `POST /v1/traces` on a free loopback port; every span received is kept.
async fn collector() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body.as_ref())
                    .expect("an OTLP protobuf export");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        for s in scope.spans {
                            kept.push(Received {
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent_span_id: hex(&s.parent_span_id),
                                name: s.name,
                                start: s.start_time_unix_nano,
                                end: s.end_time_unix_nano,
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse.
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

#[tokio::test]
async fn one_orders_trace_reaches_the_collector_with_every_hop() {
    let (collector_url, spans) = collector().await;
    let mut platform = Platform::prepare();
    platform.spawn(&["up", "--otlp", &collector_url]);
    let client = reqwest::Client::new();
    platform.wait_all_ready(&client).await;
    // The caller's own span: the trace id is ours.
    let trace_id = Uuid::now_v7().simple().to_string();
    let caller = Uuid::now_v7().simple().to_string();
    // The random end of a v7 id.
    let caller_span = &caller[16..];
    let order_id = Uuid::now_v7();
    let response = client
        .post(platform.url("orders", "/orders"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&support::order(order_id, "c-traced", "TRACE-1", 1, 1500))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let find = |spans: &[Received], name: &str, parent: &str| -> Option<Received> {
        spans
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent)
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ours: Vec<Received> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let done = (|| {
            let http = find(&ours, "orders POST /orders", caller_span)?;
            find(&ours, "store.append", &http.span_id)?;
            let publish = find(&ours, "orders publish", &http.span_id)?;
            for hop in [
                "order_view consume",
                "customer_summary consume",
                "sku_sales consume",
                "payments_reactor consume",
                "shipping_reactor consume",
                "analytics load",
            ] {
                find(&ours, hop, &publish.span_id)?;
            }
            // The saga's next step, in another service, continues the trace: payments
            // publishes the authorization, and orders' reactor consumes it.
            let authorized = ours.iter().find(|s| s.name == "payments publish")?.clone();
            find(&ours, "orders_reactor consume", &authorized.span_id)?;
            Some(ours.clone())
        })();
        if let Some(ours) = done {
            for s in &ours {
                assert!(s.end >= s.start && s.start > 0, "{s:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trace is incomplete; received: {:#?}",
            ours.iter()
                .map(|s| format!("{} {} <- {}", s.name, s.span_id, s.parent_span_id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(platform.stop().code(), Some(0));
    drop_registry_databases(&platform.registry).await;
}
