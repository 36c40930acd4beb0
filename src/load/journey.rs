//! The journeys of `sluice load`: each order's commands, paced, timed and counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{LoadPlan, SAGA_WAIT};

/// Paces commands to a rate: each takes the next slot, one every `1/rate` s.
pub(super) struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: u32) -> Self {
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
pub(super) struct Tally {
    pub(super) sent: u64,
    /// Latency of every command, by command.
    pub(super) latencies: BTreeMap<&'static str, Vec<Duration>>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) journeys: BTreeMap<&'static str, u64>,
    pub(super) replayed: u64,
}

impl Tally {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

pub(super) type Shared = Arc<Mutex<Tally>>;

pub(super) fn tally(shared: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) struct Target {
    pub(super) client: reqwest::Client,
    pub(super) orders: String,
    pub(super) payments: String,
    pub(super) shipping: String,
    pub(super) pacer: Pacer,
    pub(super) tally: Shared,
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
pub(super) enum Journey {
    Fulfilled,
    Declined,
    Cancelled,
}

pub(super) async fn journey(
    target: Arc<Target>,
    plan: Arc<LoadPlan>,
    kind: Journey,
    retried: bool,
    n: u64,
) {
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
