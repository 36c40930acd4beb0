//! What `sluice load` shows: the live bar while it runs, each consumer's lag, and
//! the summary at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::journey::{tally, Shared, Tally};
use super::LoadPlan;
use crate::status;

/// The lag of one consumer (a projection, a reactor or the sink) over the run.
#[derive(Debug, Default, Clone)]
pub(super) struct LagTrack {
    pub(super) max_events: i64,
    pub(super) max_seconds: f64,
    pub(super) caught_up_after: Option<Duration>,
}

/// Each consumer's events behind, from `sluice status`'s snapshot; relays count as
/// consumers of their outbox.
pub(super) fn lags(status: &status::Status) -> Vec<(String, i64, f64)> {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the most each consumer fell behind.
pub(super) fn record_lags(tracks: &Mutex<BTreeMap<String, LagTrack>>, s: &status::Status) {
    let mut tracks = lock(tracks);
    for (name, events, seconds) in lags(s) {
        let t = tracks.entry(name).or_default();
        t.max_events = t.max_events.max(events);
        t.max_seconds = t.max_seconds.max(seconds);
    }
}

pub(super) fn progress_bar(plan: &LoadPlan) -> indicatif::ProgressBar {
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

pub(super) fn update_bar(
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

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub(super) fn summary(
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
