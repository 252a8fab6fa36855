'use strict';
// The clinic scenario through Drizzle ORM on node-postgres: drizzle-kit's
// generated SQL (drizzle/, committed) applied by drizzle-orm's migrator,
// onConflictDoUpdate / onConflictDoNothing for upserts, inserts of 1,000 rows
// for the bulk load. See ../README.md.

const common = require('../common');
const crypto = require('crypto');
const path = require('path');
const pg = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { migrate } = require('drizzle-orm/node-postgres/migrator');
const { eq: is, inArray, count: countRows, asc, sql } = require('drizzle-orm');
const { patients, encounters } = require('./schema');

const { eq, ok, patientOf, encounterOf } = common;

const ATTR = { first_name: 'firstName', last_name: 'lastName', created_at: 'createdAt',
  patient_id: 'patientId', started_at: 'startedAt' };
const BACK = Object.fromEntries(Object.entries(ATTR).map(([k, v]) => [v, k]));

// fromRow and toRow translate between the database's column names, which the
// scenario uses, and the tables' property names.
function fromRow(row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) out[ATTR[k] || k] = v;
  return out;
}

function toRow(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) out[BACK[k] || k] = v;
  return out;
}

async function count(db, table) {
  const [{ n }] = await db.select({ n: countRows() }).from(table);
  return Number(n);
}

async function bySsn(db, ssn) {
  return (await db.select().from(patients).where(is(patients.ssn, ssn))).map(toRow);
}

