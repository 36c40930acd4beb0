//! The CDC sink: every record of every `*.events` topic into the DuckDB warehouse.
//!
//! - `raw_events`: one row per event (decodable or not), unique by event id;
//! - one typed table per event type (`OrderPlaced` → `order_placed`): the envelope
//!   plus one column per Avro field over every schema version (`mapping`);
//! - `sluice_positions` / `sluice_watermarks`: where to resume, how fresh;
//! - the saved views of `analytics/sql/views.sql`.
//!
//! Two halves joined by a bounded channel: the async `reader` assigns partitions
//! and gathers batches; a dedicated OS thread owns the sink's DuckDB connection
//! and runs the [`Loader`], so no DuckDB call ever blocks the tokio runtime. Each
//! batch commits with its positions in one DuckDB transaction: a crash anywhere
//! neither loses nor duplicates (see `loader`).

mod columns;
mod loader;
mod mapping;
mod positions;
mod reader;
mod record;
mod schemas;
mod telemetry;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_platform::avro::SchemaCatalog;
use sluice_platform::registry::TopicNames;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::warehouse::{Warehouse, WarehouseError};

pub use loader::{LoadReport, LoadTimings, Loader};
pub use mapping::{table_name as typed_table_name, TypedTableError};
pub use reader::TOPIC_SUFFIX;
pub use record::SinkRecord;
pub use schemas::repository_schemas_dir;

/// The saved cross-service views, created (or replaced) at every start.
pub const VIEWS_SQL: &str = include_str!("../../sql/views.sql");

/// Batches waiting for the loader; the reader waits when they are this many.
const QUEUED_BATCHES: usize = 2;
/// A batch gathering while the loader waits goes to it once it holds this share of
/// the batch size, without waiting to fill (see [`reader::Reader::run`]).
pub(crate) const EAGER_SHARE: usize = 16;
/// The first wait before a failed batch is loaded again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Errors that stop the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The schemas under the directory do not form a valid catalog (a schema does
    /// not parse, two versions are identical, …).
    #[error("the schemas under {dir} are invalid: {message}")]
    Schemas { dir: PathBuf, message: String },
    /// A schema file or folder cannot be read.
    #[error("cannot read {path}: {source}")]
    SchemaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An event type cannot have a typed table (its name clashes with another's or
    /// with a table of the sink).
    #[error("typed table: {0}")]
    TypedTable(#[from] mapping::TypedTableError),
    /// The warehouse could not give the sink a connection.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A DuckDB statement of the sink failed; the batch was rolled back. The sink
    /// retries it (see [`Sink::run`]); it stops on it only while preparing.
    #[error("warehouse statement failed: {0}")]
    DuckDb(#[from] duckdb::Error),
    /// The Kafka client could not be created, assigned or asked for metadata.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The views file failed to run.
    #[error("cannot create the saved views: {0}")]
    Views(duckdb::Error),
    /// The loader thread could not start, or panicked.
    #[error("loader thread: {0}")]
    LoaderThread(String),
    /// The loader stopped taking batches (it failed; its error is reported instead
    /// whenever it can be).
    #[error("the loader stopped")]
    LoaderStopped,
}

/// DuckDB's row group size, the sink's default batch. A transaction that appends at
/// least a row group to a table has its full row groups written straight to the
/// database file, compressed, and logs only their block pointers; a smaller one
/// writes every row to the write-ahead log, and the next checkpoint writes it again.
/// A full batch of this size puts exactly one row group into `raw_events`, so a
/// sink catching up writes its largest table once, and leaves no partly filled row
/// group behind (an append of 131 072 rows, one row group and 8 192 rows, grew the
/// file by 75 %). `docs/benchmarks.md` has the measurements.
pub const ROW_GROUP_SIZE: usize = 122_880;

/// Tuning and wiring of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Root of the `.avsc` files (`<service>/<EventType>/v<N>.avsc`).
    pub schemas_dir: PathBuf,
    /// Most records loaded in one transaction: batches fill up to it while the sink
    /// catches up, and stay small when it is live (see `batch_wait`). The default,
    /// [`ROW_GROUP_SIZE`], is one DuckDB row group (see there).
    pub batch_size: usize,
    /// How long to gather more records after the first before loading.
    pub batch_wait: Duration,
    /// How often the broker's topics are listed to find new topics and partitions.
    pub topic_refresh: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            bootstrap: "127.0.0.1:9092".to_owned(),
            schemas_dir: repository_schemas_dir(),
            batch_size: ROW_GROUP_SIZE,
            batch_wait: Duration::from_millis(200),
            topic_refresh: Duration::from_secs(3),
        }
    }
}

