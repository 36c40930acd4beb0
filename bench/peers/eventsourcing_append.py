#!/usr/bin/env python3
"""The eventsourcing peer of `sluice bench all`: one-event aggregates into PostgreSQL.

Uses the Python `eventsourcing` library with its PostgreSQL persistence module,
configured through the environment variables its documentation gives
(PERSISTENCE_MODULE=eventsourcing.postgres, POSTGRES_DBNAME, POSTGRES_HOST, ...),
and writes as an eventsourcing user would: an `Aggregate` subclass whose
`__init__` is decorated with `@event`, so creating one records one event, and
`app.save(aggregate)` to store it. The application creates its tables in the given
database on start (CREATE_TABLE defaults to yes); everything else is the library's
defaults (connection pool of 5 plus an overflow of 10, one table lock per insert
to keep the notification log gap-free).

N threads share one application and save new aggregates back to back for S
seconds; saves in flight at the deadline finish and are counted, and the rate is
taken over the time until the last thread finished. Prints one JSON line:

    {"peer":"eventsourcing","version":"9.5.6","threads":N,"seconds":S,
     "events":K,"events_per_second":X}

Errors go to stderr, with exit status 1.

Run with the peers' venv (bench/peers/install.sh):

    ~/.cache/sluice/peers/venv/bin/python bench/peers/eventsourcing_append.py \
        --dsn postgresql://postgres:postgres@127.0.0.1:5432/scratch --threads 16 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from importlib.metadata import version
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from peer_report import report_main


class Widget(Aggregate):
    """A minimal aggregate: constructing it records its one event, `Created`."""

    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name


class Widgets(Application):
    """The application the threads save through (its tables: `widgets_events`, ...)."""

    def create_widget(self, name: str) -> None:
        self.save(Widget(name=name))


def postgres_env(dsn: str) -> dict[str, str]:
    """eventsourcing's PostgreSQL settings for a postgresql:// URL."""
    url = urlsplit(dsn)
    if url.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"--dsn must be a postgresql:// URL, got {dsn!r}")
    dbname = unquote(url.path.lstrip("/"))
    if not (url.hostname and url.username and dbname):
        raise ValueError("--dsn needs a user, a host and a database name")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": url.hostname,
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "CREATE_TABLE": "y",
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user:pass@host:port/dbname (must exist)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent writer threads (default 1)")
    parser.add_argument("--seconds", type=int, default=10, help="how long to write (default 10)")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds < 1:
        parser.error("--threads and --seconds must be at least 1")
    return args


def check_connection(env: dict[str, str]) -> None:
    """Connects once, so that a wrong DSN fails at once with PostgreSQL's own message
    (eventsourcing's pool would retry for 30 s and report only a timeout)."""
    psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=10,
    ).close()


def run(dsn: str, threads: int, seconds: int) -> dict[str, object]:
    env = postgres_env(dsn)
    check_connection(env)
    app = Widgets(env=env)
    try:
        counts = [0] * threads
        errors: list[BaseException] = []
        start = time.perf_counter()
        deadline = start + seconds

        def writer(slot: int) -> None:
            try:
                while time.perf_counter() < deadline and not errors:
                    app.create_widget("widget")
                    counts[slot] += 1
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        workers = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
    finally:
        app.close()

    events = sum(counts)
    return {
        "peer": "eventsourcing",
        "version": version("eventsourcing"),
        "threads": threads,
        "seconds": seconds,
        "events": events,
        "events_per_second": round(events / elapsed, 1),
    }


def main() -> int:
    args = parse_args()
    return report_main(
        "eventsourcing_append.py", lambda: run(args.dsn, args.threads, args.seconds)
    )


if __name__ == "__main__":
    sys.exit(main())
