//! `sluice up` end to end: the real binary provisions every database, starts the
//! embedded broker, migrates and serves all write services and their relays in one
//! process, each on its own database; commands reach each of them, their events
//! reach the topics, and a foreign Avro decoder (fastavro) reads what the relays
//! published; SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::registry::Registry;
use sluice_platform::testing::{consume, drop_registry_databases};
use support::database_of;
use support::platform::Platform;
use support::wait::{millis, secs, until, until_some};
use uuid::Uuid;

/// GETs `url` until it answers 200 (the saga's reactors create what it names
/// asynchronously); the deadline only guards against a hang.
async fn get_when_there(client: &reqwest::Client, url: String) -> Value {
    until(
        &format!("{url} answering 200"),
        secs(120),
        millis(100),
        async || {
            let response = client.get(&url).send().await.unwrap();
            if response.status() != StatusCode::OK {
                return Err(response.status());
            }
            Ok(response.json().await.unwrap())
        },
    )
    .await
}

/// The payment the saga makes for `order_id`, once payments has it: its id and
/// its state.
async fn saga_payment(
    client: &reqwest::Client,
    platform: &Platform,
    order_id: Uuid,
) -> (Uuid, Value) {
    let payment_id = sluice_platform::saga::payment_id_for_order(order_id);
    let url = platform.url("payments", &format!("/payments/{payment_id}"));
    (payment_id, get_when_there(client, url).await)
}

#[tokio::test]
async fn sluice_up_runs_every_write_service_on_its_own_database() {
    let (mut platform, client) = Platform::start_ready().await;
    let order_id = Uuid::now_v7();
    let placed = platform
        .place_order(&client, &support::order(order_id, "c-up", "UP-1", 3, 700))
        .await;
    assert_eq!(placed["stream_version"], 1);
    // The saga authorizes the order's payment and, once the order is confirmed,
    // creates its shipment, each in its own service.
    let (payment_id, payment) = saga_payment(&client, &platform, order_id).await;
    assert_eq!(payment["status"], "authorized");
    assert_eq!(payment["authorized_minor"], 2100);
    let payment = json!({ "stream_id": payment_id.to_string() });
    let shipment_id = sluice_platform::saga::shipment_id_for_order(order_id);
    let shipment = get_when_there(
        &client,
        platform.url("shipping", &format!("/shipments/{shipment_id}")),
    )
    .await;
    assert_eq!(shipment["order_id"], order_id.to_string());
    let shipment = json!({ "stream_id": shipment_id.to_string() });

    // Each event landed in its own service's store, and only there.
    for (service, stream) in [
        ("orders", placed["stream_id"].as_str().unwrap()),
        ("payments", payment["stream_id"].as_str().unwrap()),
        ("shipping", shipment["stream_id"].as_str().unwrap()),
    ] {
        let noun = match service {
            "orders" => "orders",
            "payments" => "payments",
            _ => "shipments",
        };
        let audit: Value = support::get_json(
            &client,
            platform.url(service, &format!("/{noun}/{stream}/events")),
        )
        .await;
        // The saga's reactors may have appended to the order since (its confirmation).
        assert!(!audit["events"].as_array().unwrap().is_empty(), "{service}");
        for other in ["orders", "payments", "shipping"]
            .iter()
            .filter(|o| **o != service)
        {
            let other_db = database_of(&platform.registry, other);
            let count: i64 = count_events(&platform.registry, other, stream).await;
            assert_eq!(count, 0, "{service}'s stream found in {other_db}");
        }
    }

    // Each service's relay published its event: key = stream id, Avro single-object
    // value that fastavro decodes from the committed .avsc to the stored payload.
    let bootstrap = platform.registry.platform.kafka_brokers.clone();
    let mut cases = Vec::new();
    for (service, stream, noun) in [
        ("orders", placed["stream_id"].as_str().unwrap(), "orders"),
        (
            "payments",
            payment["stream_id"].as_str().unwrap(),
            "payments",
        ),
        (
            "shipping",
            shipment["stream_id"].as_str().unwrap(),
            "shipments",
        ),
    ] {
        let topic = platform
            .registry
            .topic_names()
            .physical(&format!("{service}.events"));
        // Other records may be there too (the saga's reactions): take this stream's first.
        let records = consume(&bootstrap, &topic, 1, Duration::from_secs(30)).await;
        let ours: Vec<_> = records
            .iter()
            .filter(|r| r.key == stream && r.header("stream_version") == "1")
            .collect();
        assert_eq!(ours.len(), 1, "{topic}: {records:?}");
        let record = ours[0];
        let audit: Value = support::get_json(
            &client,
            platform.url(service, &format!("/{noun}/{stream}/events")),
        )
        .await;
        let stored = &audit["events"][0];
        assert_eq!(
            record.header("event_id"),
            stored["event_id"].as_str().unwrap()
        );
        let event_type = record.header("event_type");
        cases.push(json!({
            "event_type": event_type,
            "avsc": Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas").join(service).join(event_type)
                .join(format!("v{}.avsc", record.header("schema_version"))),
            "bytes": record.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "expected": stored["payload"],
        }));
    }
    support::fastavro::assert_fastavro_decodes(&cases);

    let status = platform.stop();
    assert!(status.success(), "sluice up exited with {status}");
    drop_registry_databases(&platform.registry).await;
}

