//! Kafka: the local brokers and topic administration.
//!
//! Production points `KAFKA_BROKERS` at Apache Kafka. On one machine Sluice runs a
//! broker as child processes ([`LocalBroker`]): **tansu** (a Kafka-protocol broker in
//! Rust, no JVM, durable SQLite storage under the data directory), the default of
//! `sluice up`, or **Apache Kafka** itself ([`crate::local_kafka`]), which the tests
//! and benchmarks run on. Nothing else in the platform knows which broker answers:
//! everything speaks the Kafka protocol through rdkafka.
//!
//! tansu is installed once per machine into `$HOME/.cache/sluice/tansu-<version>`
//! (`cargo install`, about 12 minutes on two cores on first use), or taken from `SLUICE_TANSU_BIN`.
//! Its SQLite storage lacks an index on `header (topition, offset_id)`, which makes
//! fetching records with headers quadratic, and its retention maintenance deletes
//! every record of a topic kept forever (`retention.ms = -1`);
//! [`EmbeddedBroker::start`] patches both ([`patch_tansu_storage`]).

mod assignment;
mod dev;
mod record;
mod topics;

pub use assignment::{
    assign_at_stored, consumer_positions, lags, AssignError, Offsets, Partition, PositionStore,
};
pub use dev::{patch_tansu_storage, tansu_binary, tansu_root, EmbeddedBroker, TANSU_VERSION};
pub use record::{self_assigning_reader, start_offset, Record};
pub use topics::{
    ensure_topics, topic_config, topic_partitions, topic_size, TopicError, TopicMismatch,
    TopicSetting, TopicSpec,
};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Errors of broker management.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A broker (tansu, Apache Kafka) is not installed and could not be installed.
    #[error("cannot install {what} into {root}: {message}")]
    Install {
        what: String,
        root: PathBuf,
        message: String,
    },
    /// A program the local broker needs (java, mvn) is not on this machine.
    #[error("`{program}` is not installed. {hint}")]
    MissingTool { program: String, hint: String },
    /// A broker node exited while it was starting.
    #[error("broker node {node} exited with {status} while starting (log: {log})")]
    Exited {
        node: u32,
        status: String,
        log: PathBuf,
    },
    /// The broker kind named in configuration is unknown.
    #[error("unknown broker `{0}`: use `tansu` or `kafka`")]
    UnknownKind(String),
    /// The broker process could not be started.
    #[error("cannot start the broker ({binary})")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// The broker did not answer metadata requests in time.
    #[error("the broker at {address} did not become ready within {seconds} s (log: {log})")]
    NotReady {
        address: String,
        seconds: u64,
        log: PathBuf,
    },
    /// The broker's storage could not be prepared (data directory, header index).
    #[error("broker storage at {path}: {message}")]
    Storage { path: PathBuf, message: String },
    /// A Kafka admin or metadata request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic could not be created.
    #[error("cannot create topic `{topic}`: {message}")]
    CreateTopic { topic: String, message: String },
    /// A broker request's blocking thread panicked or was cancelled.
    #[error("a broker request on a blocking thread failed: {0}")]
    Blocking(String),
}

/// Which broker a local platform, benchmark or test suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// tansu: a Kafka-protocol broker in Rust, no JVM; the default of `sluice up`.
    Tansu,
    /// Apache Kafka in KRaft mode, the broker production runs.
    Kafka,
}

impl std::str::FromStr for BrokerKind {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tansu" => Ok(BrokerKind::Tansu),
            "kafka" | "apache-kafka" => Ok(BrokerKind::Kafka),
            other => Err(BrokerError::UnknownKind(other.to_owned())),
        }
    }
}

impl std::fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerKind::Tansu => write!(f, "tansu {TANSU_VERSION}"),
            BrokerKind::Kafka => write!(f, "Apache Kafka {}", crate::local_kafka::KAFKA_VERSION),
        }
    }
}

/// A broker running on this machine as child processes: tansu, or a single-node
/// Apache Kafka. Everything that uses it sees only `bootstrap.servers`.
pub enum LocalBroker {
    Tansu(EmbeddedBroker),
    Kafka(crate::local_kafka::LocalKafka),
}

impl LocalBroker {
    /// Starts a broker of `kind` on `port` (0: a free port) with its data in `data_dir`.
    pub async fn start(kind: BrokerKind, data_dir: &Path, port: u16) -> Result<Self, BrokerError> {
        Ok(match kind {
            BrokerKind::Tansu => LocalBroker::Tansu(EmbeddedBroker::start(data_dir, port).await?),
            BrokerKind::Kafka => {
                LocalBroker::Kafka(crate::local_kafka::LocalKafka::start(data_dir, 1, port).await?)
            }
        })
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        match self {
            LocalBroker::Tansu(_) => BrokerKind::Tansu,
            LocalBroker::Kafka(_) => BrokerKind::Kafka,
        }
    }

    /// `host:port,...` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            LocalBroker::Tansu(b) => b.bootstrap_servers(),
            LocalBroker::Kafka(k) => k.bootstrap_servers(),
        }
    }

    /// Kills the broker (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        match self {
            LocalBroker::Tansu(b) => b.kill().await,
            LocalBroker::Kafka(k) => {
                for i in 0..k.nodes().len() {
                    k.kill(i).await;
                }
            }
        }
    }

    /// Starts the broker again on the same port and data.
    pub async fn restart(&mut self) -> Result<(), BrokerError> {
        match self {
            LocalBroker::Tansu(b) => b.restart().await,
            LocalBroker::Kafka(k) => k.restart().await,
        }
    }

    /// Stops the broker cleanly (Kafka: a controlled shutdown; tansu: killed, its
    /// SQLite log is durable).
    pub async fn shutdown(&mut self) {
        match self {
            LocalBroker::Tansu(b) => b.kill().await,
            LocalBroker::Kafka(k) => k.shutdown().await,
        }
    }
}

fn free_port() -> Result<u16, BrokerError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BrokerError::Storage {
            path: PathBuf::from("127.0.0.1:0"),
            message: format!("no free port: {e}"),
        })
}

/// Waits until a broker answers a metadata request.
pub async fn wait_ready(bootstrap: &str, timeout: Duration, log: &Path) -> Result<(), BrokerError> {
    wait_brokers(bootstrap, 1, timeout, log).await
}

/// Waits until a metadata request lists at least `brokers` brokers.
pub async fn wait_brokers(
    bootstrap: &str,
    brokers: usize,
    timeout: Duration,
    log: &Path,
) -> Result<(), BrokerError> {
    let deadline = Instant::now() + timeout;
    let bootstrap = bootstrap.to_owned();
    loop {
        let probe = bootstrap.clone();
        let answered = tokio::task::spawn_blocking(move || {
            let consumer: Result<BaseConsumer, _> = ClientConfig::new()
                .set("bootstrap.servers", &probe)
                .set("log_level", "0")
                .create();
            consumer
                .and_then(|c| c.fetch_metadata(None, Duration::from_millis(1000)))
                .is_ok_and(|m| m.brokers().len() >= brokers.max(1))
        })
        .await
        .unwrap_or(false);
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BrokerError::NotReady {
                address: bootstrap,
                seconds: timeout.as_secs(),
                log: log.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
