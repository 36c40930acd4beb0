//! `sluice load`: realistic traffic through the write services' HTTP APIs of a
//! platform running on this machine, at a bounded rate, for a bounded time.
//!
//! Each order takes one of four journeys, as the saga would see them from real
//! customers:
//! - **fulfilled** (most): placed with one to four lines; once payments has
//!   authorized it, captured; once shipping has created the shipment, dispatched and
//!   delivered — the whole saga and funnel move;
//! - **declined**: its total is over the payments authorization limit, so the saga
//!   declines and cancels it;
//! - **cancelled**: the customer cancels it right after placing it;
//! - any of them may be **retried**: the same `Idempotency-Key` sent again must get
//!   the first answer back (`replayed`).
//!
//! `--rate` paces every command (POST) sent; polls waiting for the saga are not
//! commands and are not paced. A live bar shows what was sent, errors, the rate,
//! and each consumer's lag; the summary gives latencies, errors by kind, the most
//! each consumer fell behind and how long it took to catch up once the load
//! stopped.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use serde_json::{json, Value};
use sluice_platform::registry::Registry;
use uuid::Uuid;

use crate::status;

/// The most `--rate` may ask for, commands per second.
pub const MAX_RATE: u32 = 5_000;
/// The longest `--duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
/// The most `--orders`.
pub const MAX_ORDERS: u64 = 1_000_000;
/// How long a journey waits for the saga's next step before it counts a timeout.
const SAGA_WAIT: Duration = Duration::from_secs(60);
/// How long the summary waits for the consumers to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);

/// How much load, where.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Commands per second, at most.
    pub rate: u32,
    /// Stop starting orders after this long …
    pub duration: Option<Duration>,
    /// … or after this many orders.
    pub orders: Option<u64>,
    /// The host the services listen on: loopback only.
    pub host: IpAddr,
    /// Share of orders over the authorization limit (0–1).
    pub declined: f64,
    /// Share cancelled by the customer (0–1).
    pub cancelled: f64,
    /// Share of orders whose placement is sent twice with one idempotency key.
    pub retried: f64,
    /// The payments authorization limit, in minor units.
    pub authorization_limit_minor: i64,
}

impl LoadPlan {
    /// Refuses what would not be bounded load on this machine.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.host.is_loopback() {
            bail!(
                "`sluice load` only drives a platform on this machine: {} is not a loopback address (use 127.0.0.1 or ::1)",
                self.host
            );
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            bail!("--rate must be 1 to {MAX_RATE} commands per second");
        }
        match (self.duration, self.orders) {
            (Some(_), Some(_)) => bail!("give --duration or --orders, not both"),
            (Some(d), None) if d.is_zero() || d > MAX_DURATION => {
                bail!("--duration must be more than 0 and at most 1h")
            }
            (None, Some(n)) if n == 0 || n > MAX_ORDERS => {
                bail!("--orders must be 1 to {MAX_ORDERS}")
            }
            (None, None) => bail!("give --duration or --orders"),
            _ => {}
        }
        for (name, share) in [
            ("--declined", self.declined),
            ("--cancelled", self.cancelled),
            ("--retried", self.retried),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("{name} is a share between 0 and 1");
            }
        }
        if self.declined + self.cancelled > 1.0 {
            bail!("--declined and --cancelled together exceed all orders");
        }
        Ok(())
    }
}

