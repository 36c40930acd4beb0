//! Crash injection under steady load: every component is its own `sluice run`
//! process on an isolated registry, orders arrive all along, and after each fault
//! `sluice verify` must pass again. Bounded: each fault takes seconds, the whole
//! suite a few minutes. Prints, per fault, the orders placed so far, the
//! duplicates on the topics and how long verify took to pass again.
//!
//! The platform's databases live on a PostgreSQL cluster of the test's own
//! (`initdb` into a temporary directory, on a free port), so that it can be
//! stopped without touching anything else on the machine.
//!
//! Faults: `kill -9` of the orders relay 20 times at random moments; of each
//! projection worker and of the sink 20 times each; a projection's database
//! refusing connections for 60 s; PostgreSQL stopped immediately
//! (`pg_ctl stop -m immediate`) and started again; the broker (the suite's own
//! single-node Apache Kafka) killed and started again; an outbox writer's
//! transaction held open for 30 s on the orders store (the relay stalls, names
//! it, and resumes without skipping); a poison event; an event over the size
//! limit, a request body over the HTTP limit, and the largest event a store
//! accepts. Faults of a replicated cluster (a partition leader killed, a node
//! stopped) are in `tests/kafka_faults.rs`, on three nodes. The two suites run one
//! after the other: side by side they saturate two cores and each takes longer than
//! both in turn.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use sluice_platform::local_kafka::LocalKafka;
use sluice_platform::registry::Registry;
use sluice_platform::store::{
    Append, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId,
};
use sluice_platform::testing::isolated_registry_on;
use sqlx::Connection;
use uuid::Uuid;

#[path = "../support/mod.rs"]
mod support;
use support::database_of;
use support::wait::{millis, secs, until_some};

/// A PostgreSQL cluster of this test's own, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    /// The server's programs: the newest `/usr/lib/postgresql/<version>/bin`
    /// (Debian's layout), else whatever `initdb` is on the PATH.
    fn bin() -> PathBuf {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .collect()
            })
            .unwrap_or_default();
        versions.retain(|p| p.join("initdb").exists());
        versions.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        versions.pop().unwrap_or_default()
    }

    /// The server refuses to run as root: as root, its programs run as `postgres`.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if is_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn start_new() -> Cluster {
        let data = std::env::temp_dir().join(format!("sluice-chaos-pg-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&data).unwrap();
        let cluster = Cluster {
            bin: Cluster::bin(),
            data,
            port: sluice_platform::testing::free_port(),
        };
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&cluster.data)
            .status();
        succeed(
            cluster
                .command("initdb")
                .arg("-D")
                .arg(&cluster.data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
            "initdb",
        );
        cluster.start();
        cluster
    }

    fn start(&self) {
        succeed(
            self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=400 -c fsync=off",
                self.port,
                self.data.display()
            ))
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "start"]),
            "pg_ctl start",
        );
    }

    fn stop_immediately(&self) {
        succeed(
            self.command("pg_ctl").arg("-D").arg(&self.data).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]),
            "pg_ctl stop",
        );
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// One component as its own process, its output in a log file.
struct Proc {
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

struct Chaos {
    cluster: Cluster,
    /// The suite's own single-node Apache Kafka, so that it can be killed.
    kafka: LocalKafka,
    registry: Registry,
    registry_file: PathBuf,
    dir: PathBuf,
    procs: Vec<Proc>,
}

impl Chaos {
    fn sluice(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("--registry")
            .arg(&self.registry_file)
            .env("KAFKA_BROKERS", self.kafka.bootstrap_servers())
            .env("SLUICE_ADMIN_DATABASE_URL", self.cluster.admin_url())
            .env("PGPASSWORD", sluice_platform::testing::DEV_ANALYST_PASSWORD)
            .env("RUST_LOG", "warn");
        command
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.procs[i].log)
            .unwrap();
        let child = self
            .sluice()
            .args(&self.procs[i].args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a component");
        self.procs[i].child = Some(child);
    }

    fn index(&self, args: &[&str]) -> usize {
        self.procs
            .iter()
            .position(|p| p.args == args)
            .unwrap_or_else(|| panic!("no process {args:?}"))
    }

    /// SIGKILL, then start again.
    fn kill_and_restart(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start(i);
    }

    fn url(&self, component: &str, path: &str) -> String {
        let port = self.registry.component(component).unwrap().port;
        format!("http://127.0.0.1:{port}{path}")
    }

