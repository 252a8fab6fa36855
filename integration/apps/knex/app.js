'use strict';
// The clinic scenario through Knex: knex.migrate.latest() on an empty
// database, the query builder for reads and writes, onConflict().merge() and
// .ignore() for upserts, batchInsert for the bulk load. See ../README.md.

const common = require('../common');
const path = require('path');
const createKnex = require('knex');

const { eq, ok, patientOf, encounterOf } = common;

// Keys the app chooses itself stay far above what the serial hands out.
const OWN_KEYS = 1000000;

function connect(pool) {
  return createKnex({ client: 'pg', connection: process.env.DATABASE_URL, pool });
}

async function count(db, table) {
  const [{ n }] = await db(table).count({ n: '*' });
  return Number(n);
}

class Rollback extends Error {}

async function run() {
  const data = new common.Data();
  const report = new common.Report('knex', 'knex.migrate.latest');
  const db = connect({ min: 0, max: 4 });
  const migrations = { directory: path.join(__dirname, 'migrations') };

  // 1. Migrate the empty database.
  const [, applied] = await db.migrate.latest(migrations);
  eq('migrations applied', applied.map((f) => path.basename(f)), ['20240101000000_clinic.js']);
  const [, again] = await db.migrate.latest(migrations);
  eq('migrations applied on a second run', again, []);
  report.step('migrate', { migrations: applied.length });

  // 2. Create patients A, B, C and their encounters.
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const [row] = await db('patients').insert(data.patient(i)).returning('*');
    eq(`patient ${name} as returned`, patientOf(row), data.patient(i));
    ok(`patient ${name} has a serial id`, Number.isInteger(row.id) && row.id > 0);
    ok(`patient ${name} has a created_at default`, row.created_at instanceof Date);
    ids[name] = row.id;
    report.put('patients', row.id, { id: row.id, ...data.patient(i) });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = { patient_id: ids[owner], ...data.encounter(Number(j)) };
    const [row] = await db('encounters').insert(e).returning('id');
    report.put('encounters', row.id, e);
  }
  eq('patients after create', await count(db, 'patients'), 3);
  eq('encounters after create', await count(db, 'encounters'), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with a join of the encounters.
  const filtered = await db('patients')
    .whereIn('last_name', [data.patient(1).last_name, data.patient(2).last_name])
    .andWhere('birthdate', '<', '2000-01-01').orderBy('last_name');
  eq('filtered patients', filtered.map(patientOf), [data.patient(1), data.patient(2)]);
  const joined = await db('patients as p').join('encounters as e', 'e.patient_id', 'p.id')
    .where('p.id', ids.A).orderBy('e.started_at')
    .select('p.ssn', 'e.code', 'e.description', 'e.started_at');
  eq('encounters of A', joined.map(encounterOf), [1, 2].map((j) =>
    encounterOf(data.encounter(j))));
  eq('ssn through the join', joined.map((r) => r.ssn), [data.patient(1).ssn,
    data.patient(1).ssn]);
  report.step('read', { filtered: filtered.length, joined: joined.length });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  eq('rows updated', await db('patients').where({ id: ids.B }).update({ address: b.address }), 1);
  eq('B after update', (await db('patients').where({ ssn: b.ssn })).map(patientOf), [b]);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts by key and by the unique ssn, each on an existing and a new row.
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  let [row] = await db('patients').insert({ id: ids.A, ...a }).onConflict('id')
    .merge(['address', 'marital']).returning('*');
  eq('A after upsert by id', [row.id, patientOf(row)], [ids.A, a]);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = OWN_KEYS + 4;
  [row] = await db('patients').insert({ id: idD, ...data.patient(4) }).onConflict('id')
    .merge(['address', 'marital']).returning('*');
  eq('D inserted by upsert by id', [row.id, patientOf(row)], [idD, data.patient(4)]);
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  [row] = await db('patients').insert(c).onConflict('ssn').merge(['first_name']).returning('*');
  eq('C after upsert by ssn', [row.id, patientOf(row)], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  [row] = await db('patients').insert(data.patient(5)).onConflict('ssn').merge(['first_name'])
    .returning('*');
  eq('E inserted by upsert by ssn', patientOf(row), data.patient(5));
  report.put('patients', row.id, { id: row.id, ...data.patient(5) });

  const ignored = await db('patients').insert({ ...data.patient(1), address: 'x' })
    .onConflict('ssn').ignore().returning('id');
  eq('rows returned by ignore() on a conflict', ignored.length, 0);
  eq('A after ignore()', (await db('patients').where({ ssn: a.ssn })).map(patientOf), [a]);
  eq('patients after upserts', await count(db, 'patients'), 5);
  report.step('upsert', { by_key: 2, by_unique: 2, do_nothing: 1 });

  // 6. Delete C; its encounter goes with it.
  eq('rows deleted', await db('patients').where({ id: ids.C }).del(), 1);
  eq('C after delete', await db('patients').where({ ssn: c.ssn }), []);
  eq('encounters after cascade', await count(db, 'encounters'), 3);
  report.remove('patients', (r) => r.id === String(ids.C));
  report.remove('encounters', (r) => r.patient_id === String(ids.C));
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  try {
    await db.transaction(async (trx) => {
      const [p] = await trx('patients').insert(f).returning('id');
      await trx('encounters').insert({ patient_id: p.id, ...data.encounter(5) });
      eq('F inside its transaction', (await trx('patients').where({ ssn: f.ssn })).length, 1);
      throw new Rollback('roll back');
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  eq('F after rollback', await db('patients').where({ ssn: f.ssn }), []);
  eq('encounters after rollback', await count(db, 'encounters'), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients in chunks of 1,000, each chunk one INSERT.
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  await db.batchInsert('patients', bulk, 1000);
  const sampled = common.sample().map((k) => bulk[k]);
  const back = await db('patients').whereIn('ssn', sampled.map((p) => p.ssn)).orderBy('ssn');
  eq('sampled bulk rows', back.map(patientOf), sampled);
  for (const r of back) report.put('patients', r.id, { id: r.id, ...patientOf(r) });
  eq('patients after bulk', await count(db, 'patients'), common.BULK + 4);
  report.step('bulk', { patients: common.BULK, chunk: 1000 });

  // 9. Two connections upsert the same new key at once, ROUNDS times.
  const k1 = connect({ min: 1, max: 1 });
  const k2 = connect({ min: 1, max: 1 });
  try {
    await Promise.all([k1.raw('SELECT 1'), k2.raw('SELECT 1')]);
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = OWN_KEYS + 200 + k;
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      const upsert = (kx, p) => kx('patients').insert({ id, ...p }).onConflict('id')
        .merge(['first_name', 'last_name', 'address']);
      await Promise.all([upsert(k1, one), upsert(k2, two)]);
      const rows = await db('patients').where({ id });
      eq(`rows for concurrently upserted key ${k}`, rows.length, 1);
      const got = patientOf(rows[0]);
      ok(`concurrent upsert ${k} left one of the two rows`,
        [one.first_name, two.first_name].includes(got.first_name));
      report.put('patients', id, { id, ...one });
      report.put('patients', id, { id, ...two });
      report.put('patients', id, { id, ...got });
    }
  } finally {
    await Promise.all([k1.destroy(), k2.destroy()]);
  }
  report.step('concurrent_upsert', { rounds: common.ROUNDS });

  const patients = await count(db, 'patients');
  const encounters = await count(db, 'encounters');
  eq('patients at the end', patients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', encounters, 3);
  await db.destroy();
  report.finish({ patients, encounters });
}

common.main(run);