/// The sink, prepared: its tables and views exist.
pub struct Sink {
    config: SinkConfig,
    catalog: SchemaCatalog,
    /// The namespace of the topics it loads on the broker.
    topic_names: TopicNames,
    timings: Arc<SinkTimings>,
}

/// Where the sink's loader thread spent its time, summed since the sink started:
/// waiting for the reader's next batch, or loading one (by step). A loader that
/// rarely waits bounds the sink; one that mostly waits is fed too slowly.
#[derive(Debug, Default)]
pub struct SinkTimings {
    waiting: AtomicU64,
    decode: AtomicU64,
    build: AtomicU64,
    append: AtomicU64,
    commit: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
}

/// A reading of [`SinkTimings`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkSteps {
    /// The loader waiting for the reader's next batch.
    pub waiting: Duration,
    /// The loads, by step.
    pub load: LoadTimings,
    /// Batches loaded, and the records in them.
    pub batches: u64,
    pub records: u64,
}

impl SinkTimings {
    fn loaded(&self, report: &LoadReport) {
        let add = |c: &AtomicU64, d: Duration| c.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        add(&self.decode, report.timings.decode);
        add(&self.build, report.timings.build);
        add(&self.append, report.timings.append);
        add(&self.commit, report.timings.commit);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records
            .fetch_add(report.records as u64, Ordering::Relaxed);
    }

    /// The sums so far.
    pub fn steps(&self) -> SinkSteps {
        let time = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        SinkSteps {
            waiting: time(&self.waiting),
            load: LoadTimings {
                decode: time(&self.decode),
                build: time(&self.build),
                append: time(&self.append),
                commit: time(&self.commit),
            },
            batches: self.batches.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }
}

impl Sink {
    /// Reads the schemas, creates tables, typed tables and views (call before
    /// [`Warehouse::lock_configuration`]).
    pub fn prepare(warehouse: &Warehouse, config: SinkConfig) -> Result<Sink, SinkError> {
        let catalog = schemas::load_catalog(&config.schemas_dir)?;
        let loader = Loader::new(warehouse.connect()?, catalog.clone())?;
        loader
            .connection()
            .execute_batch(VIEWS_SQL)
            .map_err(SinkError::Views)?;
        tracing::info!(
            event_types = catalog.event_types().count(),
            schemas_dir = %config.schemas_dir.display(),
            "sink prepared"
        );
        Ok(Sink {
            config,
            catalog,
            topic_names: TopicNames::default(),
            timings: Arc::default(),
        })
    }

    /// Where the loader's time goes (see [`SinkTimings`]); take it before `run`.
    pub fn timings(&self) -> Arc<SinkTimings> {
        self.timings.clone()
    }

    /// Loads the `*.events` topics of the namespace `names` only (the registry's
    /// [`TopicNames`]), under their logical names; by default every `*.events`
    /// topic of the broker, as it is named.
    pub fn with_topic_names(mut self, names: TopicNames) -> Sink {
        self.topic_names = names;
        self
    }