/// Events of `stream` in `component`'s store, read as that component's own app role.
async fn count_events(registry: &Registry, component: &str, stream: &str) -> i64 {
    let c = registry.component(component).unwrap();
    let url = registry.app_database_url(c).unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(stream)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// `sluice status --json` of the platform: its exit status and the parsed table.
fn status(platform: &Platform) -> (bool, Value) {
    let out = platform.sluice(&["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

fn row<'a>(status: &'a Value, component: &str) -> &'a Value {
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap_or_else(|| panic!("no row for {component}: {status}"))
}

async fn admin(sql: &str) {
    let pool = sqlx::PgPool::connect(&sluice_platform::testing::admin_url())
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// A component whose database does not take connections fails at start; the
/// supervisor restarts it with backoff while every other component serves, shows it
/// unhealthy in `sluice status`, and it comes back by itself once its database
/// answers — and again after its connections are killed. Then `sluice load` drives
/// the whole saga through the platform and every consumer catches up.
#[tokio::test]
async fn a_failing_component_restarts_by_itself_while_the_others_serve() {
    let mut platform = Platform::prepare();
    let setup = platform.sluice(&["db", "setup"]);
    assert!(setup.status.success(), "{setup:?}");
    let view_db = database_of(&platform.registry, "order_view");
    admin(&format!(
        "ALTER DATABASE {view_db} WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    platform.spawn(&["up", "--no-setup"]);
    let client = reqwest::Client::new();
    platform.wait_ready_all_but(&client, &["order_view"]).await;
    // The others serve: an order goes through the saga without order_view.
    let order_id = Uuid::now_v7();
    let placed = platform
        .place_order(
            &client,
            &support::order(order_id, "c-supervised", "SUP-1", 1, 900),
        )
        .await;
    let (_, payment) = saga_payment(&client, &platform, order_id).await;
    assert_eq!(payment["status"], "authorized");
    // order_view is shown restarting, with its reason in the log and its restarts
    // counted; the others are ready.
    let (all_ready, s) = until(
        "order_view counting two restarts",
        secs(30),
        millis(500),
        async || {
            let (all_ready, s) = status(&platform);
            if row(&s, "order_view")["restarts"].as_u64().unwrap_or(0) >= 2 {
                Ok((all_ready, s))
            } else {
                Err(s)
            }
        },
    )
    .await;
    assert!(!all_ready, "status exits 1 while a component is down");
    let view = row(&s, "order_view");
    assert_eq!(view["ready"], false);
    assert!(
        view["health"]
            .as_str()
            .unwrap()
            .contains("projection restarting"),
        "{view}"
    );
    for other in platform.registry.components() {
        if other.name != "order_view" {
            assert_eq!(row(&s, &other.name)["ready"], true, "{}: {s}", other.name);
        }
    }
    // Its database answers again: it comes back by itself and catches up.
    admin(&format!(
        "ALTER DATABASE {view_db} WITH ALLOW_CONNECTIONS true"
    ))
    .await;
    let token = placed["consistency_token"].as_str().unwrap().to_owned();
    let view_url = platform.url("order_view", &format!("/orders/{order_id}"));
    until_some(
        "order_view coming back",
        secs(90),
        millis(250),
        async || {
            let answer = client
                .get(&view_url)
                .header("X-Consistency-Token", &token)
                .send()
                .await;
            matches!(&answer, Ok(r) if r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    // Its connections killed: it reconnects by itself.
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{view_db}'"
    ))
    .await;
    let order_id = Uuid::now_v7();
    let placed = platform
        .place_order(
            &client,
            &support::order(order_id, "c-supervised", "SUP-2", 2, 400),
        )
        .await;
    let seen = client
        .get(platform.url("order_view", &format!("/orders/{order_id}")))
        .header(
            "X-Consistency-Token",
            placed["consistency_token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        seen.status(),
        StatusCode::OK,
        "after its connections were killed"
    );

    // Load through the whole saga: every order's journey completes, every consumer
    // catches up, and the summary says so.
    let load = platform.sluice(&["load", "--orders", "12", "--rate", "40"]);
    let summary = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(summary.contains("load: 12 orders started"), "{summary}");
    assert!(summary.contains("errors: none"), "{summary}");
    for consumer in [
        "order_view",
        "customer_summary",
        "analytics",
        "reactor payments",
    ] {
        let line = summary
            .lines()
            .find(|l| l.starts_with(consumer))
            .unwrap_or_else(|| panic!("no lag line for {consumer}: {summary}"));
        assert!(line.ends_with(" s"), "{consumer} did not catch up: {line}");
    }
    let (all_ready, s) = status(&platform);
    assert!(all_ready, "{s}");
    assert!(!s["sink"].as_array().unwrap().is_empty(), "{s}");
    assert_eq!(platform.stop().code(), Some(0));
    drop_registry_databases(&platform.registry).await;
}

/// `deploy/start-dev.sh`, generated from the registry, brings a platform up from
/// nothing: provisions, starts `sluice up` (which migrates), waits for every
/// component and seeds demo orders through the saga.
#[tokio::test]
async fn the_generated_start_dev_script_provisions_migrates_and_seeds() {
    let platform = Platform::prepare();
    let root = std::env::temp_dir().join(format!(
        "sluice-start-dev-{}",
        sluice_platform::testing::unique_suffix()
    ));
    let script = sluice_platform::generate::all(&platform.registry)
        .into_iter()
        .find(|f| f.path == Path::new("deploy/start-dev.sh"))
        .expect("start-dev.sh is generated");
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::fs::write(root.join("deploy/start-dev.sh"), &script.content).unwrap();
    let out = std::process::Command::new("timeout")
        .arg("300")
        .arg("bash")
        .arg(root.join("deploy/start-dev.sh"))
        .env(
            "SLUICE",
            format!(
                "{} --registry {}",
                env!("CARGO_BIN_EXE_sluice"),
                platform.registry_file().display()
            ),
        )
        .env("SEED_ORDERS", "5")
        .env(
            "SLUICE_SCHEMAS_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        )
        .envs(sluice_platform::testing::broker_env(&platform.registry))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid_file = platform.registry.platform.data_dir.join("start-dev.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    // Whatever happened, the platform it started stops.
    let stop = || {
        if !pid.trim().is_empty() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", pid.trim()])
                .status();
        }
    };
    if !out.status.success() {
        stop();
        panic!(
            "start-dev.sh failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for c in platform.registry.components() {
        assert!(
            stdout.contains(&format!("{} ready on {}", c.name, c.port)),
            "{}: {stdout}",
            c.name
        );
    }
    assert!(stdout.contains("load: 5 orders started"), "{stdout}");
    assert!(stdout.contains("errors: none"), "{stdout}");
    // Seeded through the saga: the orders are in the store, migrated and written.
    let orders = count_all_events(&platform.registry, "orders").await;
    assert!(orders >= 5, "{orders} order events");
    stop();
    until_some("sluice up stopping", secs(30), millis(100), async || {
        let alive = std::process::Command::new("kill")
            .args(["-0", pid.trim()])
            .status()
            .unwrap()
            .success();
        (!alive).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&platform.registry.platform.data_dir);
    drop_registry_databases(&platform.registry).await;
}

async fn count_all_events(registry: &Registry, component: &str) -> i64 {
    let c = registry.component(component).unwrap();
    let pool = sqlx::PgPool::connect(&registry.app_database_url(c).unwrap())
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// A write transaction of orders' store left open holds its relay back: `sluice
/// status` shows the stall with the backend that holds it, and once that
/// transaction ends the relay publishes what waited and the stall is gone.
#[tokio::test]
async fn status_names_the_transaction_that_stalls_a_relay() {
    use sluice_platform::store::StreamId;
    use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent};

    let mut platform = Platform::start();
    let client = reqwest::Client::new();
    platform.wait_ready(&client, "orders").await;
    let orders = platform.registry.component("orders").unwrap();
    let pool = sqlx::PgPool::connect(&platform.registry.app_database_url(orders).unwrap())
        .await
        .unwrap();
    let store = EventStore::new(pool.clone());
    // An append left uncommitted, as a slow command's transaction would be.
    let mut blocker = pool.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *blocker)
        .await
        .unwrap();
    let held = StreamId::new(format!("held-{}", Uuid::now_v7())).unwrap();
    store
        .append_in(
            &mut blocker,
            Append {
                stream_id: &held,
                stream_type: "order",
                expected: ExpectedVersion::NoStream,
                events: vec![NewEvent {
                    event_type: "OrderConfirmed".into(),
                    schema_version: 1,
                    payload: json!({ "order_id": Uuid::now_v7() }),
                }],
                metadata: &Metadata::default(),
                idempotency: None,
            },
        )
        .await
        .unwrap();
    // An order committed after it: the relay may not publish it while the older
    // transaction is open.
    platform
        .place_order(
            &client,
            &json!({ "customer_id": "c-stalled", "currency": "EUR",
                "lines": [{ "sku": "STALL-1", "quantity": 1, "unit_price_minor": 700 }] }),
        )
        .await;
    let stall = until(
        "orders' relay shown stalled",
        secs(60),
        millis(500),
        async || {
            let (_, s) = status(&platform);
            let row = row(&s, "orders");
            let Some(stall) = row["relay_stall"].as_str() else {
                return Err(s);
            };
            assert!(row["relay_unpublished"].as_i64().unwrap_or(0) >= 1, "{row}");
            Ok(stall.to_owned())
        },
    )
    .await;
    assert!(stall.contains(&format!("pid {pid}")), "{stall}");
    let table = platform.sluice(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("orders relay: held back by pid {pid}")),
        "{text}"
    );

    // The transaction ends: what waited is published and the stall is gone.
    blocker.rollback().await.unwrap();
    until(
        "orders' relay unstalled after the transaction ended",
        secs(60),
        millis(500),
        async || {
            let (_, s) = status(&platform);
            let row = row(&s, "orders");
            if row["relay_stall"].is_null() && row["relay_unpublished"] == 0 {
                Ok(())
            } else {
                Err(s)
            }
        },
    )
    .await;
    pool.close().await;
    assert_eq!(platform.stop().code(), Some(0));
    drop_registry_databases(&platform.registry).await;
}
