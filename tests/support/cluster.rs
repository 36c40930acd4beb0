//! Fault tests on a three-node Apache Kafka cluster: the cluster (in a temporary
//! directory), `sluice up` as a child process on it, a load of orders through HTTP,
//! metadata probes (leaders, ISR, high watermarks) and the checks every fault test
//! ends with: every acknowledged event on the topic in stream order, in order_view
//! and in the warehouse, once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::local_kafka::{kafka_home, LocalKafka};
use sluice_platform::registry::Registry;
use sluice_platform::testing::{
    consume, drop_registry_databases, isolated_registry_on, unique_suffix, Consumed,
};
use uuid::Uuid;

/// Fault tests each run a cluster of three JVMs and a whole platform: one at a time
/// in a test binary, whatever `--test-threads` says.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A three-node KRaft cluster (every node controller and broker; replication 3 and
/// `min.insync.replicas` 2 as cluster defaults) with its data in a temporary
/// directory, removed by [`Cluster::close`].
pub struct Cluster {
    pub kafka: LocalKafka,
    dir: PathBuf,
    /// Metadata and watermarks of the cluster, usable while a node is being stopped.
    pub probe: Probe,
}

/// A client that reads the cluster's metadata and high watermarks; cheap to clone.
#[derive(Clone)]
pub struct Probe(Arc<BaseConsumer>);

