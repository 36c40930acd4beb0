//! The README and the guides cannot rot: every shell block fenced as ```` ```sh tested ````
//! in them runs, in order and as one script, against a live `sluice up`; and the
//! README's layout table names what the tree holds. The projection guide's code is the
//! tree's: each of its code blocks names the file that holds it, character for
//! character.
//!
//! The platform runs on an isolated registry (its own databases, ports and broker),
//! so the script's ports are the isolated ones: `localhost:8101` becomes orders'
//! port, `port=5433` the SQL endpoint's, `kcat -b 127.0.0.1:9092 -t orders.events`
//! the isolated broker and topic, and so on. `sluice` (and `cargo run --release
//! --`) is the binary under test with that registry; `curl` fails on an HTTP error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sluice_platform::registry::Registry;
use sluice_platform::testing::{broker_env, drop_registry_databases};
use support::platform::Platform;

const DOCUMENTS: [&str; 3] = [
    "README.md",
    "docs/querying-the-warehouse.md",
    "docs/adding-a-projection.md",
];

/// The guide whose code blocks are the tree's code, each naming its file.
const PROJECTION_GUIDE: &str = "docs/adding-a-projection.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `sh tested` blocks of a Markdown file, in order.
fn tested_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == "```sh tested" => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an `sh tested` block is never closed");
    blocks
}

/// The script's ports moved from the committed registry's to the isolated one's.
fn retarget(script: &str, base: &Registry, isolated: &Registry) -> String {
    let mut out = script.to_owned();
    for c in base.components() {
        let new = isolated.component(&c.name).unwrap().port;
        for host in ["localhost", "127.0.0.1"] {
            out = out.replace(&format!("{host}:{}", c.port), &format!("{host}:{new}"));
        }
    }
    // A Kafka client's broker and topics (`kcat -b 127.0.0.1:9092 -t orders.events`).
    out = out.replace(
        &format!("-b {}", base.platform.kafka_brokers),
        &format!("-b {}", isolated.platform.kafka_brokers),
    );
    let names = isolated.topic_names();
    for topic in base.topics.keys() {
        out = out.replace(
            &format!("-t {topic} "),
            &format!("-t {} ", names.physical(topic)),
        );
    }
    if let (Some(a), Some(b)) = (&base.analytics, &isolated.analytics) {
        out = out.replace(
            &format!("port={}", a.sql_port),
            &format!("port={}", b.sql_port),
        );
    }
    out
}

const PREAMBLE: &str = r#"set -euo pipefail
sluice() { "$SLUICE_BIN" --registry "$SLUICE_REGISTRY_FILE" "$@"; }
cargo() {
  if [ "${1:-}" = run ] && [ "${2:-}" = --release ] && [ "${3:-}" = -- ]; then
    shift 3; sluice "$@"
  else
    echo "the docs test runs only \`cargo run --release -- …\`, not: cargo $*" >&2; return 1
  fi
}
curl() { command curl --fail-with-body --max-time 30 "$@"; }
"#;

#[tokio::test]
async fn the_tested_blocks_of_the_readme_and_the_guides_run_against_a_live_platform() {
    let (mut platform, _client) = Platform::start_ready().await;
    let base = Registry::load(&root().join("sluice.toml")).unwrap();
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(root().join(document))
            .unwrap_or_else(|e| panic!("{document}: {e}"));
        let blocks = tested_blocks(&text);
        assert!(!blocks.is_empty(), "{document} has no `sh tested` block");
        let script = format!(
            "{PREAMBLE}{}",
            retarget(&blocks.concat(), &base, &platform.registry)
        );
        let dir = std::env::temp_dir().join(format!(
            "sluice-docs-{}",
            sluice_platform::testing::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("timeout")
            .args(["300", "bash", "-c", &script])
            .current_dir(&dir)
            .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
            .env("SLUICE_REGISTRY_FILE", platform.registry_file())
            .envs(broker_env(&platform.registry))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            output.status.success(),
            "{document}: its tested blocks failed ({})\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(platform.stop().code(), Some(0));
    drop_registry_databases(&platform.registry).await;
}

/// Backticked names in a table cell: `a/`, `b.rs`, `sql/views.sql`, ….
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Whether `dir` holds `name` (a relative path) at any depth.
fn holds(dir: &Path, name: &str) -> bool {
    if dir.join(name).exists() {
        return true;
    }
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let path: PathBuf = e.path();
            path.is_dir() && e.file_name() != "target" && holds(&path, name)
        })
}

