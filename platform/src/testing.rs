//! Test support: a fresh, isolated database per test, provisioned exactly as
//! `sluice db setup` provisions a component (own owner and app roles, `CONNECT`
//! revoked from `PUBLIC`), and dropped with its roles when the test ends.
//!
//! The admin connection comes from `SLUICE_ADMIN_DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`, the password `deploy/dev/setup.sh` sets).

use std::str::FromStr;

use rand::Rng;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::provision::{drop_component, Plan};
use crate::registry::{Component, ComponentKind, DatabaseSpec, Registry};

mod broker;
pub use broker::{
    broker_env, registry_broker_address, shared_kafka, start_registry_broker, test_broker_kind,
    TestBroker,
};

/// The admin URL tests provision with.
pub fn admin_url() -> String {
    std::env::var("SLUICE_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A pinned Python package from PyPI (`requirement` is `name==version`) for tests
/// that drive a tool which is not ours: installed once per machine with pip into
/// `$HOME/.cache/sluice/python/<name>-<version>` (outside the clone, shared by every
/// test run) unless that directory already holds exactly that version. Returns the
/// directory to put on `PYTHONPATH`. Concurrent test processes install it once,
/// under a file lock; a half-done install never becomes visible (it is renamed into
/// place). Panics, saying what is missing, without `python3`, pip or the package
/// index: a test that needs the package never skips.
pub fn python_package(requirement: &str) -> std::path::PathBuf {
    use std::process::Command;
    let (name, version) = requirement
        .split_once("==")
        .unwrap_or_else(|| panic!("`{requirement}` must pin a version: `name==version`"));
    let home = std::env::var_os("HOME").map_or_else(|| ".".into(), std::path::PathBuf::from);
    let root = home.join(".cache").join("sluice").join("python");
    let target = root.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let lock_file = root.join(format!("{name}-{version}.lock"));
    let lock = std::fs::File::create(&lock_file)
        .and_then(|f| f.lock().map(|()| f))
        .unwrap_or_else(|e| panic!("{}: {e}", lock_file.display()));
    // The distribution's own metadata, found first on PYTHONPATH: the pinned
    // version, not whatever the interpreter may have installed itself.
    let check = format!(
        "import importlib.metadata as m, sys; sys.exit(m.version({name:?}) != {version:?})"
    );
    let installed = |dir: &std::path::Path| {
        Command::new("python3")
            .args(["-c", &check])
            .env("PYTHONPATH", dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !installed(&target) {
        let partial = root.join(format!("{name}-{version}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&partial)
            .arg(requirement)
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 to install {requirement}: {e}"));
        assert!(
            output.status.success() && installed(&partial),
            "cannot install {requirement} into {}: this test needs python3 with pip and the \
             Python package index\n{}{}",
            partial.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", partial.display(), target.display()));
    }
    drop(lock);
    target
}

/// A short random suffix that keeps concurrently running tests apart.
pub fn unique_suffix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// A component database that exists for the duration of one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub spec: DatabaseSpec,
    admin_url: String,
}

impl TestDatabase {
    /// Provisions `t_<label>_<random>` with its owner and app roles, for a component
    /// of the given kind.
    pub async fn provision(label: &str, kind: ComponentKind) -> Self {
        let name = format!("t_{label}_{}", unique_suffix());
        let spec = DatabaseSpec {
            owner_role: format!("{name}_owner"),
            app_role: format!("{name}_app"),
            owner_password: "owner-test".to_owned(),
            app_password: "app-test".to_owned(),
            name: name.clone(),
        };
        let component = Component {
            name: label.to_owned(),
            kind,
            port: 0,
            database: Some(spec.clone()),
            produces: vec![],
            consumes: vec![],
            depends_on: vec![],
            layer: crate::registry::Layer::default_for(kind),
            extra_env: Default::default(),
        };
        Self::provision_spec(&component, spec).await
    }

    /// Provisions a registry component's database under a test-unique name.
    pub async fn provision_component(component: &Component) -> Self {
        let mut component = component.clone();
        let suffix = unique_suffix();
        let spec = component
            .database
            .as_mut()
            .expect("component has a database");
        spec.name = format!("t_{}_{suffix}", spec.name);
        spec.owner_role = format!("{}_owner", spec.name);
        spec.app_role = format!("{}_app", spec.name);
        let spec = spec.clone();
        Self::provision_spec(&component, spec).await
    }

    async fn provision_spec(component: &Component, spec: DatabaseSpec) -> Self {
        let admin_url = admin_url();
        Plan::for_component(component, &spec)
            .execute(&admin_url)
            .await
            .expect("provision test database");
        TestDatabase { spec, admin_url }
    }

    /// Connection options for `role` on this test's server, any database.
    pub fn options_for(&self, role: &str, password: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.admin_url)
            .expect("admin URL")
            .username(role)
            .password(password)
            .database(database)
    }

    /// The owner role's options (runs migrations).
    pub fn owner_options(&self) -> PgConnectOptions {
        self.options_for(
            &self.spec.owner_role,
            &self.spec.owner_password,
            &self.spec.name,
        )
    }

    /// The app role's options (the component's runtime).
    pub fn app_options(&self) -> PgConnectOptions {
        self.options_for(
            &self.spec.app_role,
            &self.spec.app_password,
            &self.spec.name,
        )
    }

    /// Runs migrations as the owner role.
    pub async fn migrate(&self, migrators: Vec<Migrator>) {
        crate::db::migrate_with(self.owner_options(), migrators)
            .await
            .expect("migrate test database");
    }

    /// A pool of the app role.
    pub async fn app_pool(&self) -> PgPool {
        crate::db::pool_with(self.app_options(), 20)
            .await
            .expect("connect as app role")
    }

    /// A URL of the app role (for child processes).
    pub fn app_url(&self) -> String {
        self.url_for(&self.spec.app_role, &self.spec.app_password)
    }

    /// A URL of the owner role (for child processes).
    pub fn owner_url(&self) -> String {
        self.url_for(&self.spec.owner_role, &self.spec.owner_password)
    }

    fn url_for(&self, role: &str, password: &str) -> String {
        let opts = PgConnectOptions::from_str(&self.admin_url).expect("admin URL");
        format!(
            "postgres://{role}:{password}@{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            self.spec.name
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while panicking): clean up on a thread of
        // its own with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let spec = self.spec.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(drop_component(&admin_url, &spec))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!(
                "warning: could not drop test database {}: {e}",
                self.spec.name
            );
        }
    }
}

/// A copy of `registry` for one test: every database carries a test-unique prefix,
/// every component and the broker a free port, and the data directory is a fresh
/// temporary one. Returns the registry and its TOML text (for a
/// child process's `--registry`).
pub fn isolated_registry(registry: &Registry) -> (Registry, String) {
    let text = registry_text_with_prefix(registry, &unique_suffix(), None);
    (Registry::parse(&text).expect("isolated registry"), text)
}

/// [`isolated_registry`] on a broker of the test's own (`kafka_brokers`), rather
/// than the run's shared one.
pub fn isolated_registry_on(registry: &Registry, kafka_brokers: &str) -> (Registry, String) {
    let text = registry_text_with_prefix(registry, &unique_suffix(), Some(kafka_brokers));
    (Registry::parse(&text).expect("isolated registry"), text)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Drops every database and role of a registry (test clean-up).
pub async fn drop_registry_databases(registry: &Registry) {
    for (_, db) in registry.stateful() {
        if let Err(e) = drop_component(&admin_url(), db).await {
            eprintln!("warning: could not drop test database {}: {e}", db.name);
        }
    }
}

/// Ports that were free a moment ago, all different: each stays bound until all are
/// chosen, so the system cannot hand the same one out twice.
struct DistinctPorts(Vec<std::net::TcpListener>);

impl DistinctPorts {
    fn next(&mut self) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("local address").port();
        self.0.push(listener);
        port
    }
}

fn registry_text_with_prefix(registry: &Registry, suffix: &str, brokers: Option<&str>) -> String {
    let mut ports = DistinctPorts(Vec::new());
    let broker_port = ports.next();
    let brokers = brokers.map_or_else(|| registry_broker_address(broker_port), str::to_owned);
    // Topics under a test-unique prefix: tests sharing a broker never see each
    // other's events.
    let mut text = format!(
        "[platform]\ndatabase_host = {:?}\ndatabase_port = {}\nadmin_database_url = {:?}\ndata_dir = {:?}\nkafka_brokers = {:?}\n\
         topic_prefix = \"t_{suffix}.\"\nreplication_factor = {}\nmin_insync_replicas = {}\n",
        registry.platform.database_host,
        registry.platform.database_port,
        admin_url(),
        std::env::temp_dir()
            .join(format!("sluice-data-{suffix}"))
            .display()
            .to_string(),
        brokers,
        registry.platform.replication_factor,
        registry.platform.min_insync_replicas,
    );
    for (name, topic) in &registry.topics {
        let config: Vec<String> = topic
            .config
            .iter()
            .map(|(k, v)| format!("{k:?} = {v:?}"))
            .collect();
        text.push_str(&format!(
            "[topics.{name:?}]\npartitions = {}\nconfig = {{ {} }}\n",
            topic.partitions,
            config.join(", ")
        ));
    }
    for c in registry.components() {
        text.push_str(&format!(
            "[components.{}]\nkind = {:?}\nport = {}\nproduces = {:?}\nconsumes = {:?}\ndepends_on = {:?}\nlayer = {:?}\n",
            c.name,
            format!("{:?}", c.kind).to_lowercase(),
            ports.next(),
            c.produces,
            c.consumes,
            c.depends_on,
            c.layer.as_str()
        ));
        if !c.extra_env.is_empty() {
            let env: Vec<String> = c
                .extra_env
                .iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect();
            text.push_str(&format!("extra_env = {{ {} }}\n", env.join(", ")));
        }
        if let Some(db) = &c.database {
            text.push_str(&format!(
                "database = \"t_{suffix}_{}\"\napp_password = {:?}\nowner_password = {:?}\n",
                db.name.trim_start_matches("sluice_"),
                db.app_password,
                db.owner_password
            ));
        }
    }
    if let Some(a) = &registry.analytics {
        text.push_str(&format!(
            "[analytics]\nwarehouse = {:?}\nsql_port = {}\nstatement_timeout_seconds = {}\nrow_limit = {}\nmemory_limit = {:?}\n[analytics.analysts]\n",
            a.warehouse.display().to_string(),
            ports.next(),
            a.statement_timeout_seconds,
            a.row_limit,
            a.memory_limit
        ));
        for (user, verifier) in &a.analysts {
            text.push_str(&format!("{user:?} = {verifier:?}\n"));
        }
    }
    text
}

/// The password of the development analyst in `sluice.toml` (which stores only
/// its SCRAM verifier), for tests that connect to the analyst endpoint.
pub const DEV_ANALYST_PASSWORD: &str = "analyst-dev";

/// A write service running on a random port over its own fresh database.
pub struct TestApp {
    pub address: String,
    pub store: crate::store::EventStore,
    pub db: TestDatabase,
    shutdown: tokio_util::sync::CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Provisions, migrates and serves `service` the way `sluice run` does.
    pub async fn spawn(service: &crate::service::WriteService) -> Self {
        let db = TestDatabase::provision(service.name, ComponentKind::Service).await;
        db.migrate(vec![
            crate::store::migrator(),
            crate::consumer::migrator(),
            (service.migrator)(),
        ])
        .await;
        let pool = db.app_pool().await;
        let store = crate::store::EventStore::new(pool.clone());
        let catalog = service.catalog().expect("the service's schemas");
        let router = crate::http::with_platform_routes(
            (service.router)(store.clone(), catalog),
            service.name,
            Some(pool),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind random port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::http::serve(listener, router, shutdown.clone()));
        TestApp {
            address,
            store,
            db,
            shutdown,
            server: Some(server),
        }
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Number of events in the service's store.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.store.pool())
            .await
            .expect("count events")
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Consumed {
    pub fn header(&self, key: &str) -> &str {
        self.headers.get(key).map_or("", String::as_str)
    }
}

/// Reads every partition of `topic` from the beginning until `at_least` records
/// arrived (or `timeout`), then drains what else is there; records in partition
/// order.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: std::time::Duration,
) -> Vec<Consumed> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume_blocking(&bootstrap, &topic, at_least, timeout))
        .await
        .expect("consumer thread")
}

fn consume_blocking(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: std::time::Duration,
) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign partitions");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {
                if out.len() >= at_least && quiet_since.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
        }
    }
    out
}

