//! Kafka: the embedded development broker and topic administration.
//!
//! Production points `KAFKA_BROKERS` at Apache Kafka. For development, tests and the
//! default `sluice up`, Sluice runs **tansu** (a Kafka-protocol broker in Rust) as a
//! child process with durable SQLite storage under the data directory. Nothing else
//! in the platform knows which broker answers: everything speaks the Kafka protocol
//! through rdkafka.
//!
//! tansu is installed once per machine into `$HOME/.cache/sluice/tansu-<version>`
//! (`cargo install`, a few minutes on first use), or taken from `SLUICE_TANSU_BIN`.
//! Its SQLite schema lacks an index on `header (topition, offset_id)`, which makes
//! fetching records with headers quadratic; [`EmbeddedBroker::start`] creates it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::process::{Child, Command};

/// The tansu release the platform is tested with.
pub const TANSU_VERSION: &str = "0.6.0";

/// Errors of broker management.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// tansu is not installed and could not be installed.
    #[error("cannot install tansu {TANSU_VERSION} into {root}: {message}")]
    Install { root: PathBuf, message: String },
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
}

/// Where tansu is (or will be) installed on this machine.
pub fn tansu_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache")
        .join("sluice")
        .join(format!("tansu-{TANSU_VERSION}"))
}

/// The tansu binary: `SLUICE_TANSU_BIN`, or the per-machine cache, installed there
/// with `cargo install` when missing.
pub async fn tansu_binary() -> Result<PathBuf, BrokerError> {
    if let Some(bin) = std::env::var_os("SLUICE_TANSU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    // One install at a time in this process (tests start brokers concurrently).
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _installing = INSTALL.lock().await;
    let root = tansu_root();
    let binary = root.join("bin").join("tansu");
    if binary.exists() {
        return Ok(binary);
    }
    tracing::warn!(
        root = %root.display(),
        "tansu {TANSU_VERSION} is not installed on this machine; installing it once with cargo (several minutes)"
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "tansu", "--version", TANSU_VERSION, "--locked"])
        .args(["--no-default-features", "--features", "libsql", "--root"])
        .arg(&root)
        .status()
        .await
        .map_err(|e| BrokerError::Install {
            root: root.clone(),
            message: format!("cannot run cargo: {e}"),
        })?;
    if !status.success() || !binary.exists() {
        return Err(BrokerError::Install {
            root,
            message: format!("cargo install exited with {status}"),
        });
    }
    Ok(binary)
}

/// A tansu broker running as a child process on a local port, storing its log in
/// `<data_dir>/broker.db`. Killed when dropped.
pub struct EmbeddedBroker {
    child: Option<Child>,
    binary: PathBuf,
    data_dir: PathBuf,
    port: u16,
}

impl EmbeddedBroker {
    /// Starts a broker on `port` (0: a free port) with its data in `data_dir`, waits
    /// until it answers, and makes sure its header index exists.
    pub async fn start(data_dir: &Path, port: u16) -> Result<Self, BrokerError> {
        let binary = tansu_binary().await?;
        std::fs::create_dir_all(data_dir).map_err(|e| BrokerError::Storage {
            path: data_dir.to_owned(),
            message: e.to_string(),
        })?;
        let port = if port == 0 { free_port()? } else { port };
        let mut broker = EmbeddedBroker {
            child: None,
            binary,
            data_dir: data_dir.to_owned(),
            port,
        };
        broker.spawn().await?;
        Ok(broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker process (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the broker again on the same port and data after [`Self::kill`].
    pub async fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill().await;
        self.spawn().await
    }

    async fn spawn(&mut self) -> Result<(), BrokerError> {
        let log_path = self.data_dir.join("broker.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| BrokerError::Storage {
                path: log_path.clone(),
                message: e.to_string(),
            })?;
        let log_err = log.try_clone().map_err(|e| BrokerError::Storage {
            path: log_path.clone(),
            message: e.to_string(),
        })?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Relative to the working directory: the broker's data stays in data_dir.
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(&self.data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        wait_ready(
            &self.bootstrap_servers(),
            Duration::from_secs(30),
            &log_path,
        )
        .await?;
        ensure_header_index(&self.data_dir.join("broker.db")).await
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
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
                .is_ok_and(|m| !m.brokers().is_empty())
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

/// Creates tansu's missing `header (topition, offset_id)` index once its tables
/// exist (the broker creates them with `IF NOT EXISTS` at start, so the index
/// stays). Without it every fetched record with headers scans all header rows.
pub async fn ensure_header_index(db: &Path) -> Result<(), BrokerError> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || {
        let storage = |message: String| BrokerError::Storage {
            path: db.clone(),
            message,
        };
        let conn = rusqlite::Connection::open(&db).map_err(|e| storage(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| storage(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let has_table: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'header')",
                    [],
                    |row| row.get(0),
                )
                .map_err(|e| storage(e.to_string()))?;
            if has_table {
                break;
            }
            if Instant::now() > deadline {
                return Err(storage("the broker never created its `header` table".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        conn.execute(
            "CREATE INDEX IF NOT EXISTS sluice_header_topition_offset ON header (topition, offset_id)",
            [],
        )
        .map_err(|e| storage(e.to_string()))?;
        Ok(())
    })
    .await
    .map_err(|e| BrokerError::Storage {
        path: PathBuf::new(),
        message: e.to_string(),
    })?
}

/// Creates the topics that do not exist yet, with their partition counts. Existing
/// topics are left as they are.
pub async fn ensure_topics(bootstrap: &str, topics: &[(String, u32)]) -> Result<(), BrokerError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let partitions: Vec<i32> = topics
        .iter()
        .map(|(_, p)| i32::try_from(*p).unwrap_or(i32::MAX))
        .collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .zip(&partitions)
        .map(|((name, _), p)| NewTopic::new(name, *p, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BrokerError::CreateTopic {
                    topic,
                    message: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Records in a topic: the sum of its partitions' high watermarks (0 for a topic the
/// broker does not know).
pub async fn topic_size(bootstrap: &str, topic: &str) -> Result<i64, BrokerError> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        let mut total = 0;
        for p in 0..partitions as i32 {
            total += consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))?
                .1;
        }
        Ok(total)
    })
    .await
    .expect("the watermark task does not panic")
}
