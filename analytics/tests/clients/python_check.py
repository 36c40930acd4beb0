"""The analyst endpoint as Python's analyst stack sees it: psycopg 3, SQLAlchemy 2
(its `postgresql+psycopg` dialect and inspector) and pandas.

Run with the venv deploy/dev/clients.sh installs, against an endpoint serving the
`client_orders` fixture (README.md beside this file), connection settings in
libpq's environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, and
PGSSLMODE & co. when the endpoint has TLS):

    $SLUICE_CLIENTS/python/bin/python analytics/tests/clients/python_check.py

Prints `ok <what>: <value>` per check; the first failing check prints
`FAIL <what>: expected X, got Y` to stderr and exits 1. With
SLUICE_CLIENT_CHECK_ALL=1 every check runs and the failures are counted instead.
"""

import datetime as dt
import json
import os
import sys
import traceback
import uuid
import warnings
from decimal import Decimal

# SQLAlchemy warns ("did not recognize type ...") where it cannot map a column's
# type; such a warning is a failure here, not noise.
warnings.simplefilter("error")

import pandas as pd  # noqa: E402
import psycopg  # noqa: E402
from psycopg.types.json import Json  # noqa: E402
from sqlalchemy import create_engine, inspect, text  # noqa: E402
from sqlalchemy import types as sa  # noqa: E402
from sqlalchemy.dialects import postgresql as pg  # noqa: E402

DRIVER = f"python (psycopg {psycopg.__version__})"
KEEP_GOING = os.environ.get("SLUICE_CLIENT_CHECK_ALL") == "1"
passed = 0
failed = 0


class Failed(Exception):
    pass


def fail(what, expected, got):
    global failed
    failed += 1
    print(f"FAIL {what}: expected {expected}, got {got}", file=sys.stderr, flush=True)
    if not KEEP_GOING:
        print(f"{DRIVER}: {passed} passed, {failed} failed", file=sys.stderr)
        # Connections still open in a pool at exit are no finding.
        warnings.simplefilter("ignore", ResourceWarning)
        sys.exit(1)
    raise Failed()


def ok(what, seen):
    global passed
    passed += 1
    print(f"ok {what}: {seen}", flush=True)


def same(a, b):
    """Equal and of the same type, all the way down (1 is not 1.0 is not Decimal(1);
    Decimal('12.50') is not Decimal('12.5'); an aware datetime also in UTC)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return a == b


def check(what, expected, got):
    if not same(expected, got):
        fail(what, repr(expected), repr(got))
    ok(what, repr(got))


def attempt(what, fn):
    """Runs one group of checks; a driver error fails it with the error's text."""
    try:
        fn()
    except Failed:
        pass
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - any driver error is the finding
        detail = f"{type(e).__name__}: {e}".strip().replace("\n", " | ")
        if os.environ.get("SLUICE_CLIENT_CHECK_TRACE") == "1":
            traceback.print_exc()
        try:
            fail(what, "no error", detail)
        except Failed:
            pass


UTC = dt.timezone.utc

# The fixture's rows (ORDER BY id, line) as psycopg gives the equivalent
# PostgreSQL types: numeric → Decimal, uuid → UUID, timestamptz → aware datetime
# in the session's time zone (UTC), interval → timedelta (a month is 30 days),
# bytea → bytes, date → date, an enum → str. The list and the struct are checked
# apart (see `nested`).
COLUMNS = [
    "id", "line", "amount", "big", "order_id", "placed_at", "took", "tags",
    "address", "feeling", "raw", "paid", "weight", "note", "day",
]
ROWS = [
    {
        "id": 1, "line": 1, "amount": Decimal("12.50"),
        "big": Decimal("170141183460469231731687303715884105727"),
        "order_id": uuid.UUID("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"),
        "placed_at": dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        "took": dt.timedelta(days=1, hours=2, minutes=3),
        "tags": ["a", "b"], "address": {"city": "Oslo", "zip": 150},
        "feeling": "happy", "raw": b"\xde\xad\xbe\xef", "paid": True,
        "weight": 1.5, "note": "n\u00e9e", "day": dt.date(2024, 5, 1),
    },
    {
        "id": 1, "line": 2, "amount": Decimal("-7.25"), "big": Decimal("-5"),
        "order_id": uuid.UUID("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71"),
        "placed_at": dt.datetime(2024, 5, 2, 11, 30, 0, 123456, tzinfo=UTC),
        "took": dt.timedelta(days=90),
        "tags": [], "address": {"city": None, "zip": 1},
        "feeling": "sad", "raw": b"", "paid": False,
        "weight": -0.5, "note": "", "day": dt.date(1999, 12, 31),
    },
    dict({c: None for c in COLUMNS}, id=2, line=1),
]
NESTED = {"tags", "address"}

