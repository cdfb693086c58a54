import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PostgresProcess,
  type RedisProcess,
  startPostgresProcess,
  startRedisProcess,
} from '../control-plane/test/fault-services.js';
import { apiClient } from '../control-plane/test/helpers.js';
import {
  catchConsumerMidTransaction,
  expectAllRecorded,
  startFreeListing,
  startLoad,
} from '../control-plane/test/outage-support.js';
import { eventually, startSeller, type TestSeller } from '../proxy/test/stack.js';
import { type StartedStack, startStack } from './start-support.js';

/**
 * Issue 11: stopping PostgreSQL under load ended the whole `npm start` process ("Connection terminated
 * unexpectedly" on a checked-out client), and callers then got connection refused. Here the real entry point runs as
 * a child on PostgreSQL and Redis processes of the test's own, and PostgreSQL is stopped twice (fast, immediate) and
 * started again while a client keeps calling: the process must still run, and say nothing of an unhandled error.
 */
describe('npm start through a PostgreSQL stop and start', () => {
  let postgres: PostgresProcess;
  let redis: RedisProcess;
  let seller: TestSeller;
  let stack: StartedStack;
  let proxyUrl: string;

  beforeAll(async () => {
    [postgres, redis, seller] = await Promise.all([startPostgresProcess(), startRedisProcess(), startSeller()]);
    stack = await startStack({ databaseUrl: postgres.url, redisUrl: redis.url });
    proxyUrl = stack.proxyUrl;
  });
  afterAll(async () => {
    await stack?.stop(15_000);
    await Promise.all([seller?.close(), postgres?.destroy(), redis?.stop()]);
  });

  it('keeps running and serving, answers 503 meanwhile, records every call after, and stops cleanly', async () => {
    const { listingId, call, me, answers } = await startFreeListing(apiClient(proxyUrl), proxyUrl, seller.url);
    const load = startLoad(call);
    for (const mode of ['fast', 'immediate'] as const) {
      const letGo = await catchConsumerMidTransaction(postgres.url);
      await postgres.stop(mode);
      await letGo();
      await eventually(async () => expect((await me()).status).toBe(503), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(stack.exit()).toBeNull();
      await postgres.start();
      await eventually(async () => expect((await me()).status).toBe(200), 20_000);
    }
    answers.push(...(await load.stop()));

    expect(stack.exit()).toBeNull();
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(await expectAllRecorded(postgres.url, listingId, answers)).toBe(answers.length);
    // The guard's lines, a crash, or a 500 (the error handler logs "unhandled error"): none of them.
    expect(stack.output()).not.toMatch(/unhandled|uncaught|triggerUncaughtException/i);

    expect(await stack.stop()).toEqual({ code: 0, signal: null });
  }, 90_000);
});
