//! `sluice analyst add|remove|list` on a copy of the repository's registry: what
//! they write, that the file keeps its comments, and that bad input changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sluice_analytics::analyst::auth::Verifier;
use sluice_platform::registry::Registry;

fn registry_copy() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-analyst-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sluice.toml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.toml"), &file).unwrap();
    file
}

fn sluice(registry: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--registry")
        .arg(registry)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn verifier(registry: &Path, name: &str) -> Option<Verifier> {
    let loaded = Registry::load(registry).unwrap();
    let analysts = loaded.analytics.unwrap().analysts;
    analysts.get(name).map(|v| v.parse().unwrap())
}

#[test]
fn the_development_analysts_verifier_is_of_the_documented_password() {
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.toml");
    let dev = verifier(Path::new(registry), "analyst").expect("sluice.toml has `analyst`");
    assert!(dev.matches(sluice_platform::testing::DEV_ANALYST_PASSWORD));
}

#[test]
fn add_writes_a_verifier_keeping_the_file_and_remove_takes_it_out() {
    let registry = registry_copy();
    let before = std::fs::read_to_string(&registry).unwrap();
    let out = sluice(
        &registry,
        &["analyst", "add", "alice", "--password-stdin"],
        "correct horse battery\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("added analyst `alice`"));
    let alice = verifier(&registry, "alice").expect("alice was written");
    assert!(alice.matches("correct horse battery"));
    let after = std::fs::read_to_string(&registry).unwrap();
    assert!(!after.contains("correct horse"), "no password in the file");
    // Every line of the original is still there, comments included.
    for line in before.lines() {
        assert!(after.contains(line), "lost: {line}");
    }
    // A new password replaces the verifier.
    let out = sluice(
        &registry,
        &["analyst", "add", "alice", "--password-stdin"],
        "another horse\n",
    );
    assert!(out.status.success());
    assert!(verifier(&registry, "alice")
        .unwrap()
        .matches("another horse"));
    let listed = sluice(&registry, &["analyst", "list"], "");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("alice\tSCRAM-SHA-256") && listed.contains("analyst\tSCRAM-SHA-256"),
        "{listed}"
    );
    let out = sluice(&registry, &["analyst", "remove", "alice"], "");
    assert!(out.status.success());
    assert!(verifier(&registry, "alice").is_none());
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), before);
    // --print writes nothing and prints a line for SLUICE_ANALYSTS.
    let out = sluice(
        &registry,
        &["analyst", "add", "bob", "--password-stdin", "--print"],
        "bob's password\n",
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (name, printed) = line.split_once('=').unwrap();
    assert_eq!(name, "bob");
    assert!(printed
        .parse::<Verifier>()
        .unwrap()
        .matches("bob's password"));
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), before);
}

#[test]
fn bad_names_short_passwords_and_unknown_analysts_change_nothing() {
    let registry = registry_copy();
    let before = std::fs::read_to_string(&registry).unwrap();
    for (args, stdin, expected) in [
        (
            vec!["analyst", "add", "al ice", "--password-stdin"],
            "long enough pw\n",
            "not an analyst name",
        ),
        (
            vec!["analyst", "add", "alice", "--password-stdin"],
            "short\n",
            "shorter than 8",
        ),
        (vec!["analyst", "add", "alice"], "", "no terminal"),
        (
            vec!["analyst", "remove", "nobody"],
            "",
            "no analyst `nobody`",
        ),
    ] {
        let out = sluice(&registry, &args, stdin);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(&registry).unwrap(),
            before,
            "{args:?}"
        );
    }
}
