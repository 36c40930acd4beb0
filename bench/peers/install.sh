#!/usr/bin/env bash
# Installs the peers that `sluice bench all` measures Sluice against, side by side:
#
#   eventsourcing  Python eventsourcing with its PostgreSQL persistence (write side)
#   postgres-es    Rust cqrs-es with its PostgreSQL event store (write side)
#   dlt            dlt loading into DuckDB (analytics sink)
#
# Nothing is vendored: the Python peers come from PyPI into a venv under the cache
# directory, the Rust peer is built from crates.io by its own Cargo.lock. Every
# version is pinned below; changing a pin reinstalls on the next run.
#
# Idempotent and quiet when already installed. Ends with one line per peer:
#   <peer> <version> <path>
# where <path> is the venv's python for the Python peers and the binary for
# postgres-es.
#
# Environment:
#   SLUICE_CACHE      cache root (default: $HOME/.cache/sluice); the venv is
#                     $SLUICE_CACHE/peers/venv
#   CARGO_TARGET_DIR  where the postgres-es peer is built
#                     (default: $HOME/.cache/sluice-target)
#   PYTHON            interpreter the venv is made from (default: python3, >= 3.10)
#   CARGO_BUILD_JOBS  cargo's own parallelism setting, e.g. 1 on a busy machine
set -euo pipefail

# Pinned versions.
# - eventsourcing's `postgres` extra (`pip install "eventsourcing[postgres]"`, as its
#   install docs give it) pulls in psycopg[pool], which by itself is the pure-Python
#   psycopg over the system's libpq. Its docs point to psycopg's compiled
#   implementation for real use (psycopg[c], or the prebuilt psycopg[binary]);
#   psycopg[binary] is added so the peer is measured at its fast setting (the
#   pure-Python one saves about a quarter fewer aggregates per second here) and
#   needs no system libpq. psycopg and its pool are pinned so that a rerun months
#   later measures the same client.
# - dlt with its `duckdb` extra, and its `parquet` extra (pyarrow) so that
#   dlt_load.py can also run with `--loader-file-format parquet`, the format dlt's
#   DuckDB docs suggest for speed over its default INSERT VALUES files.
# - duckdb is pinned to the engine release Sluice's own sink links (Rust crate
#   duckdb 1.20000.x = DuckDB 2.0.0), so the sink comparison is engine for engine.
EVENTSOURCING_VERSION="9.5.6"
PSYCOPG_VERSION="3.3.9"
PSYCOPG_POOL_VERSION="3.3.3"
DLT_VERSION="1.31.0"
DUCKDB_VERSION="2.0.0"
PYARROW_VERSION="26.0.1"
# Must match the postgres-es version in postgres-es/Cargo.toml.
POSTGRES_ES_VERSION="0.5.0"

PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${SLUICE_CACHE:-$HOME/.cache/sluice}/peers"
VENV="$CACHE_DIR/venv"
STAMP="$CACHE_DIR/python-peers.stamp"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
PYTHON="${PYTHON:-python3}"

PIP_SPECS=(
  "eventsourcing[postgres]==$EVENTSOURCING_VERSION"
  "psycopg[binary,pool]==$PSYCOPG_VERSION"
  "psycopg-pool==$PSYCOPG_POOL_VERSION"
  "dlt[duckdb,parquet]==$DLT_VERSION"
  "duckdb==$DUCKDB_VERSION"
  "pyarrow==$PYARROW_VERSION"
)

die() {
  echo "install.sh: $*" >&2
  exit 1
}

# The stamp records exactly what was installed; any change of pin makes it stale.
expected_stamp() {
  printf '%s\n' "${PIP_SPECS[@]}"
}

install_python_peers() {
  if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(expected_stamp)" ]]; then
    return 0
  fi

  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON to a Python >= 3.10)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$PYTHON is older than 3.10, which dlt $DLT_VERSION needs"

  mkdir -p "$CACHE_DIR"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "install.sh: creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi

  echo "install.sh: installing ${PIP_SPECS[*]}" >&2
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_SPECS[@]}"

  # Fail here rather than mid-benchmark if something did not install whole.
  "$VENV/bin/python" -c 'import psycopg, eventsourcing.postgres, dlt, duckdb, pyarrow' \
    || die "the Python peers do not import"

  expected_stamp >"$STAMP"
}

build_postgres_es_peer() {
  command -v cargo >/dev/null || die "cargo not found (needed to build the postgres-es peer)"
  # cargo does nothing, and with --quiet prints nothing, when the binary is current.
  CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release --locked \
    --manifest-path "$PEERS_DIR/postgres-es/Cargo.toml"
}

install_python_peers
build_postgres_es_peer

echo "eventsourcing $EVENTSOURCING_VERSION $VENV/bin/python"
echo "dlt $DLT_VERSION $VENV/bin/python"
echo "postgres-es $POSTGRES_ES_VERSION $TARGET_DIR/release/postgres-es-append"
