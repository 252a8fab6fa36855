'use strict';
// The clinic schema as Drizzle tables: a uuid key with a database default on
// patients, an identity key on encounters. drizzle-kit generated drizzle/
// from this file (`npx drizzle-kit generate --name clinic`).

const { pgTable, uuid, varchar, text, date, timestamp, integer, index } =
  require('drizzle-orm/pg-core');

const patients = pgTable('patients', {
  id: uuid('id').primaryKey().defaultRandom(),
  ssn: varchar('ssn', { length: 11 }).notNull().unique(),
  firstName: varchar('first_name', { length: 100 }).notNull(),
  lastName: varchar('last_name', { length: 100 }).notNull(),
  birthdate: date('birthdate').notNull(),
  address: text('address'),
  marital: varchar('marital', { length: 1 }),
  gender: varchar('gender', { length: 1 }).notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

const encounters = pgTable('encounters', {
  id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
  patientId: uuid('patient_id').notNull().references(() => patients.id, { onDelete: 'cascade' }),
  code: varchar('code', { length: 20 }).notNull(),
  description: text('description'),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
}, (t) => [index('encounters_started_at_idx').on(t.startedAt)]);

module.exports = { patients, encounters };
