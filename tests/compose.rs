//! `docker-compose.yml` as processes, without Docker.
//!
//! Every application container of the generated file (the services running the
//! sluice image) is started as a child process of the `sluice` binary, with the
//! container's command and environment: the image's `ENV` (read from the
//! Dockerfile), then the service's `environment`, after compose's `${VAR}`
//! interpolation with test values. What exists only inside compose is mapped to
//! this machine:
//!
//! | in the file | here |
//! |---|---|
//! | `postgres-<x>:5432/<db>` as `<db>_app` / `<db>_owner` | 127.0.0.1:5432 (the admin URL's server), a test-unique database and roles provisioned as `sluice db setup` does |
//! | `KAFKA_BROKERS` `kafka-N:9092,...` | the test broker |
//! | `<NAME>_PORT`, `SLUICE_SQL_PORT` | free ports |
//! | `SLUICE_HTTP_HOST` `0.0.0.0` | `127.0.0.1` |
//! | `SLUICE_DATA_DIR` (a volume), the files the Dockerfile copies to `/etc/sluice` | a temporary directory, the repository's files |
//! | `SLUICE_TOPIC_REPLICATION_FACTOR` 3, `SLUICE_TOPIC_MIN_INSYNC_REPLICAS` 2 | 1 and 1: the test broker is one node |
//!
//! Each child also gets `SLUICE_TOPIC_PREFIX` (its topics apart from other tests' on a
//! shared broker) and `RUST_LOG`. Processes start in `depends_on` order, and a
//! dependency with `condition: service_healthy` must first pass its own
//! `healthcheck`, run here as compose runs it: the same command in the same
//! environment. Then an order goes through the whole pipeline: placed over HTTP on
//! `orders`, read back from `order_view` with its consistency token, confirmed and
//! shipped by the saga (relays and reactors through the broker), and loaded into the
//! warehouse, where an analyst of `SLUICE_ANALYSTS` finds its events in `raw_events`.
//!
//! A child that exits before the test stops it fails the test with its output (an
//! unknown command or a bad variable value stops `sluice`), and every variable the
//! file or the image sets on an application must be one the binary reads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::registry::{DatabaseSpec, Registry};
use sluice_platform::testing::{admin_url, unique_suffix, TestBroker, TestDatabase};
use support::wait::{millis, secs, until};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Variables the `sluice` binary reads that are not tied to one component.
///
/// The registry code has no function that lists them (`platform/src/registry.rs`
/// and the components read them one by one), so the list is kept here, and each
/// entry is checked against the workspace's source: it must appear there as a string
/// literal, so an entry nobody reads any more fails as well.
const GLOBAL_VARIABLES: &[&str] = &[
    "SLUICE_REGISTRY",
    "SLUICE_ADMIN_DATABASE_URL",
    "SLUICE_DATA_DIR",
    "KAFKA_BROKERS",
    "SLUICE_HTTP_HOST",
    "SLUICE_ANALYSTS",
    "SLUICE_SQL_PORT",
    "SLUICE_SCHEMAS_DIR",
    "SLUICE_CONSISTENCY_WAIT_MS",
    "SLUICE_TANSU_BIN",
    "SLUICE_BROKER",
    "SLUICE_TOPIC_PREFIX",
    "SLUICE_TOPIC_REPLICATION_FACTOR",
    "SLUICE_TOPIC_MIN_INSYNC_REPLICAS",
    "PAYMENTS_AUTHORIZATION_LIMIT_MINOR",
    "PGPASSWORD",
];

/// Read by a library rather than by our code: not looked for in the source.
const LIBRARY_VARIABLES: &[&str] = &["RUST_LOG"];

/// Per component: `<NAME>` + suffix (`ORDERS_DATABASE_URL`, ...), each suffix checked
/// against the source like [`GLOBAL_VARIABLES`].
const COMPONENT_SUFFIXES: &[&str] = &[
    "_DATABASE_URL",
    "_OWNER_DATABASE_URL",
    "_APP_PASSWORD",
    "_OWNER_PASSWORD",
    "_PORT",
    "_DATABASE_POOL_SIZE",
];

fn registry() -> Registry {
    Registry::load(&root().join("sluice.toml")).expect("sluice.toml")
}

