import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool, transaction } from '../src/db.js';
import { createTestDatabase } from './helpers.js';

/** `transaction` (db.ts) and the named statements the events consumer prepares once per connection. */
describe('transaction', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 1); // one connection: every call below meets the statement it prepared
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('discards a connection whose named statement no longer fits its table: the next one prepares it again', async () => {
    await pool.query('CREATE TABLE t (a int)');
    await pool.query('INSERT INTO t VALUES (1)');
    const read = () =>
      transaction(pool, async (client) => (await client.query({ name: 'read_t', text: 'SELECT a FROM t' })).rows);
    expect(await read()).toEqual([{ a: 1 }]);
    // A migration changes a column the prepared statement returns (on that very connection).
    await pool.query('ALTER TABLE t ALTER COLUMN a TYPE text');
    await expect(read()).rejects.toMatchObject({ code: '0A000' });
    // Not the same answer forever: the connection went, and a new one prepares the statement for the new table.
    expect(await read()).toEqual([{ a: '1' }]);
    expect(await read()).toEqual([{ a: '1' }]);
  });
});
