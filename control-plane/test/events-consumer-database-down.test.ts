import { EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, expectedRow, publish, ROW_COLUMNS, startEvent } from './events-support.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  testRedisPrefix,
} from './helpers.js';

/**
 * §4: "PostgreSQL down: events wait in the stream." A failure that is not the event's fault never counts towards
 * dead-lettering, however many deliveries it takes: once PostgreSQL is back, every event is recorded.
 */
describe('events consumer while PostgreSQL is down', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let name: string;
  let pool: Pool;
  let redis: Redis;
  let prefix: string;
  let consumer: EventsConsumer;

  /** Refuses (or allows again) new connections to the test database and ends the ones it has. */
  const setDatabaseUp = async (up: boolean): Promise<void> => {
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS ${up}`);
      if (!up) await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
    } finally {
      await admin.end();
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    name = new URL(db.url).pathname.slice(1);
    pool = createPool(db.url);
    await migrate(pool);
    redis = new Redis(TEST_REDIS_URL);
    prefix = testRedisPrefix();
    consumer = await startEventsConsumer({ pool, redis, prefix, maxDeliveries: 2, blockMs: 50, log: silent });
  });
  afterAll(async () => {
    await consumer?.stop();
    redis?.disconnect();
    await pool?.end();
    await deleteRedisPrefix(prefix);
    await setDatabaseUp(true).catch(() => {});
    await db?.drop();
  });

  it('keeps the events pending through the outage and records them all afterwards, none dead-lettered', async () => {
    await setDatabaseUp(false);
    const starts = Array.from({ length: 5 }, () => startEvent(call));
    const ends = starts.map((start) => endEvent(start));
    await publish(redis, prefix, ...starts, ...ends);

    // Wait until the consumer has tried (and failed) more often than maxDeliveries would allow for a poison entry.
    const stream = redisKeys(prefix).events;
    for (;;) {
      const pending = (await redis.xpending(stream, EVENTS_GROUP, '-', '+', 1)) as [string, string, number, number][];
      if ((pending[0]?.[3] ?? 0) > 3 || consumer.stats().deadLettered > 0) break; // the latter fails below
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(consumer.stats()).toMatchObject({ processed: 0, deadLettered: 0, lastError: expect.any(String) });

    await setDatabaseUp(true);
    await consumer.drain({ timeoutMs: 20_000 });
    const { rows } = await pool.query(`SELECT ${ROW_COLUMNS} FROM gateway_requests ORDER BY id`);
    expect(rows).toEqual(starts.map((start, i) => expectedRow(start, ends[i]!)).sort((a, b) => (a.id < b.id ? -1 : 1)));
    expect(consumer.stats()).toMatchObject({ processed: 10, deadLettered: 0 });
    expect(await redis.xlen(redisKeys(prefix).eventsDead)).toBe(0);
  });
});
