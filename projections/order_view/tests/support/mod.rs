//! The view on a fresh database and a random port, and events to feed it.
//!
//! Events are built as JSON and sent through the services' Avro contracts (encode,
//! then decode) before the handler sees them, exactly as the consumer runtime
//! delivers them: a fixture that breaks a contract fails here, not in production.

#![allow(dead_code)]

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::registry::ComponentKind;
use sluice_platform::store::{Metadata, StreamId, StreamVersion};
use sluice_platform::testing::TestDatabase;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The projection's database and query API, running.
pub struct View {
    pub pool: PgPool,
    pub address: String,
    pub client: reqwest::Client,
    handler: Box<dyn EventHandler>,
    /// The services' event schemas, which events are carried through.
    catalog: SchemaCatalog,
    /// The last version built of each stream.
    versions: HashMap<Uuid, i64>,
    /// The last offset (and global position) given out.
    position: i64,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    // Last: dropped after the pool's users.
    _db: TestDatabase,
}

impl View {
    /// Provisions and migrates a database the way `sluice run order_view` does and
    /// serves the query API with the platform routes on 127.0.0.1:0.
    pub async fn spawn() -> Self {
        let db = TestDatabase::provision("order_view", ComponentKind::Projection).await;
        db.migrate(vec![
            sluice_platform::consumer::migrator(),
            sluice_order_view::migrator(),
        ])
        .await;
        let pool = db.app_pool().await;
        let router = sluice_platform::http::with_platform_routes(
            (sluice_order_view::PROJECTION.router)(pool.clone()),
            "order_view",
            Some(pool.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind random port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(sluice_platform::http::serve(
            listener,
            router,
            shutdown.clone(),
        ));
        View {
            pool,
            address,
            client: reqwest::Client::new(),
            handler: (sluice_order_view::PROJECTION.handler)(),
            catalog: services_catalog(),
            versions: HashMap::new(),
            position: 0,
            shutdown,
            server,
            _db: db,
        }
    }

    /// Applies one event in its own transaction, as the runtime does.
    pub async fn try_apply(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await.expect("begin");
        self.handler.apply(&mut tx, event).await?;
        tx.commit().await.expect("commit");
        Ok(())
    }

    /// Applies events set-wise in one transaction (the runtime's fast path).
    pub async fn try_apply_batch(&self, events: &[ConsumedEvent]) -> Result<(), HandlerError> {
        let refs: Vec<&ConsumedEvent> = events.iter().collect();
        let mut tx = self.pool.begin().await.expect("begin");
        self.handler.apply_batch(&mut tx, &refs).await?;
        tx.commit().await.expect("commit");
        Ok(())
    }

    /// Every row, as JSON, in order id order.
    pub async fn rows(&self) -> Vec<Value> {
        sqlx::query_scalar("SELECT to_jsonb(v) FROM order_view v ORDER BY order_id")
            .fetch_all(&self.pool)
            .await
            .expect("read order_view")
    }

    /// Applies an event that must apply.
    pub async fn apply(&self, event: &ConsumedEvent) {
        self.try_apply(event)
            .await
            .unwrap_or_else(|e| panic!("{} refused: {e}", event.event_type));
    }

    /// Builds an event of `stream` (see [`View::event`]) and applies it.
    pub async fn feed(&mut self, event_type: &str, stream: Uuid, payload: Value, at: i64) {
        let event = self.event(event_type, stream, payload, at);
        self.apply(&event).await;
    }

    /// The next event of `stream` (consecutive versions per stream, consecutive
    /// offsets and global positions), recorded at second `at`, without applying it.
    /// A known event type's payload goes through its Avro contract first; another is
    /// passed as it is.
    pub fn event(
        &mut self,
        event_type: &str,
        stream: Uuid,
        payload: Value,
        at: i64,
    ) -> ConsumedEvent {
        let (payload, schema_version) = if self.catalog.latest(event_type).is_some() {
            let version = self
                .catalog
                .validate_latest(event_type, &payload)
                .unwrap_or_else(|e| panic!("{event_type} fixture breaks its contract: {e}"));
            let bytes = self
                .catalog
                .encode_single_object(event_type, version, &payload)
                .expect("encode");
            let decoded = self.catalog.decode_single_object(&bytes).expect("decode");
            (decoded.payload, decoded.schema_version)
        } else {
            (payload, 1)
        };
        let version = self.versions.entry(stream).or_insert(0);
        *version += 1;
        self.position += 1;
        let (topic, stream_type) = if event_type.starts_with("Order") {
            ("orders.events", "order")
        } else if event_type.starts_with("Payment") {
            ("payments.events", "payment")
        } else if event_type.starts_with("Shipment") {
            ("shipping.events", "shipment")
        } else {
            ("other.events", "other")
        };
        ConsumedEvent {
            topic: topic.to_owned(),
            partition: 0,
            offset: self.position,
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version,
            stream_id: StreamId::from(stream),
            stream_type: stream_type.to_owned(),
            stream_version: StreamVersion::new(*version).expect("versions count from 1"),
            global_position: self.position,
            payload,
            metadata: Metadata::default(),
            recorded_at: self::at(at),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// `GET path`, which must answer 200; its JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// The order's row, which must exist.
    pub async fn order(&self, order_id: Uuid) -> Value {
        self.get_ok(&format!("/orders/{order_id}")).await
    }

    /// Places `order_id` for `customer_id` at second `at`: two lines, total 2 800.
    pub async fn place(&mut self, order_id: Uuid, customer_id: &str, at: i64) {
        self.feed("OrderPlaced", order_id, placed(order_id, customer_id), at)
            .await;
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.server.abort();
    }
}

/// `OrderPlaced` of two lines (2 × 1 250 + 1 × 300 = 2 800 EUR cents).
pub fn placed(order_id: Uuid, customer_id: &str) -> Value {
    json!({
        "order_id": order_id, "customer_id": customer_id, "currency": "EUR",
        "lines": [
            { "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 }
        ],
        "total_minor": 2800
    })
}

/// The instant `seconds` after a fixed origin: timestamps tests can name.
pub fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_900_000, 0).expect("origin") + Duration::seconds(seconds)
}

/// A JSON timestamp of the API as an instant.
pub fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .with_timezone(&Utc)
}

/// The orders, payments and shipping services' event schemas.
fn services_catalog() -> SchemaCatalog {
    let sources = sluice_orders::schemas()
        .into_iter()
        .chain(sluice_payments::schemas())
        .chain(sluice_shipping::schemas());
    SchemaCatalog::new(sources).expect("the services' schemas")
}
