//! Apache Kafka on this machine: fetched once, started as child processes.
//!
//! Tests, benchmarks and `sluice up --broker kafka` run the broker production runs:
//! Apache Kafka in KRaft mode, every node a combined controller and broker on
//! loopback ports. Its jars come from Maven Central through the committed
//! `deploy/kafka/pom.xml` (compiled into this library, so the binary can fetch them
//! from anywhere) into a per-machine cache, `$HOME/.cache/sluice/kafka-<version>`
//! (`SLUICE_KAFKA_HOME` overrides it); they are never committed. The first use on a
//! machine runs Maven once (a minute or so); `deploy/kafka/fetch.sh` does the same.
//!
//! [`LocalKafka::start`] formats each node's KRaft storage on first use (a data
//! directory that holds a formatted node is started as it is, so a restart keeps
//! the log), starts one JVM per node, and returns once every node answers a
//! metadata request. Nodes can be killed (`SIGKILL`, as a crash), stopped
//! (`SIGTERM`, a controlled shutdown) and started again on the same ports and data.
//!
//! `install` keeps the jars in the per-machine cache; this module runs the nodes.

mod install;
#[cfg(test)]
mod tests;

pub use install::{ensure_installed, kafka_home, KafkaInstall};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::broker::BrokerError;

/// The Apache Kafka release the platform is tested with; `deploy/kafka/pom.xml` and
/// the `apache/kafka` image of `docker-compose.yml` name the same one.
pub const KAFKA_VERSION: &str = "4.1.1";

/// One node of a local KRaft cluster: where it listens and keeps its data.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// KRaft node id, 1-based.
    pub id: u32,
    /// The client (PLAINTEXT) port.
    pub port: u16,
    /// The KRaft controller port.
    pub controller_port: u16,
    /// `server.properties`, `data/`, `kafka.log`.
    pub dir: PathBuf,
}

/// The settings of a cluster of `nodes` nodes: replication follows its size (1/1 on
/// a single node, 3/2 from three nodes up), as production does with three.
fn server_properties(node: &NodeSpec, voters: &str, nodes: usize) -> String {
    let replication = nodes.min(3);
    let min_isr = if nodes >= 3 { 2 } else { 1 };
    format!(
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         log.dirs={data}\n\
         num.partitions=1\n\
         default.replication.factor={replication}\n\
         min.insync.replicas={min_isr}\n\
         offsets.topic.replication.factor={replication}\n\
         offsets.topic.num.partitions=10\n\
         transaction.state.log.replication.factor={replication}\n\
         transaction.state.log.min.isr={min_isr}\n\
         share.coordinator.state.topic.replication.factor={replication}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n\
         auto.create.topics.enable=false\n\
         unclean.leader.election.enable=false\n\
         group.initial.rebalance.delay.ms=0\n",
        id = node.id,
        port = node.port,
        controller = node.controller_port,
        data = node.dir.join("data").display(),
    )
}

/// A local Apache Kafka cluster (one node or more), its nodes child processes.
/// Every node is killed when this is dropped.
pub struct LocalKafka {
    install: KafkaInstall,
    nodes: Vec<NodeSpec>,
    children: Vec<Option<Child>>,
    heap: String,
}

impl LocalKafka {
    /// Starts `nodes` nodes with their data under `data_dir` (`node-<id>/`). `port` is
    /// the first node's client port (its controller listens on `port + 1`; further
    /// nodes take the next pairs), or 0 for free ports. Formats storage that is not
    /// formatted yet and waits until every node has joined.
    pub async fn start(data_dir: &Path, nodes: usize, port: u16) -> Result<Self, BrokerError> {
        let mut kafka = Self::prepare(data_dir, nodes, port).await?;
        for i in 0..kafka.nodes.len() {
            kafka.spawn_node(i)?;
        }
        kafka
            .wait_ready(kafka.nodes.len(), Duration::from_secs(90))
            .await?;
        Ok(kafka)
    }

