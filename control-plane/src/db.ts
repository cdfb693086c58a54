import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** A pool with conservative timeouts: a stuck query must not hold a request forever. */
export const createPool = (connectionString: string, max = 10): Pool => {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 10_000,
    application_name: 'crochet-control-plane',
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that kills the process.
  pool.on('error', () => {});
  return pool;
};

/** Runs `work` in a transaction; rolls back on any throw. */
export const transaction = async <T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
};

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);
const MIGRATION_FILE = /^(\d{3})_[a-z0-9_]+\.sql$/;
// Any constant works; it only has to be the same for every control plane so that two starting at once serialize.
const MIGRATION_LOCK = 7_312_004_117;

export interface AppliedMigration {
  version: number;
  name: string;
}

/**
 * Applies the SQL files in `migrations/` that are not applied yet, in order, each in its own transaction, under an
 * advisory lock. Refuses to start when an applied file's checksum changed: migrations are append-only.
 */
export const migrate = async (pool: Pool): Promise<AppliedMigration[]> => {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => MIGRATION_FILE.test(f)).sort();
  const client = await pool.connect();
  const applied: AppliedMigration[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; checksum: string }>(
      'SELECT version, checksum FROM schema_migrations',
    );
    const done = new Map(rows.map((r) => [r.version, r.checksum]));
    for (const name of files) {
      const version = Number(MIGRATION_FILE.exec(name)![1]);
      const sql = await readFile(new URL(name, MIGRATIONS_DIR), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const known = done.get(version);
      if (known !== undefined) {
        if (known !== checksum) throw new Error(`migration ${name} changed after it was applied; add a new one`);
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          version,
          name,
          checksum,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${name} failed: ${(error as Error).message}`);
      }
      applied.push({ version, name });
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    client.release();
  }
  return applied;
};

/** True when `error` is a PostgreSQL unique violation, optionally on a named constraint. */
export const isUniqueViolation = (error: unknown, constraint?: string): boolean => {
  const e = error as { code?: string; constraint?: string };
  return e?.code === '23505' && (constraint === undefined || e.constraint === constraint);
};

/** Positional parameters for a query built piece by piece: `bind(value)` returns its `$n`. */
export const sqlParams = (): { params: unknown[]; bind: (value: unknown) => string } => {
  const params: unknown[] = [];
  return {
    params,
    bind: (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    },
  };
};
