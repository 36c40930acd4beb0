//! The service registry (`sluice.toml`): every component of the platform, its kind,
//! port, database, roles, topics and dependencies.
//!
//! The registry is the single source of truth. Everything derived from it (database
//! and role names, connection URLs, the provisioning SQL, `docker-compose.yml`) is
//! computed here so that every consumer derives it the same way. Environment variables
//! override the file: `<NAME>_DATABASE_URL`, `<NAME>_OWNER_DATABASE_URL`,
//! `<NAME>_APP_PASSWORD`, `<NAME>_OWNER_PASSWORD`, `<NAME>_PORT`,
//! `SLUICE_ADMIN_DATABASE_URL`, `SLUICE_DATA_DIR`, `KAFKA_BROKERS`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors raised while loading or validating the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry file could not be read (missing file, permissions).
    #[error("cannot read registry {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the registry's shape.
    #[error("invalid registry {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The file parses but breaks a rule of the registry (duplicate port, unknown
    /// dependency, bad identifier, ...).
    #[error("invalid registry: {0}")]
    Invalid(String),
    /// A command named a component that the registry does not list.
    #[error("no component named `{name}` in the registry (known: {known})")]
    UnknownComponent { name: String, known: String },
}

/// What a component does; decides which privileges its runtime role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A write service: appends events to its own event store.
    Service,
    /// A read model fed by topics.
    Projection,
    /// A reactor (saga step) that turns events into commands.
    Reactor,
    /// The CDC sink into the analytics warehouse.
    Sink,
}

impl ComponentKind {
    /// Table privileges the runtime (app) role receives on every table its owner
    /// creates. Write services only ever append: their event store is immutable.
    pub fn app_table_privileges(self) -> &'static str {
        match self {
            ComponentKind::Service => "SELECT, INSERT",
            ComponentKind::Projection | ComponentKind::Reactor | ComponentKind::Sink => {
                "SELECT, INSERT, UPDATE, DELETE"
            }
        }
    }
}

/// Platform-wide settings (`[platform]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub database_host: String,
    pub database_port: u16,
    pub admin_database_url: String,
    pub data_dir: PathBuf,
    pub kafka_brokers: String,
}

/// The analytics component's settings (`[analytics]`): the DuckDB warehouse the
/// sink loads and the analyst SQL endpoint serves.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// The DuckDB file; relative paths are under `[platform].data_dir`.
    #[serde(default = "default_warehouse")]
    pub warehouse: PathBuf,
    /// Port of the PostgreSQL-protocol analyst endpoint.
    pub sql_port: u16,
    /// A query running longer is cancelled (SQLSTATE 57014).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_seconds: u64,
    /// A query answering more rows fails (SQLSTATE 54000) rather than truncate.
    #[serde(default = "default_row_limit")]
    pub row_limit: usize,
    /// DuckDB's memory limit for the whole warehouse instance.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
    /// Analysts who may connect: user name → password.
    #[serde(default)]
    pub analysts: BTreeMap<String, String>,
}

impl std::fmt::Debug for AnalyticsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsConfig")
            .field("warehouse", &self.warehouse)
            .field("sql_port", &self.sql_port)
            .field("statement_timeout_seconds", &self.statement_timeout_seconds)
            .field("row_limit", &self.row_limit)
            .field("memory_limit", &self.memory_limit)
            .field("analysts", &self.analysts.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn default_warehouse() -> PathBuf {
    PathBuf::from("warehouse.duckdb")
}
fn default_statement_timeout() -> u64 {
    30
}
fn default_row_limit() -> usize {
    1_000_000
}
fn default_memory_limit() -> String {
    "2GB".to_owned()
}

/// A Kafka topic (`[topics."<name>"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub partitions: u32,
}

/// One component as written in the file (`[components.<name>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    kind: ComponentKind,
    port: u16,
    database: Option<String>,
    app_password: Option<String>,
    owner_password: Option<String>,
    #[serde(default)]
    produces: Vec<String>,
    #[serde(default)]
    consumes: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    platform: PlatformConfig,
    #[serde(default)]
    topics: BTreeMap<String, TopicConfig>,
    components: BTreeMap<String, RawComponent>,
    analytics: Option<AnalyticsConfig>,
}

/// A component's database and the two roles that may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// Database name; also the prefix of both role names.
    pub name: String,
    /// Owns the database and its schema; runs migrations.
    pub owner_role: String,
    pub owner_password: String,
    /// What the component runs as; privileges depend on the component kind.
    pub app_role: String,
    pub app_password: String,
}

/// A component with everything derived from the registry resolved.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    pub port: u16,
    /// `None` for a stateless component.
    pub database: Option<DatabaseSpec>,
    pub produces: Vec<String>,
    pub consumes: Vec<String>,
    pub depends_on: Vec<String>,
}

impl Component {
    /// Prefix of this component's environment variables: `order_view` → `ORDER_VIEW`.
    pub fn env_prefix(&self) -> String {
        env_prefix(&self.name)
    }
}

