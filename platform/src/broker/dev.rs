//! The development broker: tansu (a Kafka-protocol broker in Rust, no JVM, SQLite
//! storage), installed once per machine and run as a child process, with the
//! patches its storage needs. Production and the tests run Apache Kafka; nothing
//! outside [`super::LocalBroker`] starts this one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{free_port, wait_ready, BrokerError};

/// The tansu release the platform is tested with.
pub const TANSU_VERSION: &str = "0.6.0";

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
        "tansu {TANSU_VERSION} is not installed on this machine; installing it once with cargo (about 12 minutes on two cores)"
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "tansu", "--version", TANSU_VERSION, "--locked"])
        .args(["--no-default-features", "--features", "libsql", "--root"])
        .arg(&root)
        .status()
        .await
        .map_err(|e| BrokerError::Install {
            what: format!("tansu {TANSU_VERSION}"),
            root: root.clone(),
            message: format!("cannot run cargo: {e}"),
        })?;
    if !status.success() || !binary.exists() {
        return Err(BrokerError::Install {
            what: format!("tansu {TANSU_VERSION}"),
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
        // Before the broker starts: its first retention maintenance runs at once.
        let db = self.data_dir.join("broker.db");
        if db.exists() {
            patch_storage(&db, Duration::ZERO).await?;
        }
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
        patch_tansu_storage(&self.data_dir.join("broker.db")).await
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Two patches of tansu 0.6.0's SQLite storage, applied once its tables exist (the
/// broker creates them with `IF NOT EXISTS` at start, so both stay):
///
/// - the missing `header (topition, offset_id)` index: without it every fetched
///   record with headers scans all header rows;
/// - a trigger that keeps the records of topics with a negative `retention.ms`: its
///   retention maintenance (at start and every 10 minutes) reads `-1`, Kafka's
///   "forever", as "older than -1 ms" and deletes every record. Deleting a topic
///   removes its configuration before its records, so those still go.
pub async fn patch_tansu_storage(db: &Path) -> Result<(), BrokerError> {
    patch_storage(db, Duration::from_secs(30)).await
}

const STORAGE_PATCHES: &str = "
    CREATE INDEX IF NOT EXISTS sluice_header_topition_offset ON header (topition, offset_id);
    CREATE TRIGGER IF NOT EXISTS sluice_keep_forever BEFORE DELETE ON record
    WHEN EXISTS (
        SELECT 1 FROM topition tp
          JOIN topic_configuration tc ON tc.topic = tp.topic
         WHERE tp.id = OLD.topition AND tc.name = 'retention.ms'
           AND CAST(tc.value AS INTEGER) < 0)
    BEGIN SELECT RAISE(IGNORE); END;
";

/// Applies [`STORAGE_PATCHES`] once the broker's tables exist, waiting up to
/// `wait` for them (zero: only if they exist already).
async fn patch_storage(db: &Path, wait: Duration) -> Result<(), BrokerError> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || {
        let storage = |message: String| BrokerError::Storage {
            path: db.clone(),
            message,
        };
        let conn = rusqlite::Connection::open(&db).map_err(|e| storage(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| storage(e.to_string()))?;
        let deadline = Instant::now() + wait;
        loop {
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                       AND name IN ('header', 'record', 'topition', 'topic_configuration')",
                    [],
                    |row| row.get(0),
                )
                .map_err(|e| storage(e.to_string()))?;
            if tables == 4 {
                break;
            }
            if wait.is_zero() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(storage("the broker never created its tables".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        conn.execute_batch(STORAGE_PATCHES)
            .map_err(|e| storage(e.to_string()))
    })
    .await
    .map_err(|e| BrokerError::Storage {
        path: PathBuf::new(),
        message: e.to_string(),
    })?
}
