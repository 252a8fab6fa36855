'use strict';
// The clinic scenario through Prisma Client 7 on @prisma/adapter-pg.
//
// Prisma's schema engine (migrate) is a native binary fetched at install
// time, which this machine cannot fetch, so the migration's DDL cannot be
// generated here: prisma/migrations/*/migration.sql is committed exactly as
// `prisma migrate dev` writes it for prisma/schema.prisma, and this app
// applies it through the connection like any SQL client would, recording it
// in _prisma_migrations as `prisma migrate deploy` does. See README.md.

const common = require('../common');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const pg = require('pg');
const { PrismaClient } = require('@prisma/client');
const { PrismaPg } = require('@prisma/adapter-pg');

const { eq, ok, patientOf, encounterOf } = common;

const ATTR = { first_name: 'firstName', last_name: 'lastName', created_at: 'createdAt',
  patient_id: 'patientId', started_at: 'startedAt' };
const BACK = Object.fromEntries(Object.entries(ATTR).map(([k, v]) => [v, k]));

// fromRow and toRow translate between the database's column names, which the
// scenario uses, and the models' field names; Prisma wants Dates for dates.
function fromRow(row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) {
    out[ATTR[k] || k] = k === 'birthdate' ? new Date(`${v}T00:00:00Z`) : v;
  }
  return out;
}

function toRow(model) {
  const out = {};
  for (const [k, v] of Object.entries(model)) out[BACK[k] || k] = v;
  return out;
}

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