    /// Writes every node's configuration and formats its storage, starting nothing
    /// ([`Self::start_node`] or [`Self::node_command`] start them).
    pub async fn prepare(data_dir: &Path, nodes: usize, port: u16) -> Result<Self, BrokerError> {
        let install = ensure_installed().await?;
        let nodes = nodes.max(1);
        let storage = |path: &Path, e: std::io::Error| BrokerError::Storage {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| storage(data_dir, e))?;
        let ports = cluster_ports(data_dir, nodes, port)?;
        let specs: Vec<NodeSpec> = (0..nodes)
            .map(|i| NodeSpec {
                id: i as u32 + 1,
                port: ports[i].0,
                controller_port: ports[i].1,
                dir: data_dir.join(format!("node-{}", i + 1)),
            })
            .collect();
        let voters = specs
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = cluster_id(data_dir)?;
        let mut formats = Vec::new();
        for node in &specs {
            std::fs::create_dir_all(&node.dir).map_err(|e| storage(&node.dir, e))?;
            let config = node.dir.join("server.properties");
            std::fs::write(&config, server_properties(node, &voters, nodes))
                .map_err(|e| storage(&config, e))?;
            if !node.dir.join("data").join("meta.properties").exists() {
                formats.push(format_storage(&install, node.clone(), cluster_id.clone()));
            }
        }
        for result in futures::future::join_all(formats).await {
            result?;
        }
        let heap = if nodes == 1 { "1g" } else { "512m" }.to_owned();
        Ok(LocalKafka {
            install,
            children: specs.iter().map(|_| None).collect(),
            nodes: specs,
            heap,
        })
    }