# The DuckDB type each column is bound as in the parameter round trip.
CASTS = {
    "id": "INTEGER", "line": "INTEGER", "amount": "DECIMAL(12,2)", "big": "HUGEINT",
    "order_id": "UUID", "placed_at": "TIMESTAMPTZ", "took": "INTERVAL",
    "tags": "VARCHAR[]", "address": "STRUCT(city VARCHAR, zip INTEGER)",
    "feeling": "mood", "raw": "BLOB", "paid": "BOOLEAN", "weight": "DOUBLE PRECISION",
    "note": "VARCHAR", "day": "DATE",
}
# SLUICE_CLIENT_CHECK_REFERENCE=postgres: the same checks against PostgreSQL itself,
# over the same fixture in PostgreSQL's types (HUGEINT → numeric, STRUCT → json,
# BLOB → bytea), to show that the expected values are what the driver gives there.
REFERENCE = os.environ.get("SLUICE_CLIENT_CHECK_REFERENCE") == "postgres"
if REFERENCE:
    CASTS.update({"big": "NUMERIC", "address": "JSON", "raw": "BYTEA"})


def check_nested(what, expected, got):
    """A list or a struct: the value parsed by the driver (text[] → list,
    json → list or dict), or JSON text that parses to it. DuckDB's own literal
    syntax (`['a', 'b']`, `{'city': 'Oslo'}`) is neither."""
    if isinstance(got, str):
        try:
            parsed = json.loads(got)
        except ValueError:
            fail(what, f"{expected!r} (as a list/dict, or JSON text)", f"{got!r}, not JSON")
        if not same(expected, parsed):
            fail(what, f"{expected!r} (as a list/dict, or JSON text)", repr(got))
        ok(what, f"{got!r} (JSON text)")
        return
    check(what, expected, got)


def check_value(what, column, expected, got):
    if REFERENCE and column == "feeling" and isinstance(got, bytes):
        # PostgreSQL's own enum, unknown to psycopg, comes as bytes in binary.
        got = got.decode()
    if column in NESTED and expected is not None:
        check_nested(what, expected, got)
    else:
        check(what, expected, got)


def connect():
    # libpq's environment variables, as every psql-compatible tool reads them.
    return psycopg.connect(autocommit=True)


def rows_read(binary):
    fmt = "binary" if binary else "text"

    def run():
        with connect() as conn, conn.cursor(binary=binary) as cur:
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM client_orders ORDER BY id, line")
            names = [d.name for d in cur.description]
            check(f"{fmt} result column names", COLUMNS, names)
            got = cur.fetchall()
            check(f"{fmt} result row count", len(ROWS), len(got))
            for r, (expected, row) in enumerate(zip(ROWS, got)):
                for c, column in enumerate(COLUMNS):
                    what = f"{fmt} read row {r + 1} {column}"
                    attempt(what, lambda: check_value(what, column, expected[column], row[c]))

    attempt(f"{fmt} read of client_orders", run)


def params_round_trip(binary):
    """Each fixture value bound as a parameter (`SELECT %s::TYPE`) and read back,
    parameters and results both in text (%t) or both in binary (%b)."""
    fmt = "binary" if binary else "text"
    placeholder = "%b" if binary else "%t"
    with connect() as conn:
        for r, row in enumerate(ROWS):
            for column in COLUMNS:
                what = f"{fmt} bound row {r + 1} {column}"
                value = row[column]
                if column == "address" and value is not None:
                    # psycopg binds a dict as json (it has no other PostgreSQL form).
                    value = Json(value)

                def run(what=what, column=column, value=value, expected=row[column]):
                    with conn.cursor(binary=binary) as cur:
                        cur.execute(
                            f"SELECT CAST({placeholder} AS {CASTS[column]}) AS v", [value]
                        )
                        check_value(what, column, expected, cur.fetchone()[0])

                attempt(what, run)


