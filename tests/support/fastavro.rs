//! Decoding with Python's fastavro: an Avro implementation that is not ours, given
//! nothing but the committed `.avsc` files. Shared by the interop and end-to-end
//! tests. Needs `python3`; fastavro is installed once per machine into
//! `$HOME/.cache/sluice/python` when missing. Without them the calling test fails,
//! saying so: it never skips.

use std::io::ErrorKind;
use std::process::Command;

use serde_json::Value;
use uuid::Uuid;

/// Exit status of the script when fastavro cannot be imported.
const NO_FASTAVRO: i32 = 3;

const SCRIPT: &str = r#"
import io, json, sys, uuid
try:
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form
except ImportError:
    sys.exit(3)

def plain(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

with open(sys.argv[1]) as f:
    cases = json.load(f)
failures = []
for case in cases:
    name = case["event_type"]
    with open(case["avsc"]) as f:
        schema = fastavro.parse_schema(json.load(f))
    data = bytes.fromhex(case["bytes"])
    if data[:2] != b"\xc3\x01":
        failures.append(f"{name}: starts with {data[:2].hex()}, not c301")
        continue
    expected = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    if data[2:10].hex() != expected:
        failures.append(f"{name}: fingerprint {data[2:10].hex()}, fastavro computes {expected}")
        continue
    datum = io.BytesIO(data[10:])
    record = plain(fastavro.schemaless_reader(datum, schema))
    if datum.tell() != len(data) - 10:
        failures.append(f"{name}: {len(data) - 10 - datum.tell()} bytes left after the datum")
    if record != case["expected"]:
        failures.append(f"{name}: fastavro read {json.dumps(record)}, expected {json.dumps(case['expected'])}")
print(f"fastavro {fastavro.__version__} decoded {len(cases) - len(failures)} of {len(cases)} events")
for failure in failures:
    print(failure)
sys.exit(1 if failures else 0)
"#;

/// The fastavro version the tests install.
const FASTAVRO: &str = "fastavro==1.13.1";

/// A per-machine directory with fastavro in it, outside the clone
/// (`$HOME/.cache/sluice/python`); installed with pip on first use unless the
/// interpreter already has fastavro.
fn python_packages() -> std::path::PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let home = std::env::var_os("HOME").map_or_else(|| ".".into(), std::path::PathBuf::from);
    let target = home.join(".cache").join("sluice").join("python");
    let importable = Command::new("python3")
        .args(["-c", "import fastavro"])
        .env("PYTHONPATH", &target)
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&target)
            .arg(FASTAVRO)
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "cannot install {FASTAVRO} into {}: this test needs python3 with pip and the Python package index",
            target.display()
        );
    }
    target
}

/// Runs fastavro over `cases` (`{"event_type", "avsc", "bytes" (hex), "expected"}`):
/// checks each single-object header and fingerprint, decodes the datum and compares
/// it with `expected`. Panics with fastavro's report on any disagreement.
pub fn assert_fastavro_decodes(cases: &[Value]) {
    let cases_file = std::env::temp_dir().join(format!(
        "sluice-avro-interop-{}-{}.json",
        std::process::id(),
        Uuid::now_v7()
    ));
    std::fs::write(&cases_file, serde_json::to_vec(&cases).unwrap()).unwrap();

    let output = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&cases_file)
        .env("PYTHONPATH", python_packages())
        .output();
    let _ = std::fs::remove_file(&cases_file);
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "this test needs python3 with fastavro: install Python 3, then `pip install fastavro`"
        ),
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        output.status.code(),
        Some(NO_FASTAVRO),
        "this test needs the Python package fastavro: run `pip install fastavro` (.ci/run does)"
    );
    assert!(output.status.success(), "fastavro disagrees:\n{report}");
    assert!(
        report.contains(&format!("decoded {0} of {0} events", cases.len())),
        "{report}"
    );
}
