#!/usr/bin/env bash
# What Sluice needs on a Debian machine, installed and started once, idempotently:
#   - PostgreSQL 14+ (Debian's `postgresql` package) with a cluster on 127.0.0.1:5432,
#     its superuser `postgres` reachable over TCP with a password (Debian's
#     pg_hba.conf asks for one: scram-sha-256), matching SLUICE_ADMIN_DATABASE_URL;
#   - Apache Kafka for the tests and benchmarks, fetched from Maven Central into
#     ~/.cache/sluice (needs Java 17+ and Maven);
#   - the analyst endpoint tests' tools: openssl (a test certificate), tmux (psql
#     at a terminal, for tab completion) and the drivers of deploy/dev/clients.sh;
#   - kcat, the Kafka client the README reads the topics with.
# Run as root, or as a user who may run apt-get and `runuser -u postgres` via sudo.
set -euo pipefail
cd "$(dirname "$0")/../.."

admin_url="${SLUICE_ADMIN_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
password="$(sed -n 's#^postgres://[^:]*:\([^@]*\)@.*#\1#p' <<<"$admin_url")"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=""
for tool in openssl tmux kcat; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
    echo "setup: installing$missing (Debian's packages)"
    $sudo apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if [ ! -d /usr/lib/postgresql ] || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
        echo "setup: installing PostgreSQL (Debian's postgresql package)"
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql
    fi
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        echo "setup: creating the PostgreSQL $version cluster"
        $sudo pg_createcluster "$version" main
    fi
    echo "setup: starting PostgreSQL $version"
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# The superuser's password, set over the local socket (peer authentication) when
# the admin URL's password does not work yet.
if [ -n "$password" ] && ! PGPASSWORD="$password" psql -qtA -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    echo "setup: setting the password of PostgreSQL's superuser postgres (from SLUICE_ADMIN_DATABASE_URL)"
    escaped="${password//\'/\'\'}"
    $sudo runuser -u postgres -- psql -q -d postgres -c "ALTER ROLE postgres PASSWORD '$escaped'"
fi
PGPASSWORD="$password" psql -qtA -h 127.0.0.1 -U postgres -d postgres -c 'SELECT version()'

bash deploy/kafka/fetch.sh

# The analyst tools' drivers the endpoint tests run (psycopg with SQLAlchemy and pandas,
# pgJDBC, node-postgres), installed once per machine outside the clone.
bash deploy/dev/clients.sh
