import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type PostgresProcess, type RedisProcess, startPostgresProcess, startRedisProcess } from './fault-services.js';

/** What the fault tests rely on: a pause answers nothing, a kill loses everything, a stop keeps the data. */
describe('fault fixtures', () => {
  let redis: RedisProcess | undefined;
  let postgres: PostgresProcess | undefined;
  afterAll(async () => {
    await redis?.stop();
    await postgres?.destroy();
  });

  /** One command on a fresh connection that neither retries nor queues; the error message when it fails. */
  const redisCommand = async (url: string, run: (client: Redis) => Promise<unknown>): Promise<unknown> => {
    const client = new Redis(url, { retryStrategy: () => null, maxRetriesPerRequest: 0, commandTimeout: 500 });
    client.on('error', () => {});
    try {
      return await run(client);
    } catch (error) {
      return (error as Error).message;
    } finally {
      client.disconnect();
    }
  };
  const sql = async (url: string, text: string): Promise<unknown> => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000, query_timeout: 1000 });
    client.on('error', () => {});
    try {
      await client.connect();
      return (await client.query(text)).rows;
    } catch (error) {
      return (error as Error).message;
    } finally {
      await client.end().catch(() => {});
    }
  };

  it('redis-server: pause answers nothing, resume answers again, a killed one restarts empty', async () => {
    redis = await startRedisProcess();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await redisCommand(redis.url, (c) => c.set('k', 'v'))).toBe('OK');
    redis.pause();
    expect(await redisCommand(redis.url, (c) => c.get('k'))).toMatch(/timed out/i);
    redis.resume();
    expect(await redisCommand(redis.url, (c) => c.get('k'))).toBe('v');
    await redis.kill();
    expect(await redisCommand(redis.url, (c) => c.get('k'))).toMatch(/ECONNREFUSED|closed/);
    await redis.start();
    expect(await redisCommand(redis.url, (c) => c.get('k'))).toBeNull();
  });

  it('postgres: pause answers nothing; fast and immediate stops keep the data; start accepts again', async () => {
    postgres = await startPostgresProcess();
    expect(postgres.url).toBe(`postgres://postgres@127.0.0.1:${postgres.port}/test`);
    await sql(postgres.url, 'CREATE TABLE t (v int); INSERT INTO t VALUES (1)');
    const open = new pg.Client({ connectionString: postgres.url, query_timeout: 1000 });
    open.on('error', () => {});
    await open.connect();
    postgres.pause();
    expect(await sql(postgres.url, 'SELECT v FROM t')).toMatch(/timeout/i);
    // A session opened before the pause is paused too (its backend is not in the postmaster's process group).
    expect(await open.query('SELECT 1').catch((error: Error) => error.message)).toMatch(/timeout/i);
    postgres.resume();
    await open.end().catch(() => {});
    expect(await sql(postgres.url, 'SELECT v FROM t')).toEqual([{ v: 1 }]);
    for (const mode of ['fast', 'immediate'] as const) {
      await postgres.stop(mode);
      expect(await sql(postgres.url, 'SELECT v FROM t')).toMatch(/ECONNREFUSED/);
      await postgres.start();
      expect(await sql(postgres.url, 'SELECT v FROM t')).toEqual([{ v: 1 }]);
    }
  });
});
