//! The sink end to end: `Sink::run` from pre-filled topics into a fresh warehouse,
//! timed until its positions cover every record.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_analytics::sink::{repository_schemas_dir, Sink, SinkConfig, SinkSteps};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::registry::TopicNames;
use tokio_util::sync::CancellationToken;

/// Runs the real sink on a fresh warehouse until its positions cover `events`
/// records of `topics` (logical names, in the namespace `names`); events/s from the
/// start of `Sink::run`.
pub(super) async fn sink_end_to_end(
    bootstrap: &str,
    names: &TopicNames,
    scratch: &Path,
    topics: &[String; 3],
    events: u64,
    batch: usize,
) -> anyhow::Result<(f64, String)> {
    let path = scratch.join("sink.duckdb");
    let warehouse = Arc::new(Warehouse::open(&path, &WarehouseSettings::default())?);
    let config = SinkConfig {
        bootstrap: bootstrap.to_owned(),
        schemas_dir: repository_schemas_dir(),
        batch_size: batch,
        ..SinkConfig::default()
    };
    let sink = Sink::prepare(&warehouse, config)?.with_topic_names(names.clone());
    let timings = sink.timings();
    warehouse.lock_configuration()?;
    let shutdown = CancellationToken::new();
    let stop_watch = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut task = tokio::spawn(sink.run(Arc::clone(&warehouse), shutdown.clone()));
    let mut watch = {
        let (warehouse, topics, stop) = (warehouse.clone(), topics.clone(), stop_watch.clone());
        tokio::task::spawn_blocking(move || wait_for_positions(&warehouse, &topics, events, &stop))
    };
    let done = tokio::select! {
        done = &mut watch => done?,
        ended = &mut task => {
            stop_watch.store(true, Ordering::Relaxed);
            let _ = watch.await;
            return match ended? {
                Ok(()) => Err(anyhow::anyhow!("the sink stopped before loading every record")),
                Err(e) => Err(anyhow::Error::new(e).context("the sink failed")),
            };
        }
    };
    let steps = timings.steps();
    shutdown.cancel();
    task.await?.context("the sink failed")?;
    let done = done?;
    let profile = sink_profile(&steps, done - start);
    let conn = warehouse.connect()?;
    let (loaded, undecodable): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE decode_error IS NOT NULL) FROM raw_events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let typed: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM order_placed) + (SELECT count(*) FROM order_confirmed) \
              + (SELECT count(*) FROM payment_authorized) + (SELECT count(*) FROM payment_captured) \
              + (SELECT count(*) FROM shipment_created) + (SELECT count(*) FROM shipment_dispatched) \
              + (SELECT count(*) FROM shipment_delivered)",
        [],
        |r| r.get(0),
    )?;
    if loaded as u64 != events || undecodable != 0 || typed as u64 != events {
        bail!("the sink loaded {loaded} raw rows ({undecodable} undecodable) and {typed} typed rows, expected {events}");
    }
    Ok((events as f64 / (done - start).as_secs_f64(), profile))
}

/// The sink's loader thread over the timed run: busy loading (by step) or waiting
/// for the reader, and the batches it got.
fn sink_profile(steps: &SinkSteps, wall: Duration) -> String {
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64();
    let t = &steps.load;
    format!(
        "of the sink's {:.2} s, its loader thread: decode + dedupe {:.0} %, Arrow build {:.0} %, DuckDB append {:.0} %, \
         positions + commit {:.0} %, waiting for the reader {:.0} %; {} batches of {:.0} records on average",
        wall.as_secs_f64(),
        share(t.decode),
        share(t.build),
        share(t.append),
        share(t.commit),
        share(steps.waiting),
        steps.batches,
        steps.records as f64 / steps.batches.max(1) as f64,
    )
}

fn wait_for_positions(
    warehouse: &Warehouse,
    topics: &[String; 3],
    events: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Instant> {
    use std::io::IsTerminal;
    let progress = std::io::stderr().is_terminal();
    let conn = warehouse.connect()?;
    let mut covered = conn.prepare(
        "SELECT coalesce(sum(next_offset), 0) FROM sluice_positions WHERE topic IN (?, ?, ?)",
    )?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sum: i64 = covered
            .query_row(duckdb::params![topics[0], topics[1], topics[2]], |r| {
                r.get(0)
            })?;
        if sum as u64 >= events {
            if progress {
                eprintln!();
            }
            return Ok(Instant::now());
        }
        if progress {
            eprint!("\r  sluice_positions covers {sum}/{events} records");
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped at {sum} of {events} records");
        }
        if Instant::now() > deadline {
            bail!("the sink loaded {sum} of {events} records within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