/// One partition as the cluster's metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// Node id of the leader; -1 while there is none.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Cluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-faults-{}", unique_suffix()));
        let started = Instant::now();
        let kafka = LocalKafka::start(&dir, 3, 0)
            .await
            .unwrap_or_else(|e| panic!("start a three-node Apache Kafka cluster: {e}"));
        let probe: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", format!("fault-probe-{}", unique_suffix()))
            .set("log_level", "0")
            .create()
            .expect("probe client");
        eprintln!(
            "cluster: three nodes at {} up in {:.1} s",
            kafka.bootstrap_servers(),
            started.elapsed().as_secs_f64()
        );
        Cluster {
            kafka,
            dir,
            probe: Probe(Arc::new(probe)),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.kafka.bootstrap_servers()
    }

    /// The node index (0-based, for `kill`, `stop`, `start_node`) of node id `id`.
    pub fn index_of(&self, id: i32) -> usize {
        self.kafka
            .nodes()
            .iter()
            .position(|n| n.id as i32 == id)
            .unwrap_or_else(|| panic!("no node with id {id}"))
    }

    /// Asks the cluster to move every partition's leadership back to its preferred
    /// replica (Kafka's `kafka-leader-election.sh --election-type PREFERRED`). Its
    /// output, for a failure message: partitions already led by their preferred
    /// replica are reported as not needing an election.
    pub async fn preferred_leader_election(&self) -> String {
        let home = kafka_home();
        let output = tokio::process::Command::new("java")
            .args(["-Xmx256m", "-cp"])
            .arg(format!("{}/*", home.join("libs").display()))
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                home.join("log4j2.properties").display()
            ))
            .arg("org.apache.kafka.tools.LeaderElectionCommand")
            .args(["--bootstrap-server", &self.bootstrap()])
            .args(["--election-type", "PREFERRED", "--all-topic-partitions"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run kafka's LeaderElectionCommand");
        format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }

    /// Kills every node and removes the data.
    pub async fn close(mut self) {
        for i in 0..self.kafka.nodes().len() {
            self.kafka.kill(i).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // After `close` the directory is gone; after a panic the nodes are killed by
        // LocalKafka's own Drop and their data goes here.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Probe {
    /// The partitions of `topic` (every topic when `None`), from a fresh metadata
    /// request; `None` when no node answered in time.
    pub async fn partitions(&self, topic: Option<&str>) -> Option<Vec<PartitionState>> {
        let probe = Arc::clone(&self.0);
        let topic = topic.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let metadata = probe
                .fetch_metadata(topic.as_deref(), Duration::from_secs(5))
                .ok()?;
            let mut out = Vec::new();
            for t in metadata.topics() {
                if t.error().is_some() {
                    return None;
                }
                for p in t.partitions() {
                    out.push(PartitionState {
                        topic: t.name().to_owned(),
                        partition: p.id(),
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                    });
                }
            }
            Some(out)
        })
        .await
        .expect("metadata task")
    }

    /// The leader (node id) of `topic`/`partition`, polled until there is one.
    pub async fn leader(&self, topic: &str, partition: i32) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = self
                .partitions(Some(topic))
                .await
                .and_then(|ps| ps.into_iter().find(|p| p.partition == partition))
                .map(|p| p.leader)
                .filter(|l| *l >= 0)
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}/{partition} has no leader after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The high watermark of each partition of `topic`; `None` for a partition whose
    /// leader does not answer (yet).
    pub async fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let probe = Arc::clone(&self.0);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    probe
                        .fetch_watermarks(&topic, p, Duration::from_secs(2))
                        .ok()
                        .map(|(_, high)| high)
                })
                .collect()
        })
        .await
        .expect("watermark task")
    }

    /// Records on `topic`: the sum of the high watermarks of the partitions that
    /// answer.
    pub async fn topic_size(&self, topic: &str, partitions: i32) -> i64 {
        self.high_watermarks(topic, partitions)
            .await
            .into_iter()
            .flatten()
            .sum()
    }

    /// Polls until every partition of every topic has a leader and its whole replica
    /// set in sync; returns how long that took.
    pub async fn wait_isr_full(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let mut last = Vec::new();
        loop {
            if let Some(ps) = self.partitions(None).await {
                let short: Vec<_> = ps
                    .iter()
                    .filter(|p| p.leader < 0 || p.isr.len() < p.replicas.len())
                    .cloned()
                    .collect();
                if !ps.is_empty() && short.is_empty() {
                    return started.elapsed();
                }
                last = short;
            }
            assert!(
                started.elapsed() < timeout,
                "the ISR is still short after {timeout:?}: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `sluice up` as a child process on an isolated registry, publishing to the
/// cluster with replication 3 and `min.insync.replicas` 2. Its stderr goes to a log
/// file (shown when it fails).
pub struct ClusterPlatform {
    child: Child,
    pub registry: Registry,
    registry_file: PathBuf,
    log: PathBuf,
    client: reqwest::Client,
    /// Whether the databases are dropped already (by [`Self::stop`]).
    dropped: bool,
}

impl ClusterPlatform {
    pub async fn start(cluster: &Cluster) -> Self {
        // The isolated registry names this cluster, so that no shared single-node
        // broker is started for nothing.
        let base =
            Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml")).unwrap();
        let (registry, text) = isolated_registry_on(&base, &cluster.bootstrap());
        let registry_file =
            std::env::temp_dir().join(format!("sluice-faults-{}.toml", Uuid::now_v7()));
        std::fs::write(&registry_file, text).unwrap();
        let log = std::env::temp_dir().join(format!("sluice-faults-{}.log", Uuid::now_v7()));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--registry")
            .arg(&registry_file)
            .arg("up")
            .env("KAFKA_BROKERS", cluster.bootstrap())
            .env("SLUICE_TOPIC_REPLICATION_FACTOR", "3")
            .env("SLUICE_TOPIC_MIN_INSYNC_REPLICAS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start sluice up");
        let mut platform = ClusterPlatform {
            child,
            registry,
            registry_file,
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            dropped: false,
        };
        let components: Vec<String> = platform
            .registry
            .components()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for component in components {
            platform.wait_ready(&component).await;
        }
        platform
    }

    pub fn url(&self, component: &str, path: &str) -> String {
        let port = self.registry.component(component).unwrap().port;
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The broker name of the logical topic `logical` (the registry's prefix).
    pub fn topic(&self, logical: &str) -> String {
        self.registry.topic_names().physical(logical)
    }

    async fn wait_ready(&mut self, component: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = self
                .client
                .get(self.url(component, "/health/ready"))
                .send()
                .await
            {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{component} never became ready\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Panics (with the end of its log) when `sluice up` has exited: a component
    /// stopped with an error, which stops the whole platform.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "sluice up exited with {status}: a component failed\n{}",
                self.log_tail(60)
            );
        }
    }

    /// The last `lines` lines of the platform's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- sluice up log ({}), last {} lines ---\n{}",
            self.log.display(),
            all.len() - from,
            all[from..].join("\n")
        )
    }

    /// `sluice verify` against this platform until it passes (components catch up
    /// after a fault); how long that took. The deadline only guards against a hang.
    pub async fn verify(&mut self, bootstrap: &str) -> Duration {
        let started = Instant::now();
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("--registry")
                .arg(&self.registry_file)
                .arg("verify")
                .env("KAFKA_BROKERS", bootstrap)
                .env("PGPASSWORD", sluice_platform::testing::DEV_ANALYST_PASSWORD)
                .env("RUST_LOG", "warn")
                .output()
                .expect("run sluice verify");
            if out.status.success() {
                return started.elapsed();
            }
            self.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "verify never passed after the fault:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Lines of the platform's log that mention `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// SIGTERM, then a bounded wait for a clean exit; drops the databases.
    pub async fn stop(mut self) {
        self.assert_running();
        let Some(status) = super::terminate(&mut self.child, Duration::from_secs(60)) else {
            let _ = self.child.kill();
            panic!(
                "sluice up did not stop within 60 s of SIGTERM\n{}",
                self.log_tail(40)
            );
        };
        assert!(
            status.success(),
            "sluice up exited with {status}\n{}",
            self.log_tail(40)
        );
        drop_registry_databases(&self.registry).await;
        self.dropped = true;
    }
}

impl Drop for ClusterPlatform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.registry_file);
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.registry.platform.data_dir);
        if !self.dropped {
            // A failed test: its databases go too, on a thread and runtime of their
            // own (this may run inside the test's runtime, or while panicking).
            let registry = self.registry.clone();
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("clean-up runtime")
                    .block_on(drop_registry_databases(&registry))
            })
            .join();
        }
    }
}

