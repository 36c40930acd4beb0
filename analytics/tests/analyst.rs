//! The analyst SQL endpoint against a real DuckDB file, a real server on
//! 127.0.0.1:0 and real clients (tokio-postgres, psql).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_analytics::analyst::auth::Verifier;
use sluice_analytics::analyst::{self, AnalystConfig, TlsFiles};
use sluice_analytics::shell::{self, ConnectOptions, ResultTable};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

const USER: &str = "ada";
const PASSWORD: &str = "s3cret";

/// What every test endpoint serves.
const FIXTURE: &str = "CREATE TABLE orders (id INTEGER, amount DECIMAL(12,2), customer VARCHAR, \
                   placed_at TIMESTAMPTZ, order_id UUID, paid BOOLEAN, weight DOUBLE, \
                   big BIGINT, tags VARCHAR[], payload JSON);
                 INSERT INTO orders VALUES
                   (1, 12.50, 'alice', TIMESTAMPTZ '2024-05-01 10:00:00+00',
                    '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70', true, 1.5, 9000000000,
                    ['a', 'b'], '{\"k\": 1}'),
                   (2, 7.25, 'bob', TIMESTAMPTZ '2024-05-02 11:30:00+00',
                    '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71', false, 2.25, 1, [], NULL),
                   (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
                 CREATE TABLE loads (n INTEGER);
                 CREATE VIEW paid_orders AS SELECT id, amount FROM orders WHERE paid;
                 CREATE MACRO orders_of(who) AS TABLE SELECT id FROM orders WHERE customer = who;";

/// The settings of a test endpoint: one analyst, [`USER`], on a free port.
fn test_config() -> AnalystConfig {
    AnalystConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        analysts: BTreeMap::from([(USER.to_owned(), Verifier::new(PASSWORD))]),
        statement_timeout: Duration::from_secs(30),
        row_limit: 2_000_000,
        max_sessions: 32,
        max_sessions_per_analyst: 32,
        tls: None,
        startup_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(600),
    }
}

struct Endpoint {
    addr: std::net::SocketAddr,
    dir: PathBuf,
    warehouse: Arc<Warehouse>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), analyst::AnalystError>>,
}

impl Endpoint {
    async fn start(row_limit: usize, statement_timeout: Duration) -> Endpoint {
        Endpoint::with_timeouts(row_limit, statement_timeout, Duration::from_secs(600)).await
    }

    async fn with_timeouts(
        row_limit: usize,
        statement_timeout: Duration,
        idle_timeout: Duration,
    ) -> Endpoint {
        Endpoint::with_limits(row_limit, statement_timeout, idle_timeout, 32).await
    }

    async fn with_limits(
        row_limit: usize,
        statement_timeout: Duration,
        idle_timeout: Duration,
        max_sessions: usize,
    ) -> Endpoint {
        Endpoint::with(|config| {
            config.row_limit = row_limit;
            config.statement_timeout = statement_timeout;
            config.idle_timeout = idle_timeout;
            config.max_sessions = max_sessions;
        })
        .await
    }

    /// An endpoint over the test warehouse, with `adjust` applied to the
    /// default settings.
    async fn with(adjust: impl FnOnce(&mut AnalystConfig)) -> Endpoint {
        let dir = std::env::temp_dir().join(format!("sluice-analyst-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret.csv"), "password\nhunter2\n").unwrap();
        let warehouse = Arc::new(
            Warehouse::open(&dir.join("warehouse.duckdb"), &WarehouseSettings::default()).unwrap(),
        );
        warehouse.connect().unwrap().execute_batch(FIXTURE).unwrap();
        warehouse.lock_configuration().unwrap();
        let mut config = test_config();
        adjust(&mut config);
        Endpoint::serve(warehouse, dir, config).await
    }

    async fn serve(warehouse: Arc<Warehouse>, dir: PathBuf, config: AnalystConfig) -> Endpoint {
        let listener = analyst::bind(&config).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(analyst::serve(
            warehouse.clone(),
            config,
            listener,
            shutdown.clone(),
        ));
        Endpoint {
            addr,
            dir,
            warehouse,
            shutdown,
            server,
        }
    }

    async fn default() -> Endpoint {
        Endpoint::start(2_000_000, Duration::from_secs(30)).await
    }

    /// The default endpoint and a session of [`USER`] on it.
    async fn connected() -> (Endpoint, Client) {
        let endpoint = Endpoint::default().await;
        let client = endpoint.client().await;
        (endpoint, client)
    }

    fn config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.addr.port())
            .user(user)
            .password(password)
            .dbname("warehouse");
        config
    }

    async fn client(&self) -> Client {
        self.client_as(USER, PASSWORD).await
    }

    /// A session of `user`; panics when the login fails.
    async fn client_as(&self, user: &str, password: &str) -> Client {
        let (client, connection) = self
            .config(user, password)
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("{user} must get in: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Why a login of `user` fails; panics with `why` when it succeeds.
    async fn refused(&self, user: &str, password: &str, why: &str) -> tokio_postgres::Error {
        self.config(user, password)
            .connect(NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}"))
    }

    fn count(&self, table: &str) -> i64 {
        self.warehouse
            .connect()
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.code().code().to_owned())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_default()
}

/// The rows `sql` answers through the simple query protocol; panics on an error.
async fn rows_of(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    simple_rows(&messages)
}

/// The one value `sql` answers, as text; panics unless it answers exactly one
/// row of one non-NULL value.
async fn value_of(client: &Client, sql: &str) -> String {
    let rows = rows_of(client, sql).await;
    match rows.as_slice() {
        [row] => match row.as_slice() {
            [Some(value)] => value.clone(),
            _ => panic!("{sql}: {rows:?}"),
        },
        _ => panic!("{sql}: {rows:?}"),
    }
}

/// The error `sql` fails with through the simple query protocol; panics when
/// it runs.
async fn error_of(client: &Client, sql: &str) -> tokio_postgres::Error {
    client
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("ran: {sql}"))
}

/// `sql` through the simple query protocol on a task of its own, on a shared
/// session.
fn spawn_query(
    client: &Arc<Client>,
    sql: &'static str,
) -> tokio::task::JoinHandle<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> {
    let client = client.clone();
    tokio::spawn(async move { client.simple_query(sql).await })
}

