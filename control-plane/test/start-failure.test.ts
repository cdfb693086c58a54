import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '../src/config.js';
import { startControlPlane } from '../src/server.js';
import { type RedisProcess, startRedisProcess } from './fault-services.js';
import { createTestDatabase, TEST_DATA_PLANE_KEY } from './helpers.js';

/**
 * A control plane whose start fails half-way (here: its port is taken, the last step) leaves nothing behind — no
 * events consumer still reading, no pooled connections, no timers — so that a supervisor, or a test, can try again.
 */
describe('a control plane that cannot start', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let redis: RedisProcess;
  beforeAll(async () => {
    [db, redis] = await Promise.all([createTestDatabase(), startRedisProcess()]);
  });
  afterAll(async () => {
    await db?.drop();
    await redis?.stop();
  });

  it('rejects, and closes every connection it opened', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const config = loadControlPlaneConfig({
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      CONTROL_PLANE_PORT: String(port),
      CROCHET_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      CROCHET_DATA_PLANE_KEY: TEST_DATA_PLANE_KEY,
      LOG_LEVEL: 'silent',
    });
    try {
      await expect(startControlPlane(config)).rejects.toThrow(/EADDRINUSE/);
    } finally {
      taken.close();
    }

    const redisClient = new Redis(redis.url);
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const redisClients = async () =>
        String(await redisClient.client('LIST'))
          .trim()
          .split('\n').length;
      const pooled = async () =>
        (
          await admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'crochet-control-plane'`,
          )
        ).rows[0].n;
      // Closing is asynchronous on the servers' side: a moment for them to notice.
      await expect.poll(redisClients).toBe(1); // this one
      await expect.poll(pooled).toBe(0);
    } finally {
      redisClient.disconnect();
      await admin.end();
    }
  });
});