/// Every variable name the binary reads for this registry.
fn known_variables(registry: &Registry) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = GLOBAL_VARIABLES
        .iter()
        .chain(LIBRARY_VARIABLES)
        .map(|v| v.to_string())
        .collect();
    for component in registry.components() {
        for suffix in COMPONENT_SUFFIXES {
            known.insert(format!("{}{suffix}", component.env_prefix()));
        }
    }
    known
}

/// The Rust source of the workspace's crates (not its tests).
fn workspace_source() -> String {
    fn collect(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut source = String::new();
    collect(&root().join("src"), &mut source);
    for dir in ["platform", "analytics", "services", "projections"] {
        let base = root().join(dir);
        collect(&base.join("src"), &mut source);
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            collect(&entry.path().join("src"), &mut source);
        }
    }
    source
}

// ---------------------------------------------------------------------------------
// The compose file and the image, as the test reads them.

/// One service of the compose file, after `<<` merges.
#[derive(Debug, Clone)]
struct Service {
    name: String,
    image: Option<String>,
    command: Vec<String>,
    environment: Vec<(String, String)>,
    healthcheck: Option<Vec<String>>,
    /// (service, condition)
    depends_on: Vec<(String, String)>,
    /// Container paths of mounted volumes.
    mounts: Vec<String>,
    /// Container ports published.
    ports: Vec<u16>,
}

struct Compose {
    services: BTreeMap<String, Service>,
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Null => Some(String::new()),
        _ => None,
    }
}

/// Applies YAML merge keys (`<<: *anchor`) of a mapping.
fn merged(y: &Yaml) -> yaml_rust2::yaml::Hash {
    let hash = y.as_hash().expect("a mapping").clone();
    let merge = Yaml::String("<<".to_owned());
    let Some(base) = hash.get(&merge) else {
        return hash;
    };
    let mut out = match base {
        Yaml::Array(bases) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            for b in bases.iter().rev() {
                out.extend(merged(b));
            }
            out
        }
        other => merged(other),
    };
    for (k, v) in hash {
        if k != merge {
            out.insert(k, v);
        }
    }
    out
}

fn strings(y: &Yaml, what: &str) -> Vec<String> {
    match y {
        Yaml::Array(items) => items
            .iter()
            .map(|i| scalar(i).unwrap_or_else(|| panic!("{what}: not a scalar: {i:?}")))
            .collect(),
        Yaml::BadValue => Vec::new(),
        other => panic!("{what}: expected a list, found {other:?}"),
    }
}

fn load_compose() -> Compose {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file");
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    let doc = &docs[0];
    let mut services = BTreeMap::new();
    for (name, body) in doc["services"].as_hash().expect("services") {
        let name = name.as_str().expect("service name").to_owned();
        let body = Yaml::Hash(merged(body));
        let environment = match &body["environment"] {
            Yaml::Hash(env) => env
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().expect("variable name").to_owned();
                    let value =
                        scalar(v).unwrap_or_else(|| panic!("{name}: {key} is not a scalar"));
                    (key, value)
                })
                .collect(),
            Yaml::BadValue => Vec::new(),
            other => panic!("{name}: environment must be a mapping, found {other:?}"),
        };
        let depends_on = match &body["depends_on"] {
            Yaml::Hash(deps) => deps
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("dependency").to_owned(),
                        v["condition"]
                            .as_str()
                            .unwrap_or("service_started")
                            .to_owned(),
                    )
                })
                .collect(),
            Yaml::Array(deps) => deps
                .iter()
                .map(|d| (scalar(d).unwrap(), "service_started".to_owned()))
                .collect(),
            Yaml::BadValue => Vec::new(),
            other => panic!("{name}: depends_on: {other:?}"),
        };
        let healthcheck = match &body["healthcheck"]["test"] {
            Yaml::BadValue => None,
            test => Some(strings(test, "healthcheck.test")),
        };
        let mounts = strings(&body["volumes"], "volumes")
            .iter()
            .map(|v| v.split(':').nth(1).unwrap_or_default().to_owned())
            .collect();
        let ports = strings(&body["ports"], "ports")
            .iter()
            .map(|p| {
                p.rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: port `{p}`"))
            })
            .collect();
        services.insert(
            name.clone(),
            Service {
                name,
                image: body["image"].as_str().map(str::to_owned),
                command: strings(&body["command"], "command"),
                environment,
                healthcheck,
                depends_on,
                mounts,
                ports,
            },
        );
    }
    Compose { services }
}

impl Compose {
    /// The services that run the sluice image.
    fn applications(&self) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| s.image.as_deref() == Some("sluice:latest"))
            .collect()
    }
}