/// A result row of text values, none of them NULL.
fn text_row(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simple_queries_return_postgres_text() {
    let (endpoint, client) = Endpoint::connected().await;
    let rows = rows_of(
        &client,
        "SELECT id, amount, customer, placed_at, order_id, paid, weight, big, tags, payload \
         FROM orders ORDER BY id",
    )
    .await;
    assert_eq!(rows.len(), 3);
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows[0],
        vec![
            s("1"),
            s("12.50"),
            s("alice"),
            s("2024-05-01 10:00:00+00"),
            s("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"),
            s("t"),
            s("1.5"),
            s("9000000000"),
            s("{a,b}"),
            s("{\"k\": 1}"),
        ]
    );
    assert!(rows[2][1..].iter().all(Option::is_none), "NULLs stay NULL");

    // several statements in one string, and client housekeeping as no-ops
    let messages = rows_of(
        &client,
        "SET application_name = 'test'; SELECT 1 AS one; BEGIN; SELECT 'two'; COMMIT; \
         SHOW TRANSACTION ISOLATION LEVEL",
    )
    .await;
    assert_eq!(
        messages,
        vec![vec![s("1")], vec![s("two")], vec![s("read committed")]]
    );
    // the warehouse's own table macros (the saved views) are allowed
    assert_eq!(
        rows_of(&client, "SELECT * FROM orders_of('bob')").await,
        vec![vec![s("2")]]
    );
    let version = rows_of(&client, "SELECT version()").await;
    assert_eq!(version.len(), 1);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extended_queries_bind_parameters_and_describe_types() {
    let (endpoint, client) = Endpoint::connected().await;
    let sql = "SELECT id, amount, customer, placed_at, order_id, paid, weight, big, tags, payload \
               FROM orders WHERE id = $1 AND customer = $2";
    // untyped parameters are announced as text and cast by DuckDB
    let untyped = client.prepare(sql).await.unwrap();
    assert_eq!(untyped.params(), &[Type::TEXT, Type::TEXT]);
    let row = client.query_one(&untyped, &[&"2", &"bob"]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    // types the client declares are used, values arrive in binary
    let stmt = client
        .prepare_typed(sql, &[Type::INT4, Type::TEXT])
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4, Type::TEXT]);
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::INT4,
            Type::NUMERIC,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::UUID,
            Type::BOOL,
            Type::FLOAT8,
            Type::INT8,
            Type::TEXT_ARRAY,
            Type::JSON,
        ]
    );
    let row = client.query_one(&stmt, &[&1i32, &"alice"]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(2), "alice");
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(3).to_rfc3339(),
        "2024-05-01T10:00:00+00:00"
    );
    assert_eq!(
        row.get::<_, uuid::Uuid>(4).to_string(),
        "0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"
    );
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, f64>(6), 1.5);
    assert_eq!(row.get::<_, i64>(7), 9_000_000_000);
    assert_eq!(row.get::<_, Vec<String>>(8), vec!["a", "b"]);

    // NULLs come back as None; a statement is reusable with other parameters
    let by_id = client
        .prepare_typed(
            "SELECT amount, customer, paid FROM orders WHERE id = $1",
            &[Type::INT4],
        )
        .await
        .unwrap();
    let nulls = client.query_one(&by_id, &[&3i32]).await.unwrap();
    assert_eq!(nulls.get::<_, Option<String>>(1), None);
    assert_eq!(nulls.get::<_, Option<bool>>(2), None);
    assert!(client
        .query(&stmt, &[&2i32, &"alice"])
        .await
        .unwrap()
        .is_empty());

    // bigint, double and timestamptz parameters in binary format
    let since = chrono::DateTime::parse_from_rfc3339("2024-05-02T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let typed = client
        .prepare_typed(
            "SELECT id FROM orders WHERE big >= $1 AND weight > $2 AND placed_at > $3",
            &[Type::INT8, Type::FLOAT8, Type::TIMESTAMPTZ],
        )
        .await
        .unwrap();
    let rows = client
        .query(&typed, &[&1i64, &2.0f64, &since])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 2);
    // numeric is described as numeric and its text is exact
    assert_eq!(
        value_of(&client, "SELECT sum(amount) FROM orders").await,
        "19.75"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_password_and_unknown_user_are_refused() {
    let endpoint = Endpoint::default().await;
    for (user, password) in [(USER, "wrong"), ("mallory", PASSWORD)] {
        let e = endpoint.refused(user, password, "login must fail").await;
        assert_eq!(sqlstate(&e), "28P01", "{user}: {e}");
        assert!(
            message(&e).contains(&format!("for user \"{user}\"")),
            "{user}: {}",
            message(&e)
        );
    }
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_read_while_the_sink_writes() {
    let endpoint = Endpoint::default().await;
    let writer = endpoint.warehouse.connect().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                writer.execute("INSERT INTO loads VALUES (?)", [n]).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut sessions = tokio::task::JoinSet::new();
    for i in 0..8i64 {
        let client = endpoint.client().await;
        sessions.spawn(async move {
            let doubled = client
                .prepare_typed("SELECT $1::BIGINT * 2, count(*) FROM orders", &[Type::INT8])
                .await
                .unwrap();
            let mut seen = 0i64;
            for _ in 0..5 {
                let row = client.query_one(&doubled, &[&i]).await.unwrap();
                assert_eq!(row.get::<_, i64>(0), i * 2);
                assert_eq!(row.get::<_, i64>(1), 3);
                // The writer inserts 0, 1, 2, ... one commit each: a consistent
                // snapshot holds every row up to its highest, and a later one
                // never fewer.
                let loads = client
                    .query_one(
                        "SELECT count(*), coalesce(max(n) + 1, 0)::BIGINT FROM loads",
                        &[],
                    )
                    .await
                    .unwrap();
                let (count, through) = (loads.get::<_, i64>(0), loads.get::<_, i64>(1));
                assert_eq!(
                    count, through,
                    "a snapshot with a hole in the writer's rows"
                );
                assert!(
                    count >= seen,
                    "a later snapshot holds {count} rows, an earlier {seen}"
                );
                seen = count;
            }
        });
    }
    while let Some(done) = sessions.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let inserted = writing.join().unwrap();
    assert!(inserted > 0);
    assert_eq!(endpoint.count("loads"), inserted);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_statements_are_refused_and_change_nothing() {
    let (endpoint, client) = Endpoint::connected().await;
    let secret = endpoint.dir.join("secret.csv");
    let secret = secret.display();
    let out = endpoint.dir.join("out.csv");
    let out_path = out.display();
    let hostile = [
        format!("SELECT * FROM read_csv('{secret}')"),
        format!("SELECT * FROM read_csv_auto('{secret}')"),
        format!("SELECT * FROM read_text('{secret}')"),
        format!("SELECT * FROM '{secret}'"),
        format!("SELECT * FROM glob('{}/*')", endpoint.dir.display()),
        "SELECT * FROM query('SELECT 1')".to_owned(),
        format!("COPY orders TO '{out_path}'"),
        format!(
            "ATTACH '{}' AS other",
            endpoint.dir.join("other.duckdb").display()
        ),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
        "SET enable_external_access = true".to_owned(),
        "PRAGMA enable_profiling".to_owned(),
        "CREATE TABLE stolen AS SELECT 1".to_owned(),
        "CREATE MACRO m() AS 1".to_owned(),
        "INSERT INTO orders (id) VALUES (99)".to_owned(),
        "UPDATE orders SET paid = true".to_owned(),
        "DELETE FROM orders".to_owned(),
        "DROP TABLE orders".to_owned(),
        format!(
            "EXPORT DATABASE '{}'",
            endpoint.dir.join("export").display()
        ),
        "CHECKPOINT".to_owned(),
        "select 1; drop table orders".to_owned(),
    ];
    for sql in &hostile {
        let e = error_of(&client, sql).await;
        assert!(
            ["42501", "25006"].contains(&sqlstate(&e).as_str()),
            "{sql}: {} {}",
            sqlstate(&e),
            message(&e)
        );
        assert!(message(&e).contains("refused"), "{sql}: {}", message(&e));
        // the extended protocol refuses the same
        assert!(client.prepare(sql).await.is_err(), "prepared: {sql}");
    }
    let e = error_of(&client, "DELETE FROM orders").await;
    assert!(
        message(&e).starts_with("DELETE is refused"),
        "{}",
        message(&e)
    );
    assert_eq!(endpoint.count("orders"), 3);
    assert!(!out.exists());
    assert!(!endpoint.dir.join("export").exists());
    assert!(!endpoint.dir.join("other.duckdb").exists());
    // the session is still usable and its reads still work
    assert_eq!(value_of(&client, "SELECT count(*) FROM orders").await, "3");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_carry_postgres_sqlstates() {
    let (endpoint, client) = Endpoint::connected().await;
    for (sql, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM nope", "42P01"),
        ("SELECT nope FROM orders", "42703"),
    ] {
        let e = error_of(&client, sql).await;
        assert_eq!(sqlstate(&e), code, "{sql}: {}", message(&e));
    }
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_query_times_out_and_the_session_stays_usable() {
    let endpoint = Endpoint::start(1_000, Duration::from_millis(500)).await;
    let client = endpoint.client().await;
    let e = error_of(
        &client,
        "SELECT count(*) FROM range(100000000) a, range(100000000) b",
    )
    .await;
    assert_eq!(sqlstate(&e), "57014", "{}", message(&e));
    assert_eq!(value_of(&client, "SELECT 42").await, "42");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_past_the_row_limit_fails() {
    let endpoint = Endpoint::start(1_000, Duration::from_secs(30)).await;
    let client = endpoint.client().await;
    let e = error_of(&client, "SELECT * FROM range(1001)").await;
    assert_eq!(sqlstate(&e), "54000", "{}", message(&e));
    let at_limit = client
        .query("SELECT * FROM range(1000)", &[])
        .await
        .unwrap();
    assert_eq!(at_limit.len(), 1000);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_rows_stream_complete() {
    let (endpoint, client) = Endpoint::connected().await;
    let stream = client
        .query_raw(
            "SELECT range AS n, 'row ' || range AS label FROM range(1000000)",
            Vec::<i32>::new(),
        )
        .await
        .unwrap();
    futures::pin_mut!(stream);
    let (mut count, mut sum) = (0i64, 0i64);
    while let Some(row) = futures::StreamExt::next(&mut stream).await {
        let row = row.unwrap();
        sum += row.get::<_, i64>(0);
        count += 1;
    }
    assert_eq!(count, 1_000_000);
    assert_eq!(sum, 999_999 * 1_000_000 / 2);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_runs_one_shot_queries() {
    let endpoint = Endpoint::default().await;
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-d",
                "warehouse",
            ])
            .args(["-p", &endpoint.addr.port().to_string(), "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
    };
    match psql("select 1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("psql is not on PATH: skipping only the psql client");
        }
        Err(e) => panic!("cannot run psql: {e}"),
        Ok(output) => {
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
            let output = psql("select customer from orders where id = 2").unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "bob");
            let output = psql("drop table orders").unwrap();
            assert!(!output.status.success());
            assert!(String::from_utf8_lossy(&output.stderr).contains("refused"));
        }
    }
    assert_eq!(endpoint.count("orders"), 3);
    endpoint.stop().await;
}

/// psql with `PGPASSWORD`, unaligned: its stdout, or its stderr as the error.
fn psql(endpoint: &Endpoint, command: &str) -> Result<String, String> {
    psql_with(endpoint, "", command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_describes_tables_views_columns_databases_schemas_and_functions() {
    let endpoint = Endpoint::default().await;
    let tables = psql(&endpoint, "\\dt").unwrap();
    assert!(tables.contains("main|orders|table|"), "{tables}");
    assert!(tables.contains("main|loads|table|"), "{tables}");
    assert!(!tables.contains("paid_orders"), "{tables}");
    let views = psql(&endpoint, "\\dv").unwrap();
    assert!(views.contains("main|paid_orders|view|"), "{views}");
    assert!(!views.contains("|orders|"), "{views}");
    let columns = psql(&endpoint, "\\d orders").unwrap();
    for line in [
        "id|integer",
        "amount|numeric(12,2)",
        "customer|text",
        "placed_at|timestamp with time zone",
        "order_id|uuid",
    ] {
        assert!(columns.contains(line), "{line} in {columns}");
    }
    let view = psql(&endpoint, "\\d paid_orders").unwrap();
    assert!(view.contains("View \"main.paid_orders\""), "{view}");
    let databases = psql(&endpoint, "\\l").unwrap();
    assert!(databases.contains("warehouse|"), "{databases}");
    let schemas = psql(&endpoint, "\\dn").unwrap();
    assert!(schemas.contains("main|"), "{schemas}");
    psql(&endpoint, "\\df").unwrap();
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untyped_null_column_reads_as_null() {
    let (endpoint, client) = Endpoint::connected().await;
    assert_eq!(
        rows_of(&client, "SELECT NULL AS nothing, 1 AS one").await,
        vec![vec![None, Some("1".to_owned())]]
    );
    let row = client
        .query_one("SELECT NULL AS nothing, 2 AS two", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drivers_catalog_queries_list_tables_views_and_columns() {
    let (endpoint, client) = Endpoint::connected().await;
    // What SQLAlchemy's PostgreSQL dialect runs at connect and for
    // `inspect(engine).get_table_names()`, `get_view_names()` and `get_columns()`.
    let version: String = client
        .query_one("select pg_catalog.version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("PostgreSQL 16.6 "), "{version}");
    // SQLAlchemy binds each relkind as its own parameter.
    let relations = |kind: &'static str| {
        let client = &client;
        async move {
            let rows = client
                .query(
                    "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class \
                     JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \
                     WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR]) \
                       AND pg_catalog.pg_class.relpersistence != $2::VARCHAR \
                       AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) \
                       AND pg_catalog.pg_namespace.nspname != $3::VARCHAR \
                     ORDER BY 1",
                    &[&kind, &"t", &"pg_catalog"],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let tables = relations("r").await;
    assert!(
        tables.contains(&"orders".to_owned()) && tables.contains(&"loads".to_owned()),
        "{tables:?}"
    );
    assert_eq!(relations("v").await, vec!["paid_orders".to_owned()]);
    let columns = client
        .query(
            "SELECT pg_catalog.pg_attribute.attname AS name, \
                    pg_catalog.format_type(pg_catalog.pg_attribute.atttypid, pg_catalog.pg_attribute.atttypmod) AS format_type, \
                    pg_catalog.pg_attribute.attnotnull AS not_null, \
                    CASE WHEN (pg_catalog.pg_attribute.attcollation != $1::INTEGER AND (SELECT pg_catalog.pg_type.typcollation \
                       FROM pg_catalog.pg_type WHERE pg_catalog.pg_type.oid = pg_catalog.pg_attribute.atttypid) != pg_catalog.pg_attribute.attcollation) \
                    THEN (SELECT json_build_object($2::VARCHAR, pg_catalog.pg_collation.collname) \
                       FROM pg_catalog.pg_collation JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_collation.collnamespace \
                       WHERE pg_catalog.pg_collation.oid = pg_catalog.pg_attribute.attcollation) ELSE NULL END AS collation \
             FROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_attribute \
               ON pg_catalog.pg_class.oid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attribute.attnum > $3::SMALLINT \
               AND NOT pg_catalog.pg_attribute.attisdropped \
             JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \
             WHERE pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) \
               AND pg_catalog.pg_class.relname IN ($4::VARCHAR) \
             ORDER BY pg_catalog.pg_class.relname, pg_catalog.pg_attribute.attnum",
            &[&"0", &"name", &"0", &"orders"],
        )
        .await
        .unwrap();
    let described: Vec<(String, String)> = columns.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(described.len(), 10, "{described:?}");
    assert_eq!(described[0], ("id".to_owned(), "integer".to_owned()));
    assert_eq!(described[4], ("order_id".to_owned(), "uuid".to_owned()));
    // pgJDBC's DatabaseMetaData.getTables (abridged) and getPrimaryKeys.
    let jdbc_tables = client
        .query(
            "SELECT current_database() AS \"TABLE_CAT\", n.nspname AS \"TABLE_SCHEM\", c.relname AS \"TABLE_NAME\", \
                    d.description AS \"REMARKS\" \
             FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 and d.classoid = 'pg_class'::regclass) \
             WHERE c.relnamespace = n.oid AND c.relname LIKE $1 AND c.relkind = 'r' AND n.nspname !~ '^pg_' \
             ORDER BY \"TABLE_NAME\"",
            &[&"%"],
        )
        .await
        .unwrap();
    let names: Vec<String> = jdbc_tables.iter().map(|r| r.get(2)).collect();
    assert!(names.contains(&"orders".to_owned()), "{names:?}");
    client
        .query(
            "SELECT current_database() AS TABLE_CAT, n.nspname AS TABLE_SCHEM, ct.relname AS TABLE_NAME, \
                    a.attname AS COLUMN_NAME, (information_schema._pg_expandarray(con.conkey)).n AS KEY_SEQ, \
                    con.conname AS PK_NAME, information_schema._pg_expandarray(con.conkey) AS KEYS, a.attnum AS A_ATTNUM \
             FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class ct ON (con.conrelid = ct.oid) \
             JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid) \
             JOIN pg_catalog.pg_attribute a ON (a.attrelid = ct.oid) \
             WHERE con.contype = 'p' AND ct.relname = $1",
            &[&"orders"],
        )
        .await
        .unwrap();
    // regclass both ways, and PostgreSQL's name for count(*).
    let oid: i64 = client
        .query_one(
            "SELECT oid FROM pg_catalog.pg_class WHERE relname = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let row = client
        .query_one(
            "SELECT 'orders'::regclass::oid AS by_name, $1::regclass::text AS by_oid",
            &[&oid.to_string()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), oid);
    assert_eq!(row.get::<_, String>(1), "orders");
    let counted = client
        .query("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert_eq!(counted[0].columns()[0].name(), "count");
    assert_eq!(counted[0].get::<_, i64>(0), 3);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalog_rewrite_opens_no_hole() {
    let (endpoint, client) = Endpoint::connected().await;
    for sql in [
        // Refused views stay refused under the catalog schema's name.
        "SELECT * FROM pg_catalog.pg_settings",
        "SELECT pg_catalog.current_setting('memory_limit')",
        "SELECT * FROM pg_catalog.pg_prepared_statements",
        // The compatibility objects are read-only look-ups: writing is refused.
        "CREATE TEMP MACRO pg_get_userbyid(x) AS 'mallory'",
        "DROP VIEW sluice_pg_class",
    ] {
        let e = error_of(&client, sql).await;
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
    let owner: String = client
        .query_one("SELECT pg_catalog.pg_get_userbyid(10)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "sluice");
    endpoint.stop().await;
}

#[test]
fn shell_tables_are_aligned_like_psql() {
    let table = ResultTable {
        columns: vec!["id".to_owned(), "customer".to_owned()],
        rows: vec![text_row(&["1", "alice"]), vec![Some("22".to_owned()), None]],
    };
    assert_eq!(
        shell::format_table(&table),
        "  id | customer\n----+----------\n 1  | alice\n 22 |\n(2 rows)\n"
            .replace("  id |", " id |")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shell_runs_a_one_shot_query_and_fails_on_error() {
    let endpoint = Endpoint::default().await;
    let options = ConnectOptions {
        host: "127.0.0.1".to_owned(),
        port: endpoint.addr.port(),
        user: USER.to_owned(),
        password: PASSWORD.to_owned(),
        database: "warehouse".to_owned(),
    };
    shell::run(&options, Some("SELECT count(*) FROM orders".to_owned()))
        .await
        .unwrap();
    match shell::run(&options, Some("DROP TABLE orders".to_owned())).await {
        Err(shell::ShellError::Query { code, .. }) => assert_eq!(code, "42501"),
        other => panic!("expected a refused query, got {other:?}"),
    }
    assert_eq!(endpoint.count("orders"), 3);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_that_panics_in_the_client_library_fails_and_the_session_goes_on() {
    let (endpoint, client) = Endpoint::connected().await;
    // duckdb-rs has no conversion for TIME_NS and panics reading it.
    let e = error_of(&client, "SELECT '12:34:56'::TIME_NS").await;
    assert!(
        e.as_db_error().is_some(),
        "an error response, not a lost session: {e}"
    );
    // The session's transaction ended: a new one begins and sees new data.
    endpoint
        .warehouse
        .connect()
        .unwrap()
        .execute_batch("INSERT INTO loads VALUES (1)")
        .unwrap();
    assert_eq!(value_of(&client, "SELECT count(*) FROM loads").await, "1");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_with_multibyte_characters_is_checked_not_panicked_on() {
    let (endpoint, client) = Endpoint::connected().await;
    let rows = rows_of(
        &client,
        "EXPLAIN SELECT 'ünïcödé' AS naïve, customer FROM orders",
    )
    .await;
    assert!(!rows.is_empty());
    // A multibyte space right where a byte offset would land after the options'
    // parentheses: a syntax error from DuckDB's parser, not an internal error.
    let e = error_of(&client, "EXPLAIN (((((\u{3000}ANALYZE SELECT 1").await;
    assert_eq!(sqlstate(&e), "42601", "{}", message(&e));
    let e = error_of(&client, "EXPLAIN\u{3000}ANALYZE DELETE FROM orders").await;
    assert!(message(&e).contains("refused"), "{}", message(&e));
    assert_eq!(endpoint.count("orders"), 3);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_infinite_dates_and_timestamps_are_bound_as_infinity() {
    use tokio_postgres::types::{Date, Timestamp, ToSql};
    let (endpoint, client) = Endpoint::connected().await;
    let date = client
        .prepare_typed("SELECT CAST($1::DATE AS VARCHAR)", &[Type::DATE])
        .await
        .unwrap();
    let timestamp = client
        .prepare_typed("SELECT CAST($1::TIMESTAMP AS VARCHAR)", &[Type::TIMESTAMP])
        .await
        .unwrap();
    let finite = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    for (statement, value, expected) in [
        (
            &date,
            &Date::<chrono::NaiveDate>::PosInfinity as &(dyn ToSql + Sync),
            "infinity",
        ),
        (&date, &Date::<chrono::NaiveDate>::NegInfinity, "-infinity"),
        (
            &timestamp,
            &Timestamp::<chrono::NaiveDateTime>::PosInfinity,
            "infinity",
        ),
        (
            &timestamp,
            &Timestamp::<chrono::NaiveDateTime>::NegInfinity,
            "-infinity",
        ),
        (&date, &finite, "2024-05-01"),
    ] {
        let rows = client.query(statement, &[value]).await.unwrap();
        assert_eq!(rows[0].get::<_, String>(0), expected);
    }
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_paths_and_logs_are_not_revealed() {
    let (endpoint, client) = Endpoint::connected().await;
    // Statements that would reveal the server's settings, paths or logs.
    let revealing = [
        "SELECT * FROM pg_settings",
        "SELECT name, setting FROM pg_catalog.pg_settings",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM duckdb_settings",
        "SELECT current_setting('temp_directory')",
        "SELECT current_setting('memory_limit')",
        "SELECT path FROM duckdb_databases()",
        "SELECT * FROM duckdb_databases",
        "SELECT * FROM duckdb_logs",
        "SELECT * FROM duckdb_logs()",
        "SELECT * FROM pg_prepared_statements",
        "SHOW memory_limit",
        "SHOW temp_directory",
    ];
    for sql in revealing {
        let outcome = client.simple_query(sql).await;
        let rows = outcome.as_ref().map(|m| simple_rows(m)).unwrap_or_default();
        let e = outcome
            .err()
            .unwrap_or_else(|| panic!("ran: {sql}: {rows:?}"));
        assert!(message(&e).contains("refused"), "{sql}: {}", message(&e));
    }
    // Client housekeeping still answers.
    assert_eq!(
        value_of(&client, "SHOW TRANSACTION ISOLATION LEVEL").await,
        "read committed"
    );
    endpoint.stop().await;
}

/// Forwards one client connection to `target`; once `stall` is set, stops
/// reading what the server sends (the socket stays open). Returns the address to
/// connect to and a receiver that reports when the server's side ends.
async fn stalling_proxy(
    target: std::net::SocketAddr,
    stall: Arc<std::sync::atomic::AtomicBool>,
    resume: Arc<tokio::sync::Notify>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(target).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut buf = vec![0u8; 8192];
        loop {
            if stall.load(Ordering::SeqCst) {
                resume.notified().await;
                stall.store(false, Ordering::SeqCst);
            }
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ended_tx.send(());
    });
    (addr, ended_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_timed_out_and_its_session_closed() {
    let endpoint = Endpoint::start(100_000_000, Duration::from_millis(500)).await;
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resume = Arc::new(tokio::sync::Notify::new());
    let (proxy, server_ended) = stalling_proxy(endpoint.addr, stall.clone(), resume.clone()).await;
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(proxy.port())
        .user(USER)
        .password(PASSWORD)
        .dbname("warehouse")
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The client stays connected throughout: only the server can end the session.
    let client = Arc::new(client);
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    // Far more than the sockets' buffers hold: the server's writes block.
    let query = spawn_query(&client, "SELECT repeat('x', 1000) FROM range(50000000)");
    // Well past the statement timeout, the client reads again: the server has
    // given up on the statement and closed the session, so what is buffered
    // drains and the server's side ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    resume.notify_one();
    tokio::time::timeout(Duration::from_secs(20), server_ended)
        .await
        .expect("the stalled session was never closed")
        .unwrap();
    assert!(query.await.unwrap().is_err(), "the result did not complete");
    drop(client);
    // The endpoint serves on.
    let rows = endpoint
        .client()
        .await
        .simple_query("SELECT 42")
        .await
        .unwrap();
    assert_eq!(simple_rows(&rows), vec![text_row(&["42"])]);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_timing_out_at_every_moment_leave_the_session_usable() {
    // Queries that end around the timeout: the watchdog's interrupts land before,
    // during and just after them, and never on the ROLLBACK that follows.
    let endpoint = Endpoint::start(1_000, Duration::from_millis(40)).await;
    let client = endpoint.client().await;
    let mut timed_out = 0;
    for i in 0..60u64 {
        let n = 20_000 + i * 20_000;
        for sql in [
            format!("SELECT count(*) FROM range({n}) a, range(20) b"),
            "SELECT 1".to_owned(),
        ] {
            match client.simple_query(&sql).await {
                Ok(_) => {}
                Err(e) if sqlstate(&e) == "57014" => timed_out += 1,
                Err(e) => panic!("{sql} after {i} rounds: {} {}", sqlstate(&e), message(&e)),
            }
        }
    }
    assert!(timed_out > 0, "no statement reached the timeout");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_request_interrupts_the_running_query_and_the_session_goes_on() {
    let endpoint = Endpoint::start(1_000, Duration::from_secs(120)).await;
    let client = Arc::new(endpoint.client().await);
    let cancel = client.cancel_token();
    let running = spawn_query(
        &client,
        "SELECT count(*) FROM range(100000000) a, range(100000000) b",
    );
    // Long enough for the statement to be running, then Ctrl-C.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = std::time::Instant::now();
    cancel.cancel_query(NoTls).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the query went on after the cancel")
        .unwrap();
    let answered = sent.elapsed();
    let e = outcome.unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{}", message(&e));
    assert!(message(&e).contains("user request"), "{}", message(&e));
    assert!(
        answered < Duration::from_secs(1),
        "answered after {answered:?}"
    );
    assert_eq!(value_of(&client, "SELECT 42").await, "42");
    // A cancel with no statement running changes nothing.
    cancel.cancel_query(NoTls).await.unwrap();
    assert_eq!(value_of(&client, "SELECT 7").await, "7");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_gets_through_when_every_session_slot_is_taken_and_counts_as_cancelled() {
    sluice_platform::telemetry::init();
    let cancelled = || {
        sluice_platform::telemetry::render_text()
            .lines()
            .find(|l| l.starts_with("sluice_analyst_queries_total{outcome=\"cancelled\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = cancelled();
    // One session slot, and it is taken by the query to cancel.
    let endpoint =
        Endpoint::with_limits(1_000, Duration::from_secs(120), Duration::from_secs(600), 1).await;
    let client = Arc::new(endpoint.client().await);
    let running = spawn_query(
        &client,
        "SELECT count(*) FROM range(100000000) a, range(100000000) b",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The endpoint is full: a new session is refused …
    let refused = endpoint
        .refused(
            USER,
            PASSWORD,
            "a second session was let in past max_sessions",
        )
        .await;
    assert_eq!(sqlstate(&refused), "53300", "{}", message(&refused));
    // … but a cancel is not a session.
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .expect("the query went on after the cancel: the cancel did not get through")
        .unwrap();
    let e = outcome.unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{}", message(&e));
    assert!(message(&e).contains("user request"), "{}", message(&e));
    assert_eq!(value_of(&client, "SELECT 1").await, "1");
    assert!(
        cancelled() >= before + 1.0,
        "the cancelled query was not counted as cancelled"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_that_never_authenticates_is_closed_after_the_startup_timeout() {
    use tokio::io::AsyncReadExt;
    let endpoint = Endpoint::default().await;
    let mut silent = tokio::net::TcpStream::connect(endpoint.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // Nothing is sent: the server closes the connection (read returns 0).
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("the unauthenticated connection stayed open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "closed after {waited:?} (startup timeout 2 s)"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_session_is_closed_and_a_busy_one_is_not() {
    // Idle timeout 1 s, raised to the statement timeout plus 5 s: 5.5 s.
    let endpoint =
        Endpoint::with_timeouts(1_000, Duration::from_millis(500), Duration::from_secs(1)).await;
    let idle = endpoint.client().await;
    let busy = endpoint.client().await;
    for _ in 0..16 {
        busy.simple_query("SELECT 1")
            .await
            .expect("a busy session stays open");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        idle.simple_query("SELECT 1").await.is_err(),
        "the idle session was closed"
    );
    assert!(idle.is_closed());
    busy.simple_query("SELECT 1").await.unwrap();
    endpoint.stop().await;
}

/// The first message the endpoint answers a startup with: its authentication
/// request (`R`), as raw bytes after the length.
async fn authentication_request(endpoint: &Endpoint, user: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(endpoint.addr).await.unwrap();
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "warehouse")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    socket.write_all(&startup).await.unwrap();
    let mut head = [0u8; 5];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'R', "an authentication request comes first");
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4;
    let mut rest = vec![0u8; len];
    socket.read_exact(&mut rest).await.unwrap();
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scram_sha_256_is_the_only_method_offered_and_clients_log_in_with_it() {
    let endpoint = Endpoint::default().await;
    for user in [USER, "mallory"] {
        let request = authentication_request(&endpoint, user).await;
        // AuthenticationSASL (10) naming SCRAM-SHA-256 only (no TLS here, so no
        // -PLUS); never MD5 (5) or a clear-text password (3).
        assert_eq!(request[..4], 10u32.to_be_bytes(), "{user}: {request:?}");
        assert_eq!(&request[4..], b"SCRAM-SHA-256\0\0", "{user}");
    }
    // tokio-postgres and psql (libpq) complete the exchange.
    let client = endpoint.client().await;
    assert_eq!(value_of(&client, "SELECT 1 AS one").await, "1");
    assert_eq!(
        psql(&endpoint, "SELECT 2 AS two").unwrap(),
        "two\n2\n(1 row)\n"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verifier_written_by_postgresql_logs_its_password_in() {
    // PostgreSQL's own verifier of a password, from pg_authid.
    let (admin, connection) =
        tokio_postgres::connect(&sluice_platform::testing::admin_url(), NoTls)
            .await
            .expect("PostgreSQL runs (deploy/dev/setup.sh)");
    tokio::spawn(connection);
    let role = format!("sluice_scram_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE {role} LOGIN PASSWORD 'from postgres, with ünïcode'"
        ))
        .await
        .unwrap();
    let row = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let stored: String = row.get(0);
    let verifier: Verifier = stored.parse().unwrap();
    assert_eq!(verifier.to_string(), stored, "the text form round-trips");

    let endpoint = Endpoint::with(|config| {
        config.analysts = BTreeMap::from([("pg".to_owned(), verifier)]);
    })
    .await;
    let client = endpoint
        .client_as("pg", "from postgres, with ünïcode")
        .await;
    client.simple_query("SELECT 1").await.unwrap();
    let e = endpoint
        .refused(
            "pg",
            "from postgres, with unicode",
            "another password is refused",
        )
        .await;
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_analyst_past_their_session_limit_is_turned_away_and_others_are_not() {
    let endpoint = Endpoint::with(|config| {
        config.max_sessions_per_analyst = 2;
        config
            .analysts
            .insert("bea".to_owned(), Verifier::new("bea-password"));
    })
    .await;
    let first = endpoint.client().await;
    let second = endpoint.client().await;
    let refused = endpoint
        .refused(USER, PASSWORD, "a third session of the same analyst")
        .await;
    assert_eq!(sqlstate(&refused), "53300", "{refused}");
    assert!(
        message(&refused).contains("too many connections for role \"ada\""),
        "{refused}"
    );
    // Another analyst still gets in, and the first two sessions still work.
    let bea = endpoint.client_as("bea", "bea-password").await;
    bea.simple_query("SELECT 1").await.unwrap();
    first.simple_query("SELECT 1").await.unwrap();
    // A closed session gives its slot back.
    drop(second);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let third = loop {
        match endpoint.config(USER, PASSWORD).connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(sqlstate(&e), "53300", "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the closed session's slot never came back: {e}"),
        }
    };
    third.simple_query("SELECT 1").await.unwrap();
    // A failed login holds no slot afterwards: with one session open, three
    // failed logins, then a second session still gets in.
    drop(third);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let e = endpoint.refused(USER, "wrong", "the login must fail").await;
        assert_eq!(sqlstate(&e), "28P01", "{e}");
    }
    let again = endpoint.client_as(USER, PASSWORD).await;
    again.simple_query("SELECT 1").await.unwrap();
    endpoint.stop().await;
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl.
fn certificate(dir: &std::path::Path) -> TlsFiles {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    TlsFiles { cert, key }
}

/// [`psql`] with more `conninfo` (`key=value` pairs of libpq's connection string).
fn psql_with(endpoint: &Endpoint, conninfo: &str, command: &str) -> Result<String, String> {
    let output = std::process::Command::new("psql")
        .arg("-X")
        .arg("-A")
        .arg(format!(
            "host=127.0.0.1 port={} user={USER} dbname=warehouse {conninfo}",
            endpoint.addr.port()
        ))
        .args(["-c", command])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed with PostgreSQL (deploy/dev/setup.sh)");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_certificate_clients_connect_over_tls_with_sslmode_require() {
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = certificate(&dir);
    let endpoint = Endpoint::with(|config| config.tls = Some(files.clone())).await;
    // sslmode=require negotiates TLS; verify-ca checks the certificate too; libpq
    // uses SCRAM channel binding when offered (channel_binding=require insists).
    let out = psql_with(&endpoint, "sslmode=require", "\\conninfo").unwrap();
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    let root = files.cert.display();
    let out = psql_with(
        &endpoint,
        &format!("sslmode=verify-full sslrootcert={root} channel_binding=require"),
        "SELECT count(*) FROM orders",
    )
    .unwrap();
    assert_eq!(out, "count\n3\n(1 row)\n");
    // A client that does not ask for TLS still connects (as PostgreSQL's `host` rule).
    psql_with(&endpoint, "sslmode=disable", "SELECT 1").unwrap();
    endpoint.stop().await;

    // Without a certificate, sslmode=require fails: the endpoint declines TLS.
    let plain = Endpoint::default().await;
    let e = psql_with(&plain, "sslmode=require", "SELECT 1").unwrap_err();
    assert!(e.contains("server does not support SSL"), "{e}");
    plain.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_mismatched_certificate_fails_at_start_with_its_path() {
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = certificate(&dir);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other = certificate(&other);
    let warehouse = Arc::new(
        Warehouse::open(&dir.join("warehouse.duckdb"), &WarehouseSettings::default()).unwrap(),
    );
    for (tls, expected) in [
        (
            TlsFiles {
                cert: dir.join("absent.crt"),
                key: files.key.clone(),
            },
            "absent.crt",
        ),
        (
            TlsFiles {
                cert: files.cert.clone(),
                key: other.key.clone(),
            },
            "does not match the certificate",
        ),
        (
            TlsFiles {
                cert: files.key.clone(),
                key: files.key.clone(),
            },
            "server.key: holds no PEM certificate",
        ),
    ] {
        let config = AnalystConfig {
            row_limit: 1_000,
            max_sessions: 4,
            max_sessions_per_analyst: 4,
            tls: Some(tls),
            ..test_config()
        };
        let listener = analyst::bind(&config).await.unwrap();
        let e = analyst::serve(
            warehouse.clone(),
            config,
            listener,
            CancellationToken::new(),
        )
        .await
        .expect_err("a TLS set-up that cannot work fails the start");
        assert!(e.to_string().contains(expected), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where `deploy/dev/clients.sh` installs the drivers (once per machine); the
/// first test to need them runs it (it locks, so parallel tests wait).
fn clients() -> PathBuf {
    let root = std::env::var_os("SLUICE_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sluice/clients")
        });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/dev/clients.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("SLUICE_CLIENTS", &root)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "installing the client drivers failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

/// Runs one driver's check script against an endpoint over the client fixture;
/// it exits 0 only when every check passed.
async fn run_client_check(program: &str, args: &[String]) {
    let endpoint = Endpoint::with(|_| {}).await;
    endpoint
        .warehouse
        .connect()
        .unwrap()
        .execute_batch(include_str!("clients/fixture.sql"))
        .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    let command = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", endpoint.addr.port().to_string())
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", "warehouse")
        .env("SLUICE_CLIENT_CHECK_ALL", "1")
        .output();
    let out = tokio::task::spawn_blocking(move || command)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l.ends_with(" 0 failed")),
        "no summary line:\n{stdout}"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psycopg_sqlalchemy_and_pandas_introspect_and_round_trip_every_type() {
    let python = clients().join("python/bin/python");
    run_client_check(python.to_str().unwrap(), &["python_check.py".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgjdbc_introspects_round_trips_every_type_and_cancels() {
    let jar = clients().join("java/postgresql.jar");
    let args = [
        "-cp".to_owned(),
        jar.display().to_string(),
        "ClientCheck.java".to_owned(),
    ];
    run_client_check("java", &args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_postgres_binds_parameters_and_round_trips_every_type() {
    let node_modules = clients().join("node/node_modules");
    assert!(
        node_modules.join("pg").is_dir(),
        "{}",
        node_modules.display()
    );
    run_client_check("node", &["node_check.js".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_in_psql_cancels_the_running_query_and_its_session_goes_on() {
    let endpoint = Endpoint::start(1_000, Duration::from_secs(120)).await;
    // psql run non-interactively stops after a cancelled command (the session
    // going on after a cancel is tested with tokio-postgres above).
    let mut psql = std::process::Command::new("psql")
        .args(["-X", "-A", "-h", "127.0.0.1", "-U", USER, "-d", "warehouse"])
        .args(["-p", &endpoint.addr.port().to_string()])
        .args(["-c", "\\warn connected"])
        .args([
            "-c",
            "SELECT count(*) FROM range(100000000) a, range(100000000) b",
        ])
        .env("PGPASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql is installed with PostgreSQL (deploy/dev/setup.sh)");
    // psql has connected and signed in once it says so (on stderr, unbuffered);
    // the query is the next thing it sends, a moment later.
    let mut stderr = std::io::BufReader::new(psql.stderr.take().unwrap());
    let mut stderr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert_eq!(line, "connected\n", "psql did not connect");
        stderr
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What Ctrl-C sends psql; psql answers it with a CancelRequest.
    let sent = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &psql.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || psql.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let answered = sent.elapsed();
    let stderr = {
        use std::io::Read;
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(stderr.contains("Cancel request sent"), "{stderr}");
    assert_eq!(stdout, "", "no result: {stdout}");
    assert!(!out.status.success());
    assert!(
        answered < Duration::from_secs(2),
        "answered after {answered:?}"
    );
    // The endpoint serves the next psql at once.
    assert_eq!(
        psql_with(&endpoint, "", "SELECT 42 AS answer").unwrap(),
        "answer\n42\n(1 row)\n"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timestamptz_arithmetic_works_in_utc_without_icu() {
    let (endpoint, client) = Endpoint::connected().await;
    let one = |sql: &'static str| rows_of(&client, sql);
    // What analysts write: the last day, against TIMESTAMPTZ columns.
    assert_eq!(
        one("SELECT count(*) FROM orders WHERE placed_at > now() - INTERVAL 1 DAY").await,
        vec![text_row(&["0"])]
    );
    assert_eq!(
        one("SELECT count(*) FROM orders \
             WHERE placed_at > TIMESTAMPTZ '2024-05-02 09:00:00+00' - INTERVAL '1 day'")
        .await,
        vec![text_row(&["2"])]
    );
    assert_eq!(
        one(
            "SELECT id, date_trunc('day', placed_at), extract(hour FROM placed_at), \
                    placed_at + INTERVAL 1 MONTH, date_diff('minute', placed_at, \
                    TIMESTAMPTZ '2024-05-02 12:00:00+00') \
               FROM orders WHERE placed_at IS NOT NULL ORDER BY id"
        )
        .await,
        vec![
            text_row(&[
                "1",
                "2024-05-01 00:00:00+00",
                "10",
                "2024-06-01 10:00:00+00",
                "1560"
            ]),
            text_row(&[
                "2",
                "2024-05-02 00:00:00+00",
                "11",
                "2024-06-02 11:30:00+00",
                "30"
            ]),
        ]
    );
    // Differences of two TIMESTAMPTZ, and today's date.
    assert_eq!(
        one("SELECT max(placed_at) - min(placed_at) FROM orders").await,
        vec![text_row(&["1 day 01:30:00"])]
    );
    assert_eq!(
        one("SELECT current_date = CAST(CAST(now() AS TIMESTAMP) AS DATE)").await,
        vec![text_row(&["t"])]
    );
    // A part that does not exist is an error, and the session goes on.
    let e = error_of(
        &client,
        "SELECT date_trunc('fortnight', placed_at) FROM orders",
    )
    .await;
    assert!(
        message(&e).contains("unknown date part \"fortnight\""),
        "{e}"
    );
    assert_eq!(one("SELECT 1 AS one").await, vec![text_row(&["1"])]);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unnamed_columns_are_named_as_postgresql_names_them() {
    let (endpoint, client) = Endpoint::connected().await;
    let stmt = client
        .prepare(
            "SELECT 1, 1 + 1, id = 1, CASE WHEN paid THEN 1 END, count(*), max(id), id, \
                    upper(customer), 2 AS two FROM orders GROUP BY ALL",
        )
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    // DuckDB keeps a result's column names unique, where PostgreSQL repeats them.
    assert_eq!(
        names,
        [
            "?column?",
            "?column?_1",
            "?column?_2",
            "case",
            "count",
            "max",
            "id",
            "upper",
            "two"
        ]
    );
    endpoint.stop().await;
}

/// An interactive psql under tmux (a terminal, so readline completes).
struct Terminal {
    session: String,
}

impl Terminal {
    fn psql(port: u16) -> Terminal {
        let session = format!("sluice-{}", uuid::Uuid::now_v7().simple());
        let command =
            format!("PGPASSWORD={PASSWORD} psql -X -h 127.0.0.1 -p {port} -U {USER} -d warehouse");
        let status = std::process::Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "200",
                "-y",
                "50",
                &command,
            ])
            .status()
            .expect("tmux is installed (deploy/dev/setup.sh installs it)");
        assert!(status.success());
        let terminal = Terminal { session };
        terminal.wait_for("warehouse=>");
        terminal
    }

    fn keys(&self, keys: &[&str]) {
        let status = std::process::Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 10 s) until the screen shows `text`; the screen then.
    fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{text}` on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_tab_completion_completes_tables_views_and_relations() {
    let endpoint = Endpoint::default().await;
    let port = endpoint.addr.port();
    // The terminal waits block: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let psql = Terminal::psql(port);
        // A table after FROM, a view after FROM, a relation after \d: psql's
        // own catalog queries, sent as completion asks for them.
        psql.keys(&["SELECT * FROM loa", "Tab"]);
        psql.wait_for("SELECT * FROM loads");
        psql.keys(&["C-u", "SELECT * FROM paid_", "Tab"]);
        psql.wait_for("SELECT * FROM paid_orders");
        psql.keys(&["C-u", "\\d ord", "Tab"]);
        psql.wait_for("\\d orders");
        // … and the line then runs.
        psql.keys(&["Enter"]);
        let screen = psql.wait_for("Table \"main.orders\"");
        assert!(screen.contains("customer"), "{screen}");
    })
    .await
    .unwrap();
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_tools_send_at_connect_is_answered() {
    let (endpoint, client) = Endpoint::connected().await;
    let rows = |sql: &'static str| rows_of(&client, sql);
    let first = |rows: Vec<Vec<Option<String>>>| rows[0][0].clone().unwrap_or_default();
    // Session settings: accepted, and nothing of the server's changes.
    for sql in [
        "SET extra_float_digits = 3",
        "SET application_name = 'DBeaver 24.3 - Main'",
        "BEGIN READ ONLY",
        "COMMIT",
    ] {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(
        first(rows("SHOW TRANSACTION ISOLATION LEVEL").await),
        "read committed"
    );
    assert!(first(rows("SELECT version()").await).starts_with("PostgreSQL 16.6"));
    assert_eq!(first(rows("SELECT current_schema()").await), "main");
    // Catalog reads.
    let oid = first(rows("SELECT 'orders'::regclass::oid").await);
    assert_eq!(
        first(rows("SELECT relname FROM pg_catalog.pg_class WHERE oid = 'orders'::regclass").await),
        "orders",
        "{oid}"
    );
    assert_eq!(
        first(rows("SELECT typname FROM pg_catalog.pg_type WHERE oid = 25").await),
        "text"
    );
    let namespaces = rows("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1").await;
    for schema in ["information_schema", "main", "pg_catalog"] {
        assert!(
            namespaces.contains(&vec![Some(schema.to_owned())]),
            "{namespaces:?}"
        );
    }
    assert_eq!(
        rows(
            "SELECT attname, atttypid FROM pg_catalog.pg_attribute \
              WHERE attrelid = 'orders'::regclass AND attnum BETWEEN 1 AND 3 ORDER BY attnum"
        )
        .await,
        vec![
            text_row(&["id", "23"]),
            text_row(&["amount", "1700"]),
            text_row(&["customer", "25"]),
        ]
    );
    assert_eq!(
        first(
            rows("SELECT datname FROM pg_catalog.pg_database WHERE datname = current_database()")
                .await
        ),
        "warehouse"
    );
    let keywords =
        first(rows("SELECT count(*) FROM pg_get_keywords() WHERE word = 'select'").await);
    assert_eq!(keywords, "1");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn like_escapes_with_a_backslash_as_in_postgresql() {
    let (endpoint, client) = Endpoint::connected().await;
    let rows = rows_of(
        &client,
        "SELECT 'paid_orders' LIKE 'paid\\_%', 'paidXorders' LIKE 'paid\\_%', \
                    'PAID_ORDERS' ILIKE 'paid\\_%', 'paidXorders' NOT LIKE 'paid\\_%', \
                    'a%b' LIKE 'a\\%b', 'a%b' LIKE 'a!%b' ESCAPE '!'",
    )
    .await;
    let t = || Some("t".to_owned());
    let f = || Some("f".to_owned());
    assert_eq!(rows, vec![vec![t(), f(), t(), t(), t(), t()]]);
    // Parameters too.
    let row = client
        .query_one("SELECT $1::VARCHAR LIKE $2::VARCHAR", &[&"x_y", &"x\\_y"])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    endpoint.stop().await;
}
