//! `sluice projection rebuild`: the read model is replayed into fresh tables while
//! the live projection keeps serving and applying new events, then swapped in. No
//! query fails or sees an empty or half-built model, and the live consumer carries
//! on in the new tables.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sluice_platform::registry::Registry;
use sluice_platform::store::EventStore;
use sqlx::{Connection, PgPool};
use support::slice::{place_confirmed_order, wait_confirmed, Slice};
use support::wait::{millis, secs, until_some};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod support;

/// Orders before the rebuild starts; `FIXED` of them belong to one customer whose
/// list must always answer whole.
const ORDERS: usize = 600;
const FIXED: usize = 10;

/// A platform slice for rebuild tests: the orders store with its relay, a broker,
/// and the live order_view projection (consumer and query API) in this process.
struct Fixture {
    slice: Slice,
    registry: Registry,
    store: EventStore,
    view_pool: PgPool,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// Starts everything once `orders` (customer, count) are placed, and waits until
    /// order_view shows them all.
    async fn start(orders: &[(String, usize)]) -> (Self, Vec<Vec<Uuid>>) {
        let slice = Slice::start(&["orders", "order_view"]).await;
        let (registry, bootstrap) = (slice.registry.clone(), slice.bootstrap.clone());
        let store = slice.orders_store().await;
        let mut placed = Vec::new();
        for (customer, n) in orders {
            let mut ids = Vec::new();
            for _ in 0..*n {
                ids.push(place_confirmed_order(&store, customer).await);
            }
            placed.push(ids);
        }
        let catalog = sluice::components::all_schemas().unwrap();
        let stop = CancellationToken::new();
        let mut tasks = vec![slice.spawn_orders_relay(&store, stop.clone())];
        let (r, b, t) = (registry.clone(), bootstrap.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            sluice_order_view::PROJECTION
                .run(&r, &b, catalog, t)
                .await
                .unwrap()
        }));
        let view_pool = until_some(
            "order_view migrating its tables",
            secs(300),
            millis(50),
            async || slice.order_view_pool().await,
        )
        .await;
        let total = orders.iter().map(|(_, n)| n).sum();
        wait_confirmed(&view_pool, total, "before the rebuild").await;
        let fixture = Fixture {
            slice,
            registry,
            store,
            view_pool,
            stop,
            tasks,
        };
        (fixture, placed)
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        self.view_pool.close().await;
        self.store.pool().close().await;
        self.slice.remove().await;
    }
}

