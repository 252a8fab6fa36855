'use strict';
// The clinic scenario through TypeORM. The schema comes either from
// synchronize (APP_SCHEMA=synchronize) or from the migration that
// `typeorm migration:generate` wrote (APP_SCHEMA=migrations, the default);
// either way TypeORM's own schema diff must then find nothing to change.
// Upserts are Repository.upsert by key and InsertQueryBuilder.orUpdate on the
// unique ssn; the bulk load is inserts of 1,000 rows in one transaction.
// See ../README.md.

const common = require('../common');
const { In } = require('typeorm');
const { dataSource } = require('./datasource');
const { Patient, Encounter } = require('./entities');

const { eq, ok, patientOf, encounterOf } = common;

// Keys the app chooses itself stay far above what the identity hands out.
const OWN_KEYS = 1000000;

const ATTR = { first_name: 'firstName', last_name: 'lastName', created_at: 'createdAt',
  patient_id: 'patientId', started_at: 'startedAt' };
const BACK = Object.fromEntries(Object.entries(ATTR).map(([k, v]) => [v, k]));

// fromRow and toRow translate between the database's column names, which the
// scenario uses, and the entities' property names.
function fromRow(row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) out[ATTR[k] || k] = v;
  return out;
}

function toRow(entity) {
  const out = {};
  for (const [k, v] of Object.entries(entity)) out[BACK[k] || k] = v;
  return out;
}

async function migrate(ds, mode) {
  if (mode === 'synchronize') {
    await ds.synchronize();
    return ['synchronize'];
  }
  const done = await ds.runMigrations({ transaction: 'each' });
  return done.map((m) => m.name);
}

class Rollback extends Error {}

