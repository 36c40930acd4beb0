//! Apache Kafka's jars in the per-machine cache, fetched with Maven on first use.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use super::KAFKA_VERSION;
use crate::broker::BrokerError;

const POM: &str = include_str!("../../../deploy/kafka/pom.xml");
const LOG4J: &str = include_str!("../../../deploy/kafka/log4j2.properties");

/// Where Apache Kafka is (or will be) installed on this machine.
pub fn kafka_home() -> PathBuf {
    if let Some(home) = std::env::var_os("SLUICE_KAFKA_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache")
        .join("sluice")
        .join(format!("kafka-{KAFKA_VERSION}"))
}

/// The installed Kafka: the folder of its jars and its logging configuration.
#[derive(Debug, Clone)]
pub struct KafkaInstall {
    pub libs: PathBuf,
    pub log4j: PathBuf,
}

impl KafkaInstall {
    /// The `java` command line that runs `main_class` with the broker's classpath.
    pub(super) fn java(&self, heap: &str, main_class: &str) -> Command {
        let mut java = Command::new("java");
        java.arg(format!("-Xmx{heap}"))
            .arg(format!("-Xms{}", "128m"))
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j.display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", self.libs.display()))
            .arg(main_class);
        java
    }
}

/// Makes sure Apache Kafka is in the per-machine cache, fetching it with Maven when
/// it is not. Concurrent callers (test binaries) wait for one fetch.
pub async fn ensure_installed() -> Result<KafkaInstall, BrokerError> {
    let home = kafka_home();
    let install = KafkaInstall {
        libs: home.join("libs"),
        log4j: home.join("log4j2.properties"),
    };
    if install.libs.is_dir() && install.log4j.is_file() {
        return Ok(install);
    }
    let fail = |message: String| BrokerError::Install {
        what: format!("Apache Kafka {KAFKA_VERSION}"),
        root: home.clone(),
        message,
    };
    require_tool(
        "java",
        "-version",
        "Java 17+ runs the local Kafka: apt-get install -y openjdk-17-jre-headless",
    )
    .await?;
    require_tool(
        "mvn",
        "-v",
        "Maven fetches the local Kafka from Maven Central: apt-get install -y maven",
    )
    .await?;
    std::fs::create_dir_all(&home).map_err(|e| fail(e.to_string()))?;
    let lock_path = home.join(".lock");
    let lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(format!("cannot lock the cache: {e}")))?;
    if !install.libs.is_dir() {
        tracing::warn!(
            home = %home.display(),
            "Apache Kafka {KAFKA_VERSION} is not on this machine yet; fetching it once from Maven Central"
        );
        let pom = home.join("pom.xml");
        std::fs::write(&pom, POM).map_err(|e| fail(e.to_string()))?;
        let partial = home.join("libs.partial");
        let _ = std::fs::remove_dir_all(&partial);
        let output = Command::new("mvn")
            .args(["-q", "-B", "-f"])
            .arg(&pom)
            .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
            .arg(format!("-DoutputDirectory={}", partial.display()))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| fail(format!("cannot run mvn: {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "mvn exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            )));
        }
        std::fs::rename(&partial, &install.libs).map_err(|e| fail(e.to_string()))?;
    }
    std::fs::write(&install.log4j, LOG4J).map_err(|e| fail(e.to_string()))?;
    drop(lock);
    Ok(install)
}

async fn require_tool(program: &str, version_flag: &str, hint: &str) -> Result<(), BrokerError> {
    let found = Command::new(program)
        .arg(version_flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if found {
        Ok(())
    } else {
        Err(BrokerError::MissingTool {
            program: program.to_owned(),
            hint: hint.to_owned(),
        })
    }
}
