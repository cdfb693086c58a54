import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** The server cancels a statement that runs longer (57014); a job that needs longer says so per transaction. */
const STATEMENT_TIMEOUT_MS = 10_000;
/**
 * How much longer than its statement_timeout the client waits for a reply before it gives the connection up. The
 * server's own timeout normally answers first and keeps the connection; this one is for a server that answers
 * nothing at all (paused, or a network that drops packets), where only the client can end the wait.
 */
const QUERY_TIMEOUT_MARGIN_MS = 5_000;

/** A pool with conservative timeouts: a stuck query or a silent database must not hold a request forever. */
export const createPool = (connectionString: string, max = 10): Pool => {
  const pool = new pg.Pool({
    connectionString,
    max,
    // Also bounds the wait for a free connection when every one is busy.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: STATEMENT_TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS,
    // A peer that vanished without a reset (host down, connection tracking lost) is noticed within a minute.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'crochet-control-plane',
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that kills the process.
  pool.on('error', () => {});
  // A client checked out of the pool has no listener of the pool's: when PostgreSQL ends its session (stopped,
  // restarted, 57P01) or the connection drops, it emits 'error', and unheard that ends the process. Nothing is left
  // to do there: its queries have already failed with the same error, and the pool discards it when it comes back
  // (it is no longer queryable).
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
};

// Node's socket errors, PostgreSQL's "shutting down / starting up / crashed" (57P01-57P03) and "too many
// connections" (53300); class 08 (connection exception) is checked by prefix.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);
// What node-postgres and pg-pool say, without a code, when a connection ends, cannot be made in time, or a reply
// does not come within query_timeout.
const UNAVAILABLE_MESSAGE = new RegExp(
  '^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|' +
    'Client has encountered a connection error|Client was closed)',
);

/**
 * True when `error` says PostgreSQL could not be reached or dropped the session, rather than refused a statement:
 * a state to wait out (503 with Retry-After), not a bug.
 */
export const isDatabaseUnavailable = (error: unknown): boolean => {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  return typeof message === 'string' && UNAVAILABLE_MESSAGE.test(message);
};

/**
 * Runs `work` in a transaction; rolls back on any throw. A connection that failed is not sent a ROLLBACK (it would
 * only wait out the same failure): it is discarded, which ends its transaction on the server. So is one whose
 * ROLLBACK failed, so that no pooled connection is ever left inside a transaction.
 *
 * `opening` replaces the bare BEGIN: `BEGIN; <statements without parameters>` runs them inside the transaction in the
 * same round trip, and `work` gets their results (BEGIN's first).
 */
export const transaction = async <T>(
  pool: Pool,
  work: (client: PoolClient, opened: pg.QueryResult[]) => Promise<T>,
  opening = 'BEGIN',
): Promise<T> => {
  const client = await pool.connect();
  try {
    const begun = (await client.query(opening)) as pg.QueryResult | pg.QueryResult[];
    const result = await work(client, Array.isArray(begun) ? begun : [begun]);
    await client.query('COMMIT');
    client.release();
    return result;
  } catch (error) {
    const discard =
      isDatabaseUnavailable(error) ||
      !(await client.query('ROLLBACK').then(
        () => true,
        () => false,
      ));
    client.release(discard);
    throw error;
  }
};

/**
 * Raises this transaction's statement_timeout to `timeoutMs` and returns a query function whose client-side timeout
 * follows it (the pool's is sized for ordinary statements). Call inside `transaction`.
 */
export const withStatementTimeout = async (client: PoolClient, timeoutMs: number) => {
  await client.query(`SET LOCAL statement_timeout = ${Math.trunc(timeoutMs)}`);
  return <R extends pg.QueryResultRow>(text: string, values?: unknown[]) =>
    // node-postgres reads query_timeout per query too; its types only know it on the client's config.
    client.query<R>({ text, values, query_timeout: timeoutMs + QUERY_TIMEOUT_MARGIN_MS } as pg.QueryConfig);
};

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);
const MIGRATION_FILE = /^(\d{3})_[a-z0-9_]+\.sql$/;
// Any constant works; it only has to be the same for every control plane so that two starting at once serialize.
const MIGRATION_LOCK = 7_312_004_117;
/**
 * A migration may move a whole table (020 copies the gateway-request history into its partitions): far longer than
 * an ordinary statement, but still bounded, so that a database that answers nothing does not hold a start forever.
 */
const MIGRATION_TIMEOUT_MS = 30 * 60_000;

export interface AppliedMigration {
  version: number;
  name: string;
}

/**
 * Applies the SQL files in `migrations/` that are not applied yet, in order, each in its own transaction, under an
 * advisory lock. Refuses to start when an applied file's checksum changed: migrations are append-only. `through`
 * (tests of a migration) stops after that version.
 */
export const migrate = async (pool: Pool, options: { through?: number } = {}): Promise<AppliedMigration[]> => {
  const files = (await readdir(MIGRATIONS_DIR))
    .filter((f) => MIGRATION_FILE.test(f) && Number(MIGRATION_FILE.exec(f)![1]) <= (options.through ?? Infinity))
    .sort();
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
        await client.query(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
        await client.query({
          text: sql,
          query_timeout: MIGRATION_TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS,
        } as pg.QueryConfig);
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          version,
          name,
          checksum,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {}); // a broken connection is discarded below
        throw new Error(`migration ${name} failed: ${(error as Error).message}`);
      }
      applied.push({ version, name });
    }
  } finally {
    const unlocked = await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).then(
      () => true,
      () => false,
    );
    // A session-level lock lives as long as the session: a connection that could not unlock must not go back to the
    // pool, or no other control plane could ever migrate.
    client.release(!unlocked);
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

/**
 * Runs `work` holding a cluster-wide session advisory lock (one control plane at a time); null, without running it,
 * when another session holds the lock. The lock's connection is held for the whole run.
 */
export const withAdvisoryLock = async <T>(pool: Pool, key: number, work: () => Promise<T>): Promise<T | null> => {
  const client = await pool.connect();
  let locked = false;
  try {
    locked = (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key])).rows[0]!
      .locked;
    return locked ? await work() : null;
  } finally {
    const unlocked =
      !locked ||
      (await client.query('SELECT pg_advisory_unlock($1)', [key]).then(
        () => true,
        () => false,
      ));
    // A session-level lock lives as long as the session: a connection that could not unlock (PostgreSQL gone, or a
    // reply that timed out) is discarded rather than pooled, or no control plane could take the lock again.
    client.release(!unlocked);
  }
};
