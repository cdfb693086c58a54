import { EVENTS_GROUP, newId, redisKeys } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, migrate, type Pool } from '../src/db.js';
import { type EventsConsumer, startEventsConsumer } from '../src/events-consumer.js';
import { type Call, endEvent, publish, startEvent } from './events-support.js';
import { createTestDatabase, deleteRedisPrefix, TEST_REDIS_URL, testRedisPrefix } from './helpers.js';

/**
 * The events stream does not grow forever: what is committed to PostgreSQL is trimmed from Redis (two entries per
 * gateway call otherwise stay for good). What is not committed — read by a consumer whose PostgreSQL was down, still
 * pending — is never trimmed, however far the others got, and is written once a consumer can.
 */
describe('the events consumer trims what it committed', () => {
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const call: Call = { listingId: newId('listing'), sellerId: newId('agent'), buyerId: newId('agent') };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  let down: Pool;
  let redis: Redis;
  let prefix: string;
  let stream: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 4);
    // A PostgreSQL that refuses every connection.
    down = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    await migrate(pool);
    redis = new Redis(TEST_REDIS_URL);
    prefix = testRedisPrefix();
    stream = redisKeys(prefix).events;
    await redis.xgroup('CREATE', stream, EVENTS_GROUP, '0', 'MKSTREAM');
  });
  afterAll(async () => {
    redis?.disconnect();
    await pool?.end();
    await down?.end();
    await deleteRedisPrefix(prefix);
    await db?.drop();
  });

  const consumer = (name: string, on: Pool): Promise<EventsConsumer> =>
    startEventsConsumer({ pool: on, redis, prefix, consumerName: name, blockMs: 50, holdStartsMs: 0, log: silent });
  /** `n` free calls, start and end, into the stream; their ids. */
  const calls = async (n: number): Promise<string[]> => {
    const starts = Array.from({ length: n }, () => startEvent(call, { price_atomic: '0' }));
    await publish(redis, prefix, ...starts.flatMap((start) => [start, endEvent(start)]));
    return starts.map((s) => s.id);
  };
  const recorded = async (ids: string[]): Promise<number> =>
    Number((await pool.query('SELECT count(*) FROM gateway_requests WHERE id = ANY ($1)', [ids])).rows[0].count);

  it('trims the committed entries, never the pending ones, and loses nothing', async () => {
    // Committed: trimmed (whole stream nodes of 100 entries, so some may stay).
    const first = await consumer('b', pool);
    const early = await calls(1_000);
    await first.drain();
    expect(await recorded(early)).toBe(1_000);
    await expect.poll(() => redis.xlen(stream), { timeout: 5_000 }).toBeLessThan(200);
    await first.stop();

    // Read by a consumer whose PostgreSQL is down: pending, not committed.
    const failing = await consumer('a', down);
    const stuck = await calls(50);
    await expect
      .poll(async () => ((await redis.xpending(stream, EVENTS_GROUP)) as [number])[0], { timeout: 5_000 })
      .toBe(100);
    await failing.stop();
    const stuckEntries = (await redis.xrange(stream, '-', '+')).slice(-100);

    // Another consumer commits everything after them; the watermark stops before the pending ones, so neither they
    // nor anything after them is trimmed.
    const second = await consumer('b', pool);
    const late = await calls(1_000);
    await expect.poll(() => recorded(late), { timeout: 10_000 }).toBe(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a few watermark publications
    await second.stop();
    const left = await redis.xrange(stream, '-', '+');
    expect(left.length).toBeGreaterThanOrEqual(100 + 2_000);
    const ids = new Set(left.map(([id]) => id));
    for (const [id] of stuckEntries) expect(ids.has(id)).toBe(true);
    expect(await recorded(stuck)).toBe(0);

    // The consumer that read them, back with its PostgreSQL: written once, and then trimmed like the rest.
    const back = await consumer('a', pool);
    await back.drain();
    expect(await recorded(stuck)).toBe(50);
    await expect.poll(() => redis.xlen(stream), { timeout: 5_000 }).toBeLessThan(200);
    await back.stop();
    expect(await recorded([...early, ...late])).toBe(2_000);
  });
});