    /// `host:port,...` of every node, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes, in id order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The index (0-based) of the node with client port `port`.
    pub fn node_index_by_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }

    /// Whether node `index` is running (started and not killed or stopped).
    pub fn is_running(&self, index: usize) -> bool {
        self.children.get(index).is_some_and(Option::is_some)
    }

    /// Kills node `index` with `SIGKILL`, as a crash would.
    pub async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children.get_mut(index).and_then(Option::take) {
            let _ = child.kill().await;
        }
    }

    /// Stops node `index` with `SIGTERM` (a controlled shutdown: leadership moves
    /// away first) and waits for it, `SIGKILL` after 60 s.
    pub async fn stop(&mut self, index: usize) {
        let Some(mut child) = self.children.get_mut(index).and_then(Option::take) else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = child.kill().await;
    }

    /// Starts node `index` again on its ports and data, and waits until the cluster
    /// has every running node back.
    pub async fn start_node(&mut self, index: usize) -> Result<(), BrokerError> {
        if !self.is_running(index) {
            self.spawn_node(index)?;
        }
        let running = (0..self.nodes.len())
            .filter(|i| self.is_running(*i))
            .count();
        self.wait_ready(running, Duration::from_secs(90)).await
    }

    /// Kills every node and starts them again on the same ports and data.
    pub async fn restart(&mut self) -> Result<(), BrokerError> {
        for i in 0..self.nodes.len() {
            self.kill(i).await;
        }
        for i in 0..self.nodes.len() {
            self.spawn_node(i)?;
        }
        self.wait_ready(self.nodes.len(), Duration::from_secs(90))
            .await
    }

    /// Stops every node cleanly.
    pub async fn shutdown(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }

    /// The command that runs node `index` in the foreground (for a process that must
    /// outlive this one, such as the test suite's shared broker).
    pub fn node_command(&self, index: usize) -> Command {
        node_command(&self.install, &self.nodes[index], &self.heap)
    }

    fn spawn_node(&mut self, index: usize) -> Result<(), BrokerError> {
        let node = &self.nodes[index];
        let (out, err) = node_log(node)?;
        let child = self
            .node_command(index)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                binary: PathBuf::from("java"),
                source,
            })?;
        self.children[index] = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, brokers: usize, timeout: Duration) -> Result<(), BrokerError> {
        let log = self.nodes[0].dir.join("kafka.log");
        let bootstrap = self.bootstrap_servers();
        let wait = crate::broker::wait_brokers(&bootstrap, brokers, timeout, &log);
        tokio::pin!(wait);
        // A node that exits while we wait (a taken port, a bad config) fails fast.
        loop {
            tokio::select! {
                result = &mut wait => return result,
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    for (i, child) in self.children.iter_mut().enumerate() {
                        if let Some(c) = child {
                            if let Ok(Some(status)) = c.try_wait() {
                                *child = None;
                                return Err(BrokerError::Exited {
                                    node: self.nodes[i].id,
                                    status: status.to_string(),
                                    log: self.nodes[i].dir.join("kafka.log"),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for LocalKafka {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.start_kill();
        }
    }
}

/// The foreground command of one node.
pub fn node_command(install: &KafkaInstall, node: &NodeSpec, heap: &str) -> Command {
    let mut java = install.java(heap, "kafka.Kafka");
    java.arg(node.dir.join("server.properties"));
    java
}

/// A node's log file, opened for appending, twice (stdout and stderr).
pub fn node_log(node: &NodeSpec) -> Result<(Stdio, Stdio), BrokerError> {
    let path = node.dir.join("kafka.log");
    let storage = |e: std::io::Error| BrokerError::Storage {
        path: path.clone(),
        message: e.to_string(),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(storage)?;
    let err = log.try_clone().map_err(storage)?;
    Ok((Stdio::from(log), Stdio::from(err)))
}

/// Formats one node's KRaft storage (`kafka-storage format`).
async fn format_storage(
    install: &KafkaInstall,
    node: NodeSpec,
    cluster_id: String,
) -> Result<(), BrokerError> {
    let output = install
        .java("256m", "kafka.tools.StorageTool")
        .args(["format", "--ignore-formatted", "-t", &cluster_id, "-c"])
        .arg(node.dir.join("server.properties"))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| BrokerError::Spawn {
            binary: PathBuf::from("java"),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BrokerError::Storage {
            path: node.dir.clone(),
            message: format!(
                "kafka-storage format exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        })
    }
}

/// The cluster's id, made once and kept in `data_dir/cluster.id`: 16 random bytes
/// in URL-safe base64 without padding, the form `kafka-storage random-uuid` prints.
fn cluster_id(data_dir: &Path) -> Result<String, BrokerError> {
    let path = data_dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_owned());
        }
    }
    let id = base64_url(uuid::Uuid::now_v7().as_bytes());
    std::fs::write(&path, &id).map_err(|e| BrokerError::Storage {
        path,
        message: e.to_string(),
    })?;
    Ok(id)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Each node's (client, controller) ports: kept in `data_dir/ports` once chosen, so
/// a restarted cluster finds its nodes where they were.
fn cluster_ports(data_dir: &Path, nodes: usize, port: u16) -> Result<Vec<(u16, u16)>, BrokerError> {
    let path = data_dir.join("ports");
    if port == 0 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let kept: Vec<(u16, u16)> = text
                .lines()
                .filter_map(|l| {
                    let (a, b) = l.split_once(' ')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            if kept.len() == nodes {
                return Ok(kept);
            }
        }
    }
    let ports: Vec<(u16, u16)> = if port == 0 {
        // Every listener stays bound until all are chosen: no port is handed out twice.
        let mut held = Vec::new();
        let mut next = || -> Result<u16, BrokerError> {
            let l =
                std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| BrokerError::Storage {
                    path: PathBuf::from("127.0.0.1:0"),
                    message: format!("no free port: {e}"),
                })?;
            let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
            held.push(l);
            Ok(p)
        };
        (0..nodes)
            .map(|_| Ok((next()?, next()?)))
            .collect::<Result<_, BrokerError>>()?
    } else {
        (0..nodes as u16)
            .map(|i| (port + 2 * i, port + 2 * i + 1))
            .collect()
    };
    let text: String = ports.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    std::fs::write(&path, text).map_err(|e| BrokerError::Storage {
        path,
        message: e.to_string(),
    })?;
    Ok(ports)
}
