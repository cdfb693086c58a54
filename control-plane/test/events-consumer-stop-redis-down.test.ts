import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool } from '../src/db.js';
import { startEventsConsumer } from '../src/events-consumer.js';
import { type RedisProcess, startRedisProcess } from './fault-services.js';
import { createTestDatabase, testRedisPrefix } from './helpers.js';

/**
 * A control plane shutting down while Redis is gone must still shut down: the consumer's blocking read, queued on a
 * connection that is reconnecting, used to wait for a reconnection that `disconnect()` had cancelled — forever.
 */
describe('events consumer stop() while Redis is down', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  let redisProcess: RedisProcess;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url);
    await migrate(pool);
    redisProcess = await startRedisProcess();
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
    await redisProcess?.stop();
  });

  /** Resolves with how `promise` ended, or 'still waiting' after `ms`. */
  const within = (promise: Promise<unknown>, ms: number) =>
    Promise.race([
      promise.then(
        () => 'stopped',
        (error) => `failed: ${(error as Error).message}`,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting'), ms)),
    ]);

  it('returns promptly, whether the read was in flight or queued while reconnecting', async () => {
    for (const wait of [0, 1_500]) {
      await redisProcess.start().catch(() => {}); // already running the first time round
      // The control plane's own options (server.ts): a couple of retries per command, then the error.
      const redis = new Redis(redisProcess.url, { maxRetriesPerRequest: 2 });
      redis.on('error', () => {});
      const consumer = await startEventsConsumer({ pool, redis, prefix: testRedisPrefix(), log: silent });
      await new Promise((resolve) => setTimeout(resolve, 200)); // into its blocking read
      await redisProcess.kill();
      await new Promise((resolve) => setTimeout(resolve, wait)); // the read now waits in the offline queue
      expect(await within(consumer.stop(), 5_000), `after ${wait} ms`).toBe('stopped');
      redis.disconnect();
    }
  });
});