/// Turns a component name into its environment variable prefix.
pub fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The whole registry, validated.
#[derive(Debug, Clone)]
pub struct Registry {
    pub platform: PlatformConfig,
    pub topics: BTreeMap<String, TopicConfig>,
    components: Vec<Component>,
    /// `[analytics]`, when the registry has an analytics component.
    pub analytics: Option<AnalyticsConfig>,
}

impl Registry {
    /// Reads and validates a registry file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            RegistryError::Parse { message, .. } => RegistryError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates registry text.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        let components = raw
            .components
            .into_iter()
            .map(|(name, c)| resolve_component(name, c))
            .collect::<Result<Vec<_>, _>>()?;
        let registry = Registry {
            platform: raw.platform,
            topics: raw.topics,
            components,
            analytics: raw.analytics,
        };
        registry.validate()?;
        Ok(registry)
    }

    /// Applies the platform-wide environment overrides (`SLUICE_ADMIN_DATABASE_URL`,
    /// `SLUICE_DATA_DIR`, `KAFKA_BROKERS`) and the per-component password and port
    /// overrides.
    pub fn with_env_overrides(mut self) -> Self {
        if let Ok(url) = std::env::var("SLUICE_ADMIN_DATABASE_URL") {
            self.platform.admin_database_url = url;
        }
        if let Ok(dir) = std::env::var("SLUICE_DATA_DIR") {
            self.platform.data_dir = PathBuf::from(dir);
        }
        if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
            self.platform.kafka_brokers = brokers;
        }
        if let Some(analytics) = &mut self.analytics {
            // `SLUICE_ANALYSTS="alice=secret,bob=other"` replaces the file's analysts.
            if let Ok(list) = std::env::var("SLUICE_ANALYSTS") {
                analytics.analysts = list
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(user, password)| (user.trim().to_owned(), password.to_owned()))
                    .filter(|(user, _)| !user.is_empty())
                    .collect();
            }
            if let Some(port) = std::env::var("SLUICE_SQL_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
            {
                analytics.sql_port = port;
            }
        }
        for c in &mut self.components {
            let prefix = env_prefix(&c.name);
            if let Some(port) = std::env::var(format!("{prefix}_PORT"))
                .ok()
                .and_then(|p| p.parse().ok())
            {
                c.port = port;
            }
            if let Some(db) = &mut c.database {
                if let Ok(pw) = std::env::var(format!("{prefix}_APP_PASSWORD")) {
                    db.app_password = pw;
                }
                if let Ok(pw) = std::env::var(format!("{prefix}_OWNER_PASSWORD")) {
                    db.owner_password = pw;
                }
            }
        }
        self
    }

    /// The warehouse file: `[analytics].warehouse` under the data directory unless
    /// absolute.
    pub fn warehouse_path(&self) -> Option<PathBuf> {
        self.analytics
            .as_ref()
            .map(|a| self.platform.data_dir.join(&a.warehouse))
    }

    /// All components, sorted by name.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Looks a component up by name.
    pub fn component(&self, name: &str) -> Result<&Component, RegistryError> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| RegistryError::UnknownComponent {
                name: name.to_owned(),
                known: self
                    .components
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Components that own a database.
    pub fn stateful(&self) -> impl Iterator<Item = (&Component, &DatabaseSpec)> {
        self.components
            .iter()
            .filter_map(|c| c.database.as_ref().map(|db| (c, db)))
    }

    /// The runtime (app role) URL of a component: `<NAME>_DATABASE_URL`, or derived.
    pub fn app_database_url(&self, component: &Component) -> Option<String> {
        let db = component.database.as_ref()?;
        Some(
            std::env::var(format!("{}_DATABASE_URL", component.env_prefix()))
                .unwrap_or_else(|_| self.derived_url(&db.app_role, &db.app_password, &db.name)),
        )
    }

    /// The migration (owner role) URL of a component: `<NAME>_OWNER_DATABASE_URL`,
    /// or derived.
    pub fn owner_database_url(&self, component: &Component) -> Option<String> {
        let db = component.database.as_ref()?;
        Some(
            std::env::var(format!("{}_OWNER_DATABASE_URL", component.env_prefix()))
                .unwrap_or_else(|_| self.derived_url(&db.owner_role, &db.owner_password, &db.name)),
        )
    }

    fn derived_url(&self, role: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{password}@{host}:{port}/{database}",
            password = url_encode(password),
            host = self.platform.database_host,
            port = self.platform.database_port,
        )
    }

    fn validate(&self) -> Result<(), RegistryError> {
        let mut ports = BTreeMap::new();
        let mut databases = BTreeMap::new();
        for c in &self.components {
            if let Some(other) = ports.insert(c.port, &c.name) {
                return Err(RegistryError::Invalid(format!(
                    "components `{other}` and `{}` both use port {}",
                    c.name, c.port
                )));
            }
            if let Some(db) = &c.database {
                if let Some(other) = databases.insert(db.name.clone(), &c.name) {
                    return Err(RegistryError::Invalid(format!(
                        "components `{other}` and `{}` share database `{}`: every component needs its own",
                        c.name, db.name
                    )));
                }
            }
            for dep in &c.depends_on {
                if !self.components.iter().any(|o| &o.name == dep) {
                    return Err(RegistryError::Invalid(format!(
                        "component `{}` depends on unknown component `{dep}`",
                        c.name
                    )));
                }
            }
            for topic in c.produces.iter().chain(&c.consumes) {
                if !self.topics.contains_key(topic) {
                    return Err(RegistryError::Invalid(format!(
                        "component `{}` names topic `{topic}`, which has no [topics.\"{topic}\"] entry",
                        c.name
                    )));
                }
            }
            if c.kind == ComponentKind::Service {
                let own = format!("{}.events", c.name);
                if c.produces != [own.clone()] {
                    return Err(RegistryError::Invalid(format!(
                        "service `{}` must produce exactly its own topic `{own}`",
                        c.name
                    )));
                }
                if c.database.is_none() {
                    return Err(RegistryError::Invalid(format!(
                        "service `{}` needs a database for its event store",
                        c.name
                    )));
                }
            }
        }
        for (name, topic) in &self.topics {
            if topic.partitions == 0 {
                return Err(RegistryError::Invalid(format!(
                    "topic `{name}` needs at least one partition"
                )));
            }
        }
        Ok(())
    }
}

