//! `deploy/start-dev.sh`: a development platform from nothing, in one command.

use super::HEADER;
use crate::registry::Registry;

/// `deploy/start-dev.sh`: a development platform from nothing, in one command:
/// provisions every database and role, starts `sluice up` in the background (which
/// migrates every component), waits for each component of the registry to answer,
/// and seeds demo orders through the whole saga.
pub(super) fn start_dev_sh(registry: &Registry) -> String {
    let mut waits = String::new();
    for c in registry.components() {
        waits.push_str(&format!(
            "wait_ready {:<18} {:>5}   # {}, {} layer\n",
            c.name,
            c.port,
            format!("{:?}", c.kind).to_lowercase(),
            c.layer.as_str()
        ));
    }
    format!(
        r#"#!/usr/bin/env bash
# {HEADER}
#
# A development platform from nothing: provisions every component's database and
# roles, starts `sluice up` in the background (it migrates every component as it
# starts it), waits until each component answers, then seeds demo orders through
# the whole saga with `sluice load`. The platform keeps running; stop it with
# `kill $(cat "$DATA_DIR/start-dev.pid")`.
#
#   SLUICE         the sluice command (default: `sluice` on PATH, else
#                  target/release/sluice)
#   SEED_ORDERS    demo orders to place (default 25; 0 for none)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${{SLUICE:-}}" ]; then
  if command -v sluice > /dev/null; then SLUICE=sluice; else SLUICE=target/release/sluice; fi
fi
SEED_ORDERS=${{SEED_ORDERS:-25}}
DATA_DIR=${{SLUICE_DATA_DIR:-{data_dir}}}
mkdir -p "$DATA_DIR"

echo "provisioning databases and roles"
$SLUICE db setup

echo "starting the platform (log: $DATA_DIR/start-dev.log)"
$SLUICE up --no-setup > "$DATA_DIR/start-dev.log" 2>&1 &
echo $! > "$DATA_DIR/start-dev.pid"

wait_ready() {{
  local name=$1 port=$2 deadline=$((SECONDS + 180))
  until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; do
    if ! kill -0 "$(cat "$DATA_DIR/start-dev.pid")" 2> /dev/null; then
      echo "sluice up stopped; its log:" >&2; tail -n 30 "$DATA_DIR/start-dev.log" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "$name (port $port) is not ready after 180 s; see $DATA_DIR/start-dev.log and \`sluice status\`" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "  $name ready on $port"
}}
{waits}
if [ "$SEED_ORDERS" -gt 0 ]; then
  echo "seeding $SEED_ORDERS demo orders"
  $SLUICE load --orders "$SEED_ORDERS" --rate 50
fi
$SLUICE status
"#,
        data_dir = registry.platform.data_dir.display(),
    )
}