#[test]
fn the_readme_layout_table_matches_the_tree() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .split("## Layout")
        .nth(1)
        .expect("a Layout section")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    let mut named = BTreeSet::new();
    for row in &table {
        let cells: Vec<&str> = row.split('|').collect();
        let (paths, holds_cell) = (cells[1], cells[2]);
        for path in backticked(paths) {
            let path = path.trim_end_matches('/');
            let dirs: Vec<PathBuf> = match path.split_once("/<name>") {
                Some((parent, _)) => std::fs::read_dir(root().join(parent))
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect(),
                None => vec![root().join(path)],
            };
            named.insert(path.split('/').next().unwrap().to_owned());
            for dir in dirs {
                assert!(
                    dir.exists(),
                    "the layout names {}, which is not there",
                    dir.display()
                );
                if !dir.is_dir() {
                    continue;
                }
                for name in backticked(holds_cell) {
                    let name = name.trim_end_matches('/');
                    let looks_like_a_path = name.ends_with(".rs")
                        || name.ends_with(".sql")
                        || !name.contains([' ', '.']);
                    // Commands and prose in backticks (`sluice sql`) are not paths.
                    if !looks_like_a_path || name.starts_with("sluice") || name.contains(' ') {
                        continue;
                    }
                    assert!(
                        holds(&dir, name),
                        "the layout says {} holds `{name}`, which it does not",
                        dir.display()
                    );
                }
            }
        }
    }
    // Every top-level entry of the repository is in the table.
    let tracked = Command::new("git")
        .args(["ls-files"])
        .current_dir(root())
        .output()
        .unwrap();
    let top: BTreeSet<String> = String::from_utf8_lossy(&tracked.stdout)
        .lines()
        .map(|l| l.split('/').next().unwrap().to_owned())
        .filter(|l| !matches!(l.as_str(), "README.md" | ".gitignore" | ".dockerignore"))
        .collect();
    let missing: Vec<_> = top.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "not in the README's layout table: {missing:?}"
    );
}

/// A fenced block: its info string (```` ```rust file=… ````) and its text, with the
/// indentation of the fence (a block inside a list item) taken off every line.
#[derive(Debug, PartialEq)]
struct Fenced {
    info: String,
    text: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Fenced)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None if trimmed.starts_with("```") => {
                let info = trimmed.trim_start_matches('`').trim().to_owned();
                open = Some((
                    indent,
                    Fenced {
                        info,
                        text: String::new(),
                    },
                ));
            }
            Some(_) if trimmed.trim_end() == "```" => blocks.push(open.take().unwrap().1),
            Some((indent, block)) => {
                let body = line.get(*indent..).filter(|_| line.len() > *indent);
                block
                    .text
                    .push_str(body.unwrap_or_else(|| line.trim_start()));
                block.text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    blocks
}

#[test]
fn every_code_block_of_the_projection_guide_is_in_the_file_it_names() {
    let guide = std::fs::read_to_string(root().join(PROJECTION_GUIDE)).unwrap();
    let blocks = fenced_blocks(&guide);
    let mut checked = 0;
    for block in &blocks {
        let mut words = block.info.split_whitespace();
        let language = words.next().unwrap_or("");
        let file = words.find_map(|w| w.strip_prefix("file="));
        let Some(file) = file else {
            // Commands and listings; code must say where it lives.
            assert!(
                matches!(language, "sh" | "text"),
                "{PROJECTION_GUIDE}: a ```{language} block names no file= :\n{}",
                block.text
            );
            continue;
        };
        let path = root().join(file);
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{PROJECTION_GUIDE} names {file}: {e}"));
        assert!(
            source.contains(&block.text),
            "{PROJECTION_GUIDE}: this ```{language} block is not in {file} as shown \
             (change the guide and the file together):\n{}",
            block.text
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} blocks name their file");
}

#[test]
fn fenced_blocks_keep_their_info_and_lose_the_list_indent() {
    let md = "a\n```rust file=x.rs\nfn f() {}\n\n    g();\n```\n- item:\n\n  ```text\n  one\n    two\n  ```\n";
    assert_eq!(
        fenced_blocks(md),
        [
            Fenced {
                info: "rust file=x.rs".into(),
                text: "fn f() {}\n\n    g();\n".into()
            },
            Fenced {
                info: "text".into(),
                text: "one\n  two\n".into()
            },
        ]
    );
}

#[test]
fn tested_blocks_are_found_in_order() {
    let md = "x\n```sh tested\necho a\n```\n```sh\necho no\n```\n```sh tested\necho b\n```\n";
    assert_eq!(tested_blocks(md), ["echo a\n", "echo b\n"]);
}