/// The final stage of the Dockerfile: its `ENV`, what it copies where, its entrypoint.
struct Image {
    env: Vec<(String, String)>,
    /// Container path → repository path.
    copies: BTreeMap<String, PathBuf>,
    entrypoint: Vec<String>,
}

/// The Dockerfile's final stage, which must run the sluice binary.
fn load_image() -> Image {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let stage = text
        .rsplit_once("\nFROM ")
        .map(|(_, s)| s)
        .expect("a final FROM");
    let mut image = Image {
        env: Vec::new(),
        copies: BTreeMap::new(),
        entrypoint: Vec::new(),
    };
    for line in stage.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Dockerfile: ENV `{pair}` is not KEY=VALUE"));
                image
                    .env
                    .push((k.to_owned(), v.trim_matches('"').to_owned()));
            }
        } else if let Some(rest) = line.strip_prefix("COPY ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if !parts[0].starts_with("--") && parts.len() == 2 {
                image
                    .copies
                    .insert(parts[1].to_owned(), root().join(parts[0]));
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            image.entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form");
        }
    }
    assert_eq!(
        image.entrypoint,
        ["sluice"],
        "the image runs the sluice binary"
    );
    image
}

// ---------------------------------------------------------------------------------
// Interpolation and the mapping to this machine.

/// Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:?err}`, `${VAR?err}`,
/// `${VAR:-default}`, `${VAR-default}`. A variable the test does not set fails, also
/// where compose would quietly put an empty string.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, modifier, tail) = if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in `{text}`"));
            let inner = &body[..end];
            let split = inner.find(|c| !is_name(c)).unwrap_or(inner.len());
            (&inner[..split], &inner[split..], &body[end + 1..])
        } else {
            let split = after.find(|c| !is_name(c)).unwrap_or(after.len());
            (&after[..split], "", &after[split..])
        };
        assert!(!name.is_empty(), "a bare `$` in `{text}` (write `$$`)");
        let empty_is_unset = modifier.starts_with(':');
        let op = modifier.trim_start_matches(':');
        let value = vars.get(name).filter(|v| !(empty_is_unset && v.is_empty()));
        let resolved = match (value, op.chars().next()) {
            (Some(v), _) => v.clone(),
            (None, Some('-')) => op[1..].to_owned(),
            (None, Some('?')) => panic!("`{text}` requires {name}: {}", &op[1..]),
            (None, _) => panic!("`{text}` uses {name}, which the test does not set"),
        };
        out.push_str(&resolved);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// What the test puts in place of compose's hosts, ports and paths.
struct Mapping<'a> {
    compose: &'a Compose,
    image: &'a Image,
    /// Registry database name → its roles in the registry, and the test's database.
    databases: BTreeMap<String, (DatabaseSpec, &'a TestDatabase)>,
    /// Where the test's PostgreSQL server is.
    postgres: String,
    bootstrap: String,
    /// Port in the file → free port here.
    ports: Mutex<BTreeMap<u16, u16>>,
    data_dir: PathBuf,
}