/// One acknowledged command: a 2xx answer to `POST /orders`.
#[derive(Debug, Clone)]
pub struct Ack {
    pub order_id: Uuid,
    pub stream_id: String,
    pub event_ids: Vec<String>,
    pub consistency_token: String,
}

/// Orders placed through HTTP by a few workers until stopped, or until `max_orders`
/// or `max_duration`, whichever comes first. A request that fails (no answer, a
/// 5xx) is sent again under the same `Idempotency-Key`, so each order is either
/// acknowledged once or reported as failed.
pub struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    acked: Arc<AtomicUsize>,
    retries: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    pub customer_id: String,
    started: Instant,
}

impl Load {
    pub fn start(
        platform: &ClusterPlatform,
        workers: usize,
        max_orders: usize,
        max_duration: Duration,
    ) -> Self {
        let customer_id = format!("fault-{}", unique_suffix());
        let url = platform.url("orders", "/orders");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            acks: Arc::default(),
            acked: Arc::default(),
            retries: Arc::default(),
            failed: Arc::default(),
            workers: Vec::new(),
            customer_id: customer_id.clone(),
            started: Instant::now(),
        };
        let issued = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + max_duration;
        for w in 0..workers {
            let (stop, acks, acked, retries, failed, issued) = (
                Arc::clone(&load.stop),
                Arc::clone(&load.acks),
                Arc::clone(&load.acked),
                Arc::clone(&load.retries),
                Arc::clone(&load.failed),
                Arc::clone(&issued),
            );
            let (client, url, customer_id) = (client.clone(), url.clone(), customer_id.clone());
            load.workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                    && issued.fetch_add(1, Ordering::Relaxed) < max_orders
                {
                    n += 1;
                    let order_id = Uuid::now_v7();
                    let body = json!({
                        "order_id": order_id, "customer_id": customer_id, "currency": "EUR",
                        "lines": [{ "sku": format!("FAULT-{w}"), "quantity": 1 + n % 3,
                                    "unit_price_minor": 1_000 + (n % 50) as i64 }]
                    });
                    match place(&client, &url, order_id, &body, &retries).await {
                        Ok(ack) => {
                            acks.lock().unwrap().push(ack);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failed.lock().unwrap().push(format!("{order_id}: {e}")),
                    }
                    // A steady rate rather than as fast as two cores allow: the
                    // brokers, PostgreSQL and the platform share them.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        load
    }

    /// Orders acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stops the workers and returns what they did.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        let failed = std::mem::take(&mut *self.failed.lock().unwrap());
        LoadReport {
            acks,
            failed,
            retries: self.retries.load(Ordering::Relaxed),
            seconds: self.started.elapsed().as_secs_f64(),
            customer_id: self.customer_id,
        }
    }
}

/// What a load did.
pub struct LoadReport {
    pub acks: Vec<Ack>,
    /// Orders never acknowledged (after retries), with the last error.
    pub failed: Vec<String>,
    /// Requests sent again after a failure.
    pub retries: u64,
    pub seconds: f64,
    pub customer_id: String,
}

async fn place(
    client: &reqwest::Client,
    url: &str,
    order_id: Uuid,
    body: &Value,
    retries: &AtomicU64,
) -> Result<Ack, String> {
    let mut last = String::new();
    for attempt in 0..20u32 {
        if attempt > 0 {
            retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
        }
        let response = match client
            .post(url)
            .header("Idempotency-Key", format!("fault-{order_id}"))
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let status = response.status();
        if status.is_server_error() {
            last = format!("{status}: {}", response.text().await.unwrap_or_default());
            continue;
        }
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                response.text().await.unwrap_or_default()
            ));
        }
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        let event_ids = answer["event_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Ack {
            order_id,
            stream_id: answer["stream_id"].as_str().unwrap_or_default().to_owned(),
            event_ids,
            consistency_token: answer["consistency_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Err(last)
}

/// Polls (every 100 ms, up to `timeout`) until `topic` grows past `before` (the
/// high watermarks sampled just before a fault): returns how long until any
/// partition grew, and until `partition` did. Panics with the state when it does not.
pub async fn wait_for_growth(
    probe: &Probe,
    platform: &mut ClusterPlatform,
    topic: &str,
    before: &[Option<i64>],
    partition: usize,
    since: Instant,
    timeout: Duration,
) -> (f64, f64) {
    let mut any = None;
    loop {
        let now = probe.high_watermarks(topic, before.len() as i32).await;
        let grew = |p: usize| matches!((now[p], before[p]), (Some(n), Some(b)) if n > b);
        if any.is_none() && (0..before.len()).any(grew) {
            any = Some(since.elapsed().as_secs_f64());
        }
        if grew(partition) {
            let faulted = since.elapsed().as_secs_f64();
            return (any.unwrap_or(faulted), faulted);
        }
        platform.assert_running();
        assert!(
            since.elapsed() < timeout,
            "{topic} did not grow within {timeout:?} of the fault: before {before:?}, now {now:?}\n{}",
            platform.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded, polling) until `topic` holds at least `records` more records
/// than `from`: progress judged by what is on the topic, not by a clock.
pub async fn wait_for_records(
    probe: &Probe,
    platform: &mut ClusterPlatform,
    topic: &str,
    partitions: i32,
    from: i64,
    records: i64,
    timeout: Duration,
) -> i64 {
    let started = Instant::now();
    loop {
        let size = probe.topic_size(topic, partitions).await;
        if size >= from + records {
            return size;
        }
        platform.assert_running();
        assert!(
            started.elapsed() < timeout,
            "{topic} holds {size} records, waited for {} within {timeout:?}\n{}",
            from + records,
            platform.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The figures the checks produce.
#[derive(Debug, Default)]
pub struct Verified {
    /// Orders acknowledged (each one `OrderPlaced` event).
    pub produced: usize,
    /// Records on the orders topic, re-sent copies included.
    pub on_topic: usize,
    /// Distinct events on the orders topic (the saga's confirmations too).
    pub distinct_on_topic: usize,
    /// Records the relay sent again: repeats of a version already on the topic.
    pub duplicates: usize,
    /// Seconds from the end of the load until every check passed.
    pub settle_seconds: f64,
}

/// The checks every fault test ends with, after the load has stopped:
///
/// - every acknowledged event is on the orders topic (every partition read from the
///   beginning);
/// - per stream, topic order is `stream_version` order: each record is the next
///   version, or a repeat of a version already on the topic (the same event, a
///   relay re-send; counted) after which the versions go on in order; a stream's
///   records are all in one partition;
/// - order_view holds every acknowledged order once (read with the command's
///   consistency token, and counted in its database);
/// - the warehouse holds each acknowledged `OrderPlaced` once (`raw_events`, read as
///   an analyst over the SQL endpoint).
pub async fn verify(
    cluster: &Cluster,
    platform: &mut ClusterPlatform,
    load: &LoadReport,
) -> Verified {
    let started = Instant::now();
    assert!(
        load.failed.is_empty(),
        "{} orders were never acknowledged (the write side only needs PostgreSQL): {:?}",
        load.failed.len(),
        &load.failed[..load.failed.len().min(5)]
    );
    let acks = &load.acks;
    assert!(!acks.is_empty(), "the load acknowledged nothing");
    for ack in acks {
        assert_eq!(ack.stream_id, ack.order_id.to_string(), "{ack:?}");
        assert_eq!(ack.event_ids.len(), 1, "OrderPlaced is one event: {ack:?}");
    }
    let topic = platform.topic("orders.events");
    let partitions = platform.registry.topics["orders.events"].partitions as i32;

    // 1. Every acknowledged event on the topic.
    let expected: BTreeMap<&str, &Ack> =
        acks.iter().map(|a| (a.event_ids[0].as_str(), a)).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let records = loop {
        let size = cluster.probe.topic_size(&topic, partitions).await;
        let records = consume(
            &cluster.bootstrap(),
            &topic,
            size as usize,
            Duration::from_secs(90),
        )
        .await;
        let seen: BTreeSet<&str> = records.iter().map(|r| r.header("event_id")).collect();
        let missing: Vec<&&Ack> = expected
            .iter()
            .filter(|(id, _)| !seen.contains(**id))
            .map(|(_, a)| a)
            .collect();
        if missing.is_empty() {
            break records;
        }
        platform.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged events are not on {topic} ({} records read), e.g. {:?}\n{}",
            missing.len(),
            expected.len(),
            records.len(),
            &missing[..missing.len().min(3)],
            platform.log_tail(40)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // 2. Per stream, topic order is version order; re-sends only repeat.
    let order = check_stream_order(&records).unwrap_or_else(|problem| panic!("{topic}: {problem}"));
    for ack in acks {
        assert_eq!(
            order.streams[&ack.stream_id][0], ack.event_ids[0],
            "order {}: its first event on the topic is not the acknowledged OrderPlaced",
            ack.order_id
        );
    }
    let duplicates = order.duplicates;
    let distinct_on_topic = order.streams.values().map(Vec::len).sum();

    // 3. order_view: each order, read with its command's consistency token.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let view_deadline = Instant::now() + Duration::from_secs(240);
    let failures: Vec<String> = futures::stream::iter(acks.iter())
        .map(|ack| {
            let client = client.clone();
            let url = platform.url("order_view", &format!("/orders/{}", ack.order_id));
            async move {
                loop {
                    let last = match client
                        .get(&url)
                        .header("X-Consistency-Token", &ack.consistency_token)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let view: Value = r.json().await.unwrap_or_default();
                            if view["order_id"] == ack.order_id.to_string()
                                && view["customer_id"] == load.customer_id
                            {
                                return None;
                            }
                            format!("unexpected row {view}")
                        }
                        Ok(r) => format!("{}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    if Instant::now() > view_deadline {
                        return Some(format!("{}: {last}", ack.order_id));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .buffer_unordered(8)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    platform.assert_running();
    assert!(
        failures.is_empty(),
        "{} of {} acknowledged orders not readable in order_view with their token, e.g. {:?}",
        failures.len(),
        acks.len(),
        &failures[..failures.len().min(5)]
    );
    let view_db = platform
        .registry
        .app_database_url(platform.registry.component("order_view").unwrap())
        .unwrap();
    let pool = sqlx::PgPool::connect(&view_db).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_view WHERE customer_id = $1")
        .bind(&load.customer_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        rows as usize,
        acks.len(),
        "order_view holds {rows} orders of the load's customer, {} were acknowledged",
        acks.len()
    );

    // 4. The warehouse: each acknowledged OrderPlaced once.
    let sql = analyst(platform).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    let (count, distinct) = loop {
        let row = sql
            .query_one(
                "SELECT count(*), count(DISTINCT event_id) FROM raw_events WHERE event_type = 'OrderPlaced'",
                &[],
            )
            .await
            .expect("query raw_events");
        let (count, distinct): (i64, i64) = (row.get(0), row.get(1));
        if count as usize >= acks.len() || Instant::now() > deadline {
            break (count, distinct);
        }
        platform.assert_running();
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (count as usize, distinct as usize),
        (acks.len(), acks.len()),
        "the warehouse holds {count} OrderPlaced rows ({distinct} distinct events) for {} acknowledged",
        acks.len()
    );
    let loaded: BTreeSet<String> = sql
        .query(
            "SELECT CAST(event_id AS VARCHAR) FROM raw_events WHERE event_type = 'OrderPlaced'",
            &[],
        )
        .await
        .expect("event ids of raw_events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let absent = expected.keys().filter(|id| !loaded.contains(**id)).count();
    assert_eq!(absent, 0, "acknowledged events missing from the warehouse");

    Verified {
        produced: acks.len(),
        on_topic: records.len(),
        distinct_on_topic,
        duplicates,
        settle_seconds: started.elapsed().as_secs_f64(),
    }
}

/// What [`check_stream_order`] found on a topic.
#[derive(Debug)]
pub struct StreamOrder {
    /// Records that repeat a version already on the topic (the relay re-sent them).
    pub duplicates: usize,
    /// Each stream's event ids by version (index 0 is version 1).
    pub streams: HashMap<String, Vec<String>>,
}

/// Checks that per stream (the record key) topic order is `stream_version` order:
/// each record of a stream is its next version, or repeats a version already on the
/// topic, as the same event: a re-sent run, which starts at or before the stream's
/// previous record and goes on version by version. A stream's records are all in
/// one partition. Records are taken in (partition, offset) order.
pub fn check_stream_order(records: &[Consumed]) -> Result<StreamOrder, String> {
    struct Stream {
        partition: i32,
        /// The version of the stream's previous record.
        last: i64,
        events: Vec<String>,
    }
    let mut sorted: Vec<&Consumed> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let mut duplicates = 0usize;
    for r in sorted {
        let at = format!("offset {} of partition {}", r.offset, r.partition);
        let version: i64 = r
            .header("stream_version")
            .parse()
            .map_err(|e| format!("stream_version at {at}: {e}"))?;
        let event_id = r.header("event_id").to_owned();
        let s = streams.entry(r.key.clone()).or_insert_with(|| Stream {
            partition: r.partition,
            last: 0,
            events: Vec::new(),
        });
        if s.partition != r.partition {
            return Err(format!(
                "stream {} is in partitions {} and {}",
                r.key, s.partition, r.partition
            ));
        }
        let highest = s.events.len() as i64;
        if version == highest + 1 && s.last == highest {
            s.events.push(event_id);
        } else if (1..=highest).contains(&version) && version <= s.last + 1 {
            let first = &s.events[version as usize - 1];
            if *first != event_id {
                return Err(format!(
                    "stream {} has two events at version {version}: {first} and {event_id} (at {at})",
                    r.key
                ));
            }
            duplicates += 1;
        } else {
            return Err(format!(
                "stream {} out of order at {at}: version {version} after {} (highest {highest})",
                r.key, s.last
            ));
        }
        s.last = version;
    }
    Ok(StreamOrder {
        duplicates,
        streams: streams.into_iter().map(|(k, s)| (k, s.events)).collect(),
    })
}

/// A connection to the warehouse's SQL endpoint as the registry's first analyst.
pub async fn analyst(platform: &ClusterPlatform) -> tokio_postgres::Client {
    let analytics = platform.registry.analytics.clone().unwrap();
    let user = analytics.analysts.keys().next().unwrap();
    let password = sluice_platform::testing::DEV_ANALYST_PASSWORD;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} password={password} dbname=warehouse",
                analytics.sql_port
            ),
            tokio_postgres::NoTls,
        )
        .await
        {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to the analyst endpoint: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Rows of order_view for `customer_id`, and of those how many went the whole saga
/// (confirmed and shipped), from its database.
pub async fn order_view_counts(platform: &ClusterPlatform, customer_id: &str) -> (i64, i64) {
    let url = platform
        .registry
        .app_database_url(platform.registry.component("order_view").unwrap())
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE order_status = 'confirmed' AND shipment_status = 'created') \
           FROM order_view WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

/// `OrderPlaced` rows in the warehouse.
pub async fn warehouse_orders(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT count(*) FROM raw_events WHERE event_type = 'OrderPlaced'",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}
