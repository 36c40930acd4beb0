#!/usr/bin/env python3
"""The dlt peer of `sluice bench all`: Sluice events loaded into DuckDB by dlt.

Loads the events of a JSON-lines file the way a dlt user would: a pipeline with
the DuckDB destination and `pipeline.run(events, table_name="raw_events",
write_disposition="append")`, everything else at dlt's defaults (schema inference,
`recorded_at` detected as a timestamp, the nested `payload` flattened into
`payload__*` columns and its lists into child tables).

The loader file format is dlt's default for DuckDB (INSERT VALUES files) unless
`--loader-file-format` names another: dlt's DuckDB docs suggest `parquet`
(needs pyarrow, which install.sh installs) for faster loading, so both are worth
measuring.

Plain append is used, not dlt's idiomatic dedupe (`write_disposition="merge"` with
`primary_key="event_id"`): the load is a first load into a new file, so there is
nothing to deduplicate against, and merge would add a staging dataset and a
MERGE per table that a first load does not need.

Only `pipeline.run` is timed (extract, normalize and load); reading and parsing
the input file happens before, so the figure is dlt's own. Prints one JSON line:

    {"peer":"dlt","version":"1.31.0","rows":K,"seconds":T,"rows_per_second":X,
     "tables":["raw_events", ...],"loader_file_format":"insert_values"}

where "tables" lists every table dlt created in the dataset (its own `_dlt_*`
bookkeeping tables included), as DuckDB reports them, and "loader_file_format" is
the format dlt loaded raw_events with. Errors go to stderr, with exit status 1.

dlt's working directory (pipelines_dir) and its data directory live in a
temporary directory removed at the end, and telemetry is off, so nothing is
written outside it but the DuckDB file.

    ~/.cache/sluice/peers/venv/bin/python bench/peers/dlt_load.py \
        --input /tmp/events.jsonl --duckdb /tmp/dlt.duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from peer_report import report_main

DATASET = "sluice"
TABLE = "raw_events"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input", required=True, type=Path, help="JSON-lines file, one event per line")
    parser.add_argument("--duckdb", required=True, type=Path, help="DuckDB file to create (must not exist)")
    parser.add_argument(
        "--loader-file-format",
        choices=("insert_values", "parquet", "jsonl"),
        default=None,
        help="dlt's loader file format (default: dlt's own choice for DuckDB, insert_values)",
    )
    return parser.parse_args()


def read_events(path: Path) -> list[dict]:
    """The input's events, parsed up front so that JSON decoding is not timed."""
    events = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON: {e}") from None
            if not isinstance(event, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            events.append(event)
    if not events:
        raise ValueError(f"{path}: no events")
    return events


def load(events: list[dict], duckdb_path: Path, workdir: Path, file_format: str | None) -> dict[str, object]:
    # dlt reads its settings from the environment when imported and when the
    # pipeline is made: keep its global state in the temporary directory and send
    # no telemetry (there is no network, and a benchmark should not wait on one).
    os.environ["DLT_DATA_DIR"] = str(workdir / "data")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    import duckdb

    pipeline = dlt.pipeline(
        pipeline_name="sluice_peer",
        pipelines_dir=str(workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(duckdb_path)),
        dataset_name=DATASET,
    )

    start = time.perf_counter()
    load_info = pipeline.run(
        events, table_name=TABLE, write_disposition="append", loader_file_format=file_format
    )
    seconds = time.perf_counter() - start
    load_info.raise_on_failed_jobs()
    used_formats = {
        job.job_file_info.file_format
        for package in load_info.load_packages
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name == TABLE
    }

    # Check the load against the file, and list what dlt created, from DuckDB itself.
    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        (loaded,) = db.execute(f'SELECT count(*) FROM "{DATASET}"."{TABLE}"').fetchone()
        tables = sorted(
            name
            for (name,) in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [DATASET]
            ).fetchall()
        )
    if loaded != len(events):
        raise RuntimeError(f"{TABLE} has {loaded} rows after loading {len(events)} events")

    return {
        "peer": "dlt",
        "version": version("dlt"),
        "rows": len(events),
        "seconds": round(seconds, 3),
        "rows_per_second": round(len(events) / seconds, 1),
        "tables": tables,
        "loader_file_format": ",".join(sorted(used_formats)),
    }


def main() -> int:
    args = parse_args()

    def measure() -> dict:
        if args.duckdb.exists():
            raise FileExistsError(f"{args.duckdb} exists: give a new path (the load appends to it)")
        events = read_events(args.input)
        with tempfile.TemporaryDirectory(prefix="sluice-dlt-") as workdir:
            return load(events, args.duckdb.resolve(), Path(workdir), args.loader_file_format)

    return report_main("dlt_load.py", measure)


if __name__ == "__main__":
    sys.exit(main())