// appliedMigrations counts the rows of drizzle's own migrations table.
async function appliedMigrations(db) {
  const r = await db.execute(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`);
  return r.rows[0].n;
}

class Rollback extends Error {}

async function run() {
  const data = new common.Data();
  const report = new common.Report('drizzle', 'drizzle-orm migrator');
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
  const db = drizzle(pool);
  const folder = { migrationsFolder: path.join(__dirname, 'drizzle') };

  // 1. Migrate the empty database.
  await migrate(db, folder);
  eq('migrations recorded', await appliedMigrations(db), 1);
  await migrate(db, folder);
  eq('migrations recorded after a second run', await appliedMigrations(db), 1);
  report.step('migrate', { migrations: 1 });

  // 2. Create patients A, B, C and their encounters.
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const [row] = await db.insert(patients).values(fromRow(data.patient(i))).returning();
    eq(`patient ${name} as returned`, patientOf(toRow(row)), data.patient(i));
    ok(`patient ${name} has a generated uuid id`, /^[0-9a-f-]{36}$/.test(row.id));
    ok(`patient ${name} has a created_at default`, row.createdAt instanceof Date);
    ids[name] = row.id;
    report.put('patients', row.id, { id: row.id, ...data.patient(i) });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = { patient_id: ids[owner], ...data.encounter(Number(j)) };
    const [row] = await db.insert(encounters).values(fromRow(e)).returning({ id: encounters.id });
    report.put('encounters', row.id, e);
  }
  eq('patients after create', await count(db, patients), 3);
  eq('encounters after create', await count(db, encounters), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with a join of the encounters.
  const filtered = await db.select().from(patients)
    .where(inArray(patients.lastName, [data.patient(1).last_name, data.patient(2).last_name]))
    .orderBy(asc(patients.lastName));
  eq('filtered patients', filtered.map((p) => patientOf(toRow(p))),
    [data.patient(1), data.patient(2)]);
  const joined = await db.select().from(patients)
    .innerJoin(encounters, is(encounters.patientId, patients.id))
    .where(is(patients.id, ids.A)).orderBy(asc(encounters.startedAt));
  eq('A through the join', joined.map((r) => patientOf(toRow(r.patients))),
    [data.patient(1), data.patient(1)]);
  eq('encounters of A', joined.map((r) => encounterOf(toRow(r.encounters))),
    [1, 2].map((j) => encounterOf(data.encounter(j))));
  report.step('read', { filtered: filtered.length, joined: joined.length });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  const upd = await db.update(patients).set({ address: b.address }).where(is(patients.id, ids.B))
    .returning({ id: patients.id });
  eq('rows updated', upd.length, 1);
  eq('B after update', (await bySsn(db, b.ssn)).map(patientOf), [b]);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts by key and by the unique ssn, each on an existing and a new row.
  const byId = (p, id) => db.insert(patients).values({ id, ...fromRow(p) })
    .onConflictDoUpdate({ target: patients.id,
      set: { address: sql.raw('excluded.address'), marital: sql.raw('excluded.marital') } })
    .returning();
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  let [row] = await byId(a, ids.A);
  eq('A after upsert by id', [row.id, patientOf(toRow(row))], [ids.A, a]);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = crypto.randomUUID();
  [row] = await byId(data.patient(4), idD);
  eq('D inserted by upsert by id', [row.id, patientOf(toRow(row))], [idD, data.patient(4)]);
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const bySsnUpsert = (p) => db.insert(patients).values(fromRow(p))
    .onConflictDoUpdate({ target: patients.ssn, set: { firstName: p.first_name } }).returning();
  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  [row] = await bySsnUpsert(c);
  eq('C after upsert by ssn', [row.id, patientOf(toRow(row))], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  [row] = await bySsnUpsert(data.patient(5));
  eq('E inserted by upsert by ssn', patientOf(toRow(row)), data.patient(5));
  report.put('patients', row.id, { id: row.id, ...data.patient(5) });

  const none = await db.insert(patients).values(fromRow({ ...data.patient(1), address: 'x' }))
    .onConflictDoNothing({ target: patients.ssn }).returning({ id: patients.id });
  eq('rows returned by onConflictDoNothing on a conflict', none.length, 0);
  eq('patients after upserts', await count(db, patients), 5);
  report.step('upsert', { by_key: 2, by_unique: 2, do_nothing: 1 });

  // 6. Delete C; its encounter goes with it.
  const del = await db.delete(patients).where(is(patients.id, ids.C)).returning({ id: patients.id });
  eq('rows deleted', del.length, 1);
  eq('C after delete', await bySsn(db, c.ssn), []);
  eq('encounters after cascade', await count(db, encounters), 3);
  report.remove('patients', (r) => r.id === ids.C);
  report.remove('encounters', (r) => r.patient_id === ids.C);
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  try {
    await db.transaction(async (tx) => {
      const [p] = await tx.insert(patients).values(fromRow(f)).returning({ id: patients.id });
      await tx.insert(encounters).values({ patientId: p.id, ...fromRow(data.encounter(5)) });
      eq('F inside its transaction', (await bySsn(tx, f.ssn)).length, 1);
      throw new Rollback('roll back');
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  eq('F after rollback', await bySsn(db, f.ssn), []);
  eq('encounters after rollback', await count(db, encounters), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients, 1,000 per INSERT, in one transaction.
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  await db.transaction(async (tx) => {
    for (let k = 0; k < bulk.length; k += 1000) {
      await tx.insert(patients).values(bulk.slice(k, k + 1000).map(fromRow));
    }
  });
  const sampled = common.sample().map((k) => bulk[k]);
  const back = await db.select().from(patients)
    .where(inArray(patients.ssn, sampled.map((p) => p.ssn))).orderBy(asc(patients.ssn));
  eq('sampled bulk rows', back.map((p) => patientOf(toRow(p))), sampled);
  for (const p of back) report.put('patients', p.id, { id: p.id, ...patientOf(toRow(p)) });
  eq('patients after bulk', await count(db, patients), common.BULK + 4);
  report.step('bulk', { patients: common.BULK, chunk: 1000 });

  // 9. Two connections upsert the same new key at once, ROUNDS times.
  const c1 = new pg.Client({ connectionString: process.env.DATABASE_URL });
  const c2 = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await Promise.all([c1.connect(), c2.connect()]);
  try {
    const d1 = drizzle(c1);
    const d2 = drizzle(c2);
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = crypto.randomUUID();
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      const upsert = (dx, p) => dx.insert(patients).values({ id, ...fromRow(p) })
        .onConflictDoUpdate({ target: patients.id,
          set: { firstName: p.first_name, lastName: p.last_name, address: p.address } });
      await Promise.all([upsert(d1, one), upsert(d2, two)]);
      const rows = await db.select().from(patients).where(is(patients.id, id));
      eq(`rows for concurrently upserted key ${k}`, rows.length, 1);
      const got = patientOf(toRow(rows[0]));
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

  const npatients = await count(db, patients);
  const nencounters = await count(db, encounters);
  eq('patients at the end', npatients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', nencounters, 3);
  await pool.end();
  report.finish({ patients: npatients, encounters: nencounters });
}

common.main(run);