async function run() {
  const mode = process.env.APP_SCHEMA || 'migrations';
  if (!['synchronize', 'migrations'].includes(mode)) {
    throw new Error(`APP_SCHEMA=${mode}: want synchronize or migrations`);
  }
  const data = new common.Data();
  const report = new common.Report('typeorm', mode);
  const ds = await dataSource(4).initialize();
  const patients = ds.getRepository(Patient);
  const encounters = ds.getRepository(Encounter);

  // 1. Migrate the empty database; TypeORM's schema diff must then be empty.
  const applied = await migrate(ds, mode);
  eq('migrations applied', applied.map((n) => n.replace(/\d+$/, '')),
    mode === 'synchronize' ? ['synchronize'] : ['Clinic']);
  if (mode === 'migrations') eq('migrations applied on a second run', await migrate(ds, mode), []);
  const pending = await ds.driver.createSchemaBuilder().log();
  eq('schema changes TypeORM still wants', pending.upQueries.map((q) => q.query), []);
  report.step('migrate', { mode, migrations: applied.length, pending: 0 });

  // 2. Create patients A, B, C and their encounters.
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const p = await patients.save(patients.create(fromRow(data.patient(i))));
    ok(`patient ${name} has an identity id`, Number.isInteger(p.id) && p.id > 0);
    ok(`patient ${name} has a created_at default`, p.createdAt instanceof Date);
    ids[name] = p.id;
    eq(`patient ${name} read back`, patientOf(toRow(await patients.findOneBy({ id: p.id }))),
      data.patient(i));
    report.put('patients', p.id, { id: p.id, ...data.patient(i) });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = { patient_id: ids[owner], ...data.encounter(Number(j)) };
    const row = await encounters.save(encounters.create(fromRow(e)));
    report.put('encounters', row.id, e);
  }
  eq('patients after create', await patients.count(), 3);
  eq('encounters after create', await encounters.count(), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with the encounters as a relation.
  const filtered = await patients.find({
    where: { lastName: In([data.patient(1).last_name, data.patient(2).last_name]) },
    order: { lastName: 'ASC' },
  });
  eq('filtered patients', filtered.map((p) => patientOf(toRow(p))),
    [data.patient(1), data.patient(2)]);
  const withEncounters = await patients.findOne({
    where: { id: ids.A }, relations: { encounters: true }, order: { encounters: { startedAt: 'ASC' } },
  });
  eq('A with its encounters', patientOf(toRow(withEncounters)), data.patient(1));
  eq('encounters of A', withEncounters.encounters.map((e) => encounterOf(toRow(e))),
    [1, 2].map((j) => encounterOf(data.encounter(j))));
  report.step('read', { filtered: filtered.length, related: withEncounters.encounters.length });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  const upd = await patients.update({ id: ids.B }, { address: b.address });
  eq('rows updated', upd.affected, 1);
  eq('B after update', patientOf(toRow(await patients.findOneBy({ ssn: b.ssn }))), b);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts: Repository.upsert by key, orUpdate on the unique ssn.
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  await patients.upsert({ id: ids.A, ...fromRow(a) }, ['id']);
  eq('A after upsert by id', patientOf(toRow(await patients.findOneBy({ id: ids.A }))), a);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = OWN_KEYS + 4;
  await patients.upsert({ id: idD, ...fromRow(data.patient(4)) }, { conflictPaths: ['id'] });
  eq('D inserted by upsert by id', patientOf(toRow(await patients.findOneBy({ id: idD }))),
    data.patient(4));
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const orUpdate = (p) => patients.createQueryBuilder().insert().into(Patient).values(fromRow(p))
    .orUpdate(['first_name'], ['ssn']).returning('*').execute();
  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  let res = await orUpdate(c);
  eq('C after orUpdate on ssn', [res.raw[0].id, patientOf(res.raw[0])], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  res = await orUpdate(data.patient(5));
  eq('E inserted by orUpdate on ssn', patientOf(res.raw[0]), data.patient(5));
  report.put('patients', res.raw[0].id, { id: res.raw[0].id, ...data.patient(5) });

  res = await patients.createQueryBuilder().insert().into(Patient)
    .values(fromRow({ ...data.patient(1), address: 'x' })).orIgnore().returning('id').execute();
  eq('rows returned by orIgnore on a conflict', res.raw.length, 0);
  eq('patients after upserts', await patients.count(), 5);
  report.step('upsert', { by_key: 2, by_unique: 2, do_nothing: 1 });

  // 6. Delete C; its encounter goes with it.
  eq('rows deleted', (await patients.delete({ id: ids.C })).affected, 1);
  eq('C after delete', await patients.findOneBy({ ssn: c.ssn }), null);
  eq('encounters after cascade', await encounters.count(), 3);
  report.remove('patients', (r) => r.id === String(ids.C));
  report.remove('encounters', (r) => r.patient_id === String(ids.C));
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  try {
    await ds.transaction(async (m) => {
      const p = await m.save(Patient, m.create(Patient, fromRow(f)));
      await m.save(Encounter, m.create(Encounter, { patientId: p.id, ...fromRow(data.encounter(5)) }));
      eq('F inside its transaction', await m.countBy(Patient, { ssn: f.ssn }), 1);
      throw new Rollback('roll back');
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  eq('F after rollback', await patients.findOneBy({ ssn: f.ssn }), null);
  eq('encounters after rollback', await encounters.count(), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients, 1,000 per INSERT, in one transaction.
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  await ds.transaction(async (m) => {
    for (let k = 0; k < bulk.length; k += 1000) {
      await m.insert(Patient, bulk.slice(k, k + 1000).map(fromRow));
    }
  });
  const sampled = common.sample().map((k) => bulk[k]);
  const back = await patients.find({
    where: { ssn: In(sampled.map((p) => p.ssn)) }, order: { ssn: 'ASC' },
  });
  eq('sampled bulk rows', back.map((p) => patientOf(toRow(p))), sampled);
  for (const p of back) report.put('patients', p.id, { id: p.id, ...patientOf(toRow(p)) });
  eq('patients after bulk', await patients.count(), common.BULK + 4);
  report.step('bulk', { patients: common.BULK, chunk: 1000 });

  // 9. Two connections upsert the same new key at once, ROUNDS times.
  const d1 = await dataSource(1).initialize();
  const d2 = await dataSource(1).initialize();
  try {
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = OWN_KEYS + 200 + k;
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      await Promise.all([
        d1.getRepository(Patient).upsert({ id, ...fromRow(one) }, ['id']),
        d2.getRepository(Patient).upsert({ id, ...fromRow(two) }, ['id']),
      ]);
      const rows = await patients.findBy({ id });
      eq(`rows for concurrently upserted key ${k}`, rows.length, 1);
      const got = patientOf(toRow(rows[0]));
      ok(`concurrent upsert ${k} left one of the two rows`,
        [one.first_name, two.first_name].includes(got.first_name));
      report.put('patients', id, { id, ...one });
      report.put('patients', id, { id, ...two });
      report.put('patients', id, { id, ...got });
    }
  } finally {
    await Promise.all([d1.destroy(), d2.destroy()]);
  }
  report.step('concurrent_upsert', { rounds: common.ROUNDS });

  const npatients = await patients.count();
  const nencounters = await encounters.count();
  eq('patients at the end', npatients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', nencounters, 3);
  await ds.destroy();
  report.finish({ patients: npatients, encounters: nencounters });
}

common.main(run);