impl Mapping<'_> {
    fn port(&self, port: u16) -> u16 {
        let mut ports = self.ports.lock().unwrap();
        if let Some(p) = ports.get(&port) {
            return *p;
        }
        // Free a moment ago and different from every port handed out before.
        let free = loop {
            let p = sluice_platform::testing::free_port();
            if !ports.values().any(|q| *q == p) {
                break p;
            }
        };
        ports.insert(port, free);
        free
    }

    fn is_image(&self, host: &str, image_prefix: &str) -> bool {
        self.compose
            .services
            .get(host)
            .and_then(|s| s.image.as_deref())
            .is_some_and(|i| i.starts_with(image_prefix))
    }

    /// `postgres://role:password@postgres-<x>:5432/<db>` → the test's database.
    fn database_url(&self, service: &Service, key: &str, url: &str) -> String {
        let rest = url.strip_prefix("postgres://").unwrap();
        let (userinfo, location) = rest
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("{}: {key} has no user", service.name));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, database) = location
            .split_once('/')
            .unwrap_or_else(|| panic!("{}: {key} names no database", service.name));
        let (host, port) = host.split_once(':').unwrap_or((host, "5432"));
        assert!(
            self.is_image(host, "postgres:") && port == "5432",
            "{}: {key} points at `{host}:{port}`, not a PostgreSQL service of the file",
            service.name
        );
        let (spec, db) = self.databases.get(database).unwrap_or_else(|| {
            panic!(
                "{}: {key} names database `{database}`, which no component of the registry owns",
                service.name
            )
        });
        let role = if user == spec.app_role {
            &db.spec.app_role
        } else if user == spec.owner_role {
            &db.spec.owner_role
        } else {
            panic!(
                "{}: {key} connects as `{user}`, neither the app nor the owner role of {database}",
                service.name
            )
        };
        format!(
            "postgres://{role}:{password}@{}/{}",
            self.postgres, db.spec.name
        )
    }

    /// One variable of a container's environment, as this machine needs it.
    fn value(&self, service: &Service, key: &str, value: &str) -> String {
        let mapped = match key {
            "KAFKA_BROKERS" => {
                for broker in value.split(',') {
                    let (host, port) = broker.split_once(':').unwrap_or((broker, ""));
                    assert!(
                        self.is_image(host, "apache/kafka:") && port == "9092",
                        "{}: KAFKA_BROKERS names `{broker}`, not a Kafka node of the file",
                        service.name
                    );
                }
                self.bootstrap.clone()
            }
            "SLUICE_HTTP_HOST" => {
                assert_eq!(
                    value, "0.0.0.0",
                    "{}: in a container a component must listen on every interface",
                    service.name
                );
                "127.0.0.1".to_owned()
            }
            "SLUICE_DATA_DIR" => {
                assert!(
                    service.mounts.iter().any(|m| m == value),
                    "{}: SLUICE_DATA_DIR {value} is not a volume: its data would not survive the container",
                    service.name
                );
                let dir = self.data_dir.join(&service.name);
                std::fs::create_dir_all(&dir).unwrap();
                dir.display().to_string()
            }
            "SLUICE_TOPIC_REPLICATION_FACTOR" => {
                assert_eq!(value, "3", "{}: {key}", service.name);
                "1".to_owned()
            }
            "SLUICE_TOPIC_MIN_INSYNC_REPLICAS" => {
                assert_eq!(value, "2", "{}: {key}", service.name);
                "1".to_owned()
            }
            k if k.ends_with("_PORT") => {
                let port: u16 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: {key}={value} is not a port", service.name));
                self.port(port).to_string()
            }
            _ if value.starts_with("postgres://") => self.database_url(service, key, value),
            _ => match self.image.copies.get(value) {
                Some(local) => local.display().to_string(),
                None => value.to_owned(),
            },
        };
        for host in self.compose.services.keys() {
            assert!(
                !mapped.contains(&format!("{host}:")),
                "{}: {key}={value} still names the compose host `{host}`",
                service.name
            );
        }
        mapped
    }
}

// ---------------------------------------------------------------------------------
// The children.

/// A directory removed when the test ends, passed or failed.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process with its output kept; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keep_output(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut lines = into.lock().unwrap();
            if lines.len() >= 400 {
                lines.remove(0);
            }
            lines.push(line);
        }
    });
}

/// What one application container runs, mapped to this machine.
struct Plan {
    service: Service,
    /// Arguments after the entrypoint.
    args: Vec<String>,
    env: Vec<(String, String)>,
    healthcheck: Option<Vec<String>>,
    workdir: PathBuf,
}

