/**
 * Vitest global setup: what the suite needs before any test file runs.
 *
 * 1. The programs of `test-tools.ts` (installed as root when missing, else the run stops and says what to install).
 * 2. A PostgreSQL and a Redis for the tests. TEST_DATABASE_URL / TEST_REDIS_URL, when set, must answer. Unset, the
 *    defaults (127.0.0.1:5432, trust auth, database `test`; 127.0.0.1:6379) are used when they answer; otherwise an
 *    embedded PostgreSQL and a local redis-server start the way `npm start` starts them (`local-services.ts`), on
 *    free ports, with their files in `.crochet/test-postgres` and `.crochet/test-redis`, and stop after the run.
 *    The URLs reach every test file as TEST_DATABASE_URL / TEST_REDIS_URL.
 */
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ensurePostgres, ensureRedis, type LocalService } from './local-services.js';
import { ensureTestTools } from './test-tools.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

const log = (line: string): void => {
  // Only what matters: the server's own chatter stays out of the test report.
  if (line.startsWith('[test') || / ready on /.test(line)) console.log(line);
};

export default async function setup(): Promise<() => Promise<void>> {
  ensureTestTools(log);
  const started: LocalService[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((service) => service.stop()));
  };
  try {
    const postgres = await testPostgres();
    if (postgres.started) started.push(postgres);
    const redis = await testRedis();
    if (redis.started) started.push(redis);
    process.env['TEST_DATABASE_URL'] = postgres.url;
    process.env['TEST_REDIS_URL'] = redis.url;
  } catch (error) {
    await stop();
    throw error;
  }
  return stop;
}

async function testPostgres(): Promise<LocalService> {
  const given = process.env['TEST_DATABASE_URL'];
  const problem = await postgresProblem(given ?? DEFAULT_DATABASE_URL);
  if (!problem) return { url: given ?? DEFAULT_DATABASE_URL, started: false, stop: async () => {} };
  if (given) throw new Error(`TEST_DATABASE_URL (${given}) does not answer: ${problem}`);
  log(`[test setup] no PostgreSQL at ${DEFAULT_DATABASE_URL} (${problem}): starting an embedded one`);
  return ensurePostgres(ROOT, log, {
    url: undefined,
    port: await freePort(),
    folder: 'test-postgres',
    // The tests do not look at durability here (the fault tests run clusters of their own).
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  });
}

async function testRedis(): Promise<LocalService> {
  const given = process.env['TEST_REDIS_URL'];
  const problem = await redisProblem(given ?? DEFAULT_REDIS_URL);
  if (!problem) return { url: given ?? DEFAULT_REDIS_URL, started: false, stop: async () => {} };
  if (given) throw new Error(`TEST_REDIS_URL (${given}) does not answer: ${problem}`);
  log(`[test setup] no Redis at ${DEFAULT_REDIS_URL} (${problem}): starting a local redis-server`);
  return ensureRedis(ROOT, log, { url: undefined, port: await freePort(), folder: 'test-redis' });
}

/** undefined when a session opens and answers a query; else why not. */
async function postgresProblem(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return describe(error);
  } finally {
    await client.end().catch(() => {});
  }
}

async function redisProblem(url: string): Promise<string | undefined> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 3000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  let seen: unknown;
  client.on('error', (error) => {
    seen ??= error;
  });
  try {
    await client.connect();
    const pong = await client.ping();
    return pong === 'PONG' ? undefined : `PING answered ${pong}`;
  } catch (error) {
    return describe(seen ?? error);
  } finally {
    client.disconnect();
  }
}

function describe(error: unknown): string {
  const { message, code } = error as { message?: string; code?: string };
  return message || code || String(error);
}

/** A port nobody listens on now (the kernel's pick). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
