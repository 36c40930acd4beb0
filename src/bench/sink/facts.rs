//! The latency of an aggregate over `order_facts`, on typed tables filled by SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use duckdb::Connection;
use sluice_analytics::sink::{Loader, VIEWS_SQL};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::avro::SchemaCatalog;

/// Timed runs of the `order_facts` aggregate.
const QUERY_RUNS: usize = 5;
const ORDER_FACTS_QUERY: &str = "SELECT count(*), avg(time_to_confirm_seconds) FROM order_facts";

pub(super) struct FactsLatency {
    pub(super) fill_seconds: f64,
    pub(super) events: i64,
    pub(super) answer: (i64, Option<f64>),
    /// Milliseconds per run, sorted.
    pub(super) millis: Vec<f64>,
    /// Where one more run's time went (DuckDB's profiler).
    pub(super) profile: String,
}

impl FactsLatency {
    pub(super) fn print(&self, orders: u64) {
        println!(
            "order_facts: `{ORDER_FACTS_QUERY}` over {orders} orders ({} events in the typed tables, filled by SQL in {:.1} s)",
            self.events, self.fill_seconds
        );
        println!(
            "             {QUERY_RUNS} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms (goal < 1 000 ms); answer: {} orders, avg {:.1} s to confirm",
            self.millis[0],
            self.millis[self.millis.len() / 2],
            self.millis[self.millis.len() - 1],
            self.answer.0,
            self.answer.1.unwrap_or(f64::NAN)
        );
        println!("             {}", self.profile);
    }
}

/// One typed table's fill: table, stream kind, seconds after placement, which
/// orders (SQL over `i`), and its fields with their SQL expressions.
type Fill = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The typed tables of `orders` orders, filled by SQL: every order placed; 97 %
/// authorized (3 % declined), of those 96 % confirmed (the rest cancelled);
/// confirmed orders captured, shipped (created and dispatched), 80 % delivered, 1 %
/// refunded.
const FILL: [Fill; 10] = [
    ("order_placed", "order", "0", "true", &[
        ("order_id", "ORDER"), ("customer_id", "printf('customer-%05d', i % 20000)"),
        ("currency", "'EUR'"), ("total_minor", "2800"),
        ("lines", "[{'sku': 'BOOK-1', 'quantity': 2, 'unit_price_minor': 1250}, {'sku': 'PEN-9', 'quantity': 1, 'unit_price_minor': 300}]"),
    ]),
    ("payment_authorized", "payment", "2 + i % 5", "i % 33 <> 0", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"), ("currency", "'EUR'"),
    ]),
    ("payment_declined", "payment", "2 + i % 5", "i % 33 = 0", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"), ("currency", "'EUR'"),
        ("reason", "'insufficient funds'"),
    ]),
    ("order_confirmed", "order", "10 + i % 50", "i % 33 <> 0 AND i % 25 <> 1", &[("order_id", "ORDER")]),
    ("order_cancelled", "order", "60 + i % 50", "i % 33 = 0 OR i % 25 = 1", &[
        ("order_id", "ORDER"), ("reason", "'changed my mind'"),
    ]),
    ("payment_captured", "payment", "120 + i % 60", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"),
    ]),
    ("payment_refunded", "payment", "86400 + i % 600", "i % 33 <> 0 AND i % 25 <> 1 AND i % 100 = 7", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "300"), ("reason", "NULL"),
    ]),
    ("shipment_created", "shipment", "130 + i % 60", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"),
    ]),
    ("shipment_dispatched", "shipment", "3600 + i % 3600", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"), ("carrier", "'DHL Express'"),
        ("tracking_number", "printf('JD%018d', i)"),
    ]),
    ("shipment_delivered", "shipment", "86400 + i % 86400", "i % 33 <> 0 AND i % 25 <> 1 AND i % 5 <> 3", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"),
    ]),
];

/// `INSERT … SELECT … FROM range(?)` for one typed table of [`FILL`]. The SQL is
/// built from the constants above only; the order count is a parameter.
fn fill_sql(
    table: &str,
    stream: &str,
    delay: &str,
    filter: &str,
    fields: &[(&str, &str)],
) -> String {
    let id =
        |variant: &str| format!("CAST(printf('00000000-0000-4000-{variant}-%012x', i) AS UUID)");
    let (order, payment, shipment) = (id("8000"), id("9000"), id("a000"));
    let expr = |e: &str| match e {
        "ORDER" => order.clone(),
        "PAYMENT" => payment.clone(),
        "SHIPMENT" => shipment.clone(),
        other => other.to_owned(),
    };
    let (stream_id, topic) = match stream {
        "order" => (&order, "orders.events"),
        "payment" => (&payment, "payments.events"),
        _ => (&shipment, "shipping.events"),
    };
    let columns: Vec<&str> = fields.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = fields.iter().map(|(_, e)| expr(e)).collect();
    format!(
        "INSERT INTO {table} (event_id, stream_id, stream_version, recorded_at, correlation_id, \
             causation_id, schema_version, topic, partition, kafka_offset, {}) \
         SELECT gen_random_uuid(), CAST({stream_id} AS VARCHAR), 1, \
                to_timestamp(1767225600 + i * 0.05 + {delay}), {order}, NULL, 1, '{topic}', \
                CAST(i % 3 AS INTEGER), i, {} \
           FROM range(CAST(? AS BIGINT)) t(i) WHERE {filter}",
        columns.join(", "),
        values.join(", ")
    )
}

