// Prisma 7 reads the datasource URL from here rather than from the schema.
// Only `prisma generate` runs here, and it needs no database.
const { defineConfig } = require('prisma/config');

module.exports = defineConfig({
  schema: 'prisma/schema.prisma',
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost/unused' },
});