fn resolve_component(name: String, raw: RawComponent) -> Result<Component, RegistryError> {
    if !is_identifier(&name) {
        return Err(RegistryError::Invalid(format!(
            "component name `{name}` must be lowercase letters, digits and `_`, starting with a letter"
        )));
    }
    let database = match raw.database {
        None => {
            if raw.app_password.is_some() || raw.owner_password.is_some() {
                return Err(RegistryError::Invalid(format!(
                    "component `{name}` has passwords but no database"
                )));
            }
            None
        }
        Some(db) => {
            if !is_identifier(&db) || db.len() > 50 {
                return Err(RegistryError::Invalid(format!(
                    "database name `{db}` of `{name}` must be a lowercase identifier of at most 50 characters"
                )));
            }
            let missing = |what: &str| {
                RegistryError::Invalid(format!("component `{name}` has a database but no {what}"))
            };
            Some(DatabaseSpec {
                owner_role: format!("{db}_owner"),
                app_role: format!("{db}_app"),
                owner_password: raw
                    .owner_password
                    .ok_or_else(|| missing("owner_password"))?,
                app_password: raw.app_password.ok_or_else(|| missing("app_password"))?,
                name: db,
            })
        }
    };
    Ok(Component {
        name,
        kind: raw.kind,
        port: raw.port,
        database,
        produces: raw.produces,
        consumes: raw.consumes,
        depends_on: raw.depends_on,
    })
}

/// Lowercase SQL-safe identifier: `[a-z][a-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Percent-encodes the characters that would break a URL's userinfo part.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [platform]
        database_host = "127.0.0.1"
        database_port = 5432
        admin_database_url = "postgres://postgres@127.0.0.1/postgres"
        data_dir = ".sluice"
        kafka_brokers = "127.0.0.1:9092"
        [topics."orders.events"]
        partitions = 1
        [components.orders]
        kind = "service"
        port = 8101
        database = "sluice_orders"
        app_password = "a p@ss"
        owner_password = "o"
        produces = ["orders.events"]
    "#;

    #[test]
    fn derives_roles_and_urls_from_the_database_name() {
        let r = Registry::parse(MINIMAL).unwrap();
        let c = r.component("orders").unwrap();
        let db = c.database.as_ref().unwrap();
        assert_eq!(db.owner_role, "sluice_orders_owner");
        assert_eq!(db.app_role, "sluice_orders_app");
        assert_eq!(
            r.derived_url(&db.app_role, &db.app_password, &db.name),
            "postgres://sluice_orders_app:a%20p%40ss@127.0.0.1:5432/sluice_orders"
        );
    }

    #[test]
    fn duplicate_ports_are_rejected() {
        let text = format!("{MINIMAL}\n[components.payments]\nkind = \"sink\"\nport = 8101\n");
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("both use port 8101"), "{err}");
    }

    #[test]
    fn unknown_topic_is_rejected() {
        let text = MINIMAL.replace(
            "partitions = 1",
            "partitions = 1\n[topics.\"x\"]\npartitions = 1",
        )
            + "\n[components.sink]\nkind = \"sink\"\nport = 9000\nconsumes = [\"nope.events\"]\n";
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("nope.events"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = MINIMAL.replace("port = 8101", "port = 8101\nprot = 1");
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn bad_database_names_are_rejected() {
        let text = MINIMAL.replace("\"sluice_orders\"", "\"Orders; DROP\"");
        assert!(matches!(
            Registry::parse(&text),
            Err(RegistryError::Invalid(_))
        ));
    }

    #[test]
    fn unknown_component_lists_the_known_ones() {
        let r = Registry::parse(MINIMAL).unwrap();
        let err = r.component("billing").unwrap_err().to_string();
        assert!(err.contains("known: orders"), "{err}");
    }
}
