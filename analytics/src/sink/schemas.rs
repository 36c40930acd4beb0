//! The sink's schemas: every `.avsc` under a directory laid out as
//! `<service>/<EventType>/v<N>.avsc` (the repository's `schemas/`), so the schemas
//! of a new service or a new version are picked up without a code change.

use std::path::{Path, PathBuf};

use sluice_platform::avro::{SchemaCatalog, SchemaSource};

use super::SinkError;

/// Reads every schema under `dir` into a catalog. The event type is the name of a
/// file's folder, the version the number in its name (`v2.avsc` → 2); other files
/// are ignored.
pub(crate) fn load_catalog(dir: &Path) -> Result<SchemaCatalog, SinkError> {
    let mut sources = Vec::new();
    collect(dir, &mut sources)?;
    sources.sort_by(|a, b| (&a.event_type, a.version).cmp(&(&b.event_type, b.version)));
    SchemaCatalog::new(sources).map_err(|source| SinkError::Schemas {
        dir: dir.to_owned(),
        message: source.to_string(),
    })
}

fn collect(dir: &Path, sources: &mut Vec<SchemaSource>) -> Result<(), SinkError> {
    let io = |path: &Path, source: std::io::Error| SinkError::SchemaFile {
        path: path.to_owned(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.is_dir() {
            collect(&path, sources)?;
            continue;
        }
        let Some((event_type, version)) = schema_file(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        sources.push(SchemaSource::owned(event_type, version, text));
    }
    Ok(())
}

/// `…/OrderPlaced/v1.avsc` → `("OrderPlaced", 1)`.
fn schema_file(path: &Path) -> Option<(String, i32)> {
    if path.extension()? != "avsc" {
        return None;
    }
    let version = path
        .file_stem()?
        .to_str()?
        .strip_prefix('v')?
        .parse()
        .ok()?;
    let event_type = path.parent()?.file_name()?.to_str()?.to_owned();
    Some((event_type, version))
}

/// The repository's `schemas/` folder, found from this crate's manifest directory
/// at build time; the default of `SinkConfig::schemas_dir` in development.
pub fn repository_schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_and_version_come_from_the_path() {
        assert_eq!(
            schema_file(Path::new("schemas/orders/OrderPlaced/v12.avsc")),
            Some(("OrderPlaced".to_owned(), 12))
        );
        assert_eq!(schema_file(Path::new("schemas/README.md")), None);
        assert_eq!(
            schema_file(Path::new("schemas/orders/OrderPlaced/next.avsc")),
            None
        );
    }

    #[test]
    fn the_repository_schemas_load() {
        let catalog = load_catalog(&repository_schemas_dir()).expect("catalog");
        assert!(catalog.event_types().any(|t| t == "OrderPlaced"));
        assert_eq!(catalog.versions("ShipmentDelivered"), vec![1]);
    }
}
