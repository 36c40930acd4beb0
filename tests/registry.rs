//! The committed files generated from `sluice.toml` must match it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::path::Path;

use sluice_platform::generate;
use sluice_platform::registry::Registry;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_generated_files_match_the_registry() {
    let registry = Registry::load(&root().join("sluice.toml")).unwrap();
    let files = generate::all(&registry);
    assert!(files.len() >= 2 + registry.stateful().count());
    for file in files {
        let on_disk = std::fs::read_to_string(root().join(&file.path)).unwrap_or_default();
        assert!(
            on_disk == file.content,
            "{} has drifted from sluice.toml: run `sluice registry generate` and commit the result",
            file.path.display()
        );
    }
}

#[test]
fn every_stateful_component_has_its_own_database_in_the_generated_sql() {
    let registry = Registry::load(&root().join("sluice.toml")).unwrap();
    let sql = generate::init_databases_sql(&registry);
    for (component, db) in registry.stateful() {
        assert!(
            sql.contains(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                db.name
            )),
            "{}",
            component.name
        );
        assert!(sql.contains(&format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            db.name, db.app_role
        )));
        // Passwords are read from the environment, never written into the file.
        assert!(!sql.contains(&db.app_password));
    }
    let compose = generate::docker_compose(&registry);
    for component in registry.components() {
        assert!(compose.contains(&format!("command: [\"run\", \"{}\"]", component.name)));
    }
    assert!(compose.contains("KAFKA_PROCESS_ROLES: broker,controller"));
}