/// Parses `30s`, `2m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write 30s, 2m, 1h or 500ms"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}`; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Paces commands to a rate: each takes the next slot, one every `1/rate` s.
struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / f64::from(rate)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    async fn slot(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            // After an idle stretch no burst makes up for it.
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// What the journeys measured.
#[derive(Default)]
struct Tally {
    sent: u64,
    /// Latency of every command, by command.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
    journeys: BTreeMap<&'static str, u64>,
    replayed: u64,
}

impl Tally {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

type Shared = Arc<Mutex<Tally>>;

fn tally(shared: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Target {
    client: reqwest::Client,
    orders: String,
    payments: String,
    shipping: String,
    pacer: Pacer,
    tally: Shared,
}

impl Target {
    /// Sends one command (paced, timed, counted); the answer's JSON when it is 2xx.
    async fn command(
        &self,
        name: &'static str,
        url: String,
        body: Value,
        idempotency_key: Option<&str>,
    ) -> Option<Value> {
        self.pacer.slot().await;
        let mut request = self.client.post(&url).json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let started = Instant::now();
        let result = request.send().await;
        let took = started.elapsed();
        let error = match &result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("{name}: HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Some(format!("{name}: timed out")),
            Err(e) if e.is_connect() => Some(format!("{name}: cannot connect")),
            Err(_) => Some(format!("{name}: request failed")),
        };
        {
            let mut t = tally(&self.tally);
            t.sent += 1;
            t.latencies.entry(name).or_default().push(took);
            if let Some(kind) = error {
                t.error(kind);
                return None;
            }
        }
        result.ok()?.json().await.ok()
    }

    /// GETs `url` until `ready` holds for its JSON (the saga acts asynchronously).
    async fn wait_for(
        &self,
        what: &'static str,
        url: String,
        ready: impl Fn(&Value) -> bool,
    ) -> bool {
        let deadline = Instant::now() + SAGA_WAIT;
        let mut pause = Duration::from_millis(50);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    if let Ok(v) = r.json::<Value>().await {
                        if ready(&v) {
                            return true;
                        }
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        tally(&self.tally).error(format!("waited {}s for {what}", SAGA_WAIT.as_secs()));
        false
    }
}

#[derive(Clone, Copy)]
enum Journey {
    Fulfilled,
    Declined,
    Cancelled,
}

async fn journey(target: Arc<Target>, plan: Arc<LoadPlan>, kind: Journey, retried: bool, n: u64) {
    let (lines, customer) = {
        let mut rng = rand::thread_rng();
        let count = rng.gen_range(1..=4);
        let mut lines: Vec<Value> = (0..count)
            .map(|_| {
                json!({
                    "sku": format!("SKU-{:03}", rng.gen_range(1..=200)),
                    "quantity": rng.gen_range(1..=3),
                    "unit_price_minor": rng.gen_range(199..=4_999),
                })
            })
            .collect();
        if let Journey::Declined = kind {
            // One line alone over the limit.
            lines.push(json!({
                "sku": "SKU-LUXURY",
                "quantity": 1,
                "unit_price_minor": plan.authorization_limit_minor + rng.gen_range(1..=50_000),
            }));
        }
        (lines, format!("load-{}", rng.gen_range(1..=500)))
    };
    let order_id = Uuid::now_v7();
    let key = format!("load-{order_id}");
    let body =
        json!({ "order_id": order_id, "customer_id": customer, "currency": "EUR", "lines": lines });
    let placed = target
        .command(
            "place order",
            format!("{}/orders", target.orders),
            body.clone(),
            Some(&key),
        )
        .await;
    if placed.is_none() {
        return;
    }
    if retried {
        // A client that lost the first answer sends the same request again.
        if let Some(again) = target
            .command(
                "place order (retry)",
                format!("{}/orders", target.orders),
                body,
                Some(&key),
            )
            .await
        {
            let mut t = tally(&target.tally);
            if again["replayed"] == true {
                t.replayed += 1;
            } else {
                t.error("retry was not replayed: a second order?".to_owned());
            }
        }
    }
    let name = match kind {
        Journey::Fulfilled => "fulfilled",
        Journey::Declined => "declined",
        Journey::Cancelled => "cancelled",
    };
    *tally(&target.tally).journeys.entry(name).or_default() += 1;
    let order_url = format!("{}/orders/{order_id}", target.orders);
    match kind {
        Journey::Cancelled => {
            target
                .command(
                    "cancel order",
                    format!("{order_url}/cancel"),
                    json!({ "reason": format!("customer changed their mind (load {n})") }),
                    Some(&format!("{key}-cancel")),
                )
                .await;
        }
        Journey::Declined => {
            target
                .wait_for("a declined order to be cancelled", order_url, |v| {
                    v["status"] == "cancelled"
                })
                .await;
        }
        Journey::Fulfilled => {
            let payment_id = sluice_platform::saga::payment_id_for_order(order_id);
            let payment_url = format!("{}/payments/{payment_id}", target.payments);
            if !target
                .wait_for("a payment authorization", payment_url.clone(), |v| {
                    v["status"] == "authorized"
                })
                .await
            {
                return;
            }
            if target
                .command(
                    "capture payment",
                    format!("{payment_url}/capture"),
                    json!({}),
                    Some(&format!("{key}-capture")),
                )
                .await
                .is_none()
            {
                return;
            }
            let shipment_id = sluice_platform::saga::shipment_id_for_order(order_id);
            let shipment_url = format!("{}/shipments/{shipment_id}", target.shipping);
            if !target
                .wait_for("a shipment", shipment_url.clone(), |_| true)
                .await
            {
                return;
            }
            if target
                .command(
                    "dispatch shipment",
                    format!("{shipment_url}/dispatch"),
                    json!({ "carrier": "Load Parcel", "tracking_number": format!("LP{n:010}") }),
                    Some(&format!("{key}-dispatch")),
                )
                .await
                .is_none()
            {
                return;
            }
            target
                .command(
                    "deliver shipment",
                    format!("{shipment_url}/deliver"),
                    json!({}),
                    Some(&format!("{key}-deliver")),
                )
                .await;
        }
    }
}

/// The lag of one consumer (a projection, a reactor or the sink) over the run.
#[derive(Debug, Default, Clone)]
struct LagTrack {
    max_events: i64,
    max_seconds: f64,
    caught_up_after: Option<Duration>,
}

/// Each consumer's events behind, from `sluice status`'s snapshot; relays count as
/// consumers of their outbox.
fn lags(status: &status::Status) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    for c in &status.components {
        if let Some(e) = c.events_behind {
            let label = if c.kind == "service" {
                format!("reactor {}", c.name)
            } else {
                c.name.clone()
            };
            out.push((label, e, c.seconds_behind.unwrap_or(0.0)));
        }
        if let Some(u) = c.relay_unpublished {
            out.push((format!("relay {}", c.name), u, 0.0));
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the most each consumer fell behind.
fn record_lags(tracks: &Mutex<BTreeMap<String, LagTrack>>, s: &status::Status) {
    let mut tracks = lock(tracks);
    for (name, events, seconds) in lags(s) {
        let t = tracks.entry(name).or_default();
        t.max_events = t.max_events.max(events);
        t.max_seconds = t.max_seconds.max(seconds);
    }
}

/// `sluice load`: runs the plan against the platform of `registry`, then prints the
/// summary.
pub async fn run(registry: &Registry, plan: LoadPlan) -> anyhow::Result<()> {
    plan.check()?;
    let base = |name: &str| -> anyhow::Result<String> {
        let port = registry
            .component(name)
            .with_context(|| {
                format!("`sluice load` drives the reference domain: it needs `{name}`")
            })?
            .port;
        Ok(match plan.host {
            IpAddr::V6(h) => format!("http://[{h}]:{port}"),
            IpAddr::V4(h) => format!("http://{h}:{port}"),
        })
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;
    let target = Arc::new(Target {
        orders: base("orders")?,
        payments: base("payments")?,
        shipping: base("shipping")?,
        client,
        pacer: Pacer::new(plan.rate),
        tally: Shared::default(),
    });
    for url in [&target.orders, &target.payments, &target.shipping] {
        let ready = target
            .client
            .get(format!("{url}/health/ready"))
            .send()
            .await;
        if !matches!(&ready, Ok(r) if r.status().is_success()) {
            bail!("{url}/health/ready does not answer 200: start the platform first (`sluice up`), and see `sluice status`");
        }
    }
    let plan = Arc::new(plan);
    let bar = progress_bar(&plan);
    let started = Instant::now();
    // Lags are sampled beside the load, so that a slow scrape never delays an order.
    let tracks: Arc<Mutex<BTreeMap<String, LagTrack>>> = Arc::default();
    let sampler = {
        let (registry, tracks) = (registry.clone(), tracks.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(s) = status::snapshot(&registry).await {
                    record_lags(&tracks, &s);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut journeys = tokio::task::JoinSet::new();
    // Orders start at the rate their commands can be sent: placing (and its retry),
    // then a cancel, or a capture, dispatch and delivery (about 3.5 on average with
    // the default mix).
    let per_order =
        1.0 + plan.retried + plan.cancelled + (1.0 - plan.declined - plan.cancelled) * 3.0;
    let order_interval = Duration::from_secs_f64(per_order / f64::from(plan.rate));
    let mut next_order = tokio::time::interval(order_interval);
    next_order.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    let mut placed = 0u64;
    let mut last_sent = (Instant::now(), 0u64);
    let mut rate_now = 0.0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let done = match (plan.duration, plan.orders) {
            (Some(d), _) => started.elapsed() >= d,
            (_, Some(n)) => placed >= n,
            _ => true,
        };
        if done {
            break;
        }
        tokio::select! {
            _ = next_order.tick() => {
                let kind = {
                    let mut rng = rand::thread_rng();
                    let roll: f64 = rng.gen();
                    if roll < plan.declined {
                        Journey::Declined
                    } else if roll < plan.declined + plan.cancelled {
                        Journey::Cancelled
                    } else {
                        Journey::Fulfilled
                    }
                };
                let retried = rand::thread_rng().gen_bool(plan.retried);
                placed += 1;
                journeys.spawn(journey(target.clone(), plan.clone(), kind, retried, placed));
            }
            _ = refresh.tick() => {
                let sent = tally(&target.tally).sent;
                let elapsed = last_sent.0.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    rate_now = (sent - last_sent.1) as f64 / elapsed;
                    last_sent = (Instant::now(), sent);
                }
                update_bar(&bar, &plan, started, placed, &target.tally, rate_now, &tracks);
            }
            _ = &mut interrupted => {
                bar.println("interrupted: no more orders; waiting for the ones under way");
                break;
            }
        }
        // Finished journeys are not kept.
        while journeys.try_join_next().is_some() {}
    }
    let load_time = started.elapsed();
    bar.set_message("finishing the orders under way");
    while journeys.join_next().await.is_some() {}
    let send_time = started.elapsed();
    sampler.abort();
    let stopped = Instant::now();
    bar.set_message("waiting for every consumer to catch up");
    // Catch-up: poll until every consumer and relay is at 0 behind (bounded).
    loop {
        let Ok(s) = status::snapshot(registry).await else {
            break;
        };
        record_lags(&tracks, &s);
        let mut all = true;
        for (name, events, _) in lags(&s) {
            let mut tracks = lock(&tracks);
            let t = tracks.entry(name).or_default();
            if events == 0 {
                t.caught_up_after.get_or_insert(stopped.elapsed());
            } else {
                t.caught_up_after = None;
                all = false;
            }
        }
        if all || stopped.elapsed() > CATCH_UP_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
    let t = tally(&target.tally);
    print!(
        "{}",
        summary(&plan, (load_time, send_time), placed, &t, &lock(&tracks))
    );
    if !t.errors.is_empty() {
        bail!(
            "{} commands or saga steps failed (see above)",
            t.errors.values().sum::<u64>()
        );
    }
    Ok(())
}

fn progress_bar(plan: &LoadPlan) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let (len, unit) = match (plan.duration, plan.orders) {
        (Some(d), _) => (d.as_secs().max(1), "s"),
        (_, Some(n)) => (n, "orders"),
        _ => (1, ""),
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "[{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}

fn update_bar(
    bar: &indicatif::ProgressBar,
    plan: &LoadPlan,
    started: Instant,
    placed: u64,
    tally_: &Shared,
    rate: f64,
    tracks: &Mutex<BTreeMap<String, LagTrack>>,
) {
    let (sent, errors) = {
        let t = tally(tally_);
        (t.sent, t.errors.values().sum::<u64>())
    };
    bar.set_position(match plan.duration {
        Some(_) => started.elapsed().as_secs(),
        None => placed,
    });
    let lag: Vec<String> = lock(tracks)
        .iter()
        .map(|(name, t)| format!("{name} ≤{}", t.max_events))
        .collect();
    bar.set_message(format!(
        "sent {sent}, errors {errors}, {rate:.0}/s | behind (max): {}",
        lag.join(", ")
    ));
    // Without a terminal the bar is hidden: a line every ~5 s instead.
    if bar.is_hidden() && started.elapsed().as_millis() % 5_000 < 500 {
        eprintln!(
            "{:>4.0} s: {placed} orders, sent {sent}, errors {errors}, {rate:.0}/s",
            started.elapsed().as_secs_f64()
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn summary(
    plan: &LoadPlan,
    (load_time, send_time): (Duration, Duration),
    placed: u64,
    t: &Tally,
    tracks: &BTreeMap<String, LagTrack>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "load: {placed} orders started in {:.1} s; {} commands sent in {:.1} s, until the last order's journey ended ({:.0} commands/s; --rate {})",
        load_time.as_secs_f64(),
        t.sent,
        send_time.as_secs_f64(),
        t.sent as f64 / send_time.as_secs_f64().max(1e-3),
        plan.rate
    );
    let journeys: Vec<String> = t.journeys.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(
        out,
        "orders: {}; {} retries replayed",
        journeys.join(", "),
        t.replayed
    );
    let _ = writeln!(
        out,
        "\n{:<22} {:>7} {:>9} {:>9} {:>9}",
        "COMMAND", "SENT", "P50_MS", "P95_MS", "P99_MS"
    );
    let mut all: Vec<Duration> = Vec::new();
    for (name, latencies) in &t.latencies {
        let mut sorted = latencies.clone();
        sorted.sort();
        all.extend(&sorted);
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>9} {:>9} {:>9}",
            name,
            sorted.len(),
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 95.0)),
            ms(percentile(&sorted, 99.0))
        );
    }
    all.sort();
    let _ = writeln!(
        out,
        "{:<22} {:>7} {:>9} {:>9} {:>9}",
        "all",
        all.len(),
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 95.0)),
        ms(percentile(&all, 99.0))
    );
    if t.errors.is_empty() {
        let _ = writeln!(out, "\nerrors: none");
    } else {
        let _ = writeln!(out, "\nerrors:");
        for (kind, n) in &t.errors {
            let _ = writeln!(out, "  {n:>6}  {kind}");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<26} {:>12} {:>16} {:>22}",
        "CONSUMER", "MAX_BEHIND", "MAX_BEHIND_S", "CAUGHT_UP_AFTER_STOP"
    );
    for (name, track) in tracks {
        let _ = writeln!(
            out,
            "{:<26} {:>12} {:>16.1} {:>22}",
            name,
            track.max_events,
            track.max_seconds,
            track.caught_up_after.map_or_else(
                || "not yet".to_owned(),
                |d| format!("{:.1} s", d.as_secs_f64())
            )
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan {
            rate: 100,
            duration: Some(Duration::from_secs(10)),
            orders: None,
            host: "127.0.0.1".parse().unwrap(),
            declined: 0.1,
            cancelled: 0.1,
            retried: 0.05,
            authorization_limit_minor: 100_000,
        }
    }

    #[test]
    fn load_is_bounded_to_this_machine_and_to_limits() {
        assert!(plan().check().is_ok());
        let remote = LoadPlan {
            host: "10.0.0.7".parse().unwrap(),
            ..plan()
        };
        assert!(remote
            .check()
            .unwrap_err()
            .to_string()
            .contains("not a loopback"));
        let endless = LoadPlan {
            duration: None,
            ..plan()
        };
        assert!(endless.check().is_err());
        let flood = LoadPlan {
            rate: MAX_RATE + 1,
            ..plan()
        };
        assert!(flood.check().is_err());
        let both = LoadPlan {
            orders: Some(5),
            ..plan()
        };
        assert!(both.check().is_err());
        let shares = LoadPlan {
            declined: 0.7,
            cancelled: 0.6,
            ..plan()
        };
        assert!(shares.check().is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
