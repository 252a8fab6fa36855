'use strict';
// The clinic schema as a Knex migration: serial keys, a unique ssn, and a
// cascading foreign key from encounters to patients.

exports.up = async (knex) => {
  await knex.schema.createTable('patients', (t) => {
    t.increments('id');
    t.string('ssn', 11).notNullable().unique();
    t.string('first_name', 100).notNullable();
    t.string('last_name', 100).notNullable();
    t.date('birthdate').notNullable();
    t.text('address');
    t.string('marital', 1);
    t.string('gender', 1).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('encounters', (t) => {
    t.bigIncrements('id');
    t.integer('patient_id').notNullable()
      .references('id').inTable('patients').onDelete('CASCADE');
    t.string('code', 20).notNullable();
    t.text('description');
    t.timestamp('started_at', { useTz: true }).notNullable().index();
  });
};

exports.down = async (knex) => {
  await knex.schema.dropTable('encounters');
  await knex.schema.dropTable('patients');
};