#[tokio::test]
async fn a_rebuild_swaps_in_fresh_tables_while_queries_and_new_events_go_on() {
    let (fixture, placed) = Fixture::start(&[
        ("rebuild-fixed".to_owned(), FIXED),
        ("rebuild-others".to_owned(), ORDERS - FIXED),
    ])
    .await;
    let (fixed, others) = (placed[0].clone(), placed[1].clone());
    let (registry, registry_file) = (&fixture.registry, &fixture.slice.registry_file);
    let (store, view_pool) = (fixture.store.clone(), fixture.view_pool.clone());
    let view = registry.component("order_view").unwrap();
    let generation_before: Uuid = sqlx::query_scalar("SELECT generation FROM consumer_generation")
        .fetch_one(&view_pool)
        .await
        .unwrap();
    // A row gone wrong in the live model (as a since-fixed handler bug would leave
    // it): the rebuild must put it right.
    let damaged = others[0];
    sqlx::query("UPDATE order_view SET customer_id = 'damaged' WHERE order_id = $1")
        .bind(damaged)
        .execute(&view_pool)
        .await
        .unwrap();

    // Readers hammer the query API for the whole rebuild.
    let base_url = format!("http://127.0.0.1:{}", view.port);
    let client = reqwest::Client::new();
    let reading = Arc::new(AtomicBool::new(true));
    let answers = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut readers = Vec::new();
    for r in 0..4 {
        let (client, base_url, reading, answers, failures) = (
            client.clone(),
            base_url.clone(),
            reading.clone(),
            answers.clone(),
            failures.clone(),
        );
        let ids: Vec<Uuid> = fixed.iter().chain(others.iter().skip(1)).copied().collect();
        readers.push(tokio::spawn(async move {
            let mut i = r;
            while reading.load(Ordering::Relaxed) {
                i += 7;
                let id = ids[i % ids.len()];
                let one = client.get(format!("{base_url}/orders/{id}")).send().await;
                match one {
                    Ok(resp) if resp.status() == 200 => {
                        let body: Value = resp.json().await.unwrap();
                        if body["order_status"] != "confirmed" {
                            failures.lock().unwrap().push(format!("order {id}: {body}"));
                        }
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("order {id}: {status} {text}"));
                    }
                    Err(e) => failures.lock().unwrap().push(format!("order {id}: {e}")),
                }
                let list = client
                    .get(format!(
                        "{base_url}/orders?customer_id=rebuild-fixed&limit=100"
                    ))
                    .send()
                    .await;
                match list {
                    Ok(resp) if resp.status() == 200 => {
                        let body: Value = resp.json().await.unwrap();
                        let n = body["orders"].as_array().map_or(0, Vec::len);
                        if n != FIXED {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("list answered {n} of {FIXED} orders"));
                        }
                    }
                    Ok(resp) => failures
                        .lock()
                        .unwrap()
                        .push(format!("list: {}", resp.status())),
                    Err(e) => failures.lock().unwrap().push(format!("list: {e}")),
                }
                answers.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }

    // New orders keep arriving during the rebuild and after the swap.
    let writing = Arc::new(AtomicBool::new(true));
    let placed_late = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, writing, placed_late) = (store.clone(), writing.clone(), placed_late.clone());
        tokio::spawn(async move {
            let mut placed = 0usize;
            while writing.load(Ordering::Relaxed) {
                place_confirmed_order(&store, "rebuild-late").await;
                placed += 1;
                placed_late.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            placed
        })
    };
    // Waits (bounded only against a hang) until the readers have answered
    // `answers_more` more queries and the writer has placed `orders_more` more
    // orders than when called.
    let go_on = |answers_more: u64, orders_more: u64, what: &'static str| {
        let (answers, placed_late) = (answers.clone(), placed_late.clone());
        let (answers_from, orders_from) = (
            answers.load(Ordering::Relaxed),
            placed_late.load(Ordering::Relaxed),
        );
        async move {
            until_some(
                &format!("{what}: readers and writer going on"),
                secs(300),
                millis(10),
                async || {
                    let answered = answers.load(Ordering::Relaxed) >= answers_from + answers_more;
                    let wrote = placed_late.load(Ordering::Relaxed) >= orders_from + orders_more;
                    (answered && wrote).then_some(())
                },
            )
            .await;
        }
    };

    // The rebuild starts once reads and writes are under way.
    go_on(8, 2, "before the rebuild").await;
    let registry_arg = registry_file.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--registry")
            .arg(&registry_arg)
            .args(["projection", "rebuild", "order_view"])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sluice projection rebuild")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rebuild failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("order_view rebuilt from"), "{stdout}");
    assert!(stderr.contains("events/s"), "no progress shown: {stderr}");

    // Queries go on against the new tables while the live consumer resumes there:
    // the readers answer again and new orders arrive after the swap (the live
    // consumer must apply those in the new tables, checked below).
    go_on(8, 2, "after the swap").await;
    writing.store(false, Ordering::Relaxed);
    let late = writer.await.unwrap();
    reading.store(false, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let answered = answers.load(Ordering::Relaxed);
    println!("{answered} answers during the rebuild, {late} orders placed meanwhile; {stdout}");
    assert!(answered > 20, "the readers barely ran: {answered} answers");
    assert!(
        failures.is_empty(),
        "{} bad answers, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Every order, including those placed after the swap, reaches the new tables.
    wait_confirmed(&view_pool, ORDERS + late, "after the rebuild").await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM order_view")
        .fetch_one(&view_pool)
        .await
        .unwrap();
    assert_eq!(
        total as usize,
        ORDERS + late,
        "orders applied twice or lost"
    );
    let customer: String =
        sqlx::query_scalar("SELECT customer_id FROM order_view WHERE order_id = $1")
            .bind(damaged)
            .fetch_one(&view_pool)
            .await
            .unwrap();
    assert_eq!(
        customer, "rebuild-others",
        "the rebuilt model still has the damaged row"
    );
    let generation_after: Uuid = sqlx::query_scalar("SELECT generation FROM consumer_generation")
        .fetch_one(&view_pool)
        .await
        .unwrap();
    assert_ne!(
        generation_before, generation_after,
        "no new generation was swapped in"
    );
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sluice\\_%'")
            .fetch_one(&view_pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "the retired generation was not dropped");

    fixture.stop().await;
}

#[tokio::test]
async fn an_idle_live_consumer_follows_a_swap_to_a_generation_behind_it() {
    let (fixture, _) = Fixture::start(&[("idle".to_owned(), 40)]).await;
    let registry = &fixture.registry;
    let view = registry.component("order_view").unwrap();
    let database = view.database.as_ref().unwrap();
    // A generation that has applied nothing yet, swapped in the way a rebuild does,
    // while no event arrives: only the consumer's idle check can notice it.
    let owner_url = registry.owner_database_url(view).unwrap();
    let mut owner = sqlx::PgConnection::connect(&owner_url).await.unwrap();
    sluice_platform::projection::create_generation_schema(
        &mut owner,
        "sluice_rebuild_idle",
        view,
        database,
    )
    .await
    .unwrap();
    let options: sqlx::postgres::PgConnectOptions = owner_url.parse().unwrap();
    sluice_platform::db::migrate_with(
        options.options([("search_path", "sluice_rebuild_idle")]),
        vec![
            sluice_platform::consumer::migrator(),
            sluice_order_view::migrator(),
        ],
    )
    .await
    .unwrap();
    // Nothing writes to the new generation before the swap: once it commits, the
    // live consumer may start filling it at any moment.
    let empty: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice_rebuild_idle.order_view")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(empty, 0, "the generation to swap in starts empty");
    sluice_platform::projection::swap_generation(
        &mut owner,
        "sluice_rebuild_idle",
        "sluice_retired_idle",
    )
    .await
    .unwrap();
    // The live consumer resumes from the new generation's (empty) positions.
    wait_confirmed(&fixture.view_pool, 40, "after an idle swap").await;
    sqlx::raw_sql("DROP SCHEMA sluice_retired_idle CASCADE")
        .execute(&mut owner)
        .await
        .unwrap();
    fixture.stop().await;
}
