//! A projection in tests: its read model migrated on a fresh database, its handler
//! applying events in transactions as the consumer runtime does, and its query API
//! served on a random port. Events can be carried through the services' real Avro
//! contracts ([`repository_catalog`]), so a test payload that breaks a contract
//! fails the test instead of passing a handler what no producer could send.

use std::collections::HashMap;
use std::path::Path;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{consumed_event, TestDatabase};
use crate::avro::{SchemaCatalog, SchemaSource};
use crate::consumer::{ConsumedEvent, EventHandler, HandlerError};
use crate::projection::ProjectionService;
use crate::registry::ComponentKind;

/// Every event schema of the repository (`schemas/<service>/<EventType>/v<N>.avsc`),
/// read from the tree.
pub fn repository_catalog() -> SchemaCatalog {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let mut sources = Vec::new();
    for service in std::fs::read_dir(&root).expect("the repository's schemas/") {
        let dir = service.expect("a schemas/ entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in sluice_build::schema_files(&dir).expect("the service's schema files") {
            let text = std::fs::read_to_string(&file.path).expect("a schema file");
            sources.push(SchemaSource::owned(file.event_type, file.version, text));
        }
    }
    SchemaCatalog::new(sources).expect("the repository's schemas")
}

/// A projection over a fresh database, fed events by hand.
pub struct TestProjection {
    /// The app role's pool on the read model's database.
    pub pool: PgPool,
    handler: Box<dyn EventHandler>,
    address: String,
    client: Client,
    catalog: Option<SchemaCatalog>,
    /// The last version built of each stream.
    versions: HashMap<String, i64>,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl TestProjection {
    /// Provisions and migrates `projection`'s database, builds its handler and
    /// serves its query API (with the platform's routes) on a random port.
    pub async fn start(projection: &ProjectionService) -> Self {
        crate::telemetry::init();
        let db = TestDatabase::provision(projection.name, ComponentKind::Projection).await;
        db.migrate(vec![crate::consumer::migrator(), (projection.migrator)()])
            .await;
        let pool = db.app_pool().await;
        let router = crate::http::with_platform_routes(
            (projection.router)(pool.clone()),
            projection.name,
            Some(pool.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::http::serve(listener, router, shutdown.clone()));
        TestProjection {
            pool,
            handler: (projection.handler)(),
            address,
            client: Client::new(),
            catalog: None,
            versions: HashMap::new(),
            shutdown,
            _db: db,
        }
    }

    /// Carries every [`event`](Self::event) through `catalog`'s Avro encoding: the
    /// payload is validated against its event type's latest schema, encoded as the
    /// relay publishes it and decoded as the consumer runtime reads it.
    pub fn through(mut self, catalog: SchemaCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The next event of `stream` (one version past the last built for it) on
    /// `topic`, as the consumer runtime hands it over.
    ///
    /// # Panics
    ///
    /// With a catalog ([`through`](Self::through)), when the payload does not fit
    /// its event type's contract: build such an event with
    /// [`off_contract`](Self::off_contract).
    pub fn event(
        &mut self,
        topic: &str,
        stream_type: &str,
        stream: impl ToString,
        event_type: &str,
        payload: Value,
    ) -> ConsumedEvent {
        let mut event = self.off_contract(topic, stream_type, stream, event_type, payload);
        if let Some(catalog) = &self.catalog {
            let version = catalog
                .validate_latest(event_type, &event.payload)
                .unwrap_or_else(|e| broken(event_type, e));
            let bytes = catalog
                .encode_single_object(event_type, version, &event.payload)
                .unwrap_or_else(|e| broken(event_type, e));
            let decoded = catalog
                .decode_single_object(&bytes)
                .unwrap_or_else(|e| broken(event_type, e));
            event.schema_version = decoded.schema_version;
            event.payload = decoded.payload;
        }
        event
    }

    /// The next event of `stream` with `payload` as it is, whatever the contracts
    /// say: an event type no schema has, a payload missing a field.
    pub fn off_contract(
        &mut self,
        topic: &str,
        stream_type: &str,
        stream: impl ToString,
        event_type: &str,
        payload: Value,
    ) -> ConsumedEvent {
        let stream = stream.to_string();
        let version = self.versions.entry(stream.clone()).or_insert(0);
        *version += 1;
        consumed_event(
            topic,
            stream_type,
            stream,
            *version,
            event_type,
            payload,
            Default::default(),
        )
    }

    /// Applies `event` in a transaction of its own, committed when the handler
    /// succeeds (and rolled back when it does not), as the runtime does.
    pub async fn try_apply(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await.expect("begin");
        self.handler.apply(&mut tx, event).await?;
        tx.commit().await.expect("commit");
        Ok(())
    }

    /// [`try_apply`](Self::try_apply), panicking when the handler refuses.
    pub async fn apply(&self, event: &ConsumedEvent) {
        self.try_apply(event)
            .await
            .unwrap_or_else(|e| panic!("{} refused: {e}", event.event_type));
    }

    /// Applies `event`, which the handler must refuse as poison (dead-lettered at
    /// once, nothing of it committed) for a reason naming `naming`; returns the
    /// reason.
    pub async fn assert_poison(&self, event: &ConsumedEvent, naming: &str) -> String {
        match self.try_apply(event).await {
            Err(HandlerError::Poison(reason)) => {
                assert!(reason.contains(naming), "{reason} does not name {naming}");
                reason
            }
            other => panic!("{} should be poison, got {other:?}", event.event_type),
        }
    }

    /// `GET path` on the query API.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("send")
    }

    /// `GET path` answered 200, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Rows of a read-model table.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count rows")
    }
}

/// A test event that does not fit its contract: the test's own mistake.
fn broken(event_type: &str, e: crate::avro::AvroError) -> ! {
    panic!("{event_type} does not fit its contract: {e}")
}

impl Drop for TestProjection {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
