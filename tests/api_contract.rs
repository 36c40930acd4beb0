//! The HTTP contract, checked from outside: schemathesis, a property-based API tester
//! that is not ours, reads the `/openapi.json` of every write service and projection
//! of a running `sluice up`, generates requests from it (valid ones, at the declared
//! bounds too, and invalid ones past them) and checks that no answer is a server
//! error and that every answer is one the document declares: its status code, its
//! content type and its body's schema. Any other answer fails the test with
//! schemathesis's report, which names the operation and the request.
//!
//! Valid requests are generated from the declared constraints, so a document that
//! understates them shows as valid requests refused: schemathesis prints that as a
//! "schema validation mismatch" warning. The warning is shown, not failed on: the
//! same seed reuses one `Idempotency-Key` for different commands and names orders
//! payments and shipping have not heard of, which the APIs rightly refuse (422).
//!
//! Needs `python3` with pip: the pinned [`SCHEMATHESIS`] is installed from PyPI once
//! per machine into `$HOME/.cache/sluice/python`. A fixed seed and a bounded number
//! of examples per operation keep the run reproducible and short.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sluice_platform::testing::{drop_registry_databases, python_package};
use support::platform::Platform;

/// The one place the schemathesis version is pinned.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// What every answer is checked for.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// Test cases per operation and phase: enough to reach every declared bound, few
/// enough that the five documents take a minute or two together.
const MAX_EXAMPLES: &str = "30";

/// The seed of every run, so a failure reproduces with the command it prints.
const SEED: &str = "1804";

/// Every component with an HTTP API of its own, by registry name.
const APIS: [&str; 6] = [
    "orders",
    "payments",
    "shipping",
    "order_view",
    "customer_summary",
    "sku_sales",
];

/// One schemathesis run against the document at `openapi_url`: exit status and report.
fn schemathesis(packages: &Path, workdir: &Path, openapi_url: &str) -> (bool, String) {
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run", openapi_url])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        // No example database: a run must not depend on what earlier runs found.
        .args(["--generation-database", "none"])
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args(["--wait-for-schema", "30"])
        .env("PYTHONPATH", packages)
        .env("NO_COLOR", "1")
        .current_dir(workdir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 -m schemathesis.cli: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// The closing lines of a report: its summary.
fn summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answers_generated_requests_as_its_openapi_document_declares() {
    // pip runs while the platform starts.
    let install = tokio::task::spawn_blocking(|| python_package(SCHEMATHESIS));
    let mut platform = Platform::start();
    let client = reqwest::Client::new();
    for api in APIS {
        platform.wait_ready(&client, api).await;
    }
    let packages: PathBuf = install.await.expect("installing schemathesis");
    let workdir = std::env::temp_dir().join(format!("sluice-api-contract-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();

    let mut failures = Vec::new();
    for api in APIS {
        let url = platform.url(api, "/openapi.json");
        let started = Instant::now();
        let (passed, report) = {
            let (packages, workdir, url) = (packages.clone(), workdir.clone(), url.clone());
            tokio::task::spawn_blocking(move || schemathesis(&packages, &workdir, &url))
                .await
                .expect("schemathesis thread")
        };
        eprintln!(
            "{api}: schemathesis {} in {:.0?}\n{}",
            if passed { "passed" } else { "FAILED" },
            started.elapsed(),
            summary(&report)
        );
        if !passed {
            failures.push(format!(
                "── {api} ({url}) ──\n{report}\nagain against a running `sluice up`: \
                 PYTHONPATH={} python3 -m schemathesis.cli run {url} --checks {CHECKS} \
                 --max-examples {MAX_EXAMPLES} --seed {SEED} --generation-database none",
                packages.display()
            ));
        }
    }

    let status = platform.stop();
    let _ = std::fs::remove_dir_all(&workdir);
    drop_registry_databases(&platform.registry).await;
    assert!(
        failures.is_empty(),
        "schemathesis found answers the OpenAPI documents do not declare:\n\n{}",
        failures.join("\n\n")
    );
    assert!(status.success(), "sluice up exited with {status}");
}
