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
use sluice_platform::registry::Registry;

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

mod journey;
mod report;
#[cfg(test)]
mod tests;

use journey::{journey, tally, Journey, Pacer, Shared, Target};
use report::{lags, lock, progress_bar, record_lags, summary, update_bar, LagTrack};

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
