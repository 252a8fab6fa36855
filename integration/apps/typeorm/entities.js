'use strict';
// The clinic schema as TypeORM entity schemas (plain JavaScript, no
// decorators): an identity key on patients, a serial key on encounters.

const { EntitySchema } = require('typeorm');

const Patient = new EntitySchema({
  name: 'Patient',
  tableName: 'patients',
  columns: {
    id: { type: 'int', primary: true, generated: 'identity' },
    ssn: { type: 'varchar', length: 11, unique: true },
    firstName: { name: 'first_name', type: 'varchar', length: 100 },
    lastName: { name: 'last_name', type: 'varchar', length: 100 },
    birthdate: { type: 'date' },
    address: { type: 'text', nullable: true },
    marital: { type: 'varchar', length: 1, nullable: true },
    gender: { type: 'varchar', length: 1 },
    createdAt: { name: 'created_at', type: 'timestamptz', createDate: true },
  },
  relations: {
    encounters: { type: 'one-to-many', target: 'Encounter', inverseSide: 'patient' },
  },
});

const Encounter = new EntitySchema({
  name: 'Encounter',
  tableName: 'encounters',
  columns: {
    id: { type: 'int', primary: true, generated: 'increment' },
    patientId: { name: 'patient_id', type: 'int' },
    code: { type: 'varchar', length: 20 },
    description: { type: 'text', nullable: true },
    startedAt: { name: 'started_at', type: 'timestamptz' },
  },
  relations: {
    patient: {
      type: 'many-to-one', target: 'Patient', inverseSide: 'encounters',
      joinColumn: { name: 'patient_id' }, onDelete: 'CASCADE',
    },
  },
  indices: [{ name: 'encounters_started_at_idx', columns: ['startedAt'] }],
});

module.exports = { Patient, Encounter };