    /// `sluice verify` until it passes; how long that took and its output. The
    /// components get a few seconds to recover first: each verify reads every topic
    /// from its start and folds both projections afresh, so an attempt sure to
    /// fail is not worth its time.
    fn verify_until_clean(&self, fault: &str) -> (Duration, String) {
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(4));
        loop {
            let out = self.sluice().arg("verify").output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                return (started.elapsed(), stdout);
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "after {fault}, verify never passed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// One row of the suite's report: the fault, orders placed so far, duplicates on
/// the topics (cumulative), and how long verify took to pass.
type Row = (String, usize, usize, Duration);

impl Chaos {
    /// After `fault`: `sluice verify` until it passes, then its row in `report`.
    /// Returns the duplicates on the topics.
    fn settle(&self, fault: String, placed: &AtomicUsize, report: &mut Vec<Row>) -> usize {
        let (took, out) = tokio::task::block_in_place(|| self.verify_until_clean(&fault));
        let seen = duplicates(&out);
        report.push((fault, placed.load(Ordering::Relaxed), seen, took));
        seen
    }

    /// Every component's process is still running after `what`.
    fn assert_all_running(&mut self, what: &str) {
        for (i, p) in self.procs.iter_mut().enumerate() {
            assert!(
                p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
                "process {i} ({:?}) stopped when {what}",
                p.args
            );
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_file(&self.registry_file);
        let _ = std::fs::remove_dir_all(&self.registry.platform.data_dir);
    }
}

/// Runs `command` to its end; it must succeed.
fn succeed(command: &mut Command, what: &str) {
    let output = command.output().expect(what);
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Duplicates on every topic, from verify's summary lines.
fn duplicates(verify: &str) -> usize {
    verify
        .lines()
        .filter_map(|l| {
            let at = l.find(" duplicates)")?;
            l[..at].rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum()
}

async fn wait_ready(client: &reqwest::Client, chaos: &Chaos, component: &str) {
    let url = chaos.url(component, "/health/ready");
    until_some(
        &format!("{component} becoming ready"),
        secs(120),
        millis(200),
        async || {
            let answer = client.get(&url).send().await;
            matches!(answer, Ok(r) if r.status() == StatusCode::OK).then_some(())
        },
    )
    .await
}

/// One line of an order.
fn line(sku: &str, unit_price_minor: i64) -> serde_json::Value {
    json!({ "sku": sku, "quantity": 1, "unit_price_minor": unit_price_minor })
}

/// 100 order lines (a unit each at 1 minor unit) whose JSON is `bytes` long.
fn sized_lines(bytes: usize) -> Vec<serde_json::Value> {
    const LINES: usize = 100;
    let empty = serde_json::to_string(&vec![line("", 1); LINES])
        .unwrap()
        .len();
    let extra = bytes - empty;
    (0..LINES)
        .map(|i| {
            let n = extra / LINES + if i == 0 { extra % LINES } else { 0 };
            line(&"S".repeat(n), 1)
        })
        .collect()
}

/// Appends an `OrderPlaced` straight to the orders store, as the service would
/// but without its validation; the event's id.
async fn append_order(
    store: &EventStore,
    order_id: Uuid,
    customer_id: &str,
    lines: Vec<serde_json::Value>,
    total_minor: i64,
) -> Result<Uuid, StoreError> {
    let stream = StreamId::new(order_id.to_string()).unwrap();
    let appended = store
        .append(Append {
            stream_id: &stream,
            stream_type: "order",
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_type: "OrderPlaced".to_owned(),
                schema_version: 1,
                payload: json!({ "order_id": order_id.to_string(), "customer_id": customer_id,
                                 "currency": "EUR", "lines": lines, "total_minor": total_minor }),
            }],
            metadata: &Metadata::default(),
            idempotency: None,
        })
        .await?;
    Ok(appended.result().event_ids[0].uuid())
}

/// Waits until `component`'s consumer has dead-lettered `event_id`.
async fn wait_dead_lettered(chaos: &Chaos, component: &str, event_id: Uuid) {
    let c = chaos.registry.component(component).unwrap();
    let mut db = sqlx::PgConnection::connect(&chaos.registry.app_database_url(c).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let error: Option<String> =
            sqlx::query_scalar("SELECT error FROM dead_letters WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&mut db)
                .await
                .unwrap();
        if let Some(error) = error {
            println!("{component} dead-lettered the poison event: {error}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{component} never dead-lettered event {event_id}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn log_contains(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_promise_holds_after_each_crash_under_load() {
    let cluster = Cluster::start_new();
    let dir = std::env::temp_dir().join(format!("sluice-chaos-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let kafka = LocalKafka::start(&dir.join("kafka"), 1, 0)
        .await
        .unwrap_or_else(|e| panic!("start the suite's Apache Kafka: {e}"));
    let base = Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml")).unwrap();
    let (_, text) = isolated_registry_on(&base, &kafka.bootstrap_servers());
    // The same registry on the test's own cluster.
    let text = text
        .replace(
            &format!("database_port = {}", base.platform.database_port),
            &format!("database_port = {}", cluster.port),
        )
        .replace(
            &format!(
                "admin_database_url = {:?}",
                sluice_platform::testing::admin_url()
            ),
            &format!("admin_database_url = {:?}", cluster.admin_url()),
        );
    let registry = Registry::parse(&text).unwrap();
    assert_eq!(registry.platform.database_port, cluster.port);
    let registry_file = dir.join("sluice.toml");
    std::fs::write(&registry_file, text).unwrap();
    let mut args: Vec<Vec<&str>> = Vec::new();
    for service in ["orders", "payments", "shipping"] {
        args.push(vec!["run", service]);
        args.push(vec!["run", "relay", service]);
        args.push(vec!["run", "reactor", service]);
    }
    for component in ["order_view", "customer_summary", "sku_sales", "analytics"] {
        args.push(vec!["run", component]);
    }
    let procs = args
        .iter()
        .map(|a| Proc {
            args: a.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: dir.join(format!("{}.log", a[1..].join("-"))),
        })
        .collect();
    let mut chaos = Chaos {
        cluster,
        kafka,
        registry,
        registry_file,
        dir,
        procs,
    };
    let setup = chaos.sluice().args(["db", "setup"]).output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    for i in 0..chaos.procs.len() {
        chaos.start(i);
    }
    let client = reqwest::Client::new();
    for component in chaos.registry.components() {
        wait_ready(&client, &chaos, &component.name).await;
    }

    // Steady load: an order every 100 ms (a failed request is retried with the
    // same idempotency key, so an order is placed once).
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, placed, client) = (stop.clone(), placed.clone(), client.clone());
        let url = chaos.url("orders", "/orders");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = Uuid::now_v7().to_string();
                let body = json!({ "customer_id": format!("c-chaos-{}", placed.load(Ordering::Relaxed) % 11),
                                   "currency": "EUR",
                                   "lines": [{ "sku": "C-1", "quantity": 1, "unit_price_minor": 300 }] });
                loop {
                    let sent = client
                        .post(&url)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        placed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut report: Vec<Row> = Vec::new();
    let mut rng = rand::thread_rng();
    let mut kill_20_times = |chaos: &mut Chaos, args: &[&str]| {
        let i = chaos.index(args);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
            chaos.kill_and_restart(i);
        }
    };

    // 1-2. kill -9, 20 times each, at random moments.
    for target in [
        vec!["run", "relay", "orders"],
        vec!["run", "order_view"],
        vec!["run", "customer_summary"],
        vec!["run", "analytics"],
    ] {
        let fault = format!("kill -9 of `sluice {}` 20 times", target.join(" "));
        tokio::task::block_in_place(|| kill_20_times(&mut chaos, &target));
        // A relay killed between a batch's delivery and its checkpoint sends that
        // batch again, and nothing more: at most one batch (1000) per kill.
        let before = report.last().map_or(0, |r: &Row| r.2);
        let seen = chaos.settle(fault.clone(), &placed, &mut report);
        assert!(
            seen - before <= 20 * 1000,
            "{fault}: {} duplicates, more than one batch per kill",
            seen - before
        );
    }

    // 5. A projection's database refuses connections for 60 s.
    let view_db = database_of(&chaos.registry, "order_view");
    let mut admin = sqlx::PgConnection::connect(&chaos.cluster.admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(&format!("ALTER DATABASE {view_db} WITH CONNECTION LIMIT 0"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&view_db)
        .execute(&mut admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {view_db} WITH CONNECTION LIMIT -1"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let fault = "order_view's database refusing connections for 60 s".to_owned();
    let view = chaos.index(&["run", "order_view"]);
    assert!(
        chaos.procs[view]
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "order_view stopped while its database refused connections"
    );
    chaos.settle(fault, &placed, &mut report);

    // 4. PostgreSQL stopped immediately (no checkpoint, every session cut), then
    // started again after 5 s: crash recovery, and every component reconnects.
    drop(admin);
    chaos.cluster.stop_immediately();
    tokio::time::sleep(Duration::from_secs(5)).await;
    chaos.cluster.start();
    chaos.assert_all_running("PostgreSQL did");
    let fault = "PostgreSQL stopped immediately, started 5 s later".to_owned();
    chaos.settle(fault, &placed, &mut report);

    // 3. The broker killed (`SIGKILL`) and started again 5 s later: the relays
    // retry until it is back, the consumers reconnect, nothing acknowledged is
    // lost and nothing is applied twice.
    chaos.kafka.kill(0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted = Instant::now();
    chaos
        .kafka
        .start_node(0)
        .await
        .unwrap_or_else(|e| panic!("start the broker again: {e}"));
    let fault = format!(
        "the broker killed, started 5 s later (up again in {:.1} s)",
        restarted.elapsed().as_secs_f64()
    );
    chaos.assert_all_running("the broker did");
    chaos.settle(fault, &placed, &mut report);

    // 6. An outbox writer's transaction open for 30 s on the orders store: the
    // relay stalls, names the transaction, and resumes without skipping.
    let orders = chaos.registry.component("orders").unwrap();
    let mut writer = sqlx::PgConnection::connect(&chaos.registry.app_database_url(orders).unwrap())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut writer)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload) \
         VALUES ($1, $2, 'order', 1, 'OrderPlaced', 1, $3)",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7().to_string())
    .bind(json!({"order_id": Uuid::now_v7().to_string(), "customer_id": "c-held", "currency": "EUR",
                 "lines": [{"sku": "H-1", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100}))
    .execute(&mut writer)
    .await
    .unwrap();
    sqlx::query("INSERT INTO outbox (global_position) SELECT max(global_position) FROM events")
        .execute(&mut writer)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let relay_log = chaos.procs[chaos.index(&["run", "relay", "orders"])]
        .log
        .clone();
    assert!(
        log_contains(&relay_log, &format!("pid={pid}")),
        "the relay never named the blocking transaction (pid {pid})"
    );
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    let fault = "an outbox writer's transaction open for 30 s".to_owned();
    chaos.settle(fault, &placed, &mut report);

    // 7. A poison event and oversized ones, written as a faulty producer would:
    // through the orders store's own API, past the service's validation.
    let store = EventStore::new(
        sqlx::PgPool::connect(&chaos.registry.app_database_url(orders).unwrap())
            .await
            .unwrap(),
    );
    // Poison: an order with a negative total fits its schema, so the relay
    // publishes it, but order_view and the payments reactor can never apply it.
    // They dead-letter it and every later order goes on.
    let poison_order = Uuid::now_v7();
    let poison = append_order(
        &store,
        poison_order,
        "c-poison",
        vec![line("P-1", 100)],
        -500,
    )
    .await
    .expect("append the poison event");
    for consumer in ["order_view", "payments"] {
        wait_dead_lettered(&chaos, consumer, poison).await;
    }
    let fault = "a poison event (an order with a negative total)".to_owned();
    chaos.settle(fault, &placed, &mut report);

    // Oversized: one byte over the limit is refused and writes nothing; a request
    // body over the HTTP limit is refused and places nothing; the largest event a
    // store accepts goes all the way, to the topic, both projections and the
    // warehouse.
    let limit = sluice_platform::store::MAX_EVENT_BYTES;
    let refused_order = Uuid::now_v7();
    let refused = append_order(&store, refused_order, "c-big", sized_lines(limit + 1), 100)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::TooLarge { .. }), "{refused}");
    let stream = StreamId::new(refused_order.to_string()).unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), None);
    let body = json!({ "customer_id": "c-big", "currency": "EUR",
                       "lines": [{ "sku": "B".repeat(64), "quantity": 1, "unit_price_minor": 1 }],
                       "padding": "x".repeat(sluice_platform::http::MAX_BODY_BYTES) });
    let response = client
        .post(chaos.url("orders", "/orders"))
        .header("Idempotency-Key", Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let big_order = Uuid::now_v7();
    let lines = sized_lines(limit - 2_000);
    let total = lines.len() as i64;
    append_order(&store, big_order, "c-big", lines, total)
        .await
        .expect("append the largest event a store accepts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = client
            .get(chaos.url("order_view", &format!("/orders/{big_order}")))
            .send()
            .await;
        if got.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the largest order never reached order_view"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fault = format!(
        "an event over the {limit}-byte limit refused, a {} KiB request body refused, \
         an event just under the limit published",
        sluice_platform::http::MAX_BODY_BYTES / 1024
    );
    chaos.settle(fault, &placed, &mut report);

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (_, out) = tokio::task::block_in_place(|| chaos.verify_until_clean("the end"));
    println!("{out}");
    println!("| fault | orders placed so far | duplicates on the topics | verify clean after |");
    println!("|---|---|---|---|");
    for (fault, placed, duplicates, took) in &report {
        println!(
            "| {fault} | {placed} | {duplicates} | {:.1} s |",
            took.as_secs_f64()
        );
    }
    // Logs stay for a failed run; the broker's data goes.
    chaos.kafka.kill(0).await;
    let _ = std::fs::remove_dir_all(chaos.dir.join("kafka"));
}
