'use strict';
// The clinic scenario through node-postgres with hand-written SQL: migrations
// from migrations/*.sql, INSERT ... ON CONFLICT for upserts, COPY for bulk
// loads (text and CSV in, text out). See ../README.md for what every app does.

const common = require('../common');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');
const pg = require('pg');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');

const { eq, ok, patientOf, encounterOf } = common;
const COLS = common.PATIENT_FIELDS;

// migrate applies every migrations/*.sql file not applied yet, each in its own
// transaction, and records it in schema_migrations.
async function migrate(db) {
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now())`);
  const dir = path.join(__dirname, 'migrations');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
  const applied = [];
  for (const f of files) {
    const done = await db.query('SELECT 1 FROM schema_migrations WHERE version = $1', [f]);
    if (done.rowCount > 0) continue;
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query(fs.readFileSync(path.join(dir, f), 'utf8'));
      await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [f]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
    applied.push(f);
  }
  return applied;
}

function insertPatient(p, id) {
  const cols = id ? ['id', ...COLS] : COLS;
  const args = cols.map((c) => (c === 'id' ? id : p[c]));
  const marks = cols.map((_, i) => `$${i + 1}`).join(', ');
  return { text: `INSERT INTO patients (${cols.join(', ')}) VALUES (${marks})`, values: args };
}

async function count(db, table) {
  const r = await db.query(`SELECT count(*)::int AS n FROM ${table}`);
  return r.rows[0].n;
}

async function patientBySsn(db, ssn) {
  const r = await db.query('SELECT * FROM patients WHERE ssn = $1', [ssn]);
  return r.rows;
}

// copyText escapes a value for COPY's text format.
function copyText(v) {
  if (v === null || v === undefined) return '\\N';
  return String(v).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
}

function copyCsv(v) {
  if (v === null || v === undefined) return '';
  return `"${String(v).replace(/"/g, '""')}"`;
}

