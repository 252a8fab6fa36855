'use strict';
// The clinic scenario through Sequelize 6. The schema comes either from
// sequelize.sync() (APP_SCHEMA=sync) or from a sequelize-cli migration run by
// Umzug (APP_SCHEMA=migrations, the default). Upserts are Model.upsert, by key
// and with conflictFields on the unique ssn; the bulk load is one bulkCreate.
// See ../README.md.

const common = require('../common');
const crypto = require('crypto');
const path = require('path');
const { Sequelize, DataTypes } = require('sequelize');
const { Umzug, SequelizeStorage } = require('umzug');

const { eq, ok, patientOf, encounterOf } = common;

function connect(pool) {
  const sequelize = new Sequelize(process.env.DATABASE_URL, {
    dialect: 'postgres', logging: false, pool,
  });
  const Patient = sequelize.define('Patient', {
    id: { type: DataTypes.UUID, defaultValue: DataTypes.UUIDV4, primaryKey: true },
    ssn: { type: DataTypes.STRING(11), allowNull: false, unique: true },
    firstName: { type: DataTypes.STRING(100), allowNull: false },
    lastName: { type: DataTypes.STRING(100), allowNull: false },
    birthdate: { type: DataTypes.DATEONLY, allowNull: false },
    address: { type: DataTypes.TEXT },
    marital: { type: DataTypes.STRING(1) },
    gender: { type: DataTypes.STRING(1), allowNull: false },
  }, { tableName: 'patients', underscored: true, updatedAt: false });
  const Encounter = sequelize.define('Encounter', {
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    code: { type: DataTypes.STRING(20), allowNull: false },
    description: { type: DataTypes.TEXT },
    startedAt: { type: DataTypes.DATE, allowNull: false },
  }, {
    tableName: 'encounters', underscored: true, timestamps: false,
    indexes: [{ fields: ['started_at'] }],
  });
  Patient.hasMany(Encounter, {
    as: 'encounters', foreignKey: { name: 'patientId', allowNull: false }, onDelete: 'CASCADE',
  });
  Encounter.belongsTo(Patient, { as: 'patient', foreignKey: { name: 'patientId' } });
  return { sequelize, Patient, Encounter };
}

// fromRow and toRow translate between the database's column names, which the
// scenario uses, and the models' attribute names.
const ATTR = { first_name: 'firstName', last_name: 'lastName', created_at: 'createdAt',
  patient_id: 'patientId', started_at: 'startedAt' };

function fromRow(row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) out[ATTR[k] || k] = v;
  return out;
}

function toRow(instance) {
  const plain = instance.get ? instance.get({ plain: true }) : instance;
  const out = {};
  const back = Object.fromEntries(Object.entries(ATTR).map(([k, v]) => [v, k]));
  for (const [k, v] of Object.entries(plain)) out[back[k] || k] = v;
  return out;
}

async function migrate(sequelize, mode) {
  if (mode === 'sync') {
    await sequelize.sync();
    return ['sync'];
  }
  const umzug = new Umzug({
    migrations: {
      glob: ['migrations/*.js', { cwd: __dirname }],
      resolve: ({ name, path: file, context }) => {
        const m = require(file);
        return { name, up: () => m.up(context, Sequelize), down: () => m.down(context, Sequelize) };
      },
    },
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize }),
    logger: undefined,
  });
  const done = await umzug.up();
  return done.map((m) => m.name);
}

class Rollback extends Error {}

