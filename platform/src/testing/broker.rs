//! The test suite's broker: one Apache Kafka per test run, shared by every test.
//!
//! A JVM start costs seconds, so tests do not start a broker each. The first test
//! process of a run starts one single-node Apache Kafka on free ports, detached
//! under a small keeper shell, and writes its address under
//! `$HOME/.cache/sluice/test-kafka-<version>/`; every later test process (cargo runs
//! one per test binary) finds it there and uses it. Each test process renews a
//! lease file while it lives; the keeper stops the broker once no test process has
//! renewed it for [`IDLE_SECONDS`], so a test run leaves nothing running for long.
//! Tests stay independent through unique topic names (a registry's `topic_prefix`).
//!
//! `SLUICE_TEST_BROKER=tansu` runs the suite (or a subset of it) on the development
//! broker instead: each test then starts a tansu of its own, as `sluice up` would.
//! `SLUICE_TEST_KAFKA=host:port` points the suite at a broker that is already running.
//! No test skips for want of a broker: a missing Java or Maven fails the test with
//! the command that installs it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::{BrokerKind, LocalBroker};
use crate::local_kafka::{self, LocalKafka, KAFKA_VERSION};
use crate::registry::TopicNames;

fn unique_names() -> TopicNames {
    TopicNames::new(format!("t_{}.", crate::testing::unique_suffix()))
}

/// How long the shared broker outlives the last test process that used it.
pub const IDLE_SECONDS: u64 = 90;

/// The broker kind the suite runs on: `SLUICE_TEST_BROKER` (`kafka` or `tansu`),
/// Apache Kafka by default.
pub fn test_broker_kind() -> BrokerKind {
    match std::env::var("SLUICE_TEST_BROKER") {
        Ok(kind) if !kind.is_empty() => kind
            .parse()
            .unwrap_or_else(|e| panic!("SLUICE_TEST_BROKER: {e}")),
        _ => BrokerKind::Kafka,
    }
}

/// A broker for one test. [`TestBroker::start`] hands out the run's shared Apache
/// Kafka (or, on tansu, a broker of the test's own); [`TestBroker::private`] always
/// starts one of the test's own, for tests that kill and restart it.
pub struct TestBroker {
    bootstrap: String,
    names: TopicNames,
    private: Option<(LocalBroker, PathBuf)>,
}

impl TestBroker {
    /// The broker this test should use. On Apache Kafka it is shared with every
    /// other test of the run: name topics uniquely (see [`crate::testing::unique_suffix`]).
    pub async fn start() -> Self {
        match test_broker_kind() {
            BrokerKind::Kafka => TestBroker {
                bootstrap: shared_kafka(),
                names: unique_names(),
                private: None,
            },
            BrokerKind::Tansu => Self::private().await,
        }
    }

    /// A broker of this test's own, of the suite's kind, with its data in a
    /// temporary directory removed afterwards.
    pub async fn private() -> Self {
        let kind = test_broker_kind();
        let data_dir =
            std::env::temp_dir().join(format!("sluice-broker-{}", crate::testing::unique_suffix()));
        let broker = LocalBroker::start(kind, &data_dir, 0)
            .await
            .unwrap_or_else(|e| panic!("start the test broker ({kind}): {e}"));
        TestBroker {
            bootstrap: broker.bootstrap_servers(),
            names: unique_names(),
            private: Some((broker, data_dir)),
        }
    }

    /// `host:port,...` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Which broker answers.
    pub fn kind(&self) -> BrokerKind {
        self.private
            .as_ref()
            .map_or(BrokerKind::Kafka, |(b, _)| b.kind())
    }

    /// This test's topic namespace: a prefix of its own, so tests that share the
    /// broker never see each other's records. Give it to the relays and consumers
    /// under test (`topic_names` of their configs).
    pub fn topic_names(&self) -> TopicNames {
        self.names.clone()
    }

    /// The broker's name of this test's logical topic `logical`.
    pub fn physical(&self, logical: &str) -> String {
        self.names.physical(logical)
    }

    /// Creates this test's topic `logical` with `partitions` partitions.
    pub async fn topic(&self, logical: &str, partitions: u32) {
        crate::broker::ensure_topics(&self.bootstrap(), &[(self.physical(logical), partitions)])
            .await
            .expect("create topic");
    }

