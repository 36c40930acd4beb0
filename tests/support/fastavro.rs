//! Decoding with Python's fastavro: an Avro implementation that is not ours, given
//! nothing but the committed `.avsc` files. Shared by the interop and end-to-end
//! tests. Needs `python3` with `fastavro` (`.ci/run` installs it); without them the
//! calling test fails, saying so.

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
