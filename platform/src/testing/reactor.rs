//! Reactors in tests: a service's reactor over its own database fed events by
//! hand, what a service knows of orders, and the skip counter.

use sqlx::PgPool;

use super::{consumed_event, service_context, TestDatabase};

/// Asserts that `service`'s reactor counted a skipped reaction to `event_type` for
/// `reason` in `sluice_reactor_reactions_skipped_total` (process-wide, so other tests
/// may have added to it: at least one).
pub fn assert_skip_counted(service: &str, event_type: &str, reason: &str) {
    let metrics = crate::telemetry::render_text();
    let labels = [
        format!("service=\"{service}\""),
        format!("event_type=\"{event_type}\""),
        format!("reason=\"{reason}\""),
    ];
    let counted = metrics.lines().any(|line| {
        line.starts_with("sluice_reactor_reactions_skipped_total{")
            && labels.iter().all(|l| line.contains(l.as_str()))
            && line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 1.0)
    });
    assert!(counted, "{metrics}");
}

/// A write service's reactor over its own fresh database, fed events by hand as the
/// consumer runtime would.
pub struct TestReactor {
    _db: TestDatabase,
    pub pool: PgPool,
    pub store: crate::store::EventStore,
    handler: Box<dyn crate::consumer::EventHandler>,
}

impl TestReactor {
    /// Provisions and migrates the service's database and builds its reactor.
    pub async fn start(service: &crate::service::WriteService) -> Self {
        crate::telemetry::init();
        let db = TestDatabase::for_service(service).await;
        let pool = db.app_pool().await;
        let store = crate::store::EventStore::new(pool.clone());
        let reactor = service.reactor.expect("the service has a reactor");
        let handler = reactor(&service_context(service, &store)).expect("the service's reactor");
        TestReactor {
            _db: db,
            pool,
            store,
            handler,
        }
    }

    /// Applies `event` inside a consumer transaction, as the runtime does.
    pub async fn apply(
        &self,
        event: &crate::consumer::ConsumedEvent,
    ) -> Result<(), crate::consumer::HandlerError> {
        let mut tx = self.pool.begin().await.expect("begin");
        let result = self.handler.apply(&mut tx, event).await;
        tx.commit().await.expect("commit");
        result
    }

    /// A stream of the service's store.
    pub async fn stream(&self, id: uuid::Uuid) -> Vec<crate::store::RecordedEvent> {
        self.store
            .read_stream(
                &crate::store::StreamId::from(id),
                crate::store::StreamVersion::FIRST,
            )
            .await
            .expect("read stream")
    }

    /// Events in the service's store.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }
}

/// Tells a service's `known_orders` (through [`crate::saga::learn`], as its reactor
/// does) of a new order placed in `currency` for `total_minor`, then of each of `then`
/// ("OrderConfirmed", "OrderCancelled") in turn. Returns the order id.
pub async fn teach_order(
    pool: &sqlx::PgPool,
    currency: &str,
    total_minor: i64,
    then: &[&str],
) -> uuid::Uuid {
    let order_id = uuid::Uuid::now_v7();
    tell_of_order(pool, order_id, currency, total_minor, then).await;
    order_id
}

/// [`teach_order`] of a given order id.
pub async fn tell_of_order(
    pool: &sqlx::PgPool,
    order_id: uuid::Uuid,
    currency: &str,
    total_minor: i64,
    then: &[&str],
) {
    let placed = serde_json::json!({
        "order_id": order_id, "customer_id": "cust-1", "currency": currency,
        "lines": [{ "sku": "BOOK-1", "quantity": 1, "unit_price_minor": total_minor }],
        "total_minor": total_minor,
    });
    let mut events = vec![consumed_event(
        "orders.events",
        "order",
        order_id.to_string(),
        1,
        "OrderPlaced",
        placed,
        crate::store::Metadata::default(),
    )];
    for (i, event_type) in then.iter().enumerate() {
        events.push(consumed_event(
            "orders.events",
            "order",
            order_id.to_string(),
            i as i64 + 2,
            event_type,
            serde_json::json!({ "order_id": order_id, "reason": "changed my mind" }),
            crate::store::Metadata::default(),
        ));
    }
    let mut tx = pool.begin().await.expect("begin");
    for event in &events {
        crate::saga::learn(&mut tx, event)
            .await
            .expect("learn the order");
    }
    tx.commit().await.expect("commit");
}