pub(super) fn order_facts_latency(
    path: &Path,
    catalog: SchemaCatalog,
    orders: u64,
) -> anyhow::Result<FactsLatency> {
    let warehouse = Warehouse::open(path, &WarehouseSettings::default())?;
    let loader = Loader::new(warehouse.connect()?, catalog)?;
    let conn = loader.connection();
    conn.execute_batch(VIEWS_SQL)?;
    eprintln!("order_facts: filling the typed tables with {orders} orders …");
    let start = Instant::now();
    let mut events = 0i64;
    for (table, stream, delay, filter, fields) in FILL {
        let sql = fill_sql(table, stream, delay, filter, fields);
        events += conn
            .execute(&sql, [orders as i64])
            .with_context(|| format!("filling {table}"))? as i64;
    }
    conn.execute_batch("CHECKPOINT")?;
    let fill_seconds = start.elapsed().as_secs_f64();
    eprintln!("order_facts: {QUERY_RUNS} runs of the aggregate …");
    let mut millis = Vec::with_capacity(QUERY_RUNS);
    let mut answer = (0, None);
    for _ in 0..QUERY_RUNS {
        let start = Instant::now();
        answer = conn.query_row(ORDER_FACTS_QUERY, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        millis.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    if answer.0 as u64 != orders {
        bail!("order_facts counted {} orders, expected {orders}", answer.0);
    }
    millis.sort_by(f64::total_cmp);
    // A profile that cannot be taken is said so; the timings stand.
    let profile = query_profile(conn, ORDER_FACTS_QUERY)
        .unwrap_or_else(|e| format!("no profile: DuckDB's profiler failed ({e:#})"));
    Ok(FactsLatency {
        fill_seconds,
        events,
        answer,
        millis,
        profile,
    })
}

/// One more run of `query` under DuckDB's profiler (`EXPLAIN (ANALYZE, FORMAT
/// JSON)`, which needs no file, so it runs in the sandboxed warehouse): its
/// operators that took the most time, with their share of the operators' total and
/// the rows they produced.
fn query_profile(conn: &Connection, query: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let json: String = conn.query_row(
        &format!("EXPLAIN (ANALYZE, FORMAT JSON) {query}"),
        [],
        |r| r.get(1),
    )?;
    let latency = started.elapsed().as_secs_f64();
    let tree: serde_json::Value = serde_json::from_str(&json)?;
    let mut operators = Vec::new();
    operator_timings(&tree, &mut operators);
    let total: f64 = operators.iter().map(|o| o.1).sum();
    if total <= 0.0 {
        bail!("DuckDB's profile has no operator timings");
    }
    // The same operator over different inputs (eleven hash aggregates, say) sums up.
    let mut by_kind: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for (name, seconds, rows) in operators {
        let entry = by_kind.entry(name).or_default();
        entry.0 += seconds;
        entry.1 += rows;
        entry.2 += 1;
    }
    let mut kinds: Vec<(String, (f64, u64, usize))> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    Ok(format!(
        "one profiled run of {:.0} ms, operators' time (summed over DuckDB's threads): {}",
        latency * 1000.0,
        kinds
            .iter()
            .take(5)
            .map(|(name, (seconds, rows, n))| format!(
                "{name} ×{n} {:.0} % ({} rows out)",
                100.0 * seconds / total,
                rows
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Every operator of a DuckDB JSON profile: its name, seconds and output rows.
/// (The profile's root is an object whose `operator` list holds the plan.)
fn operator_timings(node: &serde_json::Value, out: &mut Vec<(String, f64, u64)>) {
    if let Some(seconds) = node["timing"].as_f64() {
        let name = node["name"]
            .as_str()
            .or_else(|| node["type"].as_str())
            .unwrap_or("?")
            .trim()
            .to_owned();
        let rows = node["intermediate_rows"].as_u64().unwrap_or(0);
        out.push((name, seconds, rows));
    }
    let children = node["children"].as_array().into_iter().flatten();
    for child in children.chain(node["operator"].as_array().into_iter().flatten()) {
        operator_timings(child, out);
    }
}
