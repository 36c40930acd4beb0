// The analyst endpoint as node-postgres (`pg` 8) sees it, the driver of most
// JavaScript dashboards: a parameterized query, and every fixture type read and
// bound as node-postgres parses it (text format: node-postgres asks for nothing else).
//
// Run with Node 20+ against an endpoint serving the client_orders fixture, with
// the connection settings in libpq's environment variables (PGHOST, PGPORT,
// PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE), which node-postgres reads itself:
//
//     node analytics/tests/clients/node_check.js
//
// `pg` is found as usual (NODE_PATH, node_modules) or else where
// deploy/dev/clients.sh installs it ($SLUICE_CLIENTS/node/node_modules).
//
// Prints "ok <what>: <value>" per check; the first failing check prints
// "FAIL <what>: expected X, got Y" to stderr and exits 1. With
// SLUICE_CLIENT_CHECK_ALL=1 every check runs and the failures are counted instead.
'use strict';

const assert = require('node:assert');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');

function loadPg() {
  const root = process.env.SLUICE_CLIENTS || path.join(os.homedir(), '.cache', 'sluice', 'clients');
  for (const name of ['pg', path.join(root, 'node', 'node_modules', 'pg')]) {
    let main;
    try {
      main = require.resolve(name);
    } catch (e) {
      continue;
    }
    const version = require(path.join(path.dirname(main), '..', 'package.json')).version;
    return [require(main), version];
  }
  throw new Error(`node-postgres (pg) is not installed: run deploy/dev/clients.sh (looked in ${root})`);
}
const [pg, pgVersion] = loadPg();

const DRIVER = `node (pg ${pgVersion})`;
const KEEP_GOING = process.env.SLUICE_CLIENT_CHECK_ALL === '1';
// SLUICE_CLIENT_CHECK_REFERENCE=postgres: the same checks against PostgreSQL itself,
// over the fixture in PostgreSQL's types (HUGEINT → numeric, STRUCT → json,
// BLOB → bytea): the expected values are what node-postgres gives there.
const REFERENCE = process.env.SLUICE_CLIENT_CHECK_REFERENCE === 'postgres';
let passed = 0;
let failed = 0;

class Failed extends Error {}

function show(v) {
  return util.inspect(v, { depth: 5, breakLength: Infinity });
}

function fail(what, expected, got) {
  failed += 1;
  process.stderr.write(`FAIL ${what}: expected ${expected}, got ${got}\n`);
  if (!KEEP_GOING) {
    process.stderr.write(`${DRIVER}: ${passed} passed, ${failed} failed\n`);
    process.exit(1);
  }
  throw new Failed();
}

function ok(what, seen) {
  passed += 1;
  process.stdout.write(`ok ${what}: ${seen}\n`);
}

function same(a, b) {
  if (a instanceof Date && b instanceof Date) {
    return a.getTime() === b.getTime();
  }
  try {
    assert.deepStrictEqual(b, a);
    return true;
  } catch (e) {
    return false;
  }
}

function check(what, expected, got) {
  if (!same(expected, got)) {
    fail(what, show(expected), show(got));
  }
  ok(what, show(got));
}

async function attempt(what, fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof Failed) return;
    const detail = `${e.constructor.name}: ${e.message}${e.code ? ` [SQLSTATE ${e.code}]` : ''}`;
    try {
      fail(what, 'no error', detail.replace(/\n/g, ' | '));
    } catch (counted) {
      if (!(counted instanceof Failed)) throw counted;
    }
  }
}

const COLUMNS = ['id', 'line', 'amount', 'big', 'order_id', 'placed_at', 'took', 'tags',
  'address', 'feeling', 'raw', 'paid', 'weight', 'note', 'day'];

// node-postgres's parsers for the equivalent PostgreSQL types: numeric → string
// (exact), uuid → string, timestamptz → Date (milliseconds: .123456 reads as .123),
// interval → a postgres-interval object, text[] → Array, json → parsed, bytea →
// Buffer, date → a Date at local midnight, an enum (unknown to it) → string.
function interval(fields) {
  return fields;
}
const ROWS = [
  {
    id: 1, line: 1, amount: '12.50', big: '170141183460469231731687303715884105727',
    order_id: '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70',
    placed_at: new Date(Date.UTC(2024, 4, 1, 10, 0, 0)),
    took: interval({ days: 1, hours: 2, minutes: 3 }), tags: ['a', 'b'],
    address: { city: 'Oslo', zip: 150 }, feeling: 'happy',
    raw: Buffer.from([0xde, 0xad, 0xbe, 0xef]), paid: true, weight: 1.5, note: 'n\u00e9e',
    day: new Date(2024, 4, 1),
  },
  {
    id: 1, line: 2, amount: '-7.25', big: '-5', order_id: '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71',
    placed_at: new Date(Date.UTC(2024, 4, 2, 11, 30, 0, 123)),
    took: interval({ months: 3 }), tags: [], address: { city: null, zip: 1 }, feeling: 'sad',
    raw: Buffer.alloc(0), paid: false, weight: -0.5, note: '', day: new Date(1999, 11, 31),
  },
  Object.assign(Object.fromEntries(COLUMNS.map((c) => [c, null])), { id: 2, line: 1 }),
];