impl Plan {
    fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir)
            .stdin(Stdio::null());
        command
    }

    /// Runs the health check once, as compose does inside the container.
    fn healthy(&self) -> Result<(), String> {
        let test = self.healthcheck.as_ref().expect("a health check");
        let args = match test.first().map(String::as_str) {
            Some("CMD") if matches!(test.get(1).map(String::as_str), Some("sluice" | "/usr/local/bin/sluice")) => &test[2..],
            _ => panic!(
                "{}: the test runs health checks of the sluice binary only (`[\"CMD\", \"sluice\", ...]`), found {test:?}",
                self.service.name
            ),
        };
        let output = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot run the health check: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{test:?} exited with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    fn start(&mut self, plan: &Plan) {
        let mut child = plan
            .command(&plan.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start sluice: {e}", plan.service.name));
        let output = Arc::new(Mutex::new(Vec::new()));
        keep_output(child.stdout.take().unwrap(), output.clone());
        keep_output(child.stderr.take().unwrap(), output.clone());
        self.procs.push(Proc {
            name: plan.service.name.clone(),
            child,
            output,
        });
    }

    /// Fails the test when a child has exited.
    fn assert_running(&mut self) {
        for proc in &mut self.procs {
            if let Some(status) = proc.child.try_wait().unwrap() {
                // Let the output readers catch up with the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "`{}` exited with {status} before the test stopped it; its output:\n{}",
                    proc.name,
                    proc.output()
                );
            }
        }
    }

    fn outputs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.name, p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `plan`'s health check until it passes (bounded), every child still up.
    async fn wait_healthy(&mut self, plan: &Plan) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            self.assert_running();
            let result = tokio::task::block_in_place(|| plan.healthy());
            match result {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "`{}` never became healthy: {e}\n{}",
                    plan.service.name,
                    self.outputs()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// SIGTERM to every child, last started first; each must stop cleanly.
    fn stop(&mut self) -> Vec<(String, ExitStatus)> {
        self.assert_running();
        let mut stopped = Vec::new();
        while let Some(mut proc) = self.procs.pop() {
            let Some(status) = support::terminate(&mut proc.child, Duration::from_secs(20)) else {
                panic!(
                    "`{}` did not stop within 20 s of SIGTERM:\n{}",
                    proc.name,
                    proc.output()
                );
            };
            if !status.success() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "`{}` stopped with {status} on SIGTERM:\n{}",
                    proc.name,
                    proc.output()
                );
            }
            stopped.push((proc.name.clone(), status));
        }
        stopped
    }
}

// ---------------------------------------------------------------------------------
// The tests.

/// Test values of the variables the file interpolates, given the test's databases.
fn interpolation_values(
    registry: &Registry,
    databases: &BTreeMap<String, (DatabaseSpec, &TestDatabase)>,
    analyst: &(String, String),
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert(
        "POSTGRES_PASSWORD".to_owned(),
        "only-the-postgres-containers-use-it".to_owned(),
    );
    vars.insert(
        "SLUICE_ANALYSTS".to_owned(),
        format!(
            "{}={}",
            analyst.0,
            sluice_analytics::analyst::auth::Verifier::new(&analyst.1)
        ),
    );
    for (component, db) in registry.stateful() {
        let (_, test) = &databases[&db.name];
        let prefix = component.env_prefix();
        vars.insert(
            format!("{prefix}_APP_PASSWORD"),
            test.spec.app_password.clone(),
        );
        vars.insert(
            format!("{prefix}_OWNER_PASSWORD"),
            test.spec.owner_password.clone(),
        );
    }
    vars
}

