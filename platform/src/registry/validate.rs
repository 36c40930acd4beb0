//! The registry's rules, checked as it is parsed.

use std::collections::BTreeMap;

use super::topics::invalid_topic_prefix;
use super::{
    is_identifier, Component, ComponentKind, DatabaseSpec, Layer, RawComponent, Registry,
    RegistryError,
};

impl Registry {
    /// A chain of `depends_on` that comes back to where it started, if any.
    fn dependency_cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            registry: &'a Registry,
            name: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut std::collections::BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| *p == name) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            if !done.insert(name) {
                return None;
            }
            path.push(name);
            let component = registry.components.iter().find(|c| c.name == name)?;
            for dep in &component.depends_on {
                if let Some(cycle) = visit(registry, dep, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = std::collections::BTreeSet::new();
        self.components
            .iter()
            .find_map(|c| visit(self, &c.name, &mut Vec::new(), &mut done))
    }

    /// Checks the rules of the registry: unique ports and databases, known
    /// dependencies and topics, a service's own topic and database, partitions, no
    /// dependency cycle, the topic prefix and the replication settings.
    pub(super) fn validate(&self) -> Result<(), RegistryError> {
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
            if i32::try_from(topic.partitions).is_err() {
                return Err(RegistryError::Invalid(format!(
                    "topic `{name}` has more partitions than Kafka allows"
                )));
            }
        }
        if let Some(cycle) = self.dependency_cycle() {
            return Err(RegistryError::Invalid(format!(
                "components depend on each other in a cycle: {}; `depends_on` orders the start, so one of them must go",
                cycle.join(" → ")
            )));
        }
        if let Some(problem) = invalid_topic_prefix(&self.platform.topic_prefix) {
            return Err(RegistryError::Invalid(problem));
        }
        let platform = &self.platform;
        if platform.replication_factor == 0 || platform.min_insync_replicas == 0 {
            return Err(RegistryError::Invalid(
                "replication_factor and min_insync_replicas must be at least 1".into(),
            ));
        }
        if platform.min_insync_replicas > platform.replication_factor {
            return Err(RegistryError::Invalid(format!(
                "min_insync_replicas ({}) exceeds replication_factor ({}): no write with acks=all could succeed",
                platform.min_insync_replicas, platform.replication_factor
            )));
        }
        Ok(())
    }
}

/// A component as written in the file, checked and with everything derived from it.
pub(super) fn resolve_component(
    name: String,
    raw: RawComponent,
) -> Result<Component, RegistryError> {
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
    for key in raw.extra_env.keys() {
        let valid = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(RegistryError::Invalid(format!(
                "extra_env of `{name}`: `{key}` is not an environment variable name (A-Z, 0-9, _)"
            )));
        }
    }
    Ok(Component {
        name,
        kind: raw.kind,
        port: raw.port,
        database,
        produces: raw.produces,
        consumes: raw.consumes,
        depends_on: raw.depends_on,
        layer: raw.layer.unwrap_or(Layer::default_for(raw.kind)),
        extra_env: raw.extra_env,
    })
}
