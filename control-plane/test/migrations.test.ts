import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createPool, migrate } from '../src/db.js';
import { createTestDatabase } from './helpers.js';

describe('migrations', () => {
  it('apply once, are idempotent, and serialize concurrent starts', async () => {
    const db = await createTestDatabase();
    const pools = [createPool(db.url), createPool(db.url), createPool(db.url)];
    try {
      const files = readdirSync(new URL('../migrations/', import.meta.url))
        .filter((f) => f.endsWith('.sql'))
        .sort();
      expect(files[0]).toBe('001_accounts_and_listings.sql');
      const results = await Promise.all(pools.map((pool) => migrate(pool)));
      expect(results.flat().map((m) => m.name)).toEqual(files);
      expect(await migrate(pools[0]!)).toEqual([]);
      const { rows } = await pools[0]!.query('SELECT version, checksum FROM schema_migrations');
      expect(rows).toHaveLength(files.length);

      await pools[0]!.query("UPDATE schema_migrations SET checksum = 'changed'");
      await expect(migrate(pools[0]!)).rejects.toThrow(/changed after it was applied/);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
      await db.drop();
    }
  });
});
