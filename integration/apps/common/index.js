'use strict';
// Shared by Privata's ORM integration apps (no dependencies): the clinic test
// data, result checks, and the run's report.
//
// Every app runs the same scenario against DATABASE_URL with its own ORM and
// checks each result itself. On success it prints one line of JSON (what it
// did, with counts). When PRIVATA_APP_VALUES names a file, it also writes
// there every value it stored, with its table and column and whether the
// value should still be in the database, so that the Go harness can search
// the cluster for each of them (integration/placement.go).

// Dates and timestamps are compared in UTC, whatever the machine's zone.
process.env.TZ = 'UTC';

const crypto = require('crypto');
const fs = require('fs');

// BULK is how many patients every app inserts in one bulk operation.
const BULK = 10000;

// ROUNDS is how many keys every app upserts from two connections at once.
const ROUNDS = 10;

// Mismatch is a result that differs from what the scenario expects.
class Mismatch extends Error {}

function show(v) {
  return JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? String(x) : x));
}

// eq throws a Mismatch naming what was checked when got and want differ
// (compared as JSON).
function eq(what, got, want) {
  if (show(got) !== show(want)) {
    throw new Mismatch(`${what}: got ${show(got)}, want ${show(want)}`);
  }
}

// ok throws a Mismatch when cond is false.
function ok(what, cond) {
  if (!cond) throw new Mismatch(what);
}

// Data makes distinctive values: every string holds a tag that is random per
// run and an index followed by a non-digit, so that no value is a substring
// of another row's value.
class Data {
  constructor() {
    this.tag = crypto.randomBytes(3).toString('hex');
    this.area = 100 + crypto.randomInt(800);
  }

  // patient returns patient number i, with database column names.
  patient(i) {
    const day = new Date(Date.UTC(1930, 0, 1) + ((i * 37) % 25000) * 86400000);
    return {
      ssn: `${this.area}-${pad(Math.floor(i / 10000) % 100, 2)}-${pad(i % 10000, 4)}`,
      first_name: `First${i}_${this.tag}`,
      last_name: `Last${i}_${this.tag}`,
      birthdate: day.toISOString().slice(0, 10),
      address: `${i} Elm Street_${this.tag}`,
      marital: ['M', 'S', 'D', 'W'][i % 4],
      gender: ['F', 'M'][i % 2],
    };
  }

  // encounter returns encounter number j (without its patient).
  encounter(j) {
    return {
      code: `K${j}_${this.tag}`,
      description: `Visit ${j}_${this.tag}`,
      started_at: new Date(Date.UTC(2024, 0, 1) + j * 3600000),
    };
  }
}

function pad(n, width) {
  return String(n).padStart(width, '0');
}

// PATIENT_FIELDS are the patient columns the apps write and compare.
const PATIENT_FIELDS = ['ssn', 'first_name', 'last_name', 'birthdate', 'address', 'marital',
  'gender'];

// dateOnly turns what an ORM returns for a date column into YYYY-MM-DD.
function dateOnly(v) {
  if (v instanceof Date) return v.toISOString().slice(0, 10);
  return String(v).slice(0, 10);
}

// instant turns what an ORM returns for a timestamptz column into an ISO
// string, for comparison.
function instant(v) {
  return new Date(v).toISOString();
}

// patientOf picks the compared fields from a row whose keys are the database
// column names.
function patientOf(row) {
  const out = {};
  for (const f of PATIENT_FIELDS) out[f] = f === 'birthdate' ? dateOnly(row[f]) : row[f];
  return out;
}

// encounterOf picks the compared fields of an encounter row.
function encounterOf(row) {
  return { code: row.code, description: row.description, started_at: instant(row.started_at) };
}

// pgText writes a value the way PostgreSQL casts it to text (with TimeZone
// UTC), which is how the harness reads the cluster.
function pgText(v) {
  if (v instanceof Date) {
    return v.toISOString().replace('T', ' ').replace(/\.000Z$/, '+00').replace(/Z$/, '+00');
  }
  return String(v);
}

// Report records what the app stored and what it did.
class Report {
  constructor(app, migrate) {
    this.summary = { app, migrate, steps: [] };
    this.rows = new Map(); // "table\0key" -> row
    this.dead = [];
  }

  // step records that a part of the scenario passed.
  step(name, counts) {
    this.summary.steps.push(counts ? { step: name, ...counts } : { step: name });
  }

  // put records the row stored under key; a row it replaces is no longer live.
  put(table, key, row) {
    const k = `${table}\0${key}`;
    if (this.rows.has(k)) this.dead.push({ table, row: this.rows.get(k) });
    const texts = {};
    for (const [c, v] of Object.entries(row)) if (v !== null && v !== undefined) texts[c] = pgText(v);
    this.rows.set(k, texts);
  }

  // remove records that the rows of table matching pred are gone.
  remove(table, pred) {
    for (const [k, row] of this.rows) {
      if (k.startsWith(`${table}\0`) && pred(row, k.slice(table.length + 1))) {
        this.dead.push({ table, row });
        this.rows.delete(k);
      }
    }
  }

  // finish writes the values file (when asked for) and prints the summary.
  finish(counts) {
    Object.assign(this.summary, counts, { ok: true });
    const file = process.env.PRIVATA_APP_VALUES;
    if (file) {
      const values = [];
      const seen = new Set();
      const add = (table, row, live) => {
        for (const [column, value] of Object.entries(row)) {
          const id = `${table}\0${column}\0${value}\0${live}`;
          if (!seen.has(id)) values.push({ table, column, value, live });
          seen.add(id);
        }
      };
      for (const [k, row] of this.rows) add(k.split('\0')[0], row, true);
      for (const d of this.dead) add(d.table, d.row, false);
      fs.writeFileSync(file, JSON.stringify({ app: this.summary.app, values }) + '\n');
    }
    process.stdout.write(show(this.summary) + '\n');
  }
}

// sample returns the indexes of the bulk rows an app reads back and reports.
function sample() {
  const out = [];
  for (let i = 0; i < BULK; i += 500) out.push(i);
  out.push(BULK - 1);
  return out;
}

// main runs an app's scenario, turning any failure into a message on stderr
// and exit status 1.
function main(run) {
  run().then(
    () => process.exit(0),
    (err) => {
      const what = err instanceof Mismatch ? 'check failed' : 'error';
      process.stderr.write(`${what}: ${err && err.stack ? err.stack : err}\n`);
      if (err && err.code) process.stderr.write(`sqlstate: ${err.code}\n`);
      process.exit(1);
    },
  );
}

module.exports = {
  BULK, ROUNDS, Mismatch, Data, Report, PATIENT_FIELDS,
  eq, ok, dateOnly, instant, patientOf, encounterOf, pgText, sample, main,
};