async function run() {
  const mode = process.env.APP_SCHEMA || 'migrations';
  if (!['sync', 'migrations'].includes(mode)) {
    throw new Error(`APP_SCHEMA=${mode}: want sync or migrations`);
  }
  const data = new common.Data();
  const report = new common.Report('sequelize', mode === 'sync' ? 'sequelize.sync' : 'umzug');
  const { sequelize, Patient, Encounter } = connect({ max: 4 });

  // 1. Migrate the empty database.
  const applied = await migrate(sequelize, mode);
  eq('migrations applied', applied, mode === 'sync' ? ['sync'] : ['20240101000000-clinic.js']);
  if (mode === 'migrations') {
    eq('migrations applied on a second run', await migrate(sequelize, mode), []);
  }
  report.step('migrate', { mode, migrations: applied.length });

  // 2. Create patients A, B, C and their encounters.
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const p = await Patient.create(fromRow(data.patient(i)));
    eq(`patient ${name} as created`, patientOf(toRow(p)), data.patient(i));
    ids[name] = p.id;
    report.put('patients', p.id, { id: p.id, ...data.patient(i) });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = { patient_id: ids[owner], ...data.encounter(Number(j)) };
    const row = await Encounter.create(fromRow(e));
    report.put('encounters', row.id, e);
  }
  eq('patients after create', await Patient.count(), 3);
  eq('encounters after create', await Encounter.count(), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with an include of the encounters.
  const filtered = await Patient.findAll({
    where: { lastName: [data.patient(1).last_name, data.patient(2).last_name] },
    order: [['lastName', 'ASC']],
  });
  eq('filtered patients', filtered.map((p) => patientOf(toRow(p))),
    [data.patient(1), data.patient(2)]);
  const withEncounters = await Patient.findByPk(ids.A, {
    include: [{ model: Encounter, as: 'encounters' }],
    order: [[{ model: Encounter, as: 'encounters' }, 'startedAt', 'ASC']],
  });
  eq('A with its encounters', patientOf(toRow(withEncounters)), data.patient(1));
  eq('encounters of A', withEncounters.encounters.map((e) => encounterOf(toRow(e))),
    [1, 2].map((j) => encounterOf(data.encounter(j))));
  report.step('read', { filtered: filtered.length, included: withEncounters.encounters.length });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  const [updated] = await Patient.update({ address: b.address }, { where: { id: ids.B } });
  eq('rows updated', updated, 1);
  eq('B after update', patientOf(toRow(await Patient.findOne({ where: { ssn: b.ssn } }))), b);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts by key and by the unique ssn, each on an existing and a new row.
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  let [row] = await Patient.upsert({ id: ids.A, ...fromRow(a) }, { returning: true });
  eq('A after upsert by id', [row.id, patientOf(toRow(row))], [ids.A, a]);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = crypto.randomUUID();
  [row] = await Patient.upsert({ id: idD, ...fromRow(data.patient(4)) }, { returning: true });
  eq('D inserted by upsert by id', [row.id, patientOf(toRow(row))], [idD, data.patient(4)]);
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  [row] = await Patient.upsert(fromRow(c), { returning: true, conflictFields: ['ssn'] });
  eq('C after upsert by ssn', [row.id, patientOf(toRow(row))], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  [row] = await Patient.upsert(fromRow(data.patient(5)), { returning: true, conflictFields: ['ssn'] });
  eq('E inserted by upsert by ssn', patientOf(toRow(row)), data.patient(5));
  report.put('patients', row.id, { id: row.id, ...data.patient(5) });
  eq('patients after upserts', await Patient.count(), 5);
  report.step('upsert', { by_key: 2, by_unique: 2 });

  // 6. Delete C; its encounter goes with it.
  eq('rows deleted', await Patient.destroy({ where: { id: ids.C } }), 1);
  eq('C after delete', await Patient.findOne({ where: { ssn: c.ssn } }), null);
  eq('encounters after cascade', await Encounter.count(), 3);
  report.remove('patients', (r) => r.id === ids.C);
  report.remove('encounters', (r) => r.patient_id === ids.C);
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  try {
    await sequelize.transaction(async (transaction) => {
      const p = await Patient.create(fromRow(f), { transaction });
      await Encounter.create({ patientId: p.id, ...fromRow(data.encounter(5)) }, { transaction });
      eq('F inside its transaction', await Patient.count({ where: { ssn: f.ssn }, transaction }), 1);
      throw new Rollback('roll back');
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  eq('F after rollback', await Patient.findOne({ where: { ssn: f.ssn } }), null);
  eq('encounters after rollback', await Encounter.count(), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients in one bulkCreate.
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  const created = await Patient.bulkCreate(bulk.map(fromRow));
  eq('rows from bulkCreate', created.length, common.BULK);
  const sampled = common.sample().map((k) => bulk[k]);
  const back = await Patient.findAll({
    where: { ssn: sampled.map((p) => p.ssn) }, order: [['ssn', 'ASC']],
  });
  eq('sampled bulk rows', back.map((p) => patientOf(toRow(p))), sampled);
  for (const p of back) report.put('patients', p.id, { id: p.id, ...patientOf(toRow(p)) });
  eq('patients after bulk', await Patient.count(), common.BULK + 4);
  report.step('bulk', { patients: common.BULK });

  // 9. Two connections upsert the same new key at once, ROUNDS times.
  const s1 = connect({ min: 1, max: 1 });
  const s2 = connect({ min: 1, max: 1 });
  try {
    await Promise.all([s1.sequelize.authenticate(), s2.sequelize.authenticate()]);
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = crypto.randomUUID();
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      await Promise.all([
        s1.Patient.upsert({ id, ...fromRow(one) }, { conflictFields: ['id'] }),
        s2.Patient.upsert({ id, ...fromRow(two) }, { conflictFields: ['id'] }),
      ]);
      const rows = await Patient.findAll({ where: { id } });
      eq(`rows for concurrently upserted key ${k}`, rows.length, 1);
      const got = patientOf(toRow(rows[0]));
      ok(`concurrent upsert ${k} left one of the two rows`,
        [one.first_name, two.first_name].includes(got.first_name));
      report.put('patients', id, { id, ...one });
      report.put('patients', id, { id, ...two });
      report.put('patients', id, { id, ...got });
    }
  } finally {
    await Promise.all([s1.sequelize.close(), s2.sequelize.close()]);
  }
  report.step('concurrent_upsert', { rounds: common.ROUNDS });

  const patients = await Patient.count();
  const encounters = await Encounter.count();
  eq('patients at the end', patients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', encounters, 3);
  await sequelize.close();
  report.finish({ patients, encounters });
}

common.main(run);