    /// Reads this test's topic `logical` back ([`super::consume`]): every partition
    /// from the beginning until `at_least` records arrived, or `timeout`.
    pub async fn consume(
        &self,
        logical: &str,
        at_least: usize,
        timeout: std::time::Duration,
    ) -> Vec<super::Consumed> {
        super::consume(
            &self.bootstrap(),
            &self.physical(logical),
            at_least,
            timeout,
        )
        .await
    }

    /// Kills a private broker (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        self.private_broker().kill().await;
    }

    /// Starts a private broker again on the same port and data.
    pub async fn restart(&mut self) {
        self.private_broker()
            .restart()
            .await
            .expect("restart the test broker");
    }

    /// The private broker itself.
    pub fn private_broker(&mut self) -> &mut LocalBroker {
        &mut self
            .private
            .as_mut()
            .expect("only a TestBroker::private() broker can be killed or restarted")
            .0
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some((broker, dir)) = self.private.take() {
            drop(broker);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The run's shared Apache Kafka: `SLUICE_TEST_KAFKA`, the one a test process of
/// this run already started, or one started now. Blocks while it starts (the first
/// call of a run: a few seconds), so sync and async tests alike can call it.
pub fn shared_kafka() -> String {
    if let Ok(bootstrap) = std::env::var("SLUICE_TEST_KAFKA") {
        if !bootstrap.is_empty() {
            return bootstrap;
        }
    }
    static SHARED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            // On a runtime of its own: the caller may be inside a test's runtime,
            // which ends with the test while the broker outlives it.
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(find_or_start_shared())
            })
            .join()
            .unwrap_or_else(|_| panic!("starting the shared test broker panicked"))
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .clone()
}

/// The broker address an isolated test registry names: the run's shared Apache
/// Kafka, or (on tansu) a free port where the test starts a broker of its own with
/// [`start_registry_broker`].
pub fn registry_broker_address(free_port: u16) -> String {
    match test_broker_kind() {
        BrokerKind::Kafka => shared_kafka(),
        BrokerKind::Tansu => format!("127.0.0.1:{free_port}"),
    }
}

/// Starts the broker of an isolated test registry when the suite runs on tansu, on
/// the registry's port with its data under the registry's data directory. On
/// Apache Kafka there is nothing to start: the registry names the shared broker.
pub async fn start_registry_broker(registry: &crate::registry::Registry) -> Option<LocalBroker> {
    let kind = test_broker_kind();
    if kind == BrokerKind::Kafka {
        return None;
    }
    let port: u16 = registry
        .platform
        .kafka_brokers
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("an isolated registry names its broker as 127.0.0.1:<port>");
    let dir = registry.platform.data_dir.join("broker");
    Some(
        LocalBroker::start(kind, &dir, port)
            .await
            .unwrap_or_else(|e| panic!("start the test broker ({kind}): {e}")),
    )
}

/// What a `sluice` child process needs in its environment to use an isolated
/// registry's broker instead of starting one: `KAFKA_BROKERS` on Apache Kafka
/// (the shared broker), nothing on tansu (`sluice up` starts its own there).
pub fn broker_env(registry: &crate::registry::Registry) -> Vec<(&'static str, String)> {
    match test_broker_kind() {
        BrokerKind::Kafka => vec![("KAFKA_BROKERS", registry.platform.kafka_brokers.clone())],
        BrokerKind::Tansu => Vec::new(),
    }
}

fn shared_dir() -> PathBuf {
    local_kafka::kafka_home()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join(format!("test-kafka-{KAFKA_VERSION}"))
}