def sqlalchemy_catalog():
    engine = create_engine("postgresql+psycopg://")

    def run():
        insp = inspect(engine)
        tables = insp.get_table_names()
        if "client_orders" not in tables:
            fail("get_table_names", "a list with client_orders", tables)
        ok("get_table_names has client_orders", tables)
        if "paid_client_orders" in tables:
            fail("get_table_names", "no views", tables)
        views = insp.get_view_names()
        if "paid_client_orders" not in views:
            fail("get_view_names", "a list with paid_client_orders", views)
        ok("get_view_names has paid_client_orders", views)

    attempt("SQLAlchemy table and view names", run)

    # The SQLAlchemy type each column reflects as, for the equivalent PostgreSQL
    # column: (accepted type classes, extra attributes to match).
    string = (sa.VARCHAR, sa.TEXT, sa.String)
    expected = {
        "id": ((sa.INTEGER,), {}),
        "line": ((sa.INTEGER,), {}),
        "amount": ((sa.NUMERIC,), {"precision": 12, "scale": 2}),
        "big": ((sa.NUMERIC,), {}),
        "order_id": ((sa.UUID, pg.UUID), {}),
        "placed_at": ((sa.TIMESTAMP, pg.TIMESTAMP), {"timezone": True}),
        "took": ((pg.INTERVAL,), {}),
        # text[] (an ARRAY of a string type), or json/JSON text.
        "tags": ((pg.ARRAY, sa.JSON, pg.JSONB) + string, {}),
        "address": ((sa.JSON, pg.JSON, pg.JSONB) + string, {}),
        # The enum as PostgreSQL's ENUM (reflected with its labels), or a string.
        "feeling": ((pg.ENUM,) + string, {}),
        "raw": ((pg.BYTEA,), {}),
        "paid": ((sa.BOOLEAN,), {}),
        "weight": ((sa.DOUBLE_PRECISION,), {}),
        "note": (string, {}),
        "day": ((sa.DATE,), {}),
    }

    def columns():
        cols = inspect(engine).get_columns("client_orders")
        check("get_columns names", COLUMNS, [c["name"] for c in cols])
        for col in cols:
            name, ty = col["name"], col["type"]
            classes, attrs = expected[name]
            seen = f"{ty!r} nullable={col['nullable']}"
            if type(ty) not in classes:
                fail(f"get_columns {name} type", " or ".join(c.__name__ for c in classes), seen)
            for attr, value in attrs.items():
                if getattr(ty, attr, None) != value:
                    fail(f"get_columns {name} type {attr}", value, seen)
            if isinstance(ty, pg.ARRAY) and not isinstance(ty.item_type, string):
                fail(f"get_columns {name} item type", "a string type", seen)
            if isinstance(ty, pg.ENUM) and list(ty.enums) != ["sad", "ok", "happy"]:
                fail(f"get_columns {name} labels", ["sad", "ok", "happy"], seen)
            nullable = name not in ("id", "line")
            if col["nullable"] is not nullable:
                fail(f"get_columns {name} nullable", nullable, col["nullable"])
            ok(f"get_columns {name}", seen)

    attempt("SQLAlchemy get_columns", columns)

    def primary_key():
        pk = inspect(engine).get_pk_constraint("client_orders")
        check("get_pk_constraint columns", ["id", "line"], pk["constrained_columns"])

    attempt("SQLAlchemy get_pk_constraint", primary_key)

    def frames():
        frame = pd.read_sql(
            "SELECT id, line, amount, note, day FROM client_orders ORDER BY id, line", engine
        )
        check("read_sql columns", ["id", "line", "amount", "note", "day"], list(frame.columns))
        check("read_sql ids", [1, 1, 2], [int(v) for v in frame["id"]])
        check("read_sql lines", [1, 2, 1], [int(v) for v in frame["line"]])
        # read_sql's coerce_float (on by default) makes the Decimals floats.
        check(
            "read_sql amounts",
            [12.5, -7.25, None],
            list(frame["amount"].astype(object).where(frame["amount"].notna(), None)),
        )
        check(
            "read_sql notes",
            ["n\u00e9e", "", None],
            list(frame["note"].astype(object).where(frame["note"].notna(), None)),
        )
        check(
            "read_sql days",
            [dt.date(2024, 5, 1), dt.date(1999, 12, 31), None],
            list(frame["day"].astype(object).where(frame["day"].notna(), None)),
        )
        bound = pd.read_sql(
            text("SELECT line, amount FROM client_orders WHERE id = :id AND note = :note"),
            engine,
            params={"id": 1, "note": "n\u00e9e"},
        )
        check("read_sql with bound parameters", [[1, 12.5]],
              [[int(r.line), float(r.amount)] for r in bound.itertuples()])
        view = pd.read_sql(
            "SELECT * FROM paid_client_orders ORDER BY id, line", engine, coerce_float=False
        )
        check("read_sql of the view", [[1, 1, Decimal("12.50")]],
              [[int(r.id), int(r.line), r.amount] for r in view.itertuples()])

    attempt("pandas read_sql", frames)
    engine.dispose()


def main():
    attempt("connect", lambda: connect().close())
    sqlalchemy_catalog()
    for binary in (False, True):
        rows_read(binary)
        params_round_trip(binary)
    print(f"{DRIVER}: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
