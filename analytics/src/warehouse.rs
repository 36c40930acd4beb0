//! The DuckDB warehouse: one database instance per process.
//!
//! DuckDB lets one process at a time open a database file for writing, and a
//! read-only open from another process fails while that writer holds the file. The
//! sink and the analyst endpoint therefore live in one process and share one
//! [`Warehouse`]: the sink loads on its own connection, each analyst session gets a
//! connection of its own, all cloned from the one instance.
//!
//! The instance is opened sandboxed: `enable_external_access = false` (no file
//! readers, no ATTACH, no extension installs), and once the sink has created its
//! tables and views, `lock_configuration = true` so that no session can undo it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use duckdb::{Config, Connection};

/// Errors opening or preparing the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The directory the warehouse file lives in could not be created.
    #[error("cannot create the warehouse directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// DuckDB could not open the file (held by another process, or not a database).
    #[error("cannot open the DuckDB warehouse {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    /// A statement on the warehouse failed.
    #[error("warehouse: {0}")]
    DuckDb(#[from] duckdb::Error),
}

/// Limits of the whole instance.
#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    /// DuckDB's `memory_limit` (e.g. `"2GB"`): queries spill or fail past it.
    pub memory_limit: String,
    /// DuckDB worker threads.
    pub threads: usize,
    /// DuckDB's `checkpoint_threshold`: the write-ahead log size at which a commit
    /// checkpoints (compresses and writes the new rows into the file). DuckDB's
    /// 16MB checkpoints on nearly every sink batch and recompresses the last row
    /// group each time, half the load's time (see `docs/benchmarks.md`); a larger
    /// log costs that much replay at the next start after a crash.
    pub checkpoint_threshold: String,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            memory_limit: "2GB".to_owned(),
            threads: 2,
            checkpoint_threshold: "256MB".to_owned(),
        }
    }
}

/// The warehouse instance of this process.
pub struct Warehouse {
    path: PathBuf,
    root: Mutex<Connection>,
}

impl Warehouse {
    /// Opens (creating if needed) the DuckDB file at `path`, sandboxed. Use
    /// `":memory:"` for a throwaway in-memory warehouse.
    pub fn open(path: &Path, settings: &WarehouseSettings) -> Result<Self, WarehouseError> {
        let in_memory = path.as_os_str() == ":memory:";
        if !in_memory {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| WarehouseError::Directory {
                    path: parent.to_owned(),
                    source,
                })?;
            }
        }
        let open = || -> Result<Connection, duckdb::Error> {
            let config = Config::default()
                .enable_external_access(false)?
                .with("memory_limit", &settings.memory_limit)?
                .with("threads", settings.threads.to_string())?
                .with("autoinstall_known_extensions", "false")?
                .with("autoload_known_extensions", "false")?
                .with("checkpoint_threshold", &settings.checkpoint_threshold)?;
            if in_memory {
                Connection::open_in_memory_with_flags(config)
            } else {
                Connection::open_with_flags(path, config)
            }
        };
        let root = open()
            .and_then(|root| {
                // TIMESTAMPTZ arithmetic in UTC, which ICU would give (not bundled).
                crate::utc::register(&root)?;
                Ok(root)
            })
            .map_err(|source| WarehouseError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Warehouse {
            path: path.to_owned(),
            root: Mutex::new(root),
        })
    }

    /// Where the warehouse lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection to the same instance (its own transaction state).
    pub fn connect(&self) -> Result<Connection, WarehouseError> {
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        Ok(root.try_clone()?)
    }

    /// Freezes the instance's configuration: after this no connection can change a
    /// setting (`SET`, `PRAGMA` that writes settings, `RESET`), including turning
    /// external access back on. Call once tables and views exist.
    pub fn lock_configuration(&self) -> Result<(), WarehouseError> {
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        root.execute_batch("SET lock_configuration = true")?;
        Ok(())
    }
}