async function run() {
  const data = new common.Data();
  const report = new common.Report('pg', 'migrations/*.sql');
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });

  // 1. Migrate the empty database.
  const applied = await migrate(db);
  eq('migrations applied', applied, ['001_clinic.sql']);
  eq('migrations applied on a second run', await migrate(db), []);
  report.step('migrate', { migrations: applied.length });

  // 2. Create patients A, B, C and their encounters.
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const p = data.patient(i);
    const q = insertPatient(p);
    const r = await db.query(`${q.text} RETURNING *`, q.values);
    eq(`patient ${name} as returned`, patientOf(r.rows[0]), p);
    ok(`patient ${name} has a generated uuid id`, /^[0-9a-f-]{36}$/.test(r.rows[0].id));
    ok(`patient ${name} has a created_at default`, r.rows[0].created_at instanceof Date);
    ids[name] = r.rows[0].id;
    report.put('patients', ids[name], { id: ids[name], ...p });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = data.encounter(Number(j));
    const r = await db.query(
      `INSERT INTO encounters (patient_id, code, description, started_at)
       VALUES ($1, $2, $3, $4) RETURNING id`,
      [ids[owner], e.code, e.description, e.started_at]);
    report.put('encounters', r.rows[0].id, { patient_id: ids[owner], ...e });
  }
  eq('patients after create', await count(db, 'patients'), 3);
  eq('encounters after create', await count(db, 'encounters'), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with a join of the encounters.
  const filtered = await db.query(
    'SELECT * FROM patients WHERE last_name = ANY($1) ORDER BY last_name',
    [[data.patient(1).last_name, data.patient(2).last_name]]);
  eq('filtered patients', filtered.rows.map(patientOf), [data.patient(1), data.patient(2)]);
  const joined = await db.query(
    `SELECT p.ssn, e.code, e.description, e.started_at
       FROM patients p JOIN encounters e ON e.patient_id = p.id
      WHERE p.id = $1 ORDER BY e.started_at`, [ids.A]);
  eq('encounters of A', joined.rows.map(encounterOf), [1, 2].map((j) =>
    encounterOf(data.encounter(j))));
  eq('ssn through the join', joined.rows.map((r) => r.ssn), [data.patient(1).ssn,
    data.patient(1).ssn]);
  report.step('read', { filtered: filtered.rowCount, joined: joined.rowCount });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  const upd = await db.query('UPDATE patients SET address = $1 WHERE id = $2',
    [b.address, ids.B]);
  eq('rows updated', upd.rowCount, 1);
  eq('B after update', (await patientBySsn(db, b.ssn)).map(patientOf), [b]);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts by key and by the unique ssn, each on an existing and a new row.
  const upsertById = `${insertPatient(data.patient(0), ids.A).text}
    ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, marital = EXCLUDED.marital
    RETURNING *`;
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  let r = await db.query(upsertById, insertPatient(a, ids.A).values);
  eq('A after upsert by id', patientOf(r.rows[0]), a);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = crypto.randomUUID();
  r = await db.query(upsertById, insertPatient(data.patient(4), idD).values);
  eq('D inserted by upsert by id', [r.rows[0].id, patientOf(r.rows[0])], [idD, data.patient(4)]);
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const upsertBySsn = `${insertPatient(data.patient(0)).text}
    ON CONFLICT (ssn) DO UPDATE SET first_name = EXCLUDED.first_name RETURNING *`;
  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  r = await db.query(upsertBySsn, insertPatient(c).values);
  eq('C after upsert by ssn', [r.rows[0].id, patientOf(r.rows[0])], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  r = await db.query(upsertBySsn, insertPatient(data.patient(5)).values);
  eq('E inserted by upsert by ssn', patientOf(r.rows[0]), data.patient(5));
  report.put('patients', r.rows[0].id, { id: r.rows[0].id, ...data.patient(5) });

  const nothing = `${insertPatient(data.patient(0)).text} ON CONFLICT (ssn) DO NOTHING RETURNING id`;
  r = await db.query(nothing, insertPatient({ ...data.patient(1), address: 'x' }).values);
  eq('rows returned by DO NOTHING on a conflict', r.rowCount, 0);
  eq('A after DO NOTHING', (await patientBySsn(db, a.ssn)).map(patientOf), [a]);
  eq('patients after upserts', await count(db, 'patients'), 5);
  report.step('upsert', { by_key: 2, by_unique: 2, do_nothing: 1 });

  // 6. Delete C; its encounter goes with it.
  const del = await db.query('DELETE FROM patients WHERE id = $1', [ids.C]);
  eq('rows deleted', del.rowCount, 1);
  eq('C after delete', await patientBySsn(db, c.ssn), []);
  eq('encounters after cascade', await count(db, 'encounters'), 3);
  report.remove('patients', (row) => row.id === ids.C);
  report.remove('encounters', (row) => row.patient_id === ids.C);
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  const tx = await db.connect();
  try {
    await tx.query('BEGIN');
    const q = insertPatient(f);
    const ins = await tx.query(`${q.text} RETURNING id`, q.values);
    const e = data.encounter(5);
    await tx.query(
      'INSERT INTO encounters (patient_id, code, description, started_at) VALUES ($1, $2, $3, $4)',
      [ins.rows[0].id, e.code, e.description, e.started_at]);
    eq('F inside its transaction', (await patientBySsn(tx, f.ssn)).length, 1);
    await tx.query('ROLLBACK');
  } finally {
    tx.release();
  }
  eq('F after rollback', await patientBySsn(db, f.ssn), []);
  eq('encounters after rollback', await count(db, 'encounters'), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients with COPY in text format, 200 encounters with
  // COPY in CSV format, and the patients back with COPY TO.
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  const client = await db.connect();
  try {
    const lines = bulk.map((p) => COLS.map((col) => copyText(p[col])).join('\t') + '\n');
    await pipeline(Readable.from(lines),
      client.query(copyFrom(`COPY patients (${COLS.join(', ')}) FROM STDIN`)));
    const sampled = common.sample().map((k) => bulk[k]);
    const back = await client.query(
      'SELECT * FROM patients WHERE ssn = ANY($1) ORDER BY ssn', [sampled.map((p) => p.ssn)]);
    eq('sampled bulk rows', back.rows.map(patientOf), sampled);
    for (const row of back.rows) report.put('patients', row.id, { id: row.id, ...patientOf(row) });

    const targets = back.rows.slice(0, 20);
    const csv = [];
    for (let j = 0; j < 200; j++) {
      const e = data.encounter(1000 + j);
      const pid = targets[j % targets.length].id;
      csv.push([pid, e.code, e.description, e.started_at.toISOString()].map(copyCsv)
        .join(',') + '\n');
    }
    await pipeline(Readable.from(csv), client.query(copyFrom(
      'COPY encounters (patient_id, code, description, started_at) FROM STDIN WITH (FORMAT csv)')));
    const codes = await client.query(
      'SELECT id, patient_id, code, description, started_at FROM encounters WHERE code = ANY($1)',
      [[0, 199].map((j) => data.encounter(1000 + j).code)]);
    eq('sampled CSV encounters', codes.rowCount, 2);
    for (const row of codes.rows) report.put('encounters', row.id, { ...row, id: undefined });

    let text = '';
    await pipeline(client.query(copyTo(`COPY patients (${COLS.join(', ')}) TO STDOUT`)),
      new Writable({ write(chunk, _enc, done) { text += chunk; done(); } }));
    const out = text.split('\n').filter((l) => l !== '');
    eq('rows from COPY TO', out.length, common.BULK + 4);
    const want = lines[common.BULK - 1];
    ok('COPY TO holds the last bulk row as it was loaded', out.includes(want.slice(0, -1)));
  } finally {
    client.release();
  }
  eq('patients after bulk', await count(db, 'patients'), common.BULK + 4);
  eq('encounters after bulk', await count(db, 'encounters'), 203);
  report.step('bulk', { patients: common.BULK, encounters_csv: 200, copy_to: common.BULK + 4 });

  // 9. Two connections upsert the same new key at once, ROUNDS times.
  const c1 = new pg.Client({ connectionString: process.env.DATABASE_URL });
  const c2 = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await Promise.all([c1.connect(), c2.connect()]);
  try {
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = crypto.randomUUID();
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      const sql = `${insertPatient(one, id).text} ON CONFLICT (id) DO UPDATE
        SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
            address = EXCLUDED.address RETURNING id`;
      await Promise.all([c1.query(sql, insertPatient(one, id).values),
        c2.query(sql, insertPatient(two, id).values)]);
      const rows = await db.query('SELECT * FROM patients WHERE id = $1', [id]);
      eq(`rows for concurrently upserted key ${k}`, rows.rowCount, 1);
      const got = patientOf(rows.rows[0]);
      ok(`concurrent upsert ${k} left one of the two rows`,
        [one.first_name, two.first_name].includes(got.first_name));
      report.put('patients', id, { id, ...one });
      report.put('patients', id, { id, ...two });
      report.put('patients', id, { id, ...got });
    }
  } finally {
    await Promise.all([c1.end(), c2.end()]);
  }
  report.step('concurrent_upsert', { rounds: common.ROUNDS });

  const patients = await count(db, 'patients');
  const encounters = await count(db, 'encounters');
  eq('patients at the end', patients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', encounters, 203);
  await db.end();
  report.finish({ patients, encounters });
}

common.main(run);
