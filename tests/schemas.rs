//! The committed Avro contracts: what `schemas/` holds is what the binary embeds,
//! and every event type's latest version reads all its older ones (the test half of
//! `sluice schemas check`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sluice::components::WRITE_SERVICES;
use sluice_platform::avro::{check_compatibility, SchemaCatalog};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `schemas/<service>/<EventType>/v<N>.avsc` as (event type, version) → text.
fn on_disk(service: &str) -> BTreeMap<(String, i32), String> {
    let mut found = BTreeMap::new();
    let dir = root().join("schemas").join(service);
    for event_dir in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let event_dir = event_dir.unwrap().path();
        let event_type = event_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for file in std::fs::read_dir(&event_dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let version = name
                .strip_prefix('v')
                .and_then(|n| n.strip_suffix(".avsc"))
                .and_then(|n| n.parse::<i32>().ok())
                .unwrap_or_else(|| panic!("{}: expected v<N>.avsc", file.display()));
            let text = std::fs::read_to_string(&file).unwrap();
            found.insert((event_type.clone(), version), text);
        }
    }
    found
}

#[test]
fn every_schema_file_is_embedded_and_every_embedded_schema_is_a_file() {
    for service in WRITE_SERVICES {
        let embedded: BTreeMap<(String, i32), String> = (service.schemas)()
            .into_iter()
            .map(|s| ((s.event_type.into_owned(), s.version), s.text.into_owned()))
            .collect();
        let files = on_disk(service.name);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            embedded.keys().collect::<Vec<_>>(),
            "schemas/{0}/ and sluice_{0}::schemas() list different schemas",
            service.name
        );
        assert_eq!(files, embedded);
    }
}

#[test]
fn every_committed_schema_reads_all_its_older_versions() {
    for service in WRITE_SERVICES {
        let catalog = service.catalog().unwrap();
        let found = check_compatibility(&catalog);
        assert!(
            found.is_empty(),
            "{}: {}",
            service.name,
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

#[test]
fn event_types_and_fingerprints_are_unique_across_services() {
    // One catalog over every service, as a consumer of all topics would build it.
    let all = WRITE_SERVICES.iter().flat_map(|s| (s.schemas)());
    SchemaCatalog::new(all).unwrap();
}

#[test]
fn every_schema_is_documented_and_namespaced_by_its_service() {
    fn documented(schema: &serde_json::Value, path: &str) {
        if let Some(branches) = schema.as_array() {
            return branches.iter().for_each(|b| documented(b, path));
        }
        let Some(object) = schema.as_object() else {
            return;
        };
        if object.get("type").and_then(|t| t.as_str()) == Some("record") {
            assert!(object.contains_key("doc"), "{path}: the record has no doc");
            for field in object["fields"].as_array().unwrap() {
                let name = field["name"].as_str().unwrap();
                assert!(field.get("doc").is_some(), "{path}.{name}: no doc");
                documented(&field["type"], &format!("{path}.{name}"));
            }
        }
        for nested in ["items", "values"] {
            if let Some(inner) = object.get(nested) {
                documented(inner, path);
            }
        }
    }
    for service in WRITE_SERVICES {
        for source in (service.schemas)() {
            let schema: serde_json::Value = serde_json::from_str(&source.text).unwrap();
            assert_eq!(
                schema["namespace"],
                format!("io.sluice.{}", service.name),
                "{}",
                source.event_type
            );
            documented(&schema, &source.event_type);
        }
    }
}

#[test]
fn sluice_schemas_check_names_every_event_type_and_passes() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["schemas", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for service in WRITE_SERVICES {
        for event_type in service.catalog().unwrap().event_types() {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(event_type) && l.ends_with(": ok")),
                "{event_type} missing from:\n{stdout}"
            );
        }
    }
}