/// Records in a topic: the sum of its partitions' high watermarks; 0 while the
/// broker cannot tell yet (callers poll).
pub async fn topic_size(bootstrap: &str, topic: &str) -> i64 {
    crate::broker::topic_size(bootstrap, topic)
        .await
        .unwrap_or(0)
}

/// Metadata of an event with a correlation and causation id, a W3C traceparent and
/// `actor`, as a command or a saga step records it.
pub fn traced_metadata(actor: &str) -> crate::store::Metadata {
    crate::store::Metadata {
        correlation_id: Some(uuid::Uuid::now_v7()),
        causation_id: Some(uuid::Uuid::now_v7()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        actor: Some(actor.into()),
    }
}

/// An event of `stream_id` (at `stream_version`) on `topic` as the consumer runtime
/// hands it to a handler.
pub fn consumed_event(
    topic: &str,
    stream_type: &str,
    stream_id: impl Into<String>,
    stream_version: i64,
    event_type: &str,
    payload: serde_json::Value,
    metadata: crate::store::Metadata,
) -> crate::consumer::ConsumedEvent {
    crate::consumer::ConsumedEvent {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        stream_id: stream_id.into(),
        stream_type: stream_type.into(),
        stream_version,
        global_position: stream_version,
        payload,
        metadata,
        recorded_at: chrono::Utc::now(),
    }
}

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
        let db = TestDatabase::provision(service.name, ComponentKind::Service).await;
        db.migrate(vec![
            crate::store::migrator(),
            crate::consumer::migrator(),
            (service.migrator)(),
        ])
        .await;
        let pool = db.app_pool().await;
        let store = crate::store::EventStore::new(pool.clone());
        let reactor = service.reactor.expect("the service has a reactor");
        let handler = reactor(
            store.clone(),
            service.catalog().expect("the service's schemas"),
        );
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
