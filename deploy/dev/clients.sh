#!/usr/bin/env bash
# The analyst tools' client drivers that analytics/tests/clients/ runs against the
# analyst SQL endpoint, installed once per machine, idempotently, outside the clone:
#
#   python/  a venv with psycopg 3 (its prebuilt `binary` implementation, so no
#            system libpq is needed), SQLAlchemy 2 and pandas 2: how notebooks and
#            BI scripts reach PostgreSQL
#   java/    pgJDBC, the driver of DBeaver, DataGrip, Metabase, Tableau, ...
#   node/    node-postgres (`pg`), the driver of most JavaScript dashboards
#
# Nothing is vendored: every package comes from its own registry (PyPI, Maven
# Central, npm) by its ordinary client, at the exact version pinned below. Each
# client's folder holds a stamp with what was installed; when a pin changes the
# stamp no longer matches and that client is installed again from scratch, so an
# old package never lingers next to a new one. A client whose stamp matches is
# left alone: a warm run only compares three files.
#
# Ends with one line per client: <client> <versions> <path>.
#
# Environment:
#   SLUICE_CLIENTS  where the clients go (default: $HOME/.cache/sluice/clients)
#   PYTHON          the interpreter the venv is made from (default: python3, >= 3.10)
#
# Needs python3 (with venv), Java 17+ and Maven, Node 20+ and npm.
set -euo pipefail

# Pinned versions.
# - psycopg is pinned with its `binary` extra's package (psycopg-binary) at the same
#   version: pip would otherwise be free to pair them differently over time.
# - SQLAlchemy 2.0 is the line analyst tools (pandas.read_sql, Superset, dbt's
#   Python models) are built and tested against; its `postgresql+psycopg` dialect
#   is the one for psycopg 3.
# - pandas 2.x with the numpy it was released against: pandas 3 changes string
#   and copy semantics the checks should not depend on.
# - pgJDBC 42.7.14 and node-postgres 8.23.1: the current releases of their lines.
PSYCOPG_VERSION="3.3.9"
SQLALCHEMY_VERSION="2.0.58"
PANDAS_VERSION="2.3.3"
NUMPY_VERSION="2.3.5"
PGJDBC_VERSION="42.7.14"
NODE_PG_VERSION="8.23.1"
# maven-dependency-plugin, named with its version so that the copy does not depend
# on which version this machine's Maven defaults to.
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

ROOT="${SLUICE_CLIENTS:-$HOME/.cache/sluice/clients}"
PYTHON="${PYTHON:-python3}"

PIP_SPECS=(
    "psycopg[binary]==$PSYCOPG_VERSION"
    "psycopg-binary==$PSYCOPG_VERSION"
    "SQLAlchemy==$SQLALCHEMY_VERSION"
    "pandas==$PANDAS_VERSION"
    "numpy==$NUMPY_VERSION"
)

die() {
    echo "clients.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null || die "$1 is needed: $2"
}

# Runs a command quietly; when it fails, shows everything it printed and stops.
run() {
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        echo "clients.sh: failed: $*" >&2
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

# Whether <dir>/.stamp says exactly <stamp>.
installed() {
    [[ -f "$1/.stamp" ]] && [[ "$(cat "$1/.stamp")" == "$2" ]]
}

install_python() {
    local dir="$ROOT/python" stamp
    stamp="$(printf '%s\n' "${PIP_SPECS[@]}")"
    installed "$dir" "$stamp" && return 0
    need "$PYTHON" "Python 3.10+ with venv (apt-get install -y python3-venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is older than 3.10, which pandas $PANDAS_VERSION needs"
    echo "clients.sh: python: a venv in $dir with ${PIP_SPECS[*]}"
    rm -rf "$dir"
    run "$PYTHON" -m venv "$dir"
    run "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_SPECS[@]}"
    # Fail here, not in the middle of a test run, when something did not install whole
    # (psycopg's binary implementation included: without it psycopg looks for libpq).
    run "$dir/bin/python" -c 'import psycopg, sqlalchemy, pandas; assert psycopg.pq.__impl__ == "binary", psycopg.pq.__impl__'
    echo "$stamp" >"$dir/.stamp"
}

install_java() {
    local dir="$ROOT/java" stamp="org.postgresql:postgresql:$PGJDBC_VERSION"
    installed "$dir" "$stamp" && return 0
    need java "Java 17+ (apt-get install -y openjdk-17-jdk-headless)"
    need mvn "Maven (apt-get install -y maven)"
    echo "clients.sh: java: pgJDBC $PGJDBC_VERSION from Maven Central into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    # --strict-checksums: a jar whose checksum does not match Maven Central's fails.
    run mvn -q -B --strict-checksums "$DEPENDENCY_PLUGIN:copy" \
        -Dartifact="org.postgresql:postgresql:$PGJDBC_VERSION" -DoutputDirectory="$dir"
    [[ -f "$dir/postgresql-$PGJDBC_VERSION.jar" ]] || die "Maven did not produce postgresql-$PGJDBC_VERSION.jar"
    # A name without the version, so that whoever runs ClientCheck.java (Java's
    # single-file source launcher: java -cp <jar> ClientCheck.java) needs no pin.
    cp "$dir/postgresql-$PGJDBC_VERSION.jar" "$dir/postgresql.jar"
    echo "$stamp" >"$dir/.stamp"
}

install_node() {
    local dir="$ROOT/node" stamp="pg@$NODE_PG_VERSION"
    installed "$dir" "$stamp" && return 0
    need node "Node.js 20+ (apt-get install -y nodejs)"
    need npm "npm (apt-get install -y npm)"
    echo "clients.sh: node: node-postgres (pg) $NODE_PG_VERSION into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    # A private package of its own, so npm installs here and not into whatever
    # package.json it would find above the folder.
    printf '{ "name": "sluice-clients", "private": true }\n' >"$dir/package.json"
    run npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error "pg@$NODE_PG_VERSION"
    run node -e "require('$dir/node_modules/pg')"
    echo "$stamp" >"$dir/.stamp"
}

mkdir -p "$ROOT"
# One installer at a time per folder (setup.sh and CI may both call this).
exec 9>"$ROOT/.lock"
flock 9

install_python
install_java
install_node

echo "python psycopg $PSYCOPG_VERSION, SQLAlchemy $SQLALCHEMY_VERSION, pandas $PANDAS_VERSION: $ROOT/python/bin/python"
echo "java pgJDBC $PGJDBC_VERSION: $ROOT/java/postgresql.jar"
echo "node pg $NODE_PG_VERSION: $ROOT/node/node_modules"
