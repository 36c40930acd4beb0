//! Build-script helpers of the service crates.
//!
//! A write service embeds the Avro contracts of its events, every
//! `schemas/<service>/<EventType>/v<N>.avsc`, in its binary. [`embed_schemas`] lists
//! them from the tree at build time, so a new schema file is in the next build with no
//! code to touch and a removed one is gone from it.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// One schema file: its event type, its version and where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaFile {
    /// The folder name: the event type (`OrderPlaced`).
    pub event_type: String,
    /// `N` of `vN.avsc`.
    pub version: i32,
    /// The file, absolute.
    pub path: PathBuf,
}

/// Why the schema folder could not be listed.
#[derive(Debug)]
pub enum BuildError {
    /// The folder or a file in it could not be read, or the output not written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file or folder whose name is not `<EventType>/v<N>.avsc`.
    Name { path: PathBuf, reason: &'static str },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BuildError::Name { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Io { source, .. } => Some(source),
            BuildError::Name { .. } => None,
        }
    }
}

/// Every schema of `dir` (`schemas/<service>`), ordered by event type and version.
pub fn schema_files(dir: &Path) -> Result<Vec<SchemaFile>, BuildError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let event_dir = entry.map_err(io(dir))?.path();
        if !event_dir.is_dir() {
            continue;
        }
        let event_type = file_name(&event_dir)?;
        if !event_type
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            || !event_type.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(BuildError::Name {
                path: event_dir,
                reason: "an event type folder is named in PascalCase (OrderPlaced)",
            });
        }
        for file in fs::read_dir(&event_dir).map_err(io(&event_dir))? {
            let path = file.map_err(io(&event_dir))?.path();
            let version = file_name(&path)?
                .strip_prefix('v')
                .and_then(|rest| rest.strip_suffix(".avsc"))
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 1)
                .ok_or(BuildError::Name {
                    path: path.clone(),
                    reason: "a schema file is named v<N>.avsc, N from 1",
                })?;
            files.push(SchemaFile {
                event_type: event_type.clone(),
                version,
                path,
            });
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> Result<String, BuildError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or(BuildError::Name {
            path: path.to_path_buf(),
            reason: "not a UTF-8 name",
        })
}

/// The Rust source of `pub fn schemas() -> Vec<SchemaSource>` over `files`.
pub fn schemas_source(service: &str, files: &[SchemaFile]) -> String {
    let mut out = format!(
        "/// The Avro contracts of the {service} events (`schemas/{service}/<EventType>/v<N>.avsc`),\n\
         /// embedded in the binary: every version of every event type, the highest being the\n\
         /// one new events are written with. Listed from the tree by the crate's build script.\n\
         pub fn schemas() -> ::std::vec::Vec<::sluice_platform::avro::SchemaSource> {{\n    vec![\n"
    );
    for f in files {
        let _ = writeln!(
            out,
            "        ::sluice_platform::avro::SchemaSource::embedded({:?}, {}, include_str!({:?})),",
            f.event_type, f.version, f.path
        );
    }
    out.push_str("    ]\n}\n");
    out
}

/// For a service crate's `build.rs`: writes `$OUT_DIR/schemas.rs` with the crate's
/// `schemas()` over `<workspace>/schemas/<service>` and tells Cargo to build again
/// when the folder changes. The crate then says
/// `include!(concat!(env!("OUT_DIR"), "/schemas.rs"));`.
///
/// # Panics
///
/// When the folder cannot be read or holds a misnamed file: the build fails, naming
/// the file.
pub fn embed_schemas(service: &str) {
    if let Err(e) = try_embed_schemas(service) {
        panic!("embedding the {service} schemas: {e}");
    }
}

fn try_embed_schemas(service: &str) -> Result<(), BuildError> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let out_dir = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let (Some(manifest), Some(out_dir)) = (manifest, out_dir) else {
        return Err(BuildError::Name {
            path: PathBuf::from("."),
            reason: "CARGO_MANIFEST_DIR and OUT_DIR are set by Cargo: run from a build script",
        });
    };
    // services/<service> → the workspace root's schemas/<service>.
    let dir = manifest.join("../../schemas").join(service);
    let dir = dir.canonicalize().map_err(|source| BuildError::Io {
        path: dir.clone(),
        source,
    })?;
    println!("cargo::rerun-if-changed={}", dir.display());
    let files = schema_files(&dir)?;
    let out = out_dir.join("schemas.rs");
    fs::write(&out, schemas_source(service, &files))
        .map_err(|source| BuildError::Io { path: out, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_listed_by_type_and_version_and_misnamed_files_refused() {
        let root = std::env::temp_dir().join(format!("sluice-build-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (dir, file) in [
            ("OrderPlaced", "v2.avsc"),
            ("OrderPlaced", "v1.avsc"),
            ("OrderCancelled", "v1.avsc"),
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
            fs::write(root.join(dir).join(file), "{}").unwrap();
        }
        let listed: Vec<(String, i32)> = schema_files(&root)
            .unwrap()
            .into_iter()
            .map(|f| (f.event_type, f.version))
            .collect();
        assert_eq!(
            listed,
            [
                ("OrderCancelled".to_owned(), 1),
                ("OrderPlaced".to_owned(), 1),
                ("OrderPlaced".to_owned(), 2)
            ]
        );
        let source = schemas_source("orders", &schema_files(&root).unwrap());
        assert!(source.contains("SchemaSource::embedded(\"OrderPlaced\", 2, include_str!("));

        fs::write(root.join("OrderPlaced").join("latest.avsc"), "{}").unwrap();
        let error = schema_files(&root).unwrap_err().to_string();
        assert!(
            error.contains("latest.avsc") && error.contains("v<N>.avsc"),
            "{error}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