#[test]
fn every_variable_the_file_sets_on_an_application_is_read_by_the_binary() {
    let registry = registry();
    let known = known_variables(&registry);
    let compose = load_compose();
    let image = load_image();
    let applications = compose.applications();
    assert!(!applications.is_empty(), "no service runs the sluice image");
    let mut unknown = Vec::new();
    for (key, _) in &image.env {
        if !known.contains(key) {
            unknown.push(format!("Dockerfile ENV: {key}"));
        }
    }
    for service in &applications {
        for (key, _) in &service.environment {
            if !known.contains(key) {
                unknown.push(format!("{}: {key}", service.name));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "variables the sluice binary does not read: {unknown:#?}"
    );
    // Each entry of the list is read somewhere in the code.
    let source = workspace_source();
    let unread: Vec<String> = GLOBAL_VARIABLES
        .iter()
        .filter(|v| !source.contains(&format!("\"{v}\"")))
        .map(|v| v.to_string())
        .chain(
            COMPONENT_SUFFIXES
                .iter()
                .filter(|s| !source.contains(&format!("{s}\"")))
                .map(|s| format!("<NAME>{s}")),
        )
        .collect();
    assert!(
        unread.is_empty(),
        "listed as read by the binary, but no source file names them: {unread:?}"
    );
}

#[test]
fn interpolation_follows_compose() {
    let vars: BTreeMap<String, String> = [("A", "1"), ("EMPTY", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(interpolate("x${A}y$A-$$A", &vars), "x1y1-$A");
    assert_eq!(interpolate("${A:?set A}", &vars), "1");
    assert_eq!(interpolate("${B:-d}${EMPTY:-e}${EMPTY-f}", &vars), "de");
    assert!(std::panic::catch_unwind(|| interpolate("${B:?set B}", &vars)).is_err());
    assert!(std::panic::catch_unwind(|| interpolate("${B}", &vars)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_runs_the_whole_pipeline_as_processes() {
    let registry = registry();
    let compose = load_compose();
    let image = load_image();
    let suffix = unique_suffix();

    // One test database per stateful component, with passwords of this test.
    let mut owned = Vec::new();
    for (component, spec) in registry.stateful() {
        let mut component = component.clone();
        let db = component.database.as_mut().unwrap();
        db.app_password = format!("app-{suffix}");
        db.owner_password = format!("owner-{suffix}");
        owned.push((
            spec.clone(),
            TestDatabase::provision_component(&component).await,
        ));
    }
    let databases: BTreeMap<String, (DatabaseSpec, &TestDatabase)> = owned
        .iter()
        .map(|(spec, db)| (spec.name.clone(), (spec.clone(), db)))
        .collect();
    let broker = TestBroker::start().await;
    let admin: sqlx::postgres::PgConnectOptions = admin_url().parse().expect("admin URL");
    let data_dir = std::env::temp_dir().join(format!("sluice-compose-{suffix}"));
    let _remove_data_dir = RemoveOnDrop(data_dir.clone());
    let workdir = data_dir.join("workdir");
    std::fs::create_dir_all(&workdir).unwrap();
    let mapping = Mapping {
        compose: &compose,
        image: &image,
        databases: databases.clone(),
        postgres: format!("{}:{}", admin.get_host(), admin.get_port()),
        bootstrap: broker.bootstrap(),
        ports: Mutex::new(BTreeMap::new()),
        data_dir: data_dir.clone(),
    };
    let analyst = (format!("compose_{suffix}"), format!("pw-{suffix}"));
    let vars = interpolation_values(&registry, &databases, &analyst);

    // What each application container runs.
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    for service in compose.applications() {
        assert!(
            !service.command.is_empty(),
            "{}: no command: the container would run `sluice` alone",
            service.name
        );
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in image.env.iter().chain(&service.environment) {
            let value = interpolate(value, &vars);
            env.insert(key.clone(), mapping.value(service, key, &value));
        }
        for port in &service.ports {
            assert!(
                service
                    .environment
                    .iter()
                    .any(|(k, v)| k.ends_with("_PORT") && *v == port.to_string()),
                "{}: publishes port {port}, which no <NAME>_PORT of its environment sets",
                service.name
            );
        }
        env.insert("SLUICE_TOPIC_PREFIX".to_owned(), format!("t_{suffix}."));
        env.insert(
            "RUST_LOG".to_owned(),
            "info,sqlx=warn,tower_http=warn".to_owned(),
        );
        plans.insert(
            service.name.clone(),
            Plan {
                service: (*service).clone(),
                args: service
                    .command
                    .iter()
                    .map(|a| interpolate(a, &vars))
                    .collect(),
                env: env.into_iter().collect(),
                healthcheck: service
                    .healthcheck
                    .as_ref()
                    .map(|t| t.iter().map(|a| interpolate(a, &vars)).collect()),
                workdir: workdir.clone(),
            },
        );
    }
    // Every component of the registry runs somewhere, with a relay per write service.
    let commands: BTreeSet<Vec<String>> = plans.values().map(|p| p.args.clone()).collect();
    for component in registry.components() {
        let run = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
        assert!(
            commands.contains(&run(&["run", &component.name])),
            "no container runs `sluice run {}`",
            component.name
        );
        if component.kind == sluice_platform::registry::ComponentKind::Service {
            assert!(
                commands.contains(&run(&["run", "relay", &component.name])),
                "no container runs the relay of {}",
                component.name
            );
            if !component.consumes.is_empty() {
                assert!(
                    commands.contains(&run(&["run", "reactor", &component.name])),
                    "no container runs the reactor of {}",
                    component.name
                );
            }
        }
    }

    // Start in depends_on order; wait for health where the file says so.
    let mut fleet = Fleet { procs: Vec::new() };
    let mut started: Vec<String> = Vec::new();
    let mut healthy: BTreeSet<String> = BTreeSet::new();
    let infrastructure = |name: &str| !plans.contains_key(name);
    while started.len() < plans.len() {
        let next = plans
            .values()
            .find(|p| {
                !started.contains(&p.service.name)
                    && p.service
                        .depends_on
                        .iter()
                        .all(|(d, _)| started.contains(d) || infrastructure(d))
            })
            .unwrap_or_else(|| panic!("depends_on has a cycle among {:?}", plans.keys()));
        for (dep, condition) in &next.service.depends_on {
            let Some(dep_service) = compose.services.get(dep) else {
                panic!(
                    "{}: depends on `{dep}`, which the file does not define",
                    next.service.name
                );
            };
            if infrastructure(dep) {
                // PostgreSQL and Kafka: the test's own, up already.
                assert!(
                    condition != "service_healthy" || dep_service.healthcheck.is_some(),
                    "{}: waits for `{dep}` to be healthy, but it has no health check",
                    next.service.name
                );
                continue;
            }
            match condition.as_str() {
                "service_started" => {}
                "service_healthy" => {
                    if healthy.insert(dep.clone()) {
                        fleet.wait_healthy(&plans[dep]).await;
                    }
                }
                other => panic!("{}: condition `{other}` for {dep}", next.service.name),
            }
        }
        fleet.start(next);
        started.push(next.service.name.clone());
    }
    for plan in plans.values().filter(|p| p.healthcheck.is_some()) {
        fleet.wait_healthy(plan).await;
    }

    // An order through the whole pipeline.
    let port_of = |component: &str| mapping.port(registry.component(component).unwrap().port);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://127.0.0.1:{}/orders", port_of("orders")))
        .header("Idempotency-Key", format!("compose-{suffix}"))
        .json(&json!({
            "customer_id": format!("compose-{suffix}"), "currency": "EUR",
            "lines": [{ "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 }]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        fleet.outputs()
    );
    let placed: Value = response.json().await.unwrap();
    let order = placed["stream_id"].as_str().unwrap().to_owned();
    let token = placed["consistency_token"].as_str().unwrap().to_owned();

    // Read-your-writes in order_view with the token (a 503 asks to retry).
    let view_url = format!("http://127.0.0.1:{}/orders/{order}", port_of("order_view"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let first: Value = loop {
        fleet.assert_running();
        let response = client
            .get(&view_url)
            .header("X-Consistency-Token", &token)
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => break response.json().await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            status => panic!(
                "order_view answered {status}: {}\n{}",
                response.text().await.unwrap_or_default(),
                fleet.outputs()
            ),
        }
    };
    assert_eq!(first["customer_id"], format!("compose-{suffix}"), "{first}");

    // The saga: payments authorizes (its reactor), orders confirms (its reactor),
    // shipping creates the shipment (its reactor), every event through a relay.
    let last: Value = until(
        "the order getting confirmed and shipped",
        secs(120),
        millis(300),
        async || {
            fleet.assert_running();
            let response = client.get(&view_url).send().await.unwrap();
            let seen: Value = if response.status() == StatusCode::OK {
                response.json().await.unwrap()
            } else {
                Value::Null
            };
            if seen["order_status"] == "confirmed" && seen["shipment_status"] == "created" {
                Ok(seen)
            } else {
                Err(format!("{seen}\n{}", fleet.outputs()))
            }
        },
    )
    .await;
    assert_eq!(last["payment_status"], "authorized", "{last}");

    // The write side's stream, then the same events in the warehouse.
    let audit: Value = support::get_json(
        &client,
        format!(
            "http://127.0.0.1:{}/orders/{order}/events",
            port_of("orders")
        ),
    )
    .await;
    let written: Vec<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(written.len() >= 2, "placed and confirmed: {audit}");
    let sql_port = mapping.port(registry.analytics.as_ref().unwrap().sql_port);
    let (sql, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={sql_port} user={} password={} dbname=warehouse",
            analyst.0, analyst.1
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("the analyst of SLUICE_ANALYSTS connects to the warehouse");
    let connection = tokio::spawn(connection);
    let query = sql
        .prepare_typed(
            "SELECT CAST(event_id AS VARCHAR) FROM raw_events WHERE stream_id = $1 ORDER BY stream_version",
            &[tokio_postgres::types::Type::TEXT],
        )
        .await
        .unwrap();
    until(
        "raw_events holding the order's events",
        secs(60),
        millis(300),
        async || {
            fleet.assert_running();
            let loaded: Vec<String> = sql
                .query(&query, &[&order])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            if loaded == written {
                Ok(())
            } else {
                Err(format!("{loaded:?} of {written:?}\n{}", fleet.outputs()))
            }
        },
    )
    .await;
    drop(sql);
    connection.abort();

    let stopped = fleet.stop();
    assert_eq!(stopped.len(), plans.len());
    drop(broker);
    drop(owned);
}
