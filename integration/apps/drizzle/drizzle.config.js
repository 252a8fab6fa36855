'use strict';
// drizzle-kit's configuration: generating migrations needs no database.
module.exports = { dialect: 'postgresql', schema: './schema.js', out: './drizzle' };