    /// Loads until `shutdown`; then finishes the batches already read and returns.
    ///
    /// A batch whose DuckDB statements fail (memory or temp space filled by an
    /// analyst's query, a write conflict, a table altered under it) is rolled back
    /// and loaded again after a backoff (100 ms doubling to 5 s), for as long as it
    /// takes, logged and counted in `sluice_sink_load_retries_total`; the reader
    /// waits meanwhile. Nothing is lost: a shutdown during the retries leaves the
    /// batch unloaded with its positions, read again on the next start.
    #[tracing::instrument(name = "sink", skip_all)]
    pub async fn run(
        self,
        warehouse: Arc<Warehouse>,
        shutdown: CancellationToken,
    ) -> Result<(), SinkError> {
        let conn = warehouse.connect()?;
        let (batches_tx, batches_rx) = mpsc::channel(QUEUED_BATCHES);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (catalog, dir) = (self.catalog.clone(), self.config.schemas_dir.clone());
        let stop = shutdown.clone();
        let timings = self.timings.clone();
        let idle = Arc::new(AtomicBool::new(false));
        let loader_idle = idle.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-sink-loader".to_owned())
            .spawn(move || {
                let channel = (batches_rx, &*loader_idle);
                load_loop(conn, catalog, dir, ready_tx, channel, stop, &timings)
            })
            .map_err(|e| SinkError::LoaderThread(e.to_string()))?;
        let reading = match ready_rx.await {
            Ok(()) => {
                let positions = positions::WarehousePositions(warehouse.clone());
                let names = self.topic_names.clone();
                match reader::Reader::new(self.config.clone(), names, positions) {
                    Ok(reader) => reader.run(batches_tx, idle, shutdown).await,
                    Err(e) => Err(e),
                }
            }
            // The loader failed before its tables were ready: its result says why.
            Err(_) => Err(SinkError::LoaderStopped),
        };
        // The reader has dropped the sender: the loader drains what is queued and
        // stops.
        let loading = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| SinkError::LoaderThread(e.to_string()))?
            .map_err(|_| SinkError::LoaderThread("the loader panicked".to_owned()))?;
        match (reading, loading) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }
}

/// The loader thread: creates the sink's tables, says so on `ready` (the reader
/// then reads the positions), and loads every batch it is sent until the reader
/// hangs up.
fn load_loop(
    conn: duckdb::Connection,
    catalog: SchemaCatalog,
    schemas_dir: PathBuf,
    ready: oneshot::Sender<()>,
    (mut batches, idle): (mpsc::Receiver<Vec<SinkRecord>>, &AtomicBool),
    shutdown: CancellationToken,
    timings: &SinkTimings,
) -> Result<(), SinkError> {
    let mut loader = Loader::new(conn, catalog)?.rescanning(schemas_dir);
    if ready.send(()).is_err() {
        return Ok(());
    }
    loop {
        let waiting = Instant::now();
        // Nothing queued: the reader may hand over what it has gathered so far.
        idle.store(batches.is_empty(), Ordering::Relaxed);
        let Some(batch) = batches.blocking_recv() else {
            break;
        };
        idle.store(false, Ordering::Relaxed);
        timings
            .waiting
            .fetch_add(waiting.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut backoff = RETRY_FIRST;
        let report = loop {
            match loader.load(&batch) {
                Ok(report) => break report,
                Err(SinkError::DuckDb(error)) => {
                    tracing::warn!(
                        %error,
                        records = batch.len(),
                        backoff_ms = backoff.as_millis() as u64,
                        "a warehouse statement failed; the batch was rolled back and is loaded again"
                    );
                    telemetry::load_retry();
                    if sleep_unless(&shutdown, backoff) {
                        // Not loaded, and its positions not stored: read again on
                        // the next start.
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Err(other) => return Err(other),
            }
        };
        timings.loaded(&report);
        tracing::debug!(
            records = report.records,
            loaded = report.loaded,
            duplicates = report.duplicates,
            undecodable = report.undecodable,
            decode_ms = report.timings.decode.as_millis() as u64,
            build_ms = report.timings.build.as_millis() as u64,
            append_ms = report.timings.append.as_millis() as u64,
            commit_ms = report.timings.commit.as_millis() as u64,
            "batch loaded"
        );
    }
    Ok(())
}

/// Sleeps `period` on the loader thread; `true` when `shutdown` came first.
fn sleep_unless(shutdown: &CancellationToken, period: Duration) -> bool {
    let until = std::time::Instant::now() + period;
    while std::time::Instant::now() < until {
        if shutdown.is_cancelled() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(period));
    }
    shutdown.is_cancelled()
}