// migrate applies the committed migrations not applied yet, each in one
// simple-protocol query inside a transaction, as `prisma migrate deploy`
// would, and records each in _prisma_migrations.
async function migrate() {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  const applied = [];
  try {
    await client.query(MIGRATIONS_TABLE);
    const dir = path.join(__dirname, 'prisma', 'migrations');
    const names = fs.readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory()).map((e) => e.name).sort();
    for (const name of names) {
      const done = await client.query(
        'SELECT 1 FROM "_prisma_migrations" WHERE migration_name = $1 AND finished_at IS NOT NULL',
        [name]);
      if (done.rowCount > 0) continue;
      const sql = fs.readFileSync(path.join(dir, name, 'migration.sql'), 'utf8');
      const checksum = crypto.createHash('sha256').update(sql).digest('hex');
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query(`INSERT INTO "_prisma_migrations"
          (id, checksum, finished_at, migration_name, applied_steps_count)
          VALUES ($1, $2, now(), $3, 1)`, [crypto.randomUUID(), checksum, name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      applied.push(name);
    }
  } finally {
    await client.end();
  }
  return applied;
}

function connect(max) {
  return new PrismaClient({
    adapter: new PrismaPg({ connectionString: process.env.DATABASE_URL, max }),
  });
}

class Rollback extends Error {}

async function run() {
  const data = new common.Data();
  const report = new common.Report('prisma', 'migration.sql');

  // 1. Migrate the empty database.
  const applied = await migrate();
  eq('migrations applied', applied, ['20240101000000_clinic']);
  eq('migrations applied on a second run', await migrate(), []);
  report.step('migrate', { migrations: applied.length });

  const prisma = connect(4);

  // 2. Create patients A, B, C and their encounters (B's nested in its create).
  const ids = {};
  for (const [name, i] of [['A', 1], ['B', 2], ['C', 3]]) {
    const p = await prisma.patient.create({ data: fromRow(data.patient(i)) });
    eq(`patient ${name} as created`, patientOf(toRow(p)), data.patient(i));
    ok(`patient ${name} has a generated uuid id`, /^[0-9a-f-]{36}$/.test(p.id));
    ok(`patient ${name} has a created_at default`, p.createdAt instanceof Date);
    ids[name] = p.id;
    report.put('patients', p.id, { id: p.id, ...data.patient(i) });
  }
  const owners = { 1: 'A', 2: 'A', 3: 'B', 4: 'C' };
  for (const [j, owner] of Object.entries(owners)) {
    const e = data.encounter(Number(j));
    const row = await prisma.encounter.create({
      data: { ...fromRow(e), patient: { connect: { id: ids[owner] } } },
    });
    report.put('encounters', row.id, { patient_id: ids[owner], ...e });
  }
  eq('patients after create', await prisma.patient.count(), 3);
  eq('encounters after create', await prisma.encounter.count(), 4);
  report.step('create', { patients: 3, encounters: 4 });

  // 3. Read with a filter, and with an include of the encounters.
  const filtered = await prisma.patient.findMany({
    where: { lastName: { in: [data.patient(1).last_name, data.patient(2).last_name] },
      birthdate: { lt: new Date('2000-01-01T00:00:00Z') } },
    orderBy: { lastName: 'asc' },
  });
  eq('filtered patients', filtered.map((p) => patientOf(toRow(p))),
    [data.patient(1), data.patient(2)]);
  const withEncounters = await prisma.patient.findUnique({
    where: { id: ids.A }, include: { encounters: { orderBy: { startedAt: 'asc' } } },
  });
  eq('A with its encounters', patientOf(toRow(withEncounters)), data.patient(1));
  eq('encounters of A', withEncounters.encounters.map((e) => encounterOf(toRow(e))),
    [1, 2].map((j) => encounterOf(data.encounter(j))));
  report.step('read', { filtered: filtered.length, included: withEncounters.encounters.length });

  // 4. Update B's address.
  const b = { ...data.patient(2), address: data.patient(12).address };
  const u = await prisma.patient.update({ where: { id: ids.B }, data: { address: b.address } });
  eq('B as updated', patientOf(toRow(u)), b);
  eq('B read back', patientOf(toRow(await prisma.patient.findUnique({ where: { ssn: b.ssn } }))), b);
  report.put('patients', ids.B, { id: ids.B, ...b });
  report.step('update', { updated: 1 });

  // 5. Upserts by key and by the unique ssn, each on an existing and a new
  // row. Each has one unique field in where, the same value in create, and no
  // nested writes, so Prisma sends INSERT ... ON CONFLICT DO UPDATE.
  const a = { ...data.patient(1), address: data.patient(11).address, marital: 'W' };
  let row = await prisma.patient.upsert({
    where: { id: ids.A }, create: { id: ids.A, ...fromRow(a) },
    update: { address: a.address, marital: a.marital },
  });
  eq('A after upsert by id', [row.id, patientOf(toRow(row))], [ids.A, a]);
  report.put('patients', ids.A, { id: ids.A, ...a });
  const idD = crypto.randomUUID();
  row = await prisma.patient.upsert({
    where: { id: idD }, create: { id: idD, ...fromRow(data.patient(4)) }, update: { marital: 'S' },
  });
  eq('D inserted by upsert by id', [row.id, patientOf(toRow(row))], [idD, data.patient(4)]);
  report.put('patients', idD, { id: idD, ...data.patient(4) });

  const c = { ...data.patient(3), first_name: data.patient(13).first_name };
  row = await prisma.patient.upsert({
    where: { ssn: c.ssn }, create: fromRow(c), update: { firstName: c.first_name },
  });
  eq('C after upsert by ssn', [row.id, patientOf(toRow(row))], [ids.C, c]);
  report.put('patients', ids.C, { id: ids.C, ...c });
  const e5 = data.patient(5);
  row = await prisma.patient.upsert({
    where: { ssn: e5.ssn }, create: fromRow(e5), update: { firstName: e5.first_name },
  });
  eq('E inserted by upsert by ssn', patientOf(toRow(row)), e5);
  report.put('patients', row.id, { id: row.id, ...e5 });
  eq('patients after upserts', await prisma.patient.count(), 5);
  report.step('upsert', { by_key: 2, by_unique: 2 });

  // 6. Delete C; its encounter goes with it.
  await prisma.patient.delete({ where: { id: ids.C } });
  eq('C after delete', await prisma.patient.findUnique({ where: { ssn: c.ssn } }), null);
  eq('encounters after cascade', await prisma.encounter.count(), 3);
  report.remove('patients', (r) => r.id === ids.C);
  report.remove('encounters', (r) => r.patient_id === ids.C);
  report.step('delete', { deleted: 1, cascaded: 1 });

  // 7. A transaction that rolls back leaves nothing behind.
  const f = data.patient(6);
  try {
    await prisma.$transaction(async (tx) => {
      await tx.patient.create({
        data: { ...fromRow(f), encounters: { create: [fromRow(data.encounter(5))] } },
      });
      eq('F inside its transaction', await tx.patient.count({ where: { ssn: f.ssn } }), 1);
      throw new Rollback('roll back');
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  eq('F after rollback', await prisma.patient.findUnique({ where: { ssn: f.ssn } }), null);
  eq('encounters after rollback', await prisma.encounter.count(), 3);
  report.dead.push({ table: 'patients', row: f });
  report.step('rollback');

  // 8. Bulk: 10,000 patients in one createMany (Prisma splits it into
  // INSERTs that fit PostgreSQL's limit on bind parameters).
  const bulk = Array.from({ length: common.BULK }, (_, k) => data.patient(100000 + k));
  const made = await prisma.patient.createMany({ data: bulk.map(fromRow) });
  eq('rows from createMany', made.count, common.BULK);
  const sampled = common.sample().map((k) => bulk[k]);
  const back = await prisma.patient.findMany({
    where: { ssn: { in: sampled.map((p) => p.ssn) } }, orderBy: { ssn: 'asc' },
  });
  eq('sampled bulk rows', back.map((p) => patientOf(toRow(p))), sampled);
  for (const p of back) report.put('patients', p.id, { id: p.id, ...patientOf(toRow(p)) });
  eq('patients after bulk', await prisma.patient.count(), common.BULK + 4);
  report.step('bulk', { patients: common.BULK });

  // 9. Two clients, one connection each, upsert the same new key at once.
  const p1 = connect(1);
  const p2 = connect(1);
  try {
    await Promise.all([p1.$connect(), p2.$connect()]);
    await Promise.all([p1.patient.count(), p2.patient.count()]);
    for (let k = 0; k < common.ROUNDS; k++) {
      const id = crypto.randomUUID();
      const one = data.patient(200 + k);
      const two = data.patient(300 + k);
      const upsert = (px, p) => px.patient.upsert({
        where: { id }, create: { id, ...fromRow(p) },
        update: { firstName: p.first_name, lastName: p.last_name, address: p.address },
      });
      await Promise.all([upsert(p1, one), upsert(p2, two)]);
      const rows = await prisma.patient.findMany({ where: { id } });
      eq(`rows for concurrently upserted key ${k}`, rows.length, 1);
      const got = patientOf(toRow(rows[0]));
      ok(`concurrent upsert ${k} left one of the two rows`,
        [one.first_name, two.first_name].includes(got.first_name));
      report.put('patients', id, { id, ...one });
      report.put('patients', id, { id, ...two });
      report.put('patients', id, { id, ...got });
    }
  } finally {
    await Promise.all([p1.$disconnect(), p2.$disconnect()]);
  }
  report.step('concurrent_upsert', { rounds: common.ROUNDS });

  const patients = await prisma.patient.count();
  const encounters = await prisma.encounter.count();
  eq('patients at the end', patients, common.BULK + 4 + common.ROUNDS);
  eq('encounters at the end', encounters, 3);
  await prisma.$disconnect();
  report.finish({ patients, encounters });
}

common.main(run);