/// Why the shared test broker could not be found or started.
#[derive(Debug, thiserror::Error)]
enum SharedBrokerError {
    /// Its directory, lock or address file could not be created or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Apache Kafka could not be installed, formatted or did not come up.
    #[error("the shared test broker (Apache Kafka {KAFKA_VERSION}): {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// The shell that keeps the broker alive could not be started.
    #[error("cannot start the test broker's keeper (setsid sh): {0}")]
    Keeper(std::io::Error),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SharedBrokerError {
    let path = path.to_owned();
    move |source| SharedBrokerError::Io { what, path, source }
}

/// Under a lock shared by every test process of the machine: reuses the running
/// shared broker, or starts it.
async fn find_or_start_shared() -> Result<String, SharedBrokerError> {
    let dir = shared_dir();
    std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    let lock = std::fs::File::create(dir.join("lock"))
        .and_then(|f| f.lock().map(|()| f))
        .map_err(io_error("lock", &dir.join("lock")))?;
    let lease = dir.join("lease");
    renew_lease(&lease);
    let address = dir.join("bootstrap");
    if let Ok(bootstrap) = std::fs::read_to_string(&address) {
        let log = dir.join("data").join("node-1").join("kafka.log");
        if keeper_alive(&dir)
            && crate::broker::wait_ready(&bootstrap, Duration::from_secs(5), &log)
                .await
                .is_ok()
        {
            keep_renewing(lease);
            drop(lock);
            return Ok(bootstrap);
        }
    }
    let _ = std::fs::remove_file(&address);
    stop_stale_keeper(&dir);
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    // Format the node and learn its command line, then hand the process to a keeper
    // that outlives this test process.
    let kafka = LocalKafka::prepare(&data, 1, 0).await?;
    let bootstrap = kafka.bootstrap_servers();
    let command = kafka.node_command(0);
    spawn_keeper(&dir, command.as_std(), &lease, &bootstrap)?;
    let log = data.join("node-1").join("kafka.log");
    crate::broker::wait_brokers(&bootstrap, 1, Duration::from_secs(90), &log).await?;
    std::fs::write(&address, &bootstrap).map_err(io_error("write", &address))?;
    eprintln!("test broker: Apache Kafka {KAFKA_VERSION} at {bootstrap} (shared by this test run; stops {IDLE_SECONDS} s after its last test)");
    keep_renewing(lease);
    drop(lock);
    Ok(bootstrap)
}

/// Starts the broker under `sh` in a session of its own: the shell stops it once
/// the lease file is older than [`IDLE_SECONDS`].
///
/// The keeper decides under the same lock as [`find_or_start_shared`], and removes
/// the address file before it stops the broker: a broker in shutdown still answers
/// metadata and creates topics for a minute but never grants a producer id, so a
/// test process must not find its address then. After the broker ends, the keeper
/// removes the address only while it still names this broker.
fn spawn_keeper(
    dir: &Path,
    java: &std::process::Command,
    lease: &Path,
    bootstrap: &str,
) -> Result<(), SharedBrokerError> {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut line = quote(java.get_program());
    for arg in java.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let script = format!(
        "{line} >> {log} 2>&1 &\n\
         pid=$!\n\
         echo $pid > {pid}\n\
         exec 9>> {lock}\n\
         while kill -0 $pid 2>/dev/null; do\n\
           flock 9\n\
           age=$(( $(date +%s) - $(stat -c %Y {lease} 2>/dev/null || echo 0) ))\n\
           if [ $age -gt {IDLE_SECONDS} ]; then rm -f {address}; flock -u 9; kill $pid; wait $pid; exit 0; fi\n\
           flock -u 9\n\
           sleep 2\n\
         done\n\
         flock 9\n\
         [ \"$(cat {address} 2>/dev/null)\" = {bootstrap} ] && rm -f {address}\n",
        log = quote(dir.join("data/node-1/kafka.log").as_os_str()),
        pid = quote(dir.join("broker.pid").as_os_str()),
        lock = quote(dir.join("lock").as_os_str()),
        lease = quote(lease.as_os_str()),
        address = quote(dir.join("bootstrap").as_os_str()),
        bootstrap = quote(std::ffi::OsStr::new(bootstrap)),
    );
    let keeper = std::process::Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(SharedBrokerError::Keeper)?;
    let pid = dir.join("keeper.pid");
    std::fs::write(&pid, keeper.id().to_string()).map_err(io_error("write", &pid))?;
    Ok(())
}

fn pid_alive(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn keeper_alive(dir: &Path) -> bool {
    pid_alive(&dir.join("keeper.pid")).is_some() && pid_alive(&dir.join("broker.pid")).is_some()
}

/// A broker left from an earlier run that does not answer: killed, so its ports and
/// data can go.
fn stop_stale_keeper(dir: &Path) {
    for file in ["keeper.pid", "broker.pid"] {
        if let Some(pid) = pid_alive(&dir.join(file)) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_file(dir.join(file));
    }
}

fn renew_lease(lease: &Path) {
    if let Ok(mut f) = std::fs::File::create(lease) {
        let _ = f.write_all(b"in use\n");
    }
}

/// Renews the lease every few seconds for as long as this test process lives.
fn keep_renewing(lease: PathBuf) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(move || loop {
            renew_lease(&lease);
            std::thread::sleep(Duration::from_secs(5));
        });
    });
}
