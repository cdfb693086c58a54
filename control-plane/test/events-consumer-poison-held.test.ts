import { newId, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, publishRaw, startEvent } from './events-support.js';
import { createTestDatabase, deleteRedisPrefix, TEST_REDIS_URL, testRedisPrefix } from './helpers.js';

/**
 * A free start the database refuses is first held (unacknowledged) for its end; every pass over the pending list while
 * it is held delivers it again, which Redis counts. Those re-reads are not attempts: it still gets maxDeliveries
 * attempts, and its dead letter says 3, not the 4 or 5 reads it had (a flaky poison test under load showed it).
 */
describe('events consumer: a held start the database refuses', () => {
  const warnings: object[] = [];
  const log = { info: () => {}, warn: (details: object) => void warnings.push(details), error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;
  let consumer: EventsConsumer;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url);
    await migrate(pool);
    redis = new Redis(TEST_REDIS_URL);
    prefix = testRedisPrefix();
    consumer = await startEventsConsumer({
      pool,
      redis,
      prefix,
      consumerName: 'cp',
      maxDeliveries: 3,
      blockMs: 50,
      log,
    });
  });
  afterAll(async () => {
    await consumer?.stop();
    redis?.disconnect();
    await pool?.end();
    await deleteRedisPrefix(prefix);
    await db?.drop();
  });

  it('is dead-lettered after maxDeliveries attempts, its re-reads while held not counted', async () => {
    const nul = JSON.stringify(startEvent(call, { path: '/nul\u0000' }));
    const [, nulId] = await publishRaw(redis, prefix, 'not json {', nul);
    // A second poison entry read in a later batch, while the refused start is still held (< 250 ms).
    await new Promise((resolve) => setTimeout(resolve, 120));
    await redis.xadd(redisKeys(prefix).events, '*', 'other', 'x');
    await consumer.drain();
    const letters = new Map<string, Record<string, string>>();
    for (const [, fields] of await redis.xrange(redisKeys(prefix).eventsDead, '-', '+')) {
      const entry: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
      letters.set(entry['id']!, entry);
    }
    expect(letters.get(nulId!)?.['error']).toMatch(/0x00|null character|invalid byte sequence/i);
    expect(letters.get(nulId!)?.['deliveries']).toBe('3');
    expect(consumer.stats()).toMatchObject({ processed: 0, deadLettered: 3 });
    expect(warnings).toHaveLength(3);
  });
});
