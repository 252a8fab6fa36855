// node-postgres through Privata: simple and extended queries, a named
// prepared statement, a transaction, an error that leaves the connection
// usable, and the role the session runs as. PRIVATA_URL names the server.
'use strict';
const assert = require('node:assert/strict');
const { Client } = require('pg');

async function main() {
  const client = new Client({ connectionString: process.env.PRIVATA_URL });
  await client.connect();
  try {
    let r = await client.query('SELECT current_user AS who');
    assert.equal(r.rows[0].who, 'clinician');

    await client.query('CREATE TABLE node_items (id int PRIMARY KEY, name text, at timestamptz)');
    for (let i = 1; i <= 20; i++) {
      await client.query('INSERT INTO node_items VALUES ($1, $2, now())', [i, `item ${i}`]);
    }
    r = await client.query({ name: 'by-id', text: 'SELECT name FROM node_items WHERE id = $1',
      values: [7] });
    assert.equal(r.rows[0].name, 'item 7');
    r = await client.query({ name: 'by-id', text: 'SELECT name FROM node_items WHERE id = $1',
      values: [8] });
    assert.equal(r.rows[0].name, 'item 8');

    await client.query('BEGIN');
    await client.query('DELETE FROM node_items WHERE id > $1', [10]);
    await client.query('ROLLBACK');
    r = await client.query('SELECT count(*)::int AS n FROM node_items');
    assert.equal(r.rows[0].n, 20);

    await assert.rejects(client.query('SELECT 1 / $1::int', [0]), (err) => err.code === '22012');
    r = await client.query('SELECT $1::text || $2::text AS s', ["it's", ' fine']);
    assert.equal(r.rows[0].s, "it's fine");

    r = await client.query('SELECT 1 AS a; SELECT 2 AS b');
    assert.equal(r.length, 2);
    assert.equal(r[1].rows[0].b, 2);
    console.log('node-pg check: ok');
  } finally {
    await client.end();
  }
}

main().catch((err) => {
  console.error('node-pg check failed:', err);
  process.exit(1);
});
