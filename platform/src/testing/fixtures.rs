//! Fixtures: event metadata and consumed events as the runtime hands them over, and
//! pinned Python packages for tests that drive another Avro implementation.

/// A pinned Python package from PyPI (`requirement` is `name==version`) for tests
/// that drive a tool which is not ours: installed once per machine with pip into
/// `$HOME/.cache/sluice/python/<name>-<version>` (outside the clone, shared by every
/// test run) unless that directory already holds exactly that version. Returns the
/// directory to put on `PYTHONPATH`. Concurrent test processes install it once,
/// under a file lock; a half-done install never becomes visible (it is renamed into
/// place). Panics, saying what is missing, without `python3`, pip or the package
/// index: a test that needs the package never skips.
pub fn python_package(requirement: &str) -> std::path::PathBuf {
    use std::process::Command;
    let (name, version) = requirement
        .split_once("==")
        .unwrap_or_else(|| panic!("`{requirement}` must pin a version: `name==version`"));
    let home = std::env::var_os("HOME").map_or_else(|| ".".into(), std::path::PathBuf::from);
    let root = home.join(".cache").join("sluice").join("python");
    let target = root.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let lock_file = root.join(format!("{name}-{version}.lock"));
    let lock = std::fs::File::create(&lock_file)
        .and_then(|f| f.lock().map(|()| f))
        .unwrap_or_else(|e| panic!("{}: {e}", lock_file.display()));
    // The distribution's own metadata, found first on PYTHONPATH: the pinned
    // version, not whatever the interpreter may have installed itself.
    let check = format!(
        "import importlib.metadata as m, sys; sys.exit(m.version({name:?}) != {version:?})"
    );
    let installed = |dir: &std::path::Path| {
        Command::new("python3")
            .args(["-c", &check])
            .env("PYTHONPATH", dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !installed(&target) {
        let partial = root.join(format!("{name}-{version}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&partial)
            .arg(requirement)
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 to install {requirement}: {e}"));
        assert!(
            output.status.success() && installed(&partial),
            "cannot install {requirement} into {}: this test needs python3 with pip and the \
             Python package index\n{}{}",
            partial.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", partial.display(), target.display()));
    }
    drop(lock);
    target
}

/// Metadata of an event with a correlation and causation id, a W3C traceparent and
/// `actor`, as a command or a saga step records it.
pub fn traced_metadata(actor: &str) -> crate::store::Metadata {
    crate::store::Metadata {
        correlation_id: Some(uuid::Uuid::now_v7()),
        causation_id: Some(uuid::Uuid::now_v7()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        actor: Some(actor.into()),
    }
}

/// An event of `stream_id` (at `stream_version`) on `topic` as the consumer runtime
/// hands it to a handler.
///
/// # Panics
///
/// When `stream_id` is not a stream id or `stream_version` is below 1.
pub fn consumed_event(
    topic: &str,
    stream_type: &str,
    stream_id: impl Into<String>,
    stream_version: i64,
    event_type: &str,
    payload: serde_json::Value,
    metadata: crate::store::Metadata,
) -> crate::consumer::ConsumedEvent {
    crate::consumer::ConsumedEvent {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        stream_id: crate::store::StreamId::new(stream_id).expect("a stream id"),
        stream_type: stream_type.into(),
        stream_version: crate::store::StreamVersion::new(stream_version).expect("a stream version"),
        global_position: stream_version,
        payload,
        metadata,
        recorded_at: chrono::Utc::now(),
    }
}
