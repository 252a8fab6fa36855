'use strict';
// The TypeORM data source, for the app and for the TypeORM CLI (which
// generated migrations/*.js with `typeorm migration:generate -o`).

const path = require('path');
const { DataSource } = require('typeorm');
const { Patient, Encounter } = require('./entities');

// dataSource returns a data source on DATABASE_URL with a pool of poolSize.
function dataSource(poolSize) {
  return new DataSource({
    type: 'postgres',
    url: process.env.DATABASE_URL,
    entities: [Patient, Encounter],
    migrations: [path.join(__dirname, 'migrations', '*.js')],
    migrationsTransactionMode: 'each',
    poolSize,
    logging: false,
  });
}

module.exports = { dataSource, default: dataSource(4) };