const CASTS = {
  id: 'INTEGER', line: 'INTEGER', amount: 'DECIMAL(12,2)', big: REFERENCE ? 'NUMERIC' : 'HUGEINT',
  order_id: 'UUID', placed_at: 'TIMESTAMPTZ', took: 'INTERVAL', tags: 'VARCHAR[]',
  address: REFERENCE ? 'JSON' : 'STRUCT(city VARCHAR, zip INTEGER)', feeling: 'mood',
  raw: REFERENCE ? 'BYTEA' : 'BLOB', paid: 'BOOLEAN', weight: 'DOUBLE PRECISION', note: 'VARCHAR',
  day: 'DATE',
};

// An interval as its fields (postgres-interval leaves out the zero ones).
function intervalFields(v) {
  if (v === null || typeof v !== 'object') return v;
  const out = {};
  for (const k of ['years', 'months', 'days', 'hours', 'minutes', 'seconds', 'milliseconds']) {
    if (v[k]) out[k] = v[k];
  }
  return out;
}

// A list or a struct: parsed by node-postgres (text[] → Array, json → value), or
// JSON text that parses to it. DuckDB's literal syntax (['a', 'b']) is neither.
function checkNested(what, expected, got) {
  if (typeof got === 'string') {
    let parsed;
    try {
      parsed = JSON.parse(got);
    } catch (e) {
      fail(what, `${show(expected)} (parsed, or JSON text)`, `${show(got)}, not JSON`);
    }
    if (!same(expected, parsed)) fail(what, `${show(expected)} (parsed, or JSON text)`, show(got));
    ok(what, `${show(got)} (JSON text)`);
    return;
  }
  check(what, expected, got);
}

function checkValue(what, column, expected, got) {
  if (expected !== null && (column === 'tags' || column === 'address')) {
    checkNested(what, expected, got);
  } else if (column === 'took') {
    if (got !== null && typeof got !== 'object') fail(what, 'a postgres-interval object', show(got));
    check(what, expected, intervalFields(got));
  } else {
    check(what, expected, got);
  }
}

// Binds `value` as a node-postgres user would: the value node-postgres gave.
function param(column, value) {
  if (value === null) return null;
  if (column === 'address') return value; // JSON.stringify'd by node-postgres
  // What postgres-interval's toPostgres() sends: '1 days 2 hours 3 minutes'.
  if (column === 'took') return Object.entries(value).map(([k, v]) => `${v} ${k}`).join(' ');
  return value;
}

async function main() {
  const client = new pg.Client({ application_name: 'sluice-client-check' });
  await attempt('connect', async () => {
    await client.connect();
    ok('connect', `${client.host}:${client.port}`);
  });
  if (failed) return finish(client);

  await attempt('parameterized query', async () => {
    const res = await client.query(
      'SELECT id, line, note FROM client_orders WHERE id = $1 AND note = $2 ORDER BY line', [1, 'n\u00e9e']);
    check('parameterized query (int, string)', [{ id: 1, line: 1, note: 'n\u00e9e' }], res.rows);
    const named = await client.query({
      name: 'client-orders-by-day',
      text: 'SELECT id, line FROM client_orders WHERE day = $1 AND placed_at < $2 ORDER BY id, line',
      values: ['1999-12-31', new Date(Date.UTC(2030, 0, 1))],
    });
    check('named prepared statement (date, timestamptz)', [{ id: 1, line: 2 }], named.rows);
    const again = await client.query({
      name: 'client-orders-by-day',
      text: 'SELECT id, line FROM client_orders WHERE day = $1 AND placed_at < $2 ORDER BY id, line',
      values: ['2024-05-01', new Date(Date.UTC(2030, 0, 1))],
    });
    check('named prepared statement, run again', [{ id: 1, line: 1 }], again.rows);
  });

  let rows = [];
  await attempt('read of client_orders', async () => {
    const res = await client.query(`SELECT ${COLUMNS.join(', ')} FROM client_orders ORDER BY id, line`);
    check('result column names', COLUMNS, res.fields.map((f) => f.name));
    check('result row count', ROWS.length, res.rows.length);
    rows = res.rows;
  });
  for (let r = 0; r < rows.length && r < ROWS.length; r++) {
    for (const column of COLUMNS) {
      const what = `read row ${r + 1} ${column}`;
      await attempt(what, async () => checkValue(what, column, ROWS[r][column], rows[r][column]));
    }
  }

  for (let r = 0; r < ROWS.length; r++) {
    for (const column of COLUMNS) {
      const what = `bound row ${r + 1} ${column}`;
      await attempt(what, async () => {
        const res = await client.query(`SELECT CAST($1 AS ${CASTS[column]}) AS v`,
          [param(column, ROWS[r][column])]);
        checkValue(what, column, ROWS[r][column], res.rows[0].v);
      });
    }
  }
  return finish(client);
}

async function finish(client) {
  try {
    await client.end();
  } catch (e) {
    // already closed
  }
  process.stdout.write(`${DRIVER}: ${passed} passed, ${failed} failed\n`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write(`FAIL node_check: expected no error, got ${e.stack}\n`);
  process.exit(1);
});
